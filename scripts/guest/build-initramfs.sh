#!/usr/bin/env bash
# Build a gzip'd newc cpio initramfs for the ppc64le test guest: a static
# busybox (busybox-static:ppc64el, fetched with scripts/fetch-deb.sh unless
# --busybox is given) plus an /init script.
#
#   scripts/guest/build-initramfs.sh [--busybox PATH] [--add SRC:DEST]...
#                                    [--module-tree DIR --module NAME...]
#                                    OUTPUT [INIT_SCRIPT]
#
#   OUTPUT        the .cpio.gz to write
#   INIT_SCRIPT   becomes /init (default: scripts/guest/init-eeh.sh); it runs
#                 under busybox sh and must install the applets itself
#                 (`/bin/busybox --install -s`), as init-eeh.sh does
#   --busybox     a busybox binary, or a directory holding bin/busybox
#   --add SRC:DEST  also put file SRC at /DEST (mode kept), repeatable
#   --module-tree DIR  a kernel's lib/modules/<release> (e.g. from Debian's
#                 linux-image package), where --module names are looked up
#   --module NAME a kernel module to ship, with the modules it depends on
#                 (its .modinfo "depends=", recursively), repeatable: the
#                 .ko files go to /lib/modules/, and /lib/modules/NAME.load
#                 lists NAME's closure in load order (dependencies first),
#                 which init-eeh.sh loads for eehtest.modules=NAME
#
# Every image also carries the guest I/O workload (scripts/guest/nvme-io.sh)
# as /bin/nvme-io.
# Needs cpio and gzip; installs cpio with apt-get when it is missing.
set -euo pipefail

prog=build-initramfs.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=scripts/guest/lib.sh
. "$here/lib.sh"

die() { echo "$prog: error: $*" >&2; exit 1; }
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

busybox=
adds=()
module_tree=
modules=()
pos=()
while [ $# -gt 0 ]; do
    case "$1" in
        --busybox) [ $# -ge 2 ] || die "--busybox needs a value"; busybox=$2; shift 2 ;;
        --add) [ $# -ge 2 ] || die "--add needs SRC:DEST"; adds+=("$2"); shift 2 ;;
        --module-tree) [ $# -ge 2 ] || die "--module-tree needs a directory"; module_tree=$2; shift 2 ;;
        --module) [ $# -ge 2 ] || die "--module needs a name"; modules+=("$2"); shift 2 ;;
        -h|--help) usage 0 ;;
        --) shift; pos+=("$@"); break ;;
        -*) die "unknown option '$1' (see --help)" ;;
        *) pos+=("$1"); shift ;;
    esac
done
[ ${#pos[@]} -ge 1 ] && [ ${#pos[@]} -le 2 ] || usage 2
output=${pos[0]}
init=${pos[1]:-$here/init-eeh.sh}

[ -f "$init" ] || die "init script '$init' not found"
case "$(head -c 2 "$init")" in
    '#!') ;;
    *) die "init script '$init' has no #! line (the kernel execs /init directly)" ;;
esac

apt_ensure cpio cpio || die "cpio is required"
command -v gzip >/dev/null 2>&1 || die "gzip is required"

if [ -z "$busybox" ]; then
    bbdir=$("$repo/scripts/fetch-deb.sh" --arch ppc64el busybox-static) ||
        die "fetching busybox-static:ppc64el with scripts/fetch-deb.sh failed"
    busybox=$bbdir/bin/busybox
elif [ -d "$busybox" ]; then
    busybox=$busybox/bin/busybox
fi
[ -f "$busybox" ] || die "busybox binary '$busybox' not found"
# A dynamic busybox would need a libc in the image: insist on the static one.
if command -v file >/dev/null 2>&1; then
    case "$(file -b "$busybox")" in
        *"statically linked"*|*"static-pie linked"*) ;;
        *) die "'$busybox' is not a statically linked binary (use busybox-static)" ;;
    esac
fi

stage=$(mktemp -d "${TMPDIR:-/tmp}/initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,etc,root,mnt}
install -m 0755 "$busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
install -m 0755 "$init" "$stage/init"
install -m 0755 "$here/nvme-io.sh" "$stage/bin/nvme-io"

# ---- kernel modules: NAME and what it depends on, dependencies first.
# Module names use - and _ interchangeably; the index keys use _.
declare -A module_file=() module_done=()
# module_depends KO: the comma-separated "depends=" of its .modinfo.
module_depends() {
    local all
    all=$(tr '\0' '\n' <"$1" | sed -n 's/^depends=//p')
    printf '%s' "${all%%$'\n'*}"
}
# module_closure NAME: prints NAME's closure in load order, each module once
# (module_done holds what this closure printed already).
module_closure() {
    local key dep
    key=${1//-/_}
    [ -n "${module_file[$key]:-}" ] || die "module '$1' is not in $module_tree"
    [ -z "${module_done[$key]:-}" ] || return 0
    module_done[$key]=1
    local IFS=,
    for dep in $(module_depends "${module_file[$key]}"); do
        [ -n "$dep" ] && module_closure "$dep"
    done
    basename "${module_file[$key]}"
}
if [ ${#modules[@]} -gt 0 ]; then
    [ -n "$module_tree" ] && [ -d "$module_tree" ] || die "--module needs --module-tree DIR (a lib/modules/<release>)"
    while IFS= read -r ko; do
        base=${ko##*/}
        base=${base%.ko}
        module_file[${base//-/_}]=$ko
    done < <(find "$module_tree" -name '*.ko' -type f)
    mkdir -p "$stage/lib/modules"
    for m in "${modules[@]}"; do
        module_done=()
        module_closure "$m" >"$stage/lib/modules/$m.load"
        while IFS= read -r ko; do
            base=${ko%.ko}
            install -m 0644 "${module_file[${base//-/_}]}" "$stage/lib/modules/$ko"
        done <"$stage/lib/modules/$m.load"
        echo "$prog: module $m: $(tr '\n' ' ' <"$stage/lib/modules/$m.load")" >&2
    done
fi
for a in ${adds[@]+"${adds[@]}"}; do
    src=${a%%:*}
    dest=${a#*:}
    [ "$src" != "$a" ] && [ -n "$dest" ] || die "--add '$a' is not SRC:DEST"
    [ -f "$src" ] || die "--add source '$src' not found"
    dest=${dest#/}
    mkdir -p "$stage/$(dirname "$dest")"
    cp -p "$src" "$stage/$dest"
done
# The kernel opens /dev/console before /init runs; without the node the
# init script reopens it after mounting devtmpfs.  Only root can mknod.
if [ "$(id -u)" = 0 ]; then
    mknod -m 0600 "$stage/dev/console" c 5 1
    mknod -m 0666 "$stage/dev/null" c 1 3
fi

mkdir -p "$(dirname "$output")"
tmpout=$output.tmp.$$
# Fixed timestamps and sorted names keep the image reproducible.
find "$stage" -exec touch -h -d @0 {} +
if ! (cd "$stage" && find . -mindepth 1 | LC_ALL=C sort |
      cpio -o -H newc --owner 0:0 --reproducible --quiet | gzip -9 -n) >"$tmpout"; then
    rm -f "$tmpout"
    die "cpio/gzip of the initramfs failed"
fi
mv "$tmpout" "$output"
echo "$prog: wrote $output ($(stat -c %s "$output") bytes; init from $init)" >&2
