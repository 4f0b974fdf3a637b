#!/bin/sh
# eehctl's Linux host commands in the oracle guest (Linux 6.12 on QEMU
# powernv9; run by its /init when scripts/oracle/run-powernv.sh --rust puts
# eehctl there):  eehctl-checks.sh GROUP BDF
# Prints each command, its output and its exit status; a status other than
# the expected one, or an output without the text a check looks for, prints
# an EEHCTL-UNEXPECTED line, and the script exits 1.
# QEMU's PHB never freezes a PE, and it refuses MMIO injection (EIO), so the
# PE stays normal throughout.
# When /bin/eehd is there too, `eehd --host linux` serves this host on a
# private socket and state directory, and `eehctl ... --connect` asks it for
# the host's state and, after a VM claims the group and maps the device, for
# the claims.
group=$1 bdf=$2
unexpected=0
last=/tmp/eehctl-last.txt
run() { # EXPECTED-STATUS COMMAND...
    want=$1
    shift
    echo "EEHCTL-CMD $*"
    "$@" >"$last" 2>&1
    rc=$?
    cat "$last"
    echo "EEHCTL-RC $rc"
    if [ "$rc" != "$want" ]; then
        echo "EEHCTL-UNEXPECTED status $rc (want $want): $*"
        unexpected=1
    fi
}
says() { # TEXT...: the last command's output has each TEXT
    for text in "$@"; do
        if ! grep -q -F -- "$text" "$last"; then
            echo "EEHCTL-UNEXPECTED output without '$text'"
            unexpected=1
        fi
    done
}
e() { /bin/eehctl --host linux "$@"; }
run 0 e topo
run 0 e state
run 0 e --json state
run 0 e max-freezes
run 0 e max-freezes 3
run 0 e --json max-freezes
# A config-space load error through VFIO (accepted; QEMU never freezes).
run 0 e inject --pe "$group" --func 4
run 0 e --json inject --device "$bdf" --func 4 --via debugfs
# An MMIO load error: skiboot's PHB4 under QEMU answers EIO.
run 1 e inject --pe "$group" --func 0
run 0 e state --vfio
run 0 e events
run 0 e --json events

if [ -x /bin/eehd ]; then
    dir=/tmp/eehd
    sock=$dir/eehd.sock
    mkdir -p "$dir"
    /bin/eehd --host linux --socket "$sock" --state-dir "$dir/state" >"$dir/eehd.log" 2>&1 &
    eehd_pid=$!
    i=0
    while [ ! -S "$sock" ] && [ $i -lt 100 ] && kill -0 "$eehd_pid" 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    if [ -S "$sock" ]; then
        c() { /bin/eehctl "$@"; }
        run 0 c state --connect "$sock"
        says "$bdf"
        run 0 c --json state --connect "$sock"
        says '"host": "linux"' "$bdf"
        # A VM claims the group and maps the device under a virtual PHB.
        run 0 c map --connect "$sock" --vm oracle claim "$group"
        run 0 c map --connect "$sock" --vm oracle phb-add 0x800000020000000
        run 0 c map --connect "$sock" --vm oracle set "$bdf" 0x800000020000000:00:01.0
        run 0 c claims --connect "$sock"
        says oracle "$bdf"
        run 0 c --json claims --connect "$sock"
        says '"vm": "oracle"' "\"host\": \"$bdf\""
        run 0 c state --connect "$sock"
        says oracle "$bdf"
        # The Linux host has no outright freeze: eehd says so.
        run 1 c inject --connect "$sock" --pe "$group"
        says "Not supported"
    else
        echo "EEHCTL-UNEXPECTED eehd --host linux did not listen on $sock"
        unexpected=1
    fi
    kill "$eehd_pid" 2>/dev/null
    wait "$eehd_pid"
    rc=$?
    echo "EEHD-EXIT $rc"
    if [ "$rc" != 0 ]; then
        echo "EEHCTL-UNEXPECTED eehd exited $rc on SIGTERM"
        unexpected=1
    fi
    echo "EEHD-LOG-BEGIN"
    cat "$dir/eehd.log"
    echo "EEHD-LOG-END"
fi
exit "$unexpected"
