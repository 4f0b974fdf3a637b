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
