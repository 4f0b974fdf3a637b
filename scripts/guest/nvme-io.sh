#!/bin/sh
# The guest's block I/O workload (busybox sh; /bin/nvme-io in the initramfs,
# started by init-eeh.sh for eehtest.workload=nvme-io).
#
# Waits for the block device, optionally measures it (sequential direct
# reads and writes, per-4K direct read latency), then writes a known,
# block-numbered pattern and reads it back in rounds, all with O_DIRECT
# (busybox dd oflag=direct / iflag=direct; every write also conv=fsync, so
# that the drive gets a Flush), each dd under `timeout`. A write is
# acknowledged once dd returned 0; each acknowledgement is logged. Errors (an
# EEH freeze and its recovery) are logged and the rounds go on. At the end
# every acknowledged block is read again and must hold what was last
# acknowledged (or, if a later write to it failed, that write's data: a
# failed write may or may not have reached the media).
#
# Pattern: block B of round G is 128 copies of the 32-byte line
#   "blk=BBBBBBBB gen=GGGGGG nvme-io\n"
# so one `uniq -c` of a read block names its block and round.
#
# The device is given up as gone when its node disappears, or when no
# operation has succeeded for nvmeio.gone_after seconds: the summary then
# says GONE and nothing more is read. A watchdog (this script's first
# process) reports STUCK if one operation outlives its timeout by far (a dd
# that cannot even be killed: uninterruptible I/O), and either way proves the
# guest still runs commands after the workload (ALIVE).
#
# Kernel command-line parameters (nvmeio.NAME=VALUE, all optional):
#   dev=NAME          block device (default nvme0n1)
#   wait=S            for the device node to appear (default 30)
#   blocks=N          pattern blocks of 4 KiB at the start of the device (default 32)
#   seconds=S         bound on the pattern rounds (default 40)
#   settle=N          stop after N clean rounds that follow an outage (a round
#                     with errors, or a stall: no success for stall_ms)
#                     (0: run until seconds; default 2)
#   stall_ms=MS       a time without success that counts as an outage even
#                     without errors (I/O held while the driver resets the
#                     controller) (default 3000)
#   op_timeout=S      timeout of each dd (default 10)
#   gone_after=S      no success for this long: the device is gone (default 45)
#   bench=MIB         first measure MIB MiB (at most what the drive has) of
#                     sequential direct writes and reads at 1 MiB into the
#                     device, and the 4K latency (0: no measurement; default 0)
#   lat_samples=N     4K reads for the latency figures (default 1000)
#   linger=S          keep the guest up S seconds after ALIVE, so that the
#                     host can look at the device before the guest powers
#                     off (default 0)
#
# Console markers, one per line, all starting with "NVMEIO ":
#   NVMEIO START dev=.. blocks=.. seconds=.. op_timeout=..
#   NVMEIO NODEV <dev> <why>          no block device (after wait, or once
#                                     the nvme driver holds no device)
#   NVMEIO DEVICE <dev> sectors=.. model=.. pci=<bdf> driver=..
#   NVMEIO BENCH mib=.. seq_write_mbps=.. seq_read_mbps=.. qd1_read_4k_us=..
#                lat_read_4k_p50_us=.. lat_read_4k_p99_us=.. requests=..
#       (MiB/s of one dd of MIB 1 MiB blocks each way; the mean time of a
#       4K direct read in one dd of lat_samples reads at queue depth 1; the
#       median and 99th percentile of those requests' issue-to-completion
#       times from the block layer's ftrace events block_rq_issue and
#       block_rq_complete, all on the guest's clock)
#   NVMEIO ACK b=.. gen=.. t=<ms since START>        a write acknowledged
#   NVMEIO WERR b=.. gen=.. rc=.. t=..               a write failed
#   NVMEIO RERR b=.. rc=.. t=..                      a read failed
#   NVMEIO BAD b=.. want=<gen>[/<gen>] got=<what> t=..  a read returned other data
#   NVMEIO STALL ms=.. t=..                          no success for that long
#   NVMEIO ROUND n=.. werr=.. rerr=.. bad=.. stalls=.. t=..
#   NVMEIO SETTLED <n> clean rounds after the outage
#   NVMEIO GONE <why> t=..
#   NVMEIO GAP longest_ms=.. from_ms=..   longest time between two successes
#   NVMEIO VERIFY acked=.. ok=.. bad=.. unreadable=..
#   NVMEIO SUMMARY PASS|FAIL|GONE|STUCK rounds=.. acks=.. werr=.. rerr=.. bad=.. stalls=.. <reason>
#   NVMEIO ALIVE uptime=.. blockdevs=..              after the workload
set -u

param() { # NAME DEFAULT: nvmeio.NAME= of the kernel command line
    v=$(tr ' ' '\n' </proc/cmdline | sed -n "s/^nvmeio\.$1=//p" | tail -n 1)
    if [ -n "$v" ]; then echo "$v"; else echo "$2"; fi
}
uint() { # NAME DEFAULT: a non-negative integer parameter
    u=$(param "$1" "$2")
    case "$u" in ''|*[!0-9]*) echo "NVMEIO SUMMARY FAIL bad nvmeio.$1=$u" >&2; exit 1 ;; esac
    echo "$u"
}
name=$(param dev nvme0n1)
dev=/dev/$name
waitmax=$(uint wait 30) || exit 1
blocks=$(uint blocks 32) || exit 1
seconds=$(uint seconds 40) || exit 1
settle=$(uint settle 2) || exit 1
op_timeout=$(uint op_timeout 10) || exit 1
gone_after=$(uint gone_after 45) || exit 1
stall_ms=$(uint stall_ms 3000) || exit 1
bench=$(uint bench 0) || exit 1
lat_samples=$(uint lat_samples 1000) || exit 1
linger=$(uint linger 0) || exit 1
work=/tmp/nvmeio
mkdir -p "$work"

# now_us: the guest's clock in microseconds. Debian's busybox date has no
# %N; its adjtimex prints the time to the microsecond.
nl='
'
now_us() {
    clk=$(adjtimex)
    sec=${clk#*time.tv_sec:}
    usec=${clk#*time.tv_usec:}
    echo $(( ${sec%%"$nl"*} * 1000000 + ${usec%%"$nl"*} ))
}
now_ms() { echo $(( $(now_us) / 1000 )); }
t_start=$(now_ms)
rel() { echo $(( $(now_ms) - t_start )); }

echo "NVMEIO START dev=$dev blocks=$blocks seconds=$seconds op_timeout=$op_timeout"

# ---- the device -----------------------------------------------------------
# nvme probes asynchronously: give it 5 s before taking an nvme driver
# without devices (a probe that failed, "Removing after probe failure") as
# the answer.
unbound() {
    [ "$waited" -ge 5 ] && [ -d /sys/bus/pci/drivers/nvme ] &&
        ! ls /sys/bus/pci/drivers/nvme | grep -q ':'
}
waited=0
while [ ! -b "$dev" ]; do
    why=
    if [ "$waited" -ge "$waitmax" ]; then
        why="after ${waitmax}s"
    elif unbound; then
        why="after ${waited}s: the nvme driver holds no device"
    fi
    if [ -n "$why" ]; then
        echo "NVMEIO NODEV $dev $why"
        echo "NVMEIO SUMMARY FAIL rounds=0 acks=0 werr=0 rerr=0 bad=0 stalls=0 no device"
        exit 0
    fi
    sleep 1
    waited=$((waited + 1))
done
sys=/sys/block/$name
pci=$(readlink -f "$sys/device/device" 2>/dev/null || true)
driver=$(readlink "$pci/driver" 2>/dev/null || true)
echo "NVMEIO DEVICE $dev sectors=$(cat "$sys/size") model=$(tr ' ' _ <"$sys/device/model" 2>/dev/null)" \
     "pci=${pci##*/} driver=${driver##*/}"

# ---- dd under a timeout ---------------------------------------------------
# mark OP BLOCK ROUND LIMIT: the operation under way, for the watchdog.
mark() { echo "$1 $2 $3 $(now_ms) $4" >"$work/op"; }
# write_block B G: 0 once the block is written and flushed.
write_block() {
    line=$(printf 'blk=%08d gen=%06d nvme-io' "$1" "$2")
    line="$line
"
    i=0
    while [ "$i" -lt 7 ]; do line=$line$line; i=$((i + 1)); done
    printf '%s' "$line" >"$work/pattern"
    timeout "$op_timeout" dd if="$work/pattern" of="$dev" bs=4096 seek="$1" count=1 \
        oflag=direct conv=notrunc,fsync 2>"$work/dd.err"
}
# read_block B: sets got to "GEN" when the block holds block B's pattern of
# round GEN, "other:<first line>" when it holds anything else; returns dd's
# status.
read_block() {
    rc=0
    timeout "$op_timeout" dd if="$dev" of="$work/read" bs=4096 skip="$1" count=1 \
        iflag=direct 2>"$work/dd.err" || rc=$?
    [ "$rc" = 0 ] || return "$rc"
    # shellcheck disable=SC2046  # "count line" words
    set -- "$1" $(uniq -c "$work/read" | head -n 2)
    want=$(printf 'blk=%08d' "$1")
    if [ $# = 5 ] && [ "$2" = 128 ] && [ "$3" = "$want" ] && [ "$5" = nvme-io ] &&
       expr "$4" : 'gen=[0-9]\{6\}$' >/dev/null; then
        got=${4#gen=}
        got=$(( 1$got - 1000000 ))
    else
        got=other:$(head -c 24 "$work/read" | tr -c 'a-zA-Z0-9=' .)
    fi
}

# ---- figures ----------------------------------------------------------------
# mbps BYTES US
mbps() { awk -v b="$1" -v us="$2" 'BEGIN { printf "%.1f", b / 1048576 / (us / 1e6) }'; }
# timed_dd LIMIT ARGS...: dd under a timeout; sets took (microseconds).
timed_dd() {
    limit=$1
    shift
    a=$(now_us)
    timeout "$limit" dd "$@" 2>/dev/null || return 1
    took=$(( $(now_us) - a ))
}
tracing=/sys/kernel/tracing
# trace_block_requests on|off: the block layer's request issue and
# completion events (ftrace), to time each request on the guest's clock.
trace_block_requests() {
    v=0
    [ "$1" = off ] || { v=1; echo >"$tracing/trace"; }
    echo "$v" >"$tracing/events/block/block_rq_issue/enable" &&
        echo "$v" >"$tracing/events/block/block_rq_complete/enable" &&
        echo "$v" >"$tracing/tracing_on"
}
# request_latencies: one line per completed request of the trace, its
# latency in microseconds (issue to completion, matched by sector).
request_latencies() {
    awk '{
        for (i = 1; i <= NF; i++) if ($i ~ /^block_rq_(issue|complete):$/) break
        if (i > NF) next
        ts = $(i - 1); sub(/:$/, "", ts)
        for (j = i; j <= NF; j++) if ($j == "+") break
        sector = $(j - 1)
        if ($i == "block_rq_issue:") issued[sector] = ts
        else if (sector in issued) { printf "%d\n", (ts - issued[sector]) * 1e6; delete issued[sector] }
    }' "$tracing/trace"
}
# pctl FILE P: the P-th percentile (nearest rank) of FILE's numbers.
pctl() { sort -n "$1" | awk -v p="$2" '{ v[NR] = $1 } END { r = int((p * NR + 99) / 100); if (r < 1) r = 1; print v[r] }'; }
measure() {
    # At most what the drive has after its first MiB.
    room=$(( $(cat "$sys/size") / 2048 - 1 ))
    [ "$bench" -le "$room" ] || bench=$room
    if [ "$bench" -lt 1 ]; then
        echo "NVMEIO BENCH skipped: the drive has no MiB after its first"
        return 0
    fi
    mark bench-write - - 120
    timed_dd 120 if=/dev/zero of="$dev" bs=1048576 seek=1 count="$bench" oflag=direct conv=notrunc,fsync ||
        { echo "NVMEIO BENCH failed: sequential write"; return 0; }
    write=$(mbps $((bench * 1048576)) "$took")
    mark bench-read - - 120
    timed_dd 120 if="$dev" of=/dev/null bs=1048576 skip=1 count="$bench" iflag=direct ||
        { echo "NVMEIO BENCH failed: sequential read"; return 0; }
    read=$(mbps $((bench * 1048576)) "$took")
    # 4K direct reads at queue depth 1, one dd: their mean time as dd sees
    # it, and each request's time from the block layer's trace events.
    [ -d "$tracing/events" ] || mount -t tracefs tracefs "$tracing" 2>/dev/null || true
    traced=0
    trace_block_requests on 2>/dev/null && traced=1
    mark bench-4k - - 120
    n4k=$lat_samples
    max4k=$((bench * 256))
    [ "$n4k" -le "$max4k" ] || n4k=$max4k
    timed_dd 120 if="$dev" of=/dev/null bs=4096 skip=256 count="$n4k" iflag=direct ||
        { echo "NVMEIO BENCH failed: 4K reads"; trace_block_requests off 2>/dev/null; return 0; }
    qd1=$((took / n4k))
    p50=n/a; p99=n/a; requests=0
    if [ "$traced" = 1 ]; then
        trace_block_requests off
        request_latencies >"$work/lat"
        requests=$(wc -l <"$work/lat")
        if [ "$requests" -gt 0 ]; then p50=$(pctl "$work/lat" 50); p99=$(pctl "$work/lat" 99); fi
    fi
    echo "NVMEIO BENCH mib=$bench seq_write_mbps=$write seq_read_mbps=$read qd1_read_4k_us=$qd1" \
         "lat_read_4k_p50_us=$p50 lat_read_4k_p99_us=$p99 requests=$requests"
}

# ---- the pattern rounds ---------------------------------------------------
# Per block B: ack_B is the round of its last acknowledged write, pend_B the
# round of a failed write after it (empty when none).
acks=0; werr=0; rerr=0; bad=0; rounds=0; stalls=0
last_ok=0; gap=0; gap_from=0
gone=
success() { # an operation succeeded at T (ms): the longest gap so far, stalls
    if [ $(( $1 - last_ok )) -gt "$gap" ]; then gap=$(( $1 - last_ok )); gap_from=$last_ok; fi
    if [ $(( $1 - last_ok )) -ge "$stall_ms" ]; then
        stalls=$((stalls + 1))
        echo "NVMEIO STALL ms=$(( $1 - last_ok )) t=$1"
    fi
    last_ok=$1
}
check_gone() { # T: sets gone when the device left or failed for too long
    if [ ! -b "$dev" ]; then
        gone="node $dev removed"
    elif [ $(( $1 - last_ok )) -ge $((gone_after * 1000)) ]; then
        gone="no successful I/O for ${gone_after}s"
    fi
    [ -z "$gone" ] || echo "NVMEIO GONE $gone t=$1"
}
# expected B: "ACK" or "ACK/PEND", the rounds block B may hold.
expected() {
    eval "e=\${ack_$1:-}; p=\${pend_$1:-}"
    echo "$e${p:+/$p}"
}
# matches GOT B: GOT is one of the rounds block B may hold.
matches() {
    eval "e=\${ack_$2:-}; p=\${pend_$2:-}"
    [ "$1" = "$e" ] || [ "$1" = "$p" ]
}

workload() {
    [ "$bench" = 0 ] || measure
    last_ok=$(rel)
    clean=0; outage=0
    while [ "$(rel)" -lt $((seconds * 1000)) ] && [ -z "$gone" ]; do
        rounds=$((rounds + 1))
        errors=0
        stalls_before=$stalls
        b=0
        while [ "$b" -lt "$blocks" ]; do
            mark write "$b" "$rounds" "$op_timeout"
            if write_block "$b" "$rounds"; then
                t=$(rel); success "$t"
                eval "ack_$b=$rounds; pend_$b="
                acks=$((acks + 1))
                echo "NVMEIO ACK b=$b gen=$rounds t=$t"
            else
                rc=$?; t=$(rel)
                eval "pend_$b=$rounds"
                werr=$((werr + 1)); errors=$((errors + 1))
                echo "NVMEIO WERR b=$b gen=$rounds rc=$rc t=$t $(head -n 1 "$work/dd.err")"
                check_gone "$t"; [ -z "$gone" ] || return 0
            fi
            b=$((b + 1))
        done
        b=0
        while [ "$b" -lt "$blocks" ]; do
            mark read "$b" "$rounds" "$op_timeout"
            if read_block "$b"; then
                t=$(rel); success "$t"
                if ! matches "$got" "$b"; then
                    bad=$((bad + 1)); errors=$((errors + 1))
                    echo "NVMEIO BAD b=$b want=$(expected "$b") got=$got t=$t"
                fi
            else
                rc=$?; t=$(rel)
                rerr=$((rerr + 1)); errors=$((errors + 1))
                echo "NVMEIO RERR b=$b rc=$rc t=$t $(head -n 1 "$work/dd.err")"
                check_gone "$t"; [ -z "$gone" ] || return 0
            fi
            b=$((b + 1))
        done
        echo "NVMEIO ROUND n=$rounds werr=$werr rerr=$rerr bad=$bad stalls=$stalls t=$(rel)"
        if [ "$errors" -gt 0 ] || [ "$stalls" != "$stalls_before" ]; then
            outage=1; clean=0
        else
            clean=$((clean + 1))
            if [ "$settle" -gt 0 ] && [ "$outage" = 1 ] && [ "$clean" -ge "$settle" ]; then
                echo "NVMEIO SETTLED $clean clean rounds after the outage"
                break
            fi
        fi
    done
}

verify() {
    vok=0; vbad=0; vunread=0; vacked=0
    b=0
    while [ "$b" -lt "$blocks" ]; do
        eval "e=\${ack_$b:-}"
        if [ -n "$e" ]; then
            vacked=$((vacked + 1))
            mark verify "$b" - "$op_timeout"
            if read_block "$b"; then
                if matches "$got" "$b"; then
                    vok=$((vok + 1))
                else
                    vbad=$((vbad + 1))
                    echo "NVMEIO BAD b=$b want=$(expected "$b") got=$got t=$(rel) (verify)"
                fi
            else
                vunread=$((vunread + 1))
                echo "NVMEIO RERR b=$b rc=$? t=$(rel) (verify)"
            fi
        fi
        b=$((b + 1))
    done
    echo "NVMEIO VERIFY acked=$vacked ok=$vok bad=$vbad unreadable=$vunread"
}

# The worker: the rounds, the verification and the summary, in a child so
# that the watchdog below outlives a dd stuck in the kernel.
worker() {
    workload
    echo "NVMEIO GAP longest_ms=$gap from_ms=$gap_from"
    counts="rounds=$rounds acks=$acks werr=$werr rerr=$rerr bad=$bad stalls=$stalls"
    if [ -n "$gone" ]; then
        echo "NVMEIO SUMMARY GONE $counts $gone"
        return 0
    fi
    verify
    if [ "$acks" -gt 0 ] && [ "$bad" = 0 ] && [ "$vbad" = 0 ] && [ "$vunread" = 0 ] && [ "$vok" = "$vacked" ]; then
        echo "NVMEIO SUMMARY PASS $counts every acknowledged block reads back as written"
    else
        echo "NVMEIO SUMMARY FAIL $counts verify_ok=$vok/$vacked verify_bad=$vbad unreadable=$vunread"
    fi
}

mark start - - "$op_timeout"
worker &
wpid=$!
# The watchdog: an operation is stuck once it has run twice its timeout
# and 10 s more.
while kill -0 "$wpid" 2>/dev/null; do
    sleep 1
    # shellcheck disable=SC2046  # "op block round start limit"
    set -- $(cat "$work/op")
    if [ $# = 5 ] && [ $(( $(now_ms) - $4 )) -gt $(( ($5 * 2 + 10) * 1000 )) ]; then
        echo "NVMEIO SUMMARY STUCK $1 of block $2 (round $3) has not returned for $(( ($(now_ms) - $4) / 1000 ))s"
        kill "$wpid" 2>/dev/null
        break
    fi
done
wait "$wpid" 2>/dev/null
echo "NVMEIO ALIVE uptime=$(cut -d ' ' -f 1 /proc/uptime) blockdevs=$(ls /sys/block | tr '\n' ,)"
sleep "$linger"
