#!/bin/sh
# /init of the EEH test guest (Linux pseries, busybox sh).
#
# Mounts proc, sys, devtmpfs and debugfs; optionally lowers
# /sys/kernel/debug/powerpc/eeh_max_freezes; finds the passed-through PCI
# device; waits until the kernel has enabled EEH on it; then reads its config
# space and a BAR periodically for a bounded time and powers off.  The
# kernel's own EEH messages ("EEH: Recovery successful." and so on) reach the
# console by themselves.
#
# Kernel command-line parameters (all optional):
#   eehtest.seconds=N      length of the read loop (default 30)
#   eehtest.interval=S     pause between reads, may be fractional (default 1)
#   eehtest.wait=N         how long to wait for the device and its EEH (default 30)
#   eehtest.max_freezes=N  written to debugfs powerpc/eeh_max_freezes
#   eehtest.dev=BDF        use this device (e.g. 0000:00:01.0) instead of the first
#   eehtest.devs=N         use the first N devices (default 1): wait for each and
#                          its EEH, read each in every loop iteration
#   eehtest.bar=N|none     BAR to read with devmem (default 0)
#   eehtest.require_eeh=0  run the read loop even if EEH never gets enabled
#   eehtest.modules=A,B    load these kernel modules (shipped with
#                          build-initramfs.sh --module), each after its
#                          dependencies; MODULE.PARAM=VALUE words on the command
#                          line ("nvme_core.io_timeout=5") become its insmod
#                          parameters
#   eehtest.workload=nvme-io  run the block I/O workload /bin/nvme-io
#                          (scripts/guest/nvme-io.sh, its own nvmeio.*
#                          parameters) instead of the read loop
#
# Console markers, one per line, all starting with "EEHTEST ":
#   EEHTEST START <kernel release>
#   EEHTEST MAX_FREEZES <old> -> <new>
#   EEHTEST MODULE <file> ok|failed [params]   (one per module loaded)
#   EEHTEST NODEV                  no candidate PCI device appeared
#   EEHTEST NOEEH <bdf> <why>      EEH never became enabled on the device
#   EEHTEST READY <bdf> vendor=.. device=.. pe_config_addr=.. mode=.. pe_state=..   (one per device)
#   EEHTEST READ <ok|allones|gone|error> n=.. t=.. cfg=.. bar=.. pe_state=.. dev=<bdf>
#   EEHTEST DONE reads=.. ok=.. allones=.. gone=.. error=..
#   EEHTEST FAIL <reason>          the script itself failed
# after which the guest powers off.
set -eu
# shellcheck disable=SC3040  # busybox ash has pipefail
set -o pipefail

BB=/bin/busybox

if [ "${1:-}" != --main ]; then
    # ---- PID 1: set up the system, run the test in a child, always power off.
    $BB mkdir -p /proc /sys /dev /tmp /run
    $BB mount -t proc proc /proc
    $BB --install -s
    export PATH=/bin:/sbin:/usr/bin:/usr/sbin
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev || true
    # If the image had no /dev/console the kernel started us without stdio.
    exec </dev/console >/dev/console 2>&1
    mount -t debugfs debugfs /sys/kernel/debug || echo "EEHTEST WARN cannot mount debugfs"
    mount -t tmpfs tmpfs /tmp || true
    rc=0
    /bin/sh /init --main || rc=$?
    [ "$rc" = 0 ] || echo "EEHTEST FAIL init script exited with status $rc"
    echo "EEHTEST POWEROFF"
    poweroff -f
    # poweroff -f does not return; if it did, init must not exit (panic).
    while :; do sleep 1000; done
fi

# ---- the test proper (child shell, errexit active) -------------------------

param() { # NAME DEFAULT: value of eehtest.NAME= on the kernel command line
    v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^eehtest\.$1=//p" | tail -n 1)
    if [ -n "$v" ]; then echo "$v"; else echo "$2"; fi
}
is_uint() { case "$1" in ''|*[!0-9]*) return 1 ;; *) return 0 ;; esac; }
readf() { # FILE: first line, or nothing (never fails)
    head -n 1 "$1" 2>/dev/null || true
}

seconds=$(param seconds 30)
interval=$(param interval 1)
waitmax=$(param wait 30)
max_freezes=$(param max_freezes '')
want_dev=$(param dev '')
ndevs=$(param devs 1)
bar=$(param bar 0)
require_eeh=$(param require_eeh 1)
is_uint "$seconds" || { echo "EEHTEST FAIL bad eehtest.seconds=$seconds"; exit 1; }
is_uint "$waitmax" || { echo "EEHTEST FAIL bad eehtest.wait=$waitmax"; exit 1; }
is_uint "$ndevs" && [ "$ndevs" -ge 1 ] || { echo "EEHTEST FAIL bad eehtest.devs=$ndevs"; exit 1; }

echo "EEHTEST START $(uname -r) seconds=$seconds interval=$interval wait=$waitmax"

dbg=/sys/kernel/debug/powerpc
if [ -n "$max_freezes" ]; then
    is_uint "$max_freezes" || { echo "EEHTEST FAIL bad eehtest.max_freezes=$max_freezes"; exit 1; }
    if [ -w "$dbg/eeh_max_freezes" ]; then
        old=$(readf "$dbg/eeh_max_freezes")
        echo "$max_freezes" >"$dbg/eeh_max_freezes"
        echo "EEHTEST MAX_FREEZES $old -> $(readf "$dbg/eeh_max_freezes")"
    else
        echo "EEHTEST WARN $dbg/eeh_max_freezes not available; max_freezes not set"
    fi
fi

# load_modules NAME...: insmod each module of NAME's load list that is not
# loaded yet, with its parameters from the command line.
load_modules() {
    for name in "$@"; do
        list=/lib/modules/$name.load
        [ -r "$list" ] || { echo "EEHTEST FAIL module $name is not in the initramfs (build-initramfs.sh --module $name)"; exit 1; }
        while read -r ko; do
            mod=$(echo "${ko%.ko}" | tr - _)
            [ ! -d "/sys/module/$mod" ] || continue
            params=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^$mod\.//p" | tr '\n' ' ')
            params=${params% }
            # shellcheck disable=SC2086  # the parameters are words
            if insmod "/lib/modules/$ko" $params; then
                echo "EEHTEST MODULE $ko ok${params:+ $params}"
            else
                echo "EEHTEST MODULE $ko failed${params:+ $params}"
            fi
        done <"$list"
    done
}
modules=$(param modules '')
# shellcheck disable=SC2046  # a comma-separated list
[ -z "$modules" ] || load_modules $(echo "$modules" | tr , ' ')

workload=$(param workload '')
case "$workload" in
    '') ;;
    nvme-io) exec /bin/nvme-io ;;
    *) echo "EEHTEST FAIL unknown eehtest.workload=$workload"; exit 1 ;;
esac

# The devices under test: the requested one, else the first $ndevs PCI
# functions that are not bridges (class 0x06xxxx).  On a pseries guest with
# -vga none the passed-through devices are the only PCI devices; the sPAPR
# PHB itself is not a PCI function.
find_devs() {
    if [ -n "$want_dev" ]; then
        [ -e "/sys/bus/pci/devices/$want_dev" ] && echo "$want_dev"
        return 0
    fi
    found=0
    for d in /sys/bus/pci/devices/*; do
        [ "$found" -lt "$ndevs" ] || break
        [ -e "$d/class" ] || continue
        case "$(readf "$d/class")" in 0x06*) continue ;; esac
        case "$(readf "$d/vendor")" in 0xffff|'') continue ;; esac
        echo "${d##*/}"
        found=$((found + 1))
    done
}
count_words() { # WORDS...: how many
    echo $#
}

# EEH on the device is usable once the 6.1 kernel's eeh_sysfs_add_device has
# created eeh_mode/eeh_pe_config_addr/eeh_pe_state (it only does so while
# EEH is globally enabled) and eeh_pe_state answers (it fails with ENODEV
# while the eeh_dev has no PE).
eeh_ready() { # BDF
    p=/sys/bus/pci/devices/$1
    [ -r "$p/eeh_mode" ] && [ -r "$p/eeh_pe_config_addr" ] && [ -r "$p/eeh_pe_state" ] || return 1
    case "$(readf "$p/eeh_pe_config_addr")" in 0x*) ;; *) return 1 ;; esac
    case "$(readf "$p/eeh_pe_state")" in 0x*) return 0 ;; *) return 1 ;; esac
}
all_ready() { # BDF...
    for b in "$@"; do eeh_ready "$b" || return 1; done
}

start=$(date +%s)
devs=
want=1
[ -n "$want_dev" ] || want=$ndevs
while :; do
    devs=$(find_devs)
    # shellcheck disable=SC2086  # a list of BDFs
    [ "$(count_words $devs)" -ge "$want" ] && break
    if [ $(( $(date +%s) - start )) -ge "$waitmax" ]; then break; fi
    sleep 1
done
if [ -z "$devs" ]; then
    echo "EEHTEST NODEV no PCI device${want_dev:+ $want_dev} found after ${waitmax}s"
    echo "EEHTEST DONE reads=0 ok=0 allones=0 gone=0 error=0"
    exit 0
fi

# shellcheck disable=SC2086  # a list of BDFs
while ! all_ready $devs; do
    if [ $(( $(date +%s) - start )) -ge "$waitmax" ]; then break; fi
    sleep 1
done
eeh_global=$(readf "$dbg/eeh_enable")
noeeh=0
for dev in $devs; do
    if ! eeh_ready "$dev"; then
        why="eeh_enable=${eeh_global:-?}"
        [ -e "/sys/bus/pci/devices/$dev/eeh_pe_config_addr" ] || why="$why no-eeh-sysfs-files"
        echo "EEHTEST NOEEH $dev $why"
        noeeh=1
    fi
done
if [ "$noeeh" = 1 ] && [ "$require_eeh" != 0 ]; then
    echo "EEHTEST DONE reads=0 ok=0 allones=0 gone=0 error=0"
    exit 0
fi

# No driver is bound, so nothing has enabled memory decoding; a BAR read with
# decoding off would be an unassigned access (a machine check on pseries).
enable_dev() {
    if [ -w "$sys/enable" ] && [ "$(readf "$sys/enable")" = 0 ]; then
        echo 1 >"$sys/enable" 2>/dev/null || true
    fi
}
for dev in $devs; do
    sys=/sys/bus/pci/devices/$dev
    enable_dev
    echo "EEHTEST READY $dev vendor=$(readf "$sys/vendor") device=$(readf "$sys/device")" \
         "class=$(readf "$sys/class") pe_config_addr=$(readf "$sys/eeh_pe_config_addr")" \
         "mode=$(readf "$sys/eeh_mode") pe_state=$(readf "$sys/eeh_pe_state" | tr ' ' /)" \
         "eeh_enable=${eeh_global:-?}"
done

# config_read OFFSET SIZE: prints SIZE bytes of config space at OFFSET as
# one hex number. dd reads exactly those bytes: hexdump reads the file
# through a stdio buffer, so the kernel would also read (and check for EEH)
# config dwords this script never sees.
config_read() {
    dd if="$sys/config" bs="$2" skip="$(( $1 / $2 ))" count=1 2>/dev/null |
        hexdump -e "1/$2 \"%0$(( $2 * 2 ))x\""
}

# cfg_read: sets cfg to ok:<dword0>, allones:ffffffff, gone or error.
cfg_read() {
    if [ ! -e "$sys/config" ]; then cfg=gone; return 0; fi
    v=$(config_read 0 4) || v=
    case "$v" in
        ffffffff) cfg=allones:$v ;;
        ????????) cfg=ok:$v ;;
        *) if [ -e "$sys/config" ]; then cfg=error; else cfg=gone; fi ;;
    esac
}

# bar_read: sets bar to ok:<value>, allones:<value> (or allones:cmd=ffff), off (decode disabled),
# none, io (I/O BAR, not read), gone or error.
bar_read() {
    bar=none
    [ "$bar_index" != none ] || return 0
    if [ ! -e "$sys/resource" ]; then bar=gone; return 0; fi
    line=$(sed -n "$((bar_index + 1))p" "$sys/resource" 2>/dev/null) || line=
    # shellcheck disable=SC2086  # split "start end flags"
    set -- $line
    if [ $# -lt 3 ] || [ "$(( $1 ))" = 0 ]; then bar=none; return 0; fi
    bstart=$1
    flags=$(( $3 ))
    if [ $(( flags & 0x200 )) = 0 ]; then bar=io; return 0; fi
    cmd=$(config_read 4 2) || cmd=
    case "$cmd" in
        # The command register read all-ones: the device froze since cfg_read
        # (and this read may be the one that makes the kernel see it).
        ffff) bar=allones:cmd=$cmd; return 0 ;;
        ????) [ $(( 0x$cmd & 0x2 )) != 0 ] || { bar=off; return 0; } ;;
        *) bar=error; return 0 ;;
    esac
    v=$(devmem "$bstart" 32 2>/dev/null) || { bar=error; return 0; }
    case "$v" in
        0xFFFFFFFF|0xffffffff) bar=allones:$v ;;
        0x*) bar=ok:$v ;;
        *) bar=error ;;
    esac
}
bar_index=$bar
case "$bar_index" in none|[0-5]) ;; *) echo "EEHTEST FAIL bad eehtest.bar=$bar_index"; exit 1 ;; esac

n=0; nok=0; nall=0; ngone=0; nerr=0
t0=$(date +%s)
while :; do
    t=$(( $(date +%s) - t0 ))
    [ "$t" -lt "$seconds" ] || break
    for dev in $devs; do
        sys=/sys/bus/pci/devices/$dev
        n=$((n + 1))
        cfg_read
        case "$cfg" in ok:*) enable_dev ;; esac
        case "$cfg" in ok:*) bar_read ;; *) bar=skipped ;; esac
        state=$(readf "$sys/eeh_pe_state" | tr ' ' /)
        case "$cfg/$bar" in
            gone/*) res=gone; ngone=$((ngone + 1)) ;;
            allones:*|*/allones:*) res=allones; nall=$((nall + 1)) ;;
            error/*|*/error) res=error; nerr=$((nerr + 1)) ;;
            *) res=ok; nok=$((nok + 1)) ;;
        esac
        echo "EEHTEST READ $res n=$n t=$t cfg=$cfg bar=$bar pe_state=${state:-none} dev=$dev"
    done
    sleep "$interval"
done
echo "EEHTEST DONE reads=$n ok=$nok allones=$nall gone=$ngone error=$nerr"
