#!/usr/bin/env bash
# Cross-build vfio-eeh for powerpc64le-unknown-linux-gnu with Debian's
# rustc-web (bookworm-security) and its ppc64el std, fetched into the cache
# (scripts/fetch-deb.sh); nothing is installed system-wide.
#
#   scripts/cross/build-ppc64le.sh [--print-env]
#
# Builds, static (crt-static) and in release mode:
#   * eehctl, and eehd when crates/eehd exists;
#   * vfio-eeh-linux-conformance (the Rust backend's conformance checks);
#   * the test binaries of the pure crates (PPC64LE_TEST_CRATES, default
#     "vfio-eeh vfio-eeh-linux eehctl").
# The target directory is $VFIO_EEH_CACHE/cross/target (its own, as the
# compiler differs from the host build's). On success it prints that
# directory and writes there:
#   ppc64le-bins.txt    one line per binary: NAME PATH
#   ppc64le-tests.txt   one line per test harness: CRATE KIND NAME PATH
# --print-env prints the toolchain environment (shell assignments) instead
# of building, for running cargo by hand.
#
# Needs: rustup's cargo (any >= 1.87), powerpc64le-linux-gnu-gcc (Debian
# gcc-powerpc64le-linux-gnu + libc6-dev-ppc64el-cross), apt-get/dpkg.
# Environment: VFIO_EEH_CACHE (default ~/.cache/vfio-eeh),
# VFIO_EEH_DEBIAN_SECURITY_MIRROR (default: the machine's debian-security
# archive from /etc/apt, else http://deb.debian.org/debian-security),
# RUSTC_WEB_VERSION (default 1.96: the package libstd-rust-web-<ver>).
set -euo pipefail

prog=build-ppc64le.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { echo "$prog: $*" >&2; }

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
fetch=$repo/scripts/fetch-deb.sh
target=powerpc64le-unknown-linux-gnu
cache_root=${VFIO_EEH_CACHE:-${HOME:-/root}/.cache/vfio-eeh}
rust_version=${RUSTC_WEB_VERSION:-1.96}

print_env=0
case "${1:-}" in
    --print-env) print_env=1 ;;
    '') ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
esac

command -v cargo >/dev/null 2>&1 || die "cargo not found (install rustup's stable toolchain)"
command -v powerpc64le-linux-gnu-gcc >/dev/null 2>&1 ||
    die "powerpc64le-linux-gnu-gcc not found: install the Debian packages gcc-powerpc64le-linux-gnu and libc6-dev-ppc64el-cross"

# ------------------------------------------------------------ toolchain
security_mirror() {
    local f uri
    for f in /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [ -f "$f" ] || continue
        uri=$(grep -v '^[[:space:]]*#' "$f" | grep -oE 'https?://[^ ]*/debian-security/?' | head -n1 || true)
        [ -n "$uri" ] && { printf '%s\n' "${uri%/}"; return 0; }
    done
    echo http://deb.debian.org/debian-security
}
mirror=${VFIO_EEH_DEBIAN_SECURITY_MIRROR:-$(security_mirror)}

fetch_pkgs() { # ARCH PACKAGE... -> unpacked dirs, one a line
    local arch=$1 out
    shift
    if ! out=$(VFIO_EEH_DEBIAN_MIRROR=$mirror "$fetch" --suite bookworm-security --arch "$arch" --no-resolve "$@"); then
        die "could not fetch $* ($arch) from bookworm-security at $mirror; the cross build needs Debian's rustc-web $rust_version (see the messages above)"
    fi
    printf '%s\n' "$out"
}
host_dirs=$(fetch_pkgs amd64 rustc-web "libstd-rust-web-$rust_version" libstd-rust-web-dev "libllvm${LLVM_MAJOR:-22}")
ppc_dirs=$(fetch_pkgs ppc64el libstd-rust-web-dev)

# One prefix: the unpacked trees linked together (cheap, rebuilt when the
# package set changes).
prefix=$cache_root/cross/rustc-web
stamp=$(printf '%s\n' $host_dirs $ppc_dirs | sha256sum | cut -c1-16)
if [ ! -f "$prefix/.stamp-$stamp" ]; then
    log "assembling the toolchain prefix $prefix"
    rm -rf "$prefix.tmp"
    mkdir -p "$prefix.tmp"
    for d in $host_dirs $ppc_dirs; do
        cp -a --reflink=auto "$d/." "$prefix.tmp/"
    done
    rm -f "$prefix.tmp/.fetch-deb-complete"
    : >"$prefix.tmp/.stamp-$stamp"
    rm -rf "$prefix"
    mv "$prefix.tmp" "$prefix"
fi
rustc=$prefix/usr/bin/rustc
[ -x "$rustc" ] || die "no usr/bin/rustc in $prefix (package rustc-web changed its layout?)"
export LD_LIBRARY_PATH=$prefix/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
"$rustc" --print target-list >/dev/null 2>&1 || die "$rustc does not run (LD_LIBRARY_PATH=$LD_LIBRARY_PATH)"
sysroot=$("$rustc" --print sysroot)
[ -d "$sysroot/lib/rustlib/$target/lib" ] || die "no $target std under $sysroot/lib/rustlib (libstd-rust-web-dev:ppc64el missing?)"

env_vars=(
    "RUSTC=$rustc"
    "RUSTDOC=$prefix/usr/bin/rustdoc"
    "LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    "CARGO_TARGET_DIR=$cache_root/cross/target"
    "CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_LINKER=powerpc64le-linux-gnu-gcc"
    "CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_GNU_RUSTFLAGS=-C target-feature=+crt-static"
    "CC_powerpc64le_unknown_linux_gnu=powerpc64le-linux-gnu-gcc"
)
if [ "$print_env" = 1 ]; then
    printf '%q\n' "${env_vars[@]}" | sed 's/^/export /'
    exit 0
fi
export "${env_vars[@]}"
out=$CARGO_TARGET_DIR
log "rustc $("$rustc" --version | cut -d' ' -f2-) -> $out"

# ------------------------------------------------------------ build
cd "$repo"
bins=(-p eehctl --bin eehctl -p vfio-eeh-linux --bin vfio-eeh-linux-conformance)
[ -f crates/eehd/Cargo.toml ] && bins+=(-p eehd --bin eehd)
read -r -a test_crates <<<"${PPC64LE_TEST_CRATES:-vfio-eeh vfio-eeh-linux eehctl}"
test_pkgs=()
for c in "${test_crates[@]}"; do test_pkgs+=(-p "$c"); done

# Binary paths from cargo's JSON messages: executable artifacts, with their
# crate and target kind.
artifacts() { # FILTER (jq-free): prints "crate kind path"
    grep '"reason":"compiler-artifact"' | grep -v '"executable":null' |
        sed -E 's/.*"package_id":"([^"]*)".*"target":\{"kind":\["([^"]*)".*"name":"([^"]*)".*"executable":"([^"]*)".*/\1 \2 \3 \4/' |
        awk '{ n = $1; sub(/#.*/, "", n); sub(/.*\//, "", n); print n, $2, $3, $4 }'
}
t0=$(date +%s)
cargo build --locked --release --target "$target" "${bins[@]}" --message-format=json-render-diagnostics \
    >"$out/.bins.json" || die "cross build of the binaries failed"
artifacts <"$out/.bins.json" | awk '{ print $3, $4 }' >"$out/ppc64le-bins.txt"
cargo test --locked --release --target "$target" "${test_pkgs[@]}" --no-run --message-format=json-render-diagnostics \
    >"$out/.tests.json" || die "cross build of the test binaries failed"
# Test harnesses only: artifacts whose profile has "test":true (the target's
# own "test":true only says it may have tests; the binaries integration
# tests run, profile "test":false, are built too).
grep -E '"profile":\{[^}]*"test":true\}' "$out/.tests.json" | artifacts >"$out/ppc64le-tests.txt"
log "built in $(( $(date +%s) - t0 )) s: $(wc -l <"$out/ppc64le-bins.txt") binaries, $(wc -l <"$out/ppc64le-tests.txt") test harnesses"
echo "$out"
