#!/usr/bin/env bash
# Build the initramfs for the PowerNV oracle run (see docs/oracle.md).
#
#   scripts/oracle/build-oracle-initramfs.sh --kernel-dir DIR --busybox-dir DIR \
#       --binary FILE --out FILE.cpio.gz
#
#   --kernel-dir   an unpacked linux-image-*-powerpc64le package (has lib/modules/<ver>/)
#   --busybox-dir  an unpacked busybox-static:ppc64el package (has bin/busybox)
#   --binary       the static ppc64le vfio_eeh_conformance program
#   --out          the gzip-compressed newc cpio archive to write
#   --extra FILE   (repeatable) another static program for /bin; /init runs
#                  /bin/vfio-eeh-linux-conformance GROUP BDF and
#                  /bin/eehctl-checks.sh GROUP BDF after the C program when
#                  they are there (framed by ORACLE-RUST-* and
#                  ORACLE-EEHCTL-* lines)
#
# The archive holds busybox, the conformance program, the VFIO modules with
# their dependencies (decompressed here, so loading does not depend on which
# compressors the busybox build or the kernel's in-kernel decompression
# support), and an /init that loads them, binds the first non-bridge PCI
# device to vfio-pci, runs the program and powers off. Everything the host
# side parses is framed by ORACLE-* marker lines.
set -euo pipefail

prog=build-oracle-initramfs.sh
die() { echo "$prog: error: $*" >&2; exit 1; }

# Modules to load, in any order; dependencies are added and sorted below.
WANTED_MODULES=(vfio vfio_iommu_spapr_tce vfio_pci_core vfio_pci)

kernel_dir='' busybox_dir='' binary='' out=''
extras=()
while [ $# -gt 0 ]; do
    case "$1" in
        --kernel-dir) kernel_dir=${2:?}; shift 2 ;;
        --busybox-dir) busybox_dir=${2:?}; shift 2 ;;
        --binary) binary=${2:?}; shift 2 ;;
        --out) out=${2:?}; shift 2 ;;
        --extra) extras+=("${2:?}"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument '$1' (see --help)" ;;
    esac
done
if [ -z "$kernel_dir" ] || [ -z "$busybox_dir" ] || [ -z "$binary" ] || [ -z "$out" ]; then
    die "--kernel-dir, --busybox-dir, --binary and --out are all required"
fi
for tool in cpio gzip xz find; do
    command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found"
done

[ -x "$busybox_dir/bin/busybox" ] || die "no bin/busybox in $busybox_dir"
[ -f "$binary" ] || die "conformance binary $binary not found"
moddirs=("$kernel_dir"/lib/modules/*/)
[ -d "${moddirs[0]}" ] || die "no lib/modules/<version>/ in $kernel_dir"
[ ${#moddirs[@]} -eq 1 ] || die "more than one module tree in $kernel_dir"
moddir=${moddirs[0]%/}

stage=$(mktemp -d "${TMPDIR:-/tmp}/oracle-initramfs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# ------------------------------------------------------------ modules
# Module file by module name ('-' and '_' are the same to the kernel).
declare -A mod_path=()
while IFS= read -r -d '' f; do
    base=${f##*/}
    base=${base%%.ko*}
    mod_path[${base//-/_}]=$f
done < <(find "$moddir/kernel" \( -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.gz' \
                                  -o -name '*.ko.zst' \) -print0)

decompress() { # FILE -> uncompressed module on stdout
    case "$1" in
        *.ko.xz) xz -dc "$1" ;;
        *.ko.gz) gzip -dc "$1" ;;
        *.ko.zst) command -v zstd >/dev/null || die "zstd needed for $1"; zstd -dc "$1" ;;
        *.ko) cat "$1" ;;
    esac
}

mkdir -p "$stage/lib/modules"
declare -A visited=()
load_order=()
add_module() { # NAME: add its dependencies first, then itself (depth-first)
    local name=${1//-/_} dep deps
    [ -n "${visited[$name]:-}" ] && return 0
    visited[$name]=1
    if [ -z "${mod_path[$name]:-}" ]; then
        # Built into the kernel: nothing to load.
        grep -qE "/${name//_/[-_]}\.ko$" "$moddir/modules.builtin" 2>/dev/null && return 0
        die "module $name not found in $moddir"
    fi
    decompress "${mod_path[$name]}" >"$stage/lib/modules/$name.ko" ||
        die "cannot decompress ${mod_path[$name]}"
    deps=$(tr '\0' '\n' <"$stage/lib/modules/$name.ko" | sed -n 's/^depends=//p' | head -n1)
    for dep in ${deps//,/ }; do
        add_module "$dep"
    done
    load_order+=("$name")
}
for m in "${WANTED_MODULES[@]}"; do
    add_module "$m"
done
printf '%s\n' "${load_order[@]}" >"$stage/lib/modules/load-order"

# ------------------------------------------------------------ userland
mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,root}
cp "$busybox_dir/bin/busybox" "$stage/bin/busybox"
ln -s busybox "$stage/bin/sh"
install -m 0755 "$binary" "$stage/bin/vfio_eeh_conformance"
for f in ${extras[@]+"${extras[@]}"}; do
    [ -f "$f" ] || die "extra program $f not found"
    install -m 0755 "$f" "$stage/bin/${f##*/}"
done

cat >"$stage/init" <<'INIT'
#!/bin/sh
# Oracle guest: PowerNV host kernel, one device passed to vfio-pci.
/bin/busybox --install -s
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
echo "ORACLE-INIT kernel=$(uname -r)"

fail() {
    echo "ORACLE-ERROR $*"
    echo 1 >/proc/sys/kernel/printk
    poweroff -f
}

while read -r m; do
    insmod "/lib/modules/$m.ko" || fail "insmod $m failed"
done </lib/modules/load-order

# The first PCI device that is not a bridge (class 0x06xxxx).
bdf=
for d in /sys/bus/pci/devices/*; do
    [ -e "$d/class" ] || continue
    case "$(cat "$d/class")" in 0x06*) continue ;; esac
    bdf=${d##*/}
    break
done
[ -n "$bdf" ] || fail "no non-bridge PCI device found"
dev=/sys/bus/pci/devices/$bdf
echo "ORACLE-DEVICE bdf=$bdf vendor=$(cat "$dev/vendor") device=$(cat "$dev/device") class=$(cat "$dev/class")"
[ -e "$dev/driver" ] && echo "$bdf" >"$dev/driver/unbind"
echo vfio-pci >"$dev/driver_override" || fail "driver_override write failed"
echo "$bdf" >/sys/bus/pci/drivers_probe
case "$(readlink "$dev/driver")" in
    */vfio-pci) ;;
    *) fail "device $bdf did not bind to vfio-pci (driver: $(readlink "$dev/driver"))" ;;
esac
[ -e "$dev/iommu_group" ] || fail "device $bdf has no iommu_group"
group=$(readlink "$dev/iommu_group")
group=${group##*/}
i=0
while [ ! -e "/dev/vfio/$group" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
[ -e "/dev/vfio/$group" ] || fail "/dev/vfio/$group did not appear"
echo "ORACLE-GROUP group=$group"

start=$(cut -d' ' -f1 /proc/uptime)
timeout 900 /bin/vfio_eeh_conformance "$group" "$bdf" >/tmp/checks.txt 2>/tmp/checks.err
rc=$?
end=$(cut -d' ' -f1 /proc/uptime)

# The Rust backend's checks and eehctl's host commands, when present
# (scripts/cross/build-ppc64le.sh builds them).
if [ -x /bin/vfio-eeh-linux-conformance ]; then
    timeout 900 /bin/vfio-eeh-linux-conformance "$group" "$bdf" >/tmp/rust.txt 2>/tmp/rust.err
    echo "rc=$?" >/tmp/rust.rc
fi
if [ -x /bin/eehctl-checks.sh ]; then
    timeout 300 /bin/eehctl-checks.sh "$group" "$bdf" >/tmp/eehctl.txt 2>&1
    echo "rc=$?" >/tmp/eehctl.rc
fi

# Kernel messages must not interleave with the lines the host parses.
echo 1 >/proc/sys/kernel/printk
echo "ORACLE-STDERR-BEGIN"
cat /tmp/checks.err
echo "ORACLE-STDERR-END"
echo "ORACLE-BEGIN"
cat /tmp/checks.txt
echo "ORACLE-END rc=$rc start=$start end=$end"
if [ -e /tmp/rust.rc ]; then
    echo "ORACLE-RUST-STDERR-BEGIN"
    cat /tmp/rust.err
    echo "ORACLE-RUST-STDERR-END"
    echo "ORACLE-RUST-BEGIN"
    cat /tmp/rust.txt
    echo "ORACLE-RUST-END $(cat /tmp/rust.rc)"
fi
if [ -e /tmp/eehctl.rc ]; then
    echo "ORACLE-EEHCTL-BEGIN"
    cat /tmp/eehctl.txt
    echo "ORACLE-EEHCTL-END $(cat /tmp/eehctl.rc)"
fi
echo "ORACLE-DMESG-BEGIN"
dmesg | grep -i -E 'eeh|vfio|opal|pci' | tail -n 200
echo "ORACLE-DMESG-END"
poweroff -f
INIT
chmod 0755 "$stage/init"

# ------------------------------------------------------------ archive
mkdir -p "$(dirname "$out")"
tmp_out=$out.tmp.$$
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0) |
    gzip -9 >"$tmp_out" || { rm -f "$tmp_out"; die "cpio/gzip failed"; }
mv "$tmp_out" "$out"
echo "$prog: wrote $out ($(du -h "$out" | cut -f1); modules: ${load_order[*]})" >&2
