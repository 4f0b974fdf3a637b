#!/usr/bin/env bash
# Boot the ppc64le EEH test guest under qemu-system-ppc64 (pseries, TCG),
# bounded in time and in console output.
#
#   scripts/guest/run-guest.sh --log FILE [options] [-- EXTRA_QEMU_ARGS...]
#
#   --log FILE           console log (QEMU stdout+stderr); also streamed to stdout
#   --timeout SEC        kill QEMU after SEC seconds (env RUN_GUEST_TIMEOUT, default 120)
#   --max-log BYTES      kill QEMU once the log reaches BYTES; K/M suffixes allowed
#                        (env RUN_GUEST_MAX_LOG, default 4M); the log is cut there
#   --append ARGS        extra kernel command line, e.g. "eehtest.seconds=20"
#   --init FILE          /init of the initramfs (default scripts/guest/init-eeh.sh)
#   --initrd FILE        use this initramfs instead of building one
#   --kernel FILE        use this vmlinux instead of Debian's
#   --kernel-suite S     suite of Debian's linux-image-powerpc64le (default bookworm = 6.1)
#   --module NAME        ship kernel module NAME and its dependencies in the
#                        initramfs (loaded by /init for eehtest.modules=NAME);
#                        repeatable
#   --module-tree DIR    where --module looks (lib/modules/<release>; default
#                        the Debian kernel package's, required with --kernel)
#   --env NAME=VALUE     set in QEMU's environment only (e.g. LD_PRELOAD=...); repeatable
#   --qemu BINARY        QEMU binary (default qemu-system-ppc64, installed from
#                        Debian's qemu-system-ppc when missing)
#   --quiet              do not stream the console to stdout
#
# Everything after "--" is appended to QEMU's command line, e.g.
#   -- -device vfio-pci,sysfsdev=/path/to/fake/sysfs/dev
#
# Exit status: QEMU's own status when it exits by itself (0 after the guest's
# poweroff), 124 on timeout, 125 when the log reached its size cap, 1 when
# setting up failed, 2 on a usage error.  The reason goes to stderr and, as a
# last line starting with "RUN-GUEST:", into the log.
set -euo pipefail

prog=run-guest.sh
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=scripts/guest/lib.sh
. "$here/lib.sh"

die() { echo "$prog: error: $*" >&2; exit 1; }
info() { echo "$prog: $*" >&2; }
usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}
bytes() { # 4M -> 4194304
    case "$1" in
        *[kK]) echo $(( ${1%?} * 1024 )) ;;
        *[mM]) echo $(( ${1%?} * 1024 * 1024 )) ;;
        *) echo $(( $1 )) ;;
    esac
}

log=
timeout_s=${RUN_GUEST_TIMEOUT:-120}
max_log=${RUN_GUEST_MAX_LOG:-4M}
append=
init=$here/init-eeh.sh
initrd=
kernel=
kernel_suite=bookworm
modules=()
module_tree=
qemu="qemu-system-ppc64"
quiet=0
qenv=()
extra=()
need() { [ "$2" -ge 2 ] || { echo "$prog: error: $1 needs a value" >&2; exit 2; }; }
while [ $# -gt 0 ]; do
    case "$1" in
        --log) need "$1" $#; log=$2; shift 2 ;;
        --timeout) need "$1" $#; timeout_s=$2; shift 2 ;;
        --max-log) need "$1" $#; max_log=$2; shift 2 ;;
        --append) need "$1" $#; append="$append $2"; shift 2 ;;
        --init) need "$1" $#; init=$2; shift 2 ;;
        --initrd) need "$1" $#; initrd=$2; shift 2 ;;
        --kernel) need "$1" $#; kernel=$2; shift 2 ;;
        --kernel-suite) need "$1" $#; kernel_suite=$2; shift 2 ;;
        --module) need "$1" $#; modules+=("$2"); shift 2 ;;
        --module-tree) need "$1" $#; module_tree=$2; shift 2 ;;
        --env) need "$1" $#
               case "$2" in [A-Za-z_]*=*) qenv+=("$2") ;; *) echo "$prog: error: --env wants NAME=VALUE, got '$2'" >&2; exit 2 ;; esac
               shift 2 ;;
        --qemu) need "$1" $#; qemu=$2; shift 2 ;;
        --quiet) quiet=1; shift ;;
        -h|--help) usage 0 ;;
        --) shift; extra=("$@"); break ;;
        *) echo "$prog: error: unknown argument '$1' (QEMU arguments go after --)" >&2; exit 2 ;;
    esac
done
[ -n "$log" ] || { echo "$prog: error: --log FILE is required" >&2; usage 2; }
case "$timeout_s" in ''|*[!0-9]*|0) echo "$prog: error: bad --timeout '$timeout_s'" >&2; exit 2 ;; esac
max_log_bytes=$(bytes "$max_log" 2>/dev/null) || { echo "$prog: error: bad --max-log '$max_log'" >&2; exit 2; }
[ "$max_log_bytes" -gt 0 ] || { echo "$prog: error: bad --max-log '$max_log'" >&2; exit 2; }

t_setup=$(now)

# ---------------------------------------------------------------- QEMU
if [ "$qemu" = qemu-system-ppc64 ]; then
    apt_ensure qemu-system-ppc64 qemu-system-ppc || die "qemu-system-ppc64 is not available"
fi
command -v "$qemu" >/dev/null 2>&1 || die "QEMU binary '$qemu' not found"
qemu_version=$("$qemu" --version | head -n 1) || die "'$qemu --version' failed"
info "using $qemu_version"

# ---------------------------------------------------------------- kernel
if [ -z "$kernel" ]; then
    kdir=$("$repo/scripts/fetch-deb.sh" --suite "$kernel_suite" --arch ppc64el linux-image-powerpc64le) ||
        die "fetching linux-image-powerpc64le ($kernel_suite, ppc64el) with scripts/fetch-deb.sh failed"
    for f in "$kdir"/boot/vmlinux-*; do
        [ -f "$f" ] && kernel=$f
    done
    [ -n "$kernel" ] || die "no boot/vmlinux-* in $kdir"
    if [ -z "$module_tree" ]; then
        for d in "$kdir"/lib/modules/*/; do
            [ -d "$d" ] && module_tree=${d%/}
        done
    fi
fi
[ -f "$kernel" ] || die "kernel '$kernel' not found"

# ---------------------------------------------------------------- initramfs
work=$(mktemp -d "${TMPDIR:-/tmp}/run-guest.XXXXXX")
qpid=
hpid=
tpid=
# shellcheck disable=SC2317  # called from the EXIT trap
cleanup() {
    local p
    for p in $qpid $tpid $hpid; do
        kill "$p" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -z "$initrd" ]; then
    initrd=$work/initrd.cpio.gz
    margs=()
    if [ ${#modules[@]} -gt 0 ]; then
        [ -n "$module_tree" ] || die "--module needs --module-tree DIR with --kernel"
        margs=(--module-tree "$module_tree")
        for m in "${modules[@]}"; do margs+=(--module "$m"); done
    fi
    "$here/build-initramfs.sh" ${margs[@]+"${margs[@]}"} "$initrd" "$init" || die "building the initramfs failed"
fi
[ -f "$initrd" ] || die "initramfs '$initrd' not found"
setup_s=$(elapsed "$t_setup")

# ---------------------------------------------------------------- boot
# shellcheck disable=SC2054  # commas belong to QEMU option values
qargs=(-M pseries,x-vof=on -cpu power9 -m 1G -smp 1 -nographic -vga none
       -kernel "$kernel" -initrd "$initrd"
       -append "console=hvc0 panic=-1${append}" -no-reboot)
qargs+=(${extra[@]+"${extra[@]}"})

mkdir -p "$(dirname "$log")"
: >"$log"
fifo=$work/console.fifo
mkfifo "$fifo"
# head enforces the size cap even between two checks of the watchdog below;
# unbuffered, so that a script watching the log sees each line as QEMU
# prints it (head's stdio would otherwise hold back 4 KiB blocks).
stdbuf -o0 head -c "$max_log_bytes" <"$fifo" >"$log" &
hpid=$!
info "booting $(basename "$kernel") (timeout ${timeout_s}s, log cap ${max_log_bytes} bytes, log $log)"
info "command: ${qenv[*]+${qenv[*]} }$qemu ${qargs[*]}"
t_boot=$(now)
env ${qenv[@]+"${qenv[@]}"} "$qemu" "${qargs[@]}" </dev/null >"$fifo" 2>&1 &
qpid=$!
if [ "$quiet" = 0 ]; then
    tail -n +1 -F --pid="$qpid" -s 0.2 "$log" 2>/dev/null &
    tpid=$!
fi

reason=
deadline=$(( $(date +%s) + timeout_s ))
while kill -0 "$qpid" 2>/dev/null; do
    size=$(stat -c %s "$log" 2>/dev/null || echo 0)
    if [ "$size" -ge "$max_log_bytes" ]; then
        reason=oversize
        break
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
        reason=timeout
        break
    fi
    sleep 0.2
done
if [ -n "$reason" ]; then
    kill -TERM "$qpid" 2>/dev/null || true
    for _ in $(seq 50); do
        kill -0 "$qpid" 2>/dev/null || break
        sleep 0.1
    done
    kill -KILL "$qpid" 2>/dev/null || true
fi
qrc=0
wait "$qpid" || qrc=$?
qpid=
wait "$hpid" 2>/dev/null || true
hpid=
if [ -n "$tpid" ]; then
    wait "$tpid" 2>/dev/null || true
    tpid=
fi
run_s=$(elapsed "$t_boot")
# QEMU may also have died of SIGPIPE after head stopped reading.
if [ -z "$reason" ] && [ "$(stat -c %s "$log")" -ge "$max_log_bytes" ]; then
    reason=oversize
fi

case "$reason" in
    timeout)
        msg="RUN-GUEST: TIMEOUT: QEMU killed after ${timeout_s}s (setup ${setup_s}s, run ${run_s}s)"
        rc=124 ;;
    oversize)
        msg="RUN-GUEST: LOG-OVERSIZE: console log reached ${max_log_bytes} bytes; QEMU killed after ${run_s}s"
        rc=125 ;;
    *)
        msg="RUN-GUEST: QEMU exited with status $qrc (setup ${setup_s}s, run ${run_s}s)"
        rc=$qrc ;;
esac
printf '\n%s\n' "$msg" >>"$log"
info "${msg#RUN-GUEST: }"
exit "$rc"
