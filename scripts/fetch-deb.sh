#!/usr/bin/env bash
# Fetch and unpack Debian packages for a foreign architecture (default
# ppc64el) without touching the machine's apt configuration or dpkg database.
#
#   scripts/fetch-deb.sh [--suite bookworm|bookworm-backports] [--arch ppc64el]
#                        [--no-resolve] [--refresh] PACKAGE...
#
# For each PACKAGE it prints, on stdout, one line: the directory the .deb was
# unpacked into (with `dpkg -x`).  Meta packages (Section kernel/metapackages
# with a tiny Installed-Size, e.g. linux-image-powerpc64le) are followed
# through their first Depends entry to the real package, and purely virtual
# names through their first provider; --no-resolve turns that off.
#
# Everything lives under ${VFIO_EEH_CACHE:-$HOME/.cache/vfio-eeh}:
#   apt/<suite>_<arch>/   private apt state (sources file, lists, pkgcache)
#   debs/                 downloaded .deb files
#   pkgs/<deb-name>/      unpacked trees (complete once .fetch-deb-complete exists)
#   resolved/<suite>_<arch>/<PACKAGE>   "name version deb-file" of the last resolution
# A run whose packages are all already resolved and unpacked does not touch
# the network.  Runs are serialised with flock on the cache, so concurrent
# callers are safe.  --refresh forgets the resolutions and updates the lists.
#
# Environment: VFIO_EEH_CACHE (cache root), VFIO_EEH_DEBIAN_MIRROR (archive
# URI; default: the machine's own Debian archive from /etc/apt, else
# http://deb.debian.org/debian), FETCH_DEB_LOCK_TIMEOUT (seconds, default 1800),
# FETCH_DEB_NET_TIMEOUT (seconds per network command, default 600).
set -euo pipefail

prog=fetch-deb.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { echo "$prog: $*" >&2; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

suite=bookworm
arch=ppc64el
resolve=1
refresh=0
pkgs=()
while [ $# -gt 0 ]; do
    case "$1" in
        --suite) [ $# -ge 2 ] || die "--suite needs a value"; suite=$2; shift 2 ;;
        --suite=*) suite=${1#*=}; shift ;;
        --arch) [ $# -ge 2 ] || die "--arch needs a value"; arch=$2; shift 2 ;;
        --arch=*) arch=${1#*=}; shift ;;
        --no-resolve) resolve=0; shift ;;
        --refresh) refresh=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; pkgs+=("$@"); break ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) pkgs+=("$1"); shift ;;
    esac
done
[ ${#pkgs[@]} -gt 0 ] || { echo "$prog: error: no PACKAGE given" >&2; usage 2; }
case "$suite" in *[!a-z0-9.-]*|'') die "bad suite name '$suite'" ;; esac
case "$arch" in *[!a-z0-9]*|'') die "bad architecture name '$arch'" ;; esac
for p in "${pkgs[@]}"; do
    case "$p" in *[!a-z0-9.+-]*|'') die "bad package name '$p'" ;; esac
done

for tool in apt-get apt-cache dpkg flock timeout; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found (this script needs a Debian system)"
done

cache_root=${VFIO_EEH_CACHE:-${HOME:-/root}/.cache/vfio-eeh}
lock_timeout=${FETCH_DEB_LOCK_TIMEOUT:-1800}
net_timeout=${FETCH_DEB_NET_TIMEOUT:-600}
mkdir -p "$cache_root" || die "cannot create cache directory $cache_root"
cache_root=$(cd "$cache_root" && pwd -P)

# Serialise every run on the cache: apt's private state, downloads and the
# unpacked trees are all shared between callers.
exec 9>>"$cache_root/.fetch-deb.lock" || die "cannot open lock file $cache_root/.fetch-deb.lock"
if ! flock -w "$lock_timeout" 9; then
    die "timed out after ${lock_timeout}s waiting for the cache lock $cache_root/.fetch-deb.lock"
fi

state=$cache_root/apt/${suite}_${arch}
debs=$cache_root/debs
unpacked=$cache_root/pkgs
resolved=$cache_root/resolved/${suite}_${arch}
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" \
         "$state/etc/sources.list.d" "$state/etc/preferences.d" \
         "$debs" "$unpacked" "$resolved"
[ -e "$state/status" ] || : >"$state/status"

# ---------------------------------------------------------------- cache hit
# A package is done when its resolution record names an unpacked tree that
# is complete.  Check all of them before anything touches the network.
cached_dir() { # PACKAGE -> prints the unpacked dir, or fails
    local rec="$resolved/$1" name version deb
    [ -f "$rec" ] || return 1
    read -r name version deb <"$rec" || return 1
    [ -n "${deb:-}" ] && [ -f "$unpacked/${deb%.deb}/.fetch-deb-complete" ] || return 1
    printf '%s\n' "$unpacked/${deb%.deb}"
}

if [ "$refresh" = 1 ]; then
    for p in "${pkgs[@]}"; do rm -f "$resolved/$p"; done
fi
all_cached=1
for p in "${pkgs[@]}"; do
    cached_dir "$p" >/dev/null || { all_cached=0; break; }
done
if [ "$all_cached" = 1 ]; then
    for p in "${pkgs[@]}"; do cached_dir "$p"; done
    exit 0
fi

# ---------------------------------------------------------------- apt setup
# The machine's own Debian archive (deb822 or one-line format), so that we
# reach exactly what the machine's apt reaches.
machine_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources; do
        [ -f "$f" ] || continue
        uri=$(awk 'tolower($1)=="uris:" { for (i = 2; i <= NF; i++) print $i }' "$f" |
              grep -E '^https?://[^ ]*/debian/?$' | head -n1 || true)
        [ -n "$uri" ] && { printf '%s\n' "${uri%/}"; return 0; }
    done
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(awk '$1=="deb" { for (i = 2; i <= NF; i++) if ($i ~ /^https?:\/\//) { print $i; break } }' "$f" |
              grep -E '/debian/?$' | head -n1 || true)
        [ -n "$uri" ] && { printf '%s\n' "${uri%/}"; return 0; }
    done
    return 1
}
mirror=${VFIO_EEH_DEBIAN_MIRROR:-$(machine_mirror || echo http://deb.debian.org/debian)}
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$keyring" ] || die "Debian archive keyring $keyring missing (install debian-archive-keyring)"

srcfile=$state/etc/sources.list
want_src="deb [arch=$arch signed-by=$keyring] $mirror $suite main"
if [ ! -f "$srcfile" ] || [ "$(cat "$srcfile")" != "$want_src" ]; then
    printf '%s\n' "$want_src" >"$srcfile"
    rm -f "$state/lists/"*_Packages* "$state/lists/"*Release* 2>/dev/null || true
fi

apt_opts=(
    -oAPT::Architecture="$arch" -oAPT::Architectures="$arch"
    -oDir::State::Lists="$state/lists" -oDir::Cache="$state/cache"
    -oDir::Cache::pkgcache="$state/cache/pkgcache.bin"
    -oDir::Cache::srcpkgcache="$state/cache/srcpkgcache.bin"
    -oDir::State::status="$state/status"
    -oDir::State::extended_states="$state/extended_states"
    -oDir::Etc::SourceList="$srcfile" -oDir::Etc::SourceParts="$state/etc/sources.list.d"
    -oDir::Etc::Preferences="$state/etc/preferences"
    -oDir::Etc::PreferencesParts="$state/etc/preferences.d"
    -oAcquire::Languages=none
    -oAcquire::IndexTargets::deb::DEP-11::DefaultEnabled=false
    -oAcquire::IndexTargets::deb::DEP-11-icons::DefaultEnabled=false
    -oAcquire::IndexTargets::deb::DEP-11-icons-small::DefaultEnabled=false
    -oAcquire::IndexTargets::deb::Contents-deb::DefaultEnabled=false
    -oAcquire::http::Timeout=30 -oAcquire::https::Timeout=30 -oAcquire::Retries=3
)
# The private state lives under root's home, which the unprivileged _apt
# download user cannot enter.
[ "$(id -u)" = 0 ] && apt_opts+=(-oAPT::Sandbox::User=root)

lists_present() {
    compgen -G "$state/lists/*_dists_${suite}_main_binary-${arch}_Packages*" >/dev/null
}

apt_update() {
    local attempt rc
    for attempt in 1 2 3; do
        log "apt-get update for $suite/$arch from $mirror (attempt $attempt)"
        rc=0
        timeout "$net_timeout" apt-get -q "${apt_opts[@]}" update >&2 || rc=$?
        if [ "$rc" = 0 ]; then
            return 0
        fi
        if lists_present; then
            log "apt-get update exited $rc but the $suite $arch package index is present; continuing"
            return 0
        fi
        log "apt-get update failed (exit $rc) and no $suite $arch package index yet"
        [ "$attempt" = 3 ] || sleep $((attempt * 5))
    done
    die "apt-get update for $suite/$arch from $mirror failed 3 times"
}

updated=0
# Fresh lists are reused for a day; a forced refresh or stale lists update.
if [ "$refresh" = 1 ] || ! lists_present ||
   [ -n "$(find "$state/lists" -maxdepth 1 -name '*_Packages*' -mmin +1440 -print -quit)" ]; then
    apt_update
    updated=1
fi

# ---------------------------------------------------------------- resolve
field() { # FIELD: value of FIELD in the first stanza on stdin
    awk -v f="$1:" 'NF == 0 { exit } $1 == f { sub(/^[^:]*:[ \t]*/, ""); print; exit }'
}

# Print "name version" of the package really wanted for $1.
resolve_pkg() {
    local name=$1 stanza section isize deps ver provider
    for _ in 1 2 3 4; do
        stanza=$(apt-cache "${apt_opts[@]}" show --no-all-versions "$name" 2>/dev/null || true)
        if [ -z "$stanza" ]; then
            # Purely virtual: take the first provider.
            [ "$resolve" = 1 ] || return 1
            provider=$(apt-cache "${apt_opts[@]}" showpkg "$name" 2>/dev/null |
                       awk '/^Reverse Provides:/ { on = 1; next } on && NF { print $1; exit }')
            [ -n "$provider" ] || return 1
            log "$name is virtual; using its provider $provider"
            name=$provider
            continue
        fi
        ver=$(field Version <<<"$stanza")
        section=$(field Section <<<"$stanza")
        isize=$(field Installed-Size <<<"$stanza")
        deps=$(field Depends <<<"$stanza")
        if [ "$resolve" = 1 ] && [ -n "$deps" ] && [ "${isize:-0}" -le 100 ] &&
           case "$section" in kernel|metapackages|*/kernel|*/metapackages) true ;; *) false ;; esac; then
            # First alternative of the first dependency, without version or arch.
            provider=$(printf '%s\n' "$deps" | sed -e 's/,.*//' -e 's/|.*//' -e 's/(.*//' -e 's/:.*//' -e 's/[[:space:]]//g')
            if [ -n "$provider" ]; then
                log "$name $ver is a meta package; following it to $provider"
                name=$provider
                continue
            fi
        fi
        printf '%s %s\n' "$name" "$ver"
        return 0
    done
    return 1
}

fetch_one() { # PACKAGE -> sets fetched_dir to the unpacked dir
    local want=$1 nv name version deb dir f
    if ! nv=$(resolve_pkg "$want"); then
        if [ "$updated" = 0 ]; then
            apt_update
            updated=1
            nv=$(resolve_pkg "$want") || die "package '$want' not found for $suite/$arch at $mirror"
        else
            die "package '$want' not found for $suite/$arch at $mirror"
        fi
    fi
    read -r name version <<<"$nv"
    # apt names downloads NAME_VERSION_ARCH.deb with ':' (epoch) as %3a.
    deb=$(printf '%s_%s_%s.deb' "$name" "${version//:/%3a}" "$arch")
    if [ ! -s "$debs/$deb" ]; then
        # The cached file may carry arch "all".
        f=$debs/${name}_${version//:/%3a}_all.deb
        if [ -s "$f" ]; then deb=${f##*/}; fi
    fi
    if [ ! -s "$debs/$deb" ]; then
        log "downloading $name $version ($arch)"
        local rc=0
        (cd "$debs" && timeout "$net_timeout" apt-get -q "${apt_opts[@]}" download "$name=$version" >&2) || rc=$?
        if [ "$rc" != 0 ] && [ "$updated" = 0 ]; then
            # Stale lists point at files the archive no longer has.
            log "download failed (exit $rc); refreshing the package lists and retrying"
            apt_update
            updated=1
            nv=$(resolve_pkg "$want") || die "package '$want' not found for $suite/$arch at $mirror"
            read -r name version <<<"$nv"
            rc=0
            (cd "$debs" && timeout "$net_timeout" apt-get -q "${apt_opts[@]}" download "$name=$version" >&2) || rc=$?
        fi
        [ "$rc" = 0 ] || die "apt-get download $name=$version ($suite/$arch) failed with exit $rc"
        deb=
        for f in "$debs/${name}_${version//:/%3a}_"*.deb; do
            [ -s "$f" ] && deb=${f##*/}
        done
        [ -n "$deb" ] || die "apt-get download of $name=$version left no .deb in $debs"
    fi
    dir=$unpacked/${deb%.deb}
    if [ ! -f "$dir/.fetch-deb-complete" ]; then
        log "unpacking $deb"
        rm -rf "$dir" "$dir.tmp"
        mkdir -p "$dir.tmp"
        dpkg -x "$debs/$deb" "$dir.tmp" || { rm -rf "$dir.tmp"; die "dpkg -x $debs/$deb failed"; }
        : >"$dir.tmp/.fetch-deb-complete"
        mv "$dir.tmp" "$dir"
    fi
    printf '%s %s %s\n' "$name" "$version" "$deb" >"$resolved/$want.tmp"
    mv "$resolved/$want.tmp" "$resolved/$want"
    fetched_dir=$dir
}

out=()
for p in "${pkgs[@]}"; do
    if d=$(cached_dir "$p"); then
        out+=("$d")
    else
        fetch_one "$p"
        out+=("$fetched_dir")
    fi
done
printf '%s\n' "${out[@]}"
