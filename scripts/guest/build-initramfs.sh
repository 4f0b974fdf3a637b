#!/usr/bin/env bash
# Build a gzip'd newc cpio initramfs for the ppc64le test guest: a static
# busybox (busybox-static:ppc64el, fetched with scripts/fetch-deb.sh unless
# --busybox is given) plus an /init script.
#
#   scripts/guest/build-initramfs.sh [--busybox PATH] [--add SRC:DEST]...
#                                    OUTPUT [INIT_SCRIPT]
#
#   OUTPUT        the .cpio.gz to write
#   INIT_SCRIPT   becomes /init (default: scripts/guest/init-eeh.sh); it runs
#                 under busybox sh and must install the applets itself
#                 (`/bin/busybox --install -s`), as init-eeh.sh does
#   --busybox     a busybox binary, or a directory holding bin/busybox
#   --add SRC:DEST  also put file SRC at /DEST (mode kept), repeatable
#
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
pos=()
while [ $# -gt 0 ]; do
    case "$1" in
        --busybox) [ $# -ge 2 ] || die "--busybox needs a value"; busybox=$2; shift 2 ;;
        --add) [ $# -ge 2 ] || die "--add needs SRC:DEST"; adds+=("$2"); shift 2 ;;
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
