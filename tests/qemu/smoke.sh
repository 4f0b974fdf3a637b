#!/usr/bin/env bash
# Smoke test of the real-guest infrastructure, without any VFIO device:
#   1. fetch the ppc64el kernel and busybox (timed; a cached rerun is ~instant)
#   2. boot the guest with no PCI device: /init runs, finds nothing, the
#      kernel says "EEH: No capable adapters found", the guest powers off
#   3. boot with an emulated pci-testdev (no EEH): /init's read loop runs
#      (config space + BAR via devmem) and eeh_max_freezes is lowered
#   4. run-guest.sh's guards: the timeout and the console-log cap fire
#
#   tests/qemu/smoke.sh        (env: SMOKE_LOG_DIR to keep the logs,
#                               SMOKE_BOOT_TIMEOUT per boot, default 90 s)
# Ends with a "N passed, N failed" line; exits non-zero if anything failed.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/../.." && pwd -P)
run=$repo/scripts/guest/run-guest.sh
boot_timeout=${SMOKE_BOOT_TIMEOUT:-90}
logs=${SMOKE_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/qemu-smoke.XXXXXX")}
mkdir -p "$logs"

passed=0
failed=0
now() { date +%s.%3N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }
show_log() { echo "---- last lines of $1 ----"; tail -n 40 "$1" || true; echo "----"; }

# expect LOG PATTERN DESCRIPTION: an extended-regex line must be in LOG
# (the guest console ends its lines with CR LF).
expect() {
    # Not grep -q: an early exit would make tr die of SIGPIPE (pipefail).
    if tr -d '\r' <"$1" | grep -E -- "$2" >/dev/null; then ok "$3"; else bad "$3 (no line matching /$2/ in $1)"; return 1; fi
}

echo "smoke: logs in $logs"

# ---- 1. downloads (timed) ---------------------------------------------------
t=$(now)
if kdir=$("$repo/scripts/fetch-deb.sh" linux-image-powerpc64le) &&
   bdir=$("$repo/scripts/fetch-deb.sh" busybox-static); then
    ok "fetched kernel ($kdir) and busybox ($bdir) in $(since "$t")s"
else
    bad "scripts/fetch-deb.sh could not fetch linux-image-powerpc64le / busybox-static"
    echo "0 passed, 1 failed"
    exit 1
fi
t=$(now)
"$repo/scripts/fetch-deb.sh" linux-image-powerpc64le busybox-static >/dev/null
ok "cached re-fetch took $(since "$t")s"

# ---- 2. no device -------------------------------------------------------------
log=$logs/nodev.log
t=$(now)
rc=0
"$run" --quiet --log "$log" --timeout "$boot_timeout" \
    --append "eehtest.seconds=2 eehtest.wait=2" || rc=$?
secs=$(since "$t")
if [ "$rc" = 0 ]; then
    ok "guest without devices booted and powered off (exit 0) in ${secs}s (including QEMU install/initramfs)"
else
    bad "guest without devices: run-guest.sh exited $rc after ${secs}s"
fi
all=1
expect "$log" '^EEHTEST START ' "/init started" || all=0
expect "$log" 'EEH: No capable adapters found' "kernel reports no EEH-capable adapter" || all=0
expect "$log" '^EEHTEST NODEV ' "/init found no PCI device" || all=0
expect "$log" '^EEHTEST DONE ' "/init finished" || all=0
expect "$log" '^EEHTEST POWEROFF' "/init powered off" || all=0
if grep -q '^EEHTEST FAIL' "$log"; then bad "/init reported a failure"; all=0; fi
[ "$rc" = 0 ] && [ "$all" = 1 ] || show_log "$log"
sed -n 's/^\[ *\([0-9.]*\)\] Run \/init.*/smoke: kernel reached \/init at \1s guest time/p' "$log"

# ---- 3. emulated device, read loop --------------------------------------------
log=$logs/testdev.log
t=$(now)
rc=0
"$run" --quiet --log "$log" --timeout "$boot_timeout" \
    --append "eehtest.seconds=3 eehtest.wait=2 eehtest.require_eeh=0 eehtest.max_freezes=2" \
    -- -device pci-testdev || rc=$?
secs=$(since "$t")
if [ "$rc" = 0 ]; then
    ok "guest with pci-testdev ran in ${secs}s"
else
    bad "guest with pci-testdev: run-guest.sh exited $rc after ${secs}s"
fi
all=1
expect "$log" '^EEHTEST MAX_FREEZES [0-9]+ -> 2$' "eeh_max_freezes lowered to 2 from the command line" || all=0
expect "$log" '^EEHTEST NOEEH 0000:00:0' "emulated device reported as not EEH-capable" || all=0
expect "$log" '^EEHTEST READY 0000:00:0[^ ]* vendor=0x1b36 device=0x0005' "/init picked the pci-testdev" || all=0
reads=$(grep -c '^EEHTEST READ ok .*cfg=ok:00051b36 bar=ok:' "$log" || true)
if [ "$reads" -ge 2 ]; then
    ok "$reads config+BAR reads succeeded"
else
    bad "only $reads good EEHTEST READ lines"; all=0
fi
expect "$log" '^EEHTEST DONE reads=[0-9]+ ok=[0-9]+ allones=0 gone=0 error=0' "read loop finished cleanly" || all=0
if grep -q '^EEHTEST FAIL' "$log"; then bad "/init reported a failure"; all=0; fi
[ "$rc" = 0 ] && [ "$all" = 1 ] || show_log "$log"

# ---- 4. guards ------------------------------------------------------------------
log=$logs/timeout.log
rc=0
"$run" --quiet --log "$log" --timeout 3 --append "eehtest.wait=600" || rc=$?
if [ "$rc" = 124 ] && grep -q '^RUN-GUEST: TIMEOUT' "$log"; then
    ok "timeout guard stops QEMU (exit 124)"
else
    bad "timeout guard: exit $rc, expected 124 and a RUN-GUEST: TIMEOUT line"
fi

log=$logs/oversize.log
rc=0
"$run" --quiet --log "$log" --timeout "$boot_timeout" --max-log 4K || rc=$?
size=$(stat -c %s "$log")
if [ "$rc" = 125 ] && [ "$size" -lt 8192 ] && grep -q '^RUN-GUEST: LOG-OVERSIZE' "$log"; then
    ok "log cap stops QEMU (exit 125, log $size bytes)"
else
    bad "log cap: exit $rc, log $size bytes; expected 125, < 8192 bytes and a RUN-GUEST: LOG-OVERSIZE line"
fi

echo "smoke: logs kept in $logs"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
