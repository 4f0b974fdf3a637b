#!/usr/bin/env bash
# End-to-end test of EEH with a real guest: an unmodified qemu-system-ppc64
# (pseries, TCG) runs Debian's ppc64le kernel with a simulated NVMe drive
# (host 0000:01:00.0, IOMMU group 0) passed through by vfio-pci, whose
# /dev/vfio is the preload library (libvfio_eeh_shim.so) backed by the
# simulator. The host side injects freezes with `eehctl inject` through the
# control socket and reads the op log with `eehctl oplog`.
#
#   recover   one freeze: the guest detects it (all-ones config read), recovers
#             by "reset with hotplug" and logs "EEH: Recovery successful.";
#             the op log shows the recovery's VFIO_EEH_PE_OP sequence after the
#             injection (get-state=2 .. unfreeze-io .. configure .. reset-hot ..
#             reset-deactivate .. get-state=0 .. enable), and the PE ends normal
#   limit     eehtest.max_freezes=1 and two freezes: the first recovers, the
#             second exceeds the limit, the guest gives up ("permanently
#             disabled") without resetting, and the PE stays frozen
#
#   tests/qemu/e2e.sh [--iommu spapr-tce-v2|type1v2]... [--scenario recover|limit]...
#
# Default: recover and limit with spapr-tce-v2 (QEMU's POWER-host path),
# recover with type1v2. Environment: E2E_LOG_DIR (keep logs there),
# E2E_BOOT_TIMEOUT (seconds per guest, default 150), CARGO_TARGET_DIR.
# Ends with "N passed, N failed"; exits non-zero if anything failed,
# including a failed download, build or boot.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=scripts/guest/lib.sh
. "$repo/scripts/guest/lib.sh"
run=$repo/scripts/guest/run-guest.sh
boot_timeout=${E2E_BOOT_TIMEOUT:-150}
logs=${E2E_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/qemu-e2e.XXXXXX")}
target=${CARGO_TARGET_DIR:-$repo/target}
device=0000:01:00.0
pe=0

modes=()
scenarios=()
while [ $# -gt 0 ]; do
    case "$1" in
        --iommu) modes+=("$2"); shift 2 ;;
        --scenario) scenarios+=("$2"); shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "e2e.sh: unknown argument '$1'" >&2; exit 2 ;;
    esac
done
# The default matrix: mode:scenario pairs.
runs=()
if [ ${#modes[@]} = 0 ] && [ ${#scenarios[@]} = 0 ]; then
    runs=(spapr-tce-v2:recover spapr-tce-v2:limit type1v2:recover)
else
    [ ${#modes[@]} -gt 0 ] || modes=(spapr-tce-v2)
    [ ${#scenarios[@]} -gt 0 ] || scenarios=(recover limit)
    for m in "${modes[@]}"; do for s in "${scenarios[@]}"; do runs+=("$m:$s"); done; done
fi

passed=0
failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() { echo "e2e: logs kept in $logs"; echo "$passed passed, $failed failed"; [ "$failed" = 0 ]; }
# console LOG: the console without the CR of its CR LF line ends.
console() { tr -d '\r' <"$1"; }
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
# eeh_ops JSON: "name=result" of each VFIO_EEH_PE_OP record of an
# `eehctl --json oplog` document, in order (pretty JSON: "result" comes
# before "eeh_op" in each record).
eeh_ops() {
    sed -n -e 's/^ *"result": \(-\{0,1\}[0-9]*\),\{0,1\}$/r \1/p' -e 's/^ *"eeh_op": "\([a-z-]*\)".*/o \1/p' "$1" |
        awk '$1 == "r" { r = $2 } $1 == "o" { printf "%s%s=%s", sep, $2, r; sep = " " } END { print "" }'
}
# json_number JSON KEY: a top-level number of an eehctl JSON document.
json_number() { sed -n "s/^  \"$2\": \([0-9]*\),\{0,1\}$/\1/p" "$1"; }
# in_order "OPS" PATTERN...: the ops (name=result words) contain words
# matching the extended regexes in this order.
in_order() {
    local ops=" $1 " p
    shift
    for p in "$@"; do
        [[ $ops =~ \ ($p)\ (.*) ]] || return 1
        ops=" ${BASH_REMATCH[2]}"
    done
}

echo "e2e: logs in $logs; runs: ${runs[*]}"

# ---- set-up: builds, QEMU, kernel and busybox (fail loudly) ------------------
t=$(now)
cd "$repo"
if ! cargo build --locked -q -p eehctl ||
   ! cargo build --locked -q -p vfio-shim --features preload --lib --target-dir "$target/tmp/preload"; then
    bad "cargo build of eehctl and the preload library failed"
    finish
fi
eehctl=$target/debug/eehctl
# A target dir of its own, as the vfio-shim tests do: in the main one a
# build without the feature would replace the library.
library=$target/tmp/preload/debug/libvfio_eeh_shim.so
ok "built eehctl and $library in $(elapsed "$t")s"
t=$(now)
if apt_ensure qemu-system-ppc64 qemu-system-ppc &&
   "$repo/scripts/fetch-deb.sh" linux-image-powerpc64le busybox-static >/dev/null; then
    ok "QEMU ($(qemu-system-ppc64 --version | head -n 1)), kernel and busybox ready in $(elapsed "$t")s"
else
    bad "installing qemu-system-ppc or fetching linux-image-powerpc64le/busybox-static (ppc64el) failed"
    finish
fi

# ---- one guest -----------------------------------------------------------------
# guest MODE SCENARIO
guest() {
    local mode=$1 scenario=$2 dir=$logs/$1-$2 rc=0 gpid log append ops before want
    local name="[$mode $scenario]"
    log=$dir/console.log
    mkdir -p "$dir"
    local -a shim=("$eehctl" shim --dir "$dir" --library "$library" --iommu "$mode" --oplog "$dir/oplog-exit.json" "$device")
    local -a genv=() qargs=()
    local line
    while IFS= read -r line; do genv+=(--env "$line"); done < <("${shim[@]}" --print env)
    mapfile -t qargs < <("${shim[@]}" --print qemu-args)
    if [ ${#genv[@]} = 0 ] || [ ${#qargs[@]} = 0 ]; then
        bad "$name eehctl shim prepared nothing"
        return
    fi
    local socket=$dir/control.sock
    case "$scenario" in
        recover) append="eehtest.seconds=16 eehtest.wait=30" ;;
        limit) append="eehtest.seconds=20 eehtest.wait=30 eehtest.max_freezes=1" ;;
    esac
    local t0
    t0=$(now)
    "$run" --quiet --log "$log" --timeout "$boot_timeout" --max-log 2M --append "$append" \
        "${genv[@]}" -- "${qargs[@]}" 2>"$dir/run-guest.stderr" &
    gpid=$!

    if wait_for "$log" '^EEHTEST READY ' 1 "$gpid" "$boot_timeout"; then
        ok "$name guest enabled EEH on the device and is reading it ($(elapsed "$t0")s after start)"
        "$eehctl" --json oplog --socket "$socket" >"$dir/oplog-before.json"
        before=$(json_number "$dir/oplog-before.json" total)
        local freezes=1
        [ "$scenario" = limit ] && freezes=2
        local i
        for i in $(seq "$freezes"); do
            if [ "$i" -gt 1 ]; then
                # The next freeze once the previous one has been recovered.
                if ! { wait_for "$log" 'EEH: Recovery successful' $((i - 1)) "$gpid" 60 &&
                       wait_for "$log" '^EEHTEST READ ok ' "$(( $(count "$log" '^EEHTEST READ ok ') + 1 ))" "$gpid" 30; }; then
                    bad "$name freeze $((i - 1)) was not recovered; not injecting freeze $i"
                    break
                fi
            fi
            if "$eehctl" inject --socket "$socket" --pe "$pe" >"$dir/inject-$i.txt"; then
                ok "$name freeze $i injected into PE $pe at $(elapsed "$t0")s"
            else
                bad "$name eehctl inject $i failed"
            fi
        done
        # Snapshot the host side once the guest is done with the last freeze.
        case "$scenario" in
            recover) wait_for "$log" 'EEH: Recovery successful' 1 "$gpid" 60 || true ;;
            limit) { wait_for "$log" 'has been permanently disabled' 1 "$gpid" 60 &&
                     wait_for "$log" '^EEHTEST READ gone ' "$(( $(count "$log" '^EEHTEST READ gone ') + 1 ))" "$gpid" 30; } || true ;;
        esac
        "$eehctl" --json oplog --socket "$socket" --after "${before:-0}" >"$dir/oplog.json" || true
        "$eehctl" events --socket "$socket" >"$dir/events.txt" || true
        "$eehctl" state --socket "$socket" >"$dir/state.txt" || true
    else
        bad "$name no EEHTEST READY line (guest did not boot, or EEH was not enabled)"
    fi
    wait "$gpid" || rc=$?
    local secs
    secs=$(elapsed "$t0")
    if [ "$rc" = 0 ]; then
        ok "$name QEMU ran the guest to its poweroff in ${secs}s"
    else
        bad "$name run-guest.sh exited $rc after ${secs}s: $(tail -n 1 "$log" 2>/dev/null)"
        sed -n 's/^/    /p' "$dir/run-guest.stderr" | grep -v 'TCG doesn.t support' | tail -n 15 || true
    fi

    # ---- what the guest printed
    expect "$log" 'EEH: Capable adapter found: recovery enabled' "$name guest kernel found an EEH-capable adapter"
    if [ "$(count "$log" '^EEHTEST READ allones ')" -ge 1 ]; then
        ok "$name guest read all-ones from the frozen device"
    else
        bad "$name guest never read all-ones"
    fi
    expect "$log" 'EEH: Frozen PHB#[0-9a-f]+-PE#[0-9a-f]+ detected' "$name guest detected the frozen PE"
    if console "$log" | grep '^EEHTEST FAIL' >/dev/null; then bad "$name /init reported a failure"; fi
    ops=$(eeh_ops "$dir/oplog.json" 2>/dev/null || true)
    local state
    state=$(awk -v pe="$pe" '$1 == pe { print $2 }' "$dir/state.txt" 2>/dev/null || true)
    echo "$name VFIO_EEH_PE_OP after the injection: ${ops:-none}"
    case "$scenario" in
        recover)
            expect "$log" 'EEH: Recovery successful\.' "$name guest logged 'EEH: Recovery successful.'"
            want=$(count "$log" '^EEHTEST READ ok ')
            local after_ok
            after_ok=$(console "$log" | sed -n '/EEH: Recovery successful/,$p' | grep -c '^EEHTEST READ ok ' || true)
            if [ "$after_ok" -ge 1 ]; then
                ok "$name guest reads the device again after recovery ($after_ok good reads, $want in all)"
            else
                bad "$name no good read after the recovery"
            fi
            # Detection, the temporary log (thaw, configure), the reset, the
            # re-enable of the re-added device.
            local cycle=('get-state=2' 'unfreeze-io=0' 'configure=0' 'reset-hot=0' 'reset-deactivate=0' 'get-state=0' 'enable=0')
            if in_order "$ops" "${cycle[@]}"; then
                ok "$name host saw the recovery's ops in order: ${cycle[*]}"
            else
                bad "$name op sequence lacks, in order: ${cycle[*]}"
            fi
            if [ "$state" = normal ]; then
                ok "$name PE $pe is normal on the host after the recovery"
            else
                bad "$name PE $pe is '${state:-unknown}' on the host after the recovery, not normal"
            fi
            ;;
        limit)
            expect "$log" '^EEHTEST MAX_FREEZES [0-9]+ -> 1$' "$name /init lowered eeh_max_freezes to 1"
            if [ "$(count "$log" 'EEH: Recovery successful')" = 1 ]; then
                ok "$name the first freeze was recovered, and only it"
            else
                bad "$name expected exactly one 'EEH: Recovery successful', got $(count "$log" 'EEH: Recovery successful')"
            fi
            expect "$log" 'EEH: PHB#[0-9a-f]+-PE#[0-9a-f]+ has failed 2 times in the last hour and has been permanently disabled' \
                "$name guest gave up after the second freeze (permanently disabled)"
            expect "$log" 'EEH: Unable to recover from failure from PHB#[0-9a-f]+-PE#[0-9a-f]+' \
                "$name guest reported the permanent failure"
            if [ "$(console "$log" | sed -n '/has been permanently disabled/,$p' | grep -c '^EEHTEST READ ok ' || true)" = 0 ]; then
                ok "$name the device stayed gone after the permanent failure"
            else
                bad "$name the device came back after the permanent failure"
            fi
            # One recovery (two resets' worth at most), then no reset for
            # the second freeze: the last reset comes before the last
            # get-state=2.
            if in_order "$ops" 'get-state=2' 'reset-hot=0' 'reset-deactivate=0' 'get-state=2' &&
               ! in_order "$ops" 'get-state=2' 'reset-hot=0' 'get-state=2' 'reset-hot=0'; then
                ok "$name host saw one reset cycle, then get-state=2 and no further reset"
            else
                bad "$name op sequence is not one reset cycle then a freeze without reset"
            fi
            # Frozen and never reset: stopped, or stopped-dma once the
            # guest's error-log collection thawed MMIO.
            case "$state" in
                stopped|stopped-dma) ok "$name PE $pe stays frozen on the host ($state)" ;;
                *) bad "$name PE $pe is '${state:-unknown}' on the host, not frozen" ;;
            esac
            ;;
    esac
    if [ -s "$dir/oplog-exit.json" ]; then
        local unmaps
        unmaps=$(sed -n 's/^ *"VFIO_IOMMU_UNMAP_DMA": \([0-9]*\).*/\1/p' "$dir/oplog-exit.json")
        ok "$name op log written at exit ($(json_number "$dir/oplog-exit.json" total) operations, ${unmaps:-0} DMA unmaps)"
    else
        bad "$name no op log written at QEMU's exit"
    fi
}

for r in "${runs[@]}"; do
    case "${r%%:*}" in spapr-tce-v2|type1v2) ;; *) bad "unknown IOMMU mode ${r%%:*}"; continue ;; esac
    case "${r#*:}" in recover|limit) ;; *) bad "unknown scenario ${r#*:}"; continue ;; esac
    t=$(now)
    guest "${r%%:*}" "${r#*:}"
    echo "e2e: ${r%%:*} ${r#*:} took $(elapsed "$t")s"
done
finish
