# Helpers of the QEMU stages (e2e.sh, shared-host.sh): counting results and
# waiting for console lines. Needs $logs (where logs are kept).
# shellcheck shell=bash

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() { echo "$(basename "$0" .sh): logs kept in $logs"; echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; }
# console LOG: the console without the CR of its CR LF line ends, and with
# the guest's user and kernel output untangled: a kernel message printed in
# the middle of a user line ("NVMEIO SUMMARY GO[   17.67] pci ...", then
# "NE rounds=...") becomes a line of its own, and the user line is joined
# up again.
console() {
    tr -d '\r' <"$1" | awk '{
        line = held $0; held = ""
        if (match(line, /\[ *[0-9]+\.[0-9]+\] /) && RSTART > 1) {
            held = substr(line, 1, RSTART - 1)
            print substr(line, RSTART)
        } else print line
    } END { if (held != "") print held }'
}
# expect LOG REGEX WHAT: a console line must match.
expect() {
    # Not grep -q: an early exit would make tr die of SIGPIPE, and pipefail
    # turn a match into a failure.
    if console "$1" | grep -E -- "$2" >/dev/null; then ok "$3"; else bad "$3 (no line matching /$2/ in $1)"; fi
}
# count LOG REGEX: how many console lines match.
count() { if [ -f "$1" ]; then console "$1" | grep -Ec -- "$2" || true; else echo 0; fi; }
# wait_for LOG REGEX N PID SECONDS: until N console lines match, while PID
# (the guest's run-guest.sh) lives, for at most SECONDS.
wait_for() {
    local deadline=$(( $(date +%s) + $5 ))
    while [ "$(count "$1" "$2")" -lt "$3" ]; do
        kill -0 "$4" 2>/dev/null || return 1
        [ "$(date +%s)" -lt "$deadline" ] || return 1
        sleep 0.2
    done
}

# ---- a guest's nvme driver and its block I/O workload (e2e.sh, shared-host.sh)
# With the driver bound, the guest notices a freeze when an I/O times out:
# nvme's timeout handler reads CSTS, all-ones, and the EEH-checking readl
# (eeh_readl -> eeh_check_failure) takes the PE up; requests complete by
# DMA and doorbells are writes, so nothing else reads the device. Hence
# nvme_core's io_timeout of 5 s (default 30), for the baseline too, so that
# both run the same driver set-up.
nvme_append="eehtest.modules=nvme nvme_core.io_timeout=5 eehtest.workload=nvme-io nvmeio.wait=40"

# nvme_workload_checks NAME LOG: what every nvme guest must show: the
# modules loaded, the driver bound to the device, acknowledged writes, and
# the guest alive at the end.
nvme_workload_checks() {
    expect "$2" '^EEHTEST MODULE nvme-core\.ko ok io_timeout=5$' "$1 guest loaded nvme-core with io_timeout=5"
    expect "$2" '^EEHTEST MODULE nvme\.ko ok' "$1 guest loaded the nvme modules"
    expect "$2" '^NVMEIO DEVICE /dev/nvme0n1 .* driver=nvme$' "$1 the nvme driver bound the device: /dev/nvme0n1"
    if [ "$(count "$2" '^NVMEIO ACK ')" -ge 1 ]; then
        ok "$1 $(count "$2" '^NVMEIO ACK ') writes acknowledged"
    else
        bad "$1 no write acknowledged"
    fi
    expect "$2" '^NVMEIO ALIVE ' "$1 guest runs commands after the workload"
    if [ "$(count "$2" '^NVMEIO SUMMARY STUCK')" = 0 ]; then
        ok "$1 no I/O stuck"
    else
        bad "$1 $(console "$2" | grep '^NVMEIO SUMMARY STUCK')"
    fi
}

# nvme_recovery_checks NAME LOG: a freeze recovered by the nvme driver's
# EEH callbacks ("reset without hotplug"): the EEH core's reports and the
# driver's own messages (Linux 6.1: arch/powerpc/kernel/eeh_driver.c,
# drivers/nvme/host/pci.c; nvme_error_resume prints nothing), I/O resumed
# after the recovery, and every acknowledged block read back as written.
nvme_recovery_checks() {
    expect "$2" 'EEH: Invoking nvme->error_detected\(IO frozen\)' "$1 EEH core called nvme's error_detected"
    expect "$2" 'nvme nvme[0-9]+: frozen state error detected, reset controller' "$1 nvme: 'frozen state error detected, reset controller'"
    expect "$2" "EEH: nvme driver reports: 'need reset'" "$1 nvme asked for a reset"
    expect "$2" 'EEH: Reset without hotplug activity' "$1 guest reset the PE without hotplug (the driver stays bound)"
    expect "$2" 'EEH: Invoking nvme->slot_reset\(\)' "$1 EEH core called nvme's slot_reset"
    expect "$2" 'nvme nvme[0-9]+: restart after slot reset' "$1 nvme: 'restart after slot reset'"
    expect "$2" 'EEH: Invoking nvme->resume\(\)' "$1 EEH core called nvme's resume"
    expect "$2" 'EEH: Recovery successful\.' "$1 guest logged 'EEH: Recovery successful.'"
    local after
    after=$(console "$2" | sed -n '/EEH: Recovery successful/,$p' | grep -c '^NVMEIO ACK ' || true)
    if [ "$after" -ge 1 ]; then
        ok "$1 I/O resumed: $after writes acknowledged after the recovery"
    else
        bad "$1 no write acknowledged after the recovery"
    fi
    expect "$2" '^NVMEIO SUMMARY PASS ' "$1 every acknowledged block reads back as written"
}
