#!/usr/bin/env bash
# Run tests/c/vfio_eeh_conformance.c on a real Linux 6.12 PowerNV host kernel
# under QEMU (-M powernv9, TCG) and record the kernel's answers.
#
#   scripts/oracle/run-powernv.sh [--refresh] [--timeout SECS] [--log FILE] [OUTPUT]
#
#   OUTPUT      where to write the CHECK lines (default: a new temp file,
#               whose path is printed on stdout at the end)
#   --refresh   write the committed golden file tests/c/oracle-linux-6.12.txt
#   --timeout   bound for the whole guest run, boot included (default 900 s)
#   --log FILE  keep the guest console log there (default: a temp file that
#               is kept, and named, only when the run fails)
#   --rust DIR  also run the ppc64le vfio-eeh-linux-conformance, eehctl, eehd
#               and scripts/oracle/eehctl-checks.sh from DIR (the cross build's
#               release directory) in the same boot; the Rust checks go to
#               OUTPUT.rust, eehctl's transcript to OUTPUT.eehctl
#
# Steps: install qemu-system-ppc and the ppc64el cross compiler if missing
# (apt-get, as root); fetch Debian's bookworm-backports linux-image-powerpc64le
# (6.12) and bookworm busybox-static for ppc64el with scripts/fetch-deb.sh;
# build the static conformance program and the initramfs
# (build-oracle-initramfs.sh); boot with an e1000e under the first PHB; the
# guest binds it to vfio-pci and runs the program; the CHECK lines are taken
# from the console between ORACLE-BEGIN and ORACLE-END.
#
# Environment: ORACLE_LOG_CAP (console log cap in bytes, default 8 MiB),
# ORACLE_MEM (guest RAM, default 2G), VFIO_EEH_CACHE (see fetch-deb.sh).
# Exit status: 0 when the guest ran the program to its SUMMARY line (check
# failures are data, not errors), 1 on any error, 2 on usage errors, 75
# when the guest kernel panicked (its own fault, not the program's: seen
# once in CI, a WARNING in powerpc's destroy_context as the program exited,
# then init died of a segfault; a caller may run it again).
set -euo pipefail

prog=run-powernv.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
log() { echo "$prog: $*" >&2; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit "${1:-2}"; }

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
golden=$repo/tests/c/oracle-linux-6.12.txt
source_c=$repo/tests/c/vfio_eeh_conformance.c
fetch=$repo/scripts/fetch-deb.sh

output='' refresh=0 run_timeout=900 keep_log='' rust_dir=''
log_cap=${ORACLE_LOG_CAP:-8388608}
guest_mem=${ORACLE_MEM:-2G}
while [ $# -gt 0 ]; do
    case "$1" in
        --refresh) refresh=1; shift ;;
        --timeout) [ $# -ge 2 ] || usage; run_timeout=$2; shift 2 ;;
        --log) [ $# -ge 2 ] || usage; keep_log=$2; shift 2 ;;
        --rust) [ $# -ge 2 ] || usage; rust_dir=$2; shift 2 ;;
        -h|--help) usage 0 ;;
        -*) echo "$prog: error: unknown option '$1'" >&2; usage 2 ;;
        *) [ -z "$output" ] || usage 2; output=$1; shift ;;
    esac
done
case "$run_timeout" in ''|*[!0-9]*) die "--timeout needs a number of seconds" ;; esac
case "$log_cap" in ''|*[!0-9]*) die "ORACLE_LOG_CAP needs a number of bytes" ;; esac
if [ "$refresh" = 1 ]; then
    [ -z "$output" ] || die "give either --refresh or OUTPUT, not both"
    output=$golden
fi

t_start=$(date +%s)
phase_start=$t_start
phase() { # NAME: log how long the previous phase took
    local now
    now=$(date +%s)
    log "[$((now - phase_start)) s] $1"
    phase_start=$now
}

# ------------------------------------------------------------ tools
apt_install() { # PACKAGE...: apt-get install, waiting out a held apt lock
    local attempt out rc updated=0
    [ "$(id -u)" = 0 ] || die "need root to install $* (or install them yourself)"
    for attempt in $(seq 1 20); do
        rc=0
        out=$(DEBIAN_FRONTEND=noninteractive timeout 600 \
              apt-get install -y --no-install-recommends "$@" 2>&1) || rc=$?
        [ "$rc" = 0 ] && return 0
        if grep -qiE 'could not get lock|unable to acquire|lock-frontend' <<<"$out"; then
            log "apt is locked by another process; retrying in 15 s ($attempt/20)"
            sleep 15
        elif [ "$updated" = 0 ]; then
            log "apt-get install $* failed; running apt-get update once"
            timeout 600 apt-get update -q >&2 || log "apt-get update exited non-zero; trying anyway"
            updated=1
        else
            printf '%s\n' "$out" | tail -n 20 >&2
            die "apt-get install $* failed (exit $rc)"
        fi
    done
    die "apt stayed locked; could not install $*"
}
command -v qemu-system-ppc64 >/dev/null 2>&1 || { log "installing qemu-system-ppc"; apt_install qemu-system-ppc; }
command -v powerpc64le-linux-gnu-gcc >/dev/null 2>&1 ||
    { log "installing the ppc64el cross compiler"; apt_install gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross; }
for tool in cpio gzip xz timeout mkfifo; do
    command -v "$tool" >/dev/null 2>&1 || apt_install cpio gzip xz-utils coreutils
done
[ -x "$fetch" ] || die "$fetch is missing: it downloads the kernel and busybox packages"
phase "tools ready ($(qemu-system-ppc64 --version | head -n1))"

# ------------------------------------------------------------ downloads
kernel_dir=$("$fetch" --suite bookworm-backports --arch ppc64el linux-image-powerpc64le) ||
    die "could not fetch linux-image-powerpc64le from bookworm-backports (see the messages above)"
busybox_dir=$("$fetch" --suite bookworm --arch ppc64el busybox-static) ||
    die "could not fetch busybox-static for ppc64el (see the messages above)"
kernel_dir=$(printf '%s\n' "$kernel_dir" | tail -n1)
busybox_dir=$(printf '%s\n' "$busybox_dir" | tail -n1)
vmlinux=$(find "$kernel_dir/boot" -maxdepth 1 -name 'vmlinux-*' | head -n1)
[ -f "$vmlinux" ] || die "no boot/vmlinux-* in $kernel_dir"
kver=${vmlinux##*/vmlinux-}
case "$kver" in 6.12.*) ;; *) die "expected a 6.12 kernel from bookworm-backports, got $kver" ;; esac
kpkg=${kernel_dir##*/}  # NAME_VERSION_ARCH of the unpacked .deb
phase "packages ready (kernel $kver)"

# ------------------------------------------------------------ build
work=$(mktemp -d "${TMPDIR:-/tmp}/oracle-powernv.XXXXXX")
console=$work/console.log
cleanup() {
    local rc=$?
    if [ "$rc" != 0 ] && [ -z "$keep_log" ] && [ -s "$console" ]; then
        local kept
        kept=$(mktemp "${TMPDIR:-/tmp}/oracle-console.XXXXXX.log")
        cp "$console" "$kept"
        echo "$prog: guest console log kept at $kept" >&2
    fi
    rm -rf "$work"
}
trap cleanup EXIT

extras=()
if [ -n "$rust_dir" ]; then
    rust_files=("$rust_dir/vfio-eeh-linux-conformance" "$rust_dir/eehctl" "$here/eehctl-checks.sh")
    # eehd --host linux, asked by eehctl-checks.sh, wherever the crate exists.
    [ ! -f "$repo/crates/eehd/Cargo.toml" ] || rust_files+=("$rust_dir/eehd")
    for f in "${rust_files[@]}"; do
        [ -f "$f" ] || die "--rust: $f is missing (run scripts/cross/build-ppc64le.sh)"
        extras+=(--extra "$f")
    done
fi
powerpc64le-linux-gnu-gcc -O2 -Wall -Wextra -Werror -static -o "$work/vfio_eeh_conformance" "$source_c" ||
    die "cross-compiling $source_c failed"
"$here/build-oracle-initramfs.sh" --kernel-dir "$kernel_dir" --busybox-dir "$busybox_dir" \
    --binary "$work/vfio_eeh_conformance" --out "$work/initrd.cpio.gz" ${extras[@]+"${extras[@]}"} ||
    die "building the initramfs failed"
phase "conformance program and initramfs built"

# ------------------------------------------------------------ boot
# The console goes through a fifo into head -c, which caps the log; when the
# cap is reached the still-running QEMU is stopped (by its pid).
mkfifo "$work/console.fifo"
head -c "$log_cap" <"$work/console.fifo" >"$console" &
head_pid=$!
timeout -k 10 "$run_timeout" qemu-system-ppc64 -M powernv9 -m "$guest_mem" -smp 1 \
    -nographic -no-reboot \
    -kernel "$vmlinux" -initrd "$work/initrd.cpio.gz" -append "console=hvc0 panic=-1" \
    -device e1000e,bus=pcie.0,addr=0x0,romfile= \
    </dev/null >"$work/console.fifo" 2>&1 &
qemu_pid=$!
wait "$head_pid" || true
# head stops at EOF (QEMU closed the console) or at the cap; only the size
# tells which, as QEMU may still be shutting down after closing its console.
capped=0
if [ "$(stat -c %s "$console")" -ge "$log_cap" ]; then
    capped=1
    kill "$qemu_pid" 2>/dev/null || true
fi
qemu_rc=0
wait "$qemu_pid" || qemu_rc=$?
boot_secs=$(( $(date +%s) - phase_start ))
phase "guest finished (QEMU exit $qemu_rc)"
[ -z "$keep_log" ] || cp "$console" "$keep_log"

# ------------------------------------------------------------ verdict
tr -d '\r' <"$console" >"$work/console.txt"
tail_log() { { tail -n 25 "$work/console.txt"; echo; } | sed 's/^/    | /' >&2; }
if [ "$capped" = 1 ]; then
    tail_log; die "guest console exceeded $log_cap bytes; QEMU stopped"
fi
if grep -q 'Kernel panic - not syncing' "$work/console.txt"; then
    # panic=-1 reboots at once, and -no-reboot makes that QEMU's exit.
    tail_log; log "error: the guest kernel panicked (QEMU exit $qemu_rc)"; exit 75
fi
if [ "$qemu_rc" = 124 ] || [ "$qemu_rc" = 137 ]; then
    tail_log; die "guest did not finish within ${run_timeout}s (QEMU killed)"
fi
if ! grep -q '^ORACLE-INIT' "$work/console.txt"; then
    tail_log; die "guest never reached /init (QEMU exit $qemu_rc): kernel did not boot"
fi
if err=$(grep -m1 '^ORACLE-ERROR' "$work/console.txt"); then
    tail_log; die "guest setup failed: ${err#ORACLE-ERROR }"
fi
grep -q '^ORACLE-END' "$work/console.txt" || { tail_log; die "guest stopped before the conformance program finished (QEMU exit $qemu_rc)"; }

sed -n '/^ORACLE-BEGIN$/,/^ORACLE-END/p' "$work/console.txt" | grep -E '^(CHECK|SUMMARY) ' >"$work/checks.txt" || true
nchecks=$(grep -c '^CHECK ' "$work/checks.txt" || true)
summary=$(grep '^SUMMARY ' "$work/checks.txt" || true)
[ -n "$summary" ] || die "no SUMMARY line from the conformance program"
case "$summary" in "SUMMARY checks=$nchecks "*) ;; *) die "SUMMARY says '$summary' but $nchecks CHECK lines were captured" ;; esac

device=$(sed -n 's/^ORACLE-DEVICE //p' "$work/console.txt" | head -n1)
group=$(sed -n 's/^ORACLE-GROUP //p' "$work/console.txt" | head -n1)
end_line=$(grep -m1 '^ORACLE-END' "$work/console.txt")
qemu_ver=$(qemu-system-ppc64 --version | head -n1 | sed 's/^QEMU emulator version //')
mkdir -p "$(dirname "$output")"
{
    echo "# vfio_eeh_conformance on a real Linux PowerNV host (scripts/oracle/run-powernv.sh; docs/oracle.md)"
    echo "# kernel: $kver (Debian package $kpkg)"
    echo "# machine: QEMU $qemu_ver -M powernv9 (TCG), e1000e on the first PHB: $device $group"
    cat "$work/checks.txt"
} >"$output.tmp.$$"
mv "$output.tmp.$$" "$output"

if [ -n "$rust_dir" ]; then
    grep -q '^ORACLE-RUST-END' "$work/console.txt" || { tail_log; die "the guest did not finish the Rust checks"; }
    sed -n '/^ORACLE-RUST-BEGIN$/,/^ORACLE-RUST-END/p' "$work/console.txt" | grep -E '^(CHECK|SUMMARY) ' >"$output.rust"
    grep -q '^SUMMARY ' "$output.rust" || die "the Rust checks printed no SUMMARY line ($(grep -m1 '^ORACLE-RUST-END' "$work/console.txt"))"
    log "Rust checks: $(grep '^SUMMARY ' "$output.rust") ($(grep -m1 '^ORACLE-RUST-END' "$work/console.txt" | cut -d' ' -f2))"
    sed -n '/^ORACLE-RUST-STDERR-BEGIN$/,/^ORACLE-RUST-STDERR-END$/p' "$work/console.txt" | sed '1d;$d;s/^/    /' >&2
    grep -q '^ORACLE-EEHCTL-END' "$work/console.txt" || { tail_log; die "the guest did not finish the eehctl checks"; }
    sed -n '/^ORACLE-EEHCTL-BEGIN$/,/^ORACLE-EEHCTL-END/p' "$work/console.txt" | sed '1d' >"$output.eehctl"
    if ! grep -q '^ORACLE-EEHCTL-END rc=0' "$output.eehctl"; then
        grep -B30 '^EEHCTL-UNEXPECTED' "$output.eehctl" >&2 || tail -n 40 "$output.eehctl" >&2
        die "eehctl's host commands did not answer as expected in the guest (transcript: $output.eehctl)"
    fi
    if [ -f "$repo/crates/eehd/Cargo.toml" ] && ! grep -q '^EEHD-EXIT ' "$output.eehctl"; then
        die "eehd --host linux did not run in the guest (transcript: $output.eehctl)"
    fi
fi

log "program stderr:"
sed -n '/^ORACLE-STDERR-BEGIN$/,/^ORACLE-STDERR-END$/p' "$work/console.txt" | sed '1d;$d;s/^/    /' >&2
log "$summary (${end_line#ORACLE-END })"
log "boot+run ${boot_secs}s, total $(( $(date +%s) - t_start ))s"
echo "$output"
