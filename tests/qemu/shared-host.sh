#!/usr/bin/env bash
# Real guests on one host: an eehd owns the simulated host of
# tests/qemu/shared-host.toml (two drives of plain memory, PEs 0 and 1, both
# behind host PHB 0; the NVMe controller model, PE 2, behind host PHB 1),
# and qemu-system-ppc64 pseries guests run under the preload library as its
# clients (`eehctl shim --connect`, docs/shared-host.md): guest A (VM
# guest-a) holds PE 0 (0000:01:00.0), guest B (VM guest-b) PE 1
# (0000:02:00.0), each on the spapr PHB of its own QEMU. Both boot at once;
# guest C comes after them.
#
#   busy      B's VMM cannot open A's group: /dev/vfio/0 answers EBUSY to a
#             process acting for guest-b
#   freeze    a freeze of PE 0: A detects it and recovers; B's reads (every
#             second: its device's vendor/device dword, then the first word of
#             BAR0, written with a pattern into eehd's shared file) are "ok"
#             and read exactly a824144d and the pattern, every time until
#             then, and B logs no EEH event
#   phb       a fence of host PHB 0: both guests detect it and recover
#   restart   `kill -9` of eehd while both run, and a restart: both keep
#             reading, and a later freeze of PE 0 is detected and recovered
#   events    `eehctl events --connect S --vm NAME --follow` shows each VM's
#             events live (A's freezes; B only the fence), followed again
#             after the restart
#   model     guest C (VM guest-c) holds PE 2 (0001:01:00.0), the NVMe
#             controller, whose model runs in eehd: its DMA reaches C's VMM's
#             memory through eehd's mirror of the VMM's IOMMU mappings, and its
#             interrupts come back to the VMM's eventfds. C's nvme driver binds
#             and its block workload runs; a freeze of PE 2 mid-I/O is
#             recovered through the driver's callbacks, I/O resumes, and every
#             acknowledged block reads back as written
#
#   tests/qemu/shared-host.sh
#
# Environment: SHARED_LOG_DIR (keep logs there), SHARED_BOOT_TIMEOUT
# (seconds, default 200), CARGO_TARGET_DIR. Ends with "N passed, N
# failed"; exits non-zero if anything failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
# shellcheck source=scripts/guest/lib.sh
. "$repo/scripts/guest/lib.sh"
run=$repo/scripts/guest/run-guest.sh
boot_timeout=${SHARED_BOOT_TIMEOUT:-200}
logs=${SHARED_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/qemu-shared.XXXXXX")}
target=${CARGO_TARGET_DIR:-$repo/target}
topology=$here/shared-host.toml
# shellcheck source=tests/qemu/lib.sh
. "$here/lib.sh"

case "${1:-}" in
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
    "") ;;
    *) echo "shared-host.sh: unknown argument '$1'" >&2; exit 2 ;;
esac
mkdir -p "$logs"
echo "shared-host: logs in $logs"

# ---- set-up ---------------------------------------------------------------------
t=$(now)
cd "$repo"
if ! cargo build --locked -q -p eehctl -p eehd ||
   ! cargo build --locked -q -p vfio-shim --features preload --lib --target-dir "$target/tmp/preload"; then
    bad "cargo build of eehctl, eehd and the preload library failed"
    finish
fi
eehctl=$target/debug/eehctl
eehd_bin=$target/debug/eehd
library=$target/tmp/preload/debug/libvfio_eeh_shim.so
ok "built eehctl, eehd and $library in $(elapsed "$t")s"
if apt_ensure qemu-system-ppc64 qemu-system-ppc &&
   "$repo/scripts/fetch-deb.sh" linux-image-powerpc64le busybox-static >/dev/null; then
    ok "QEMU, kernel and busybox ready"
else
    bad "installing qemu-system-ppc or fetching the guest kernel/busybox failed"
    finish
fi

socket=$logs/eehd.sock
pids=()
cleanup() { local p; for p in "${pids[@]}" ${eehd_pid:-}; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
# start_eehd: eehd on the topology, state (and shared memory) in $logs/state.
start_eehd() {
    rm -f "$socket"
    "$eehd_bin" --host sim --topology "$topology" --socket "$socket" --state-dir "$logs/state" \
        >>"$logs/eehd.log" 2>&1 &
    eehd_pid=$!
    local deadline=$(( $(date +%s) + 20 ))
    until [ -S "$socket" ]; do
        [ "$(date +%s)" -lt "$deadline" ] && kill -0 "$eehd_pid" 2>/dev/null || return 1
        sleep 0.1
    done
}
# follow VM: its events, live, appended to $logs/events-VM.txt.
follow() {
    "$eehctl" events --connect "$socket" --vm "$1" --follow >>"$logs/events-$1.txt" 2>>"$logs/events-$1.stderr" &
    pids+=($!)
}
if start_eehd; then ok "eehd serves tests/qemu/shared-host.toml at $socket"; else bad "eehd did not start"; finish; fi
follow guest-a
follow guest-b

# launch NAME VM DEVICE APPEND: boots a guest under the shim as VM, with
# DEVICE, APPEND on its kernel command line and the guest's nvme modules in
# its initramfs (loaded only for eehtest.modules=nvme); sets <NAME>_pid and
# <NAME>_log.
launch() {
    local name=$1 vm=$2 dev=$3 append=$4 dir=$logs/$1
    mkdir -p "$dir"
    local -a shim=("$eehctl" shim --dir "$dir" --library "$library" --connect "$socket" --vm "$vm"
        --topology "$topology" --oplog "$dir/oplog-exit.json" "$dev")
    local -a genv=() qargs=()
    local line
    while IFS= read -r line; do genv+=(--env "$line"); done < <("${shim[@]}" --print env)
    mapfile -t qargs < <("${shim[@]}" --print qemu-args)
    "$run" --quiet --log "$dir/console.log" --timeout $((boot_timeout + 200)) --max-log 4M \
        --append "$append" --module nvme "${genv[@]}" -- "${qargs[@]}" 2>"$dir/run-guest.stderr" &
    pids+=($!)
    printf -v "${name}_pid" %s "$!"
    printf -v "${name}_log" %s "$dir/console.log"
}
t0=$(now)
readers="eehtest.seconds=100 eehtest.wait=60"
launch a guest-a 0000:01:00.0 "$readers"
launch b guest-b 0000:02:00.0 "$readers"
# shellcheck disable=SC2154  # set by launch
if wait_for "$a_log" '^EEHTEST READY ' 1 "$a_pid" "$boot_timeout" &&
   wait_for "$b_log" '^EEHTEST READY ' 1 "$b_pid" "$boot_timeout"; then
    ok "both guests enabled EEH on their device ($(elapsed "$t0")s)"
else
    bad "a guest did not get ready (A: $(count "$a_log" '^EEHTEST READY '), B: $(count "$b_log" '^EEHTEST READY '))"
    finish
fi

# ---- busy: B's VMM and A's group ----------------------------------------------
busy=$(LD_PRELOAD=$library VFIO_EEH_SHIM_CONNECT=$socket VFIO_EEH_SHIM_VM=guest-b \
    bash -c 'exec 3<>/dev/vfio/0' 2>&1 || true)
if [[ $busy == *"Device or resource busy"* ]]; then
    ok "guest-b's VMM cannot open A's group: $busy"
else
    bad "opening /dev/vfio/0 as guest-b: '${busy:-it opened}', not EBUSY"
fi

# b_reads: B's read lines so far; b_since N: the "result cfg bar" of each
# of its reads after the first N, distinct.
b_reads() { count "$b_log" '^EEHTEST READ '; }
b_since() {
    console "$b_log" | grep '^EEHTEST READ ' | tail -n +$(($1 + 1)) |
        sed 's/^EEHTEST READ \([a-z]*\) .* cfg=\([^ ]*\) bar=\([^ ]*\) .*/\1 \2 \3/' | sort -u
}

# ---- freeze: PE 0 only -----------------------------------------------------------
# B's BAR0 gets a pattern, written into its memory, eehd's shared file (after
# QEMU's reset of the device at boot, which clears it).
printf '\x0b\xb0\xed\x5e' | dd of="$logs/state/shared/0000:02:00.0.bar0" conv=notrunc status=none
pattern=0x5EEDB00B
reads_before=$(b_reads)
wait_for "$b_log" '^EEHTEST READ ' $((reads_before + 1)) "$b_pid" 30 || true
"$eehctl" inject --connect "$socket" --pe 0 >"$logs/inject-freeze.txt"
if wait_for "$a_log" 'EEH: Recovery successful' 1 "$a_pid" 90; then
    ok "A detected the freeze of PE 0 and recovered ($(elapsed "$t0")s)"
else
    bad "A did not recover from the freeze of PE 0"
fi
if [ "$(b_reads)" -gt $((reads_before + 2)) ] && [ "$(b_since "$reads_before")" = "ok ok:a824144d ok:$pattern" ]; then
    ok "B read its device $(( $(b_reads) - reads_before )) times meanwhile, every read ok: $(b_since "$reads_before")"
else
    bad "B's reads during A's freeze, not all 'ok ok:a824144d ok:$pattern': $(b_since "$reads_before" | tr '\n' ';')"
fi
if [ "$(count "$b_log" 'EEH: (Frozen|Recovering|Detected)')" = 0 ]; then
    ok "B saw no EEH event"
else
    bad "B logged an EEH event for A's freeze"
fi

# ---- phb: both ----------------------------------------------------------------------
"$eehctl" inject --connect "$socket" --phb 0 >"$logs/inject-phb.txt" || bad "eehctl inject --phb 0 failed"
if wait_for "$a_log" 'EEH: Recovery successful' 2 "$a_pid" 120 &&
   wait_for "$b_log" 'EEH: Recovery successful' 1 "$b_pid" 120; then
    ok "the fence of PHB 0 reached both guests and both recovered ($(elapsed "$t0")s)"
else
    bad "after the fence: A $(count "$a_log" 'EEH: Recovery successful') recoveries (want 2), B $(count "$b_log" 'EEH: Recovery successful') (want 1)"
fi

# ---- restart: kill -9 ---------------------------------------------------------------
wait_for "$b_log" '^EEHTEST READ ok ' $(( $(count "$b_log" '^EEHTEST READ ok ') + 1 )) "$b_pid" 30 || true
kill -9 "$eehd_pid"
wait "$eehd_pid" 2>/dev/null || true
if start_eehd; then ok "eehd killed (-9) and started again"; else bad "eehd did not start again"; fi
follow guest-a
follow guest-b
a_ok=$(count "$a_log" '^EEHTEST READ ok ')
b_ok=$(count "$b_log" '^EEHTEST READ ok ')
if wait_for "$a_log" '^EEHTEST READ ok ' $((a_ok + 3)) "$a_pid" 30 &&
   wait_for "$b_log" '^EEHTEST READ ok ' $((b_ok + 3)) "$b_pid" 30; then
    ok "both guests kept running and reading their devices across eehd's restart"
else
    bad "a guest stopped reading after eehd's restart"
fi
"$eehctl" inject --connect "$socket" --pe 0 >"$logs/inject-freeze-2.txt" || bad "the freeze after the restart was refused"
if wait_for "$a_log" 'EEH: Recovery successful' 3 "$a_pid" 90; then
    ok "a freeze after the restart was detected and recovered by A ($(elapsed "$t0")s)"
else
    bad "A did not recover from the freeze after the restart"
fi
"$eehctl" state --connect "$socket" >"$logs/state.txt" 2>&1 || true
"$eehctl" claims --connect "$socket" >"$logs/claims.txt" 2>&1 || true

# ---- events ---------------------------------------------------------------------------
sleep 1
a_frozen=$(grep -c 'PE 0  frozen' "$logs/events-guest-a.txt" || true)
b_lines=$(grep -c . "$logs/events-guest-b.txt" || true)
if [ "$a_frozen" -ge 3 ] && grep -q 'PE 0  frozen by an error on PHB' "$logs/events-guest-a.txt"; then
    ok "guest-a's follower showed its events live ($a_frozen freeze lines, the fence included)"
else
    bad "guest-a's events: $(tr '\n' ';' <"$logs/events-guest-a.txt")"
fi
if grep -q 'PE 1  frozen by an error on PHB' "$logs/events-guest-b.txt" && ! grep -q 'PE 0 ' "$logs/events-guest-b.txt"; then
    ok "guest-b's follower showed only its own PE's events ($b_lines lines, the fence)"
else
    bad "guest-b's events: $(tr '\n' ';' <"$logs/events-guest-b.txt")"
fi

# ---- the end ---------------------------------------------------------------------------
for g in a b; do
    pid_var=${g}_pid log_var=${g}_log
    rc=0
    wait "${!pid_var}" || rc=$?
    if [ "$rc" = 0 ]; then
        ok "guest $g ran to its poweroff"
    else
        bad "guest $g: run-guest.sh exited $rc: $(tail -n 1 "${!log_var}" 2>/dev/null)"
    fi
    if console "${!log_var}" | grep '^EEHTEST FAIL' >/dev/null; then bad "guest $g's /init reported a failure"; fi
done

# ---- model: guest C's nvme driver, DMA through eehd -------------------------------------
# Once A and B are done (one TCG guest per core in CI). The workload runs
# rounds until two clean ones after the outage, then verifies.
t0=$(now)
launch c guest-c 0001:01:00.0 "$nvme_append nvmeio.seconds=100 nvmeio.op_timeout=20"
# shellcheck disable=SC2154  # set by launch
if wait_for "$c_log" '^NVMEIO (DEVICE|SUMMARY) ' 1 "$c_pid" "$boot_timeout" &&
   [ "$(count "$c_log" '^NVMEIO DEVICE ')" = 1 ]; then
    ok "C's nvme driver bound the controller model served by eehd ($(elapsed "$t0")s)"
    if wait_for "$c_log" '^NVMEIO ACK b=[0-9]+ gen=2 ' 4 "$c_pid" 200 &&
       "$eehctl" inject --connect "$socket" --pe 2 >"$logs/inject-model.txt"; then
        ok "freeze of PE 2 injected mid-I/O ($(elapsed "$t0")s)"
    else
        bad "no freeze of PE 2 injected (the workload did not reach round 2, or the inject failed)"
    fi
    wait_for "$c_log" 'EEH: Recovery successful' 1 "$c_pid" 120 || true
else
    bad "C's nvme driver gave no block device: $(console "$c_log" | grep -E '^NVMEIO (NODEV|SUMMARY)|^\[ *[0-9.]+\] nvme ' | tr '\n' ';')"
fi
rc=0
wait "$c_pid" || rc=$?
if [ "$rc" = 0 ]; then ok "guest c ran to its poweroff"; else bad "guest c: run-guest.sh exited $rc"; fi
nvme_workload_checks "[c]" "$c_log"
nvme_recovery_checks "[c]" "$c_log"
echo "shared-host: total $(elapsed "$t")s"
finish
