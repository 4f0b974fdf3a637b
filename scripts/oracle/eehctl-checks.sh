#!/bin/sh
# eehctl's Linux host commands in the oracle guest (Linux 6.12 on QEMU
# powernv9; run by its /init when scripts/oracle/run-powernv.sh --rust puts
# eehctl there):  eehctl-checks.sh GROUP BDF
# Prints each command, its output and its exit status; a status other than
# the expected one prints an EEHCTL-UNEXPECTED line, and the script exits 1.
# QEMU's PHB never freezes a PE, and it refuses MMIO injection (EIO), so the
# PE stays normal throughout.
group=$1 bdf=$2
unexpected=0
run() { # EXPECTED-STATUS COMMAND...
    want=$1
    shift
    echo "EEHCTL-CMD $*"
    "$@" 2>&1
    rc=$?
    echo "EEHCTL-RC $rc"
    if [ "$rc" != "$want" ]; then
        echo "EEHCTL-UNEXPECTED status $rc (want $want): $*"
        unexpected=1
    fi
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
exit "$unexpected"
