#!/usr/bin/env bash
# Differential conformance: runs tests/c/vfio_eeh_conformance.c on a real
# Linux 6.12 PowerNV host under QEMU (the oracle, scripts/oracle/run-powernv.sh)
# and under our preload library (tests/shim/run-conformance.sh), and compares
# them check by check with vfio-conformance-compare (crates/vfio-conformance)
# under tests/c/oracle-unanswerable.txt. Then it compares the fresh oracle
# with the committed golden file tests/c/oracle-linux-6.12.txt.
#
#   scripts/conformance/compare.sh [--offline] [--keep DIR]
#
#   --offline   no QEMU: compare our run with the golden file only
#   --keep DIR  keep oracle.txt, ours.txt and report.txt in DIR
#   --rust DIR  in the same boot, also run the ppc64le Rust backend checks
#               (vfio-eeh-linux-conformance) and eehctl's host commands from
#               DIR (scripts/cross/build-ppc64le.sh), and compare the Rust
#               checks with the oracle's under oracle-unanswerable.txt and
#               rust-backend-unexposed.txt (not with --offline)
#
# Fails (exit 1) when any answerable check differs or is missing on either
# side, when the oracle cannot be fetched, booted or run (its own error says
# why), or when the fresh oracle's answers drift from the golden file
# (docs/oracle.md, "Drift"). Exit 2 on usage errors.
# Environment: CARGO_TARGET_DIR, ORACLE_TIMEOUT (guest bound, default 300 s),
# VFIO_EEH_CACHE (download cache, see scripts/fetch-deb.sh).
set -euo pipefail

prog=compare.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
golden=$repo/tests/c/oracle-linux-6.12.txt
unanswerable=$repo/tests/c/oracle-unanswerable.txt

offline=0 keep='' rust=''
while [ $# -gt 0 ]; do
    case "$1" in
        --offline) offline=1; shift ;;
        --keep) [ $# -ge 2 ] || { echo "$prog: --keep needs a directory" >&2; exit 2; }; keep=$2; shift 2 ;;
        --rust) [ $# -ge 2 ] || { echo "$prog: --rust needs a directory" >&2; exit 2; }; rust=$2; shift 2 ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "$prog: unknown argument '$1'" >&2; exit 2 ;;
    esac
done

t0=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/conformance.XXXXXX")
trap 'rm -rf "$work"' EXIT
target=${CARGO_TARGET_DIR:-$repo/target}

(cd "$repo" && cargo build --quiet --locked -p vfio-conformance) || die "building vfio-conformance-compare failed"
compare=$target/debug/vfio-conformance-compare

if [ "$offline" = 0 ]; then
    echo "== oracle: Linux 6.12 on QEMU powernv9"
    rust_args=()
    [ -z "$rust" ] || { echo "   (with the Rust backend's checks and eehctl from $rust)"; rust_args=(--rust "$rust"); }
    run_oracle() {
        "$repo/scripts/oracle/run-powernv.sh" --timeout "${ORACLE_TIMEOUT:-300}" ${rust_args[@]+"${rust_args[@]}"} \
            "$work/oracle.txt" >/dev/null
    }
    oracle_rc=0
    run_oracle || oracle_rc=$?
    if [ "$oracle_rc" = 75 ]; then
        # The guest kernel panicked (run-powernv.sh's exit status 75): the
        # kernel's fault, once; twice fails the stage.
        echo "   the PowerNV guest kernel panicked; running the oracle once more"
        oracle_rc=0
        run_oracle || oracle_rc=$?
    fi
    [ "$oracle_rc" = 0 ] || die "the oracle run failed (see its error above); no comparison was made"
    oracle=$work/oracle.txt
else
    oracle=$golden
fi

echo "== ours: the same program under the preload library"
status=0
"$repo/tests/shim/run-conformance.sh" -o "$work/ours.txt" >/dev/null || status=$?
# 0: no failed check, 1: some failed (data, compared below); else broken.
[ "$status" -le 1 ] || die "tests/shim/run-conformance.sh exited $status"
grep -q '^SUMMARY ' "$work/ours.txt" || die "our run has no SUMMARY line: the program did not finish"

echo "== comparison ($(basename "$oracle") against ours)"
result=0
"$compare" "$oracle" "$work/ours.txt" "$unanswerable" >"$work/report.txt" || result=$?
grep -v '^agree ' "$work/report.txt" | grep -v '^unanswerable ' || true
[ "$result" -le 1 ] || die "vfio-conformance-compare could not compare (exit $result)"

rust_result=0
if [ "$offline" = 0 ] && [ -n "$rust" ]; then
    echo "== Rust backend (vfio-eeh-linux-conformance) against the oracle, in the same boot"
    "$compare" "$oracle" "$oracle.rust" "$unanswerable" "$repo/tests/c/rust-backend-unexposed.txt" \
        >"$work/rust-report.txt" || rust_result=$?
    grep -v '^agree ' "$work/rust-report.txt" | grep -v '^unanswerable ' || true
    [ "$rust_result" -le 1 ] || die "vfio-conformance-compare could not compare the Rust checks (exit $rust_result)"
    echo "eehctl's host commands in the guest: $(grep -c '^EEHCTL-CMD' "$oracle.eehctl") answered as expected"
    if grep -q '^EEHD-EXIT ' "$oracle.eehctl"; then
        echo "of them, eehd --host linux answered $(grep -c '^EEHCTL-CMD .*--connect' "$oracle.eehctl") through --connect"
    fi
fi

drift=0
if [ "$offline" = 0 ]; then
    echo "== drift: fresh oracle against the committed $(basename "$golden")"
    if diff -u <(grep -E '^(CHECK|SUMMARY) ' "$golden") <(grep -E '^(CHECK|SUMMARY) ' "$oracle") >"$work/drift.diff"; then
        echo "no drift"
    else
        drift=1
        cat "$work/drift.diff"
        echo "$prog: the real kernel's answers differ from the golden file; review them and refresh it" \
             "(scripts/oracle/run-powernv.sh --refresh, docs/oracle.md)" >&2
    fi
fi

if [ -n "$keep" ]; then
    mkdir -p "$keep"
    cp "$oracle" "$keep/oracle.txt"
    cp "$work/ours.txt" "$work/report.txt" "$keep/"
    if [ -n "$rust" ] && [ "$offline" = 0 ]; then
        cp "$oracle.rust" "$keep/rust.txt"
        cp "$oracle.eehctl" "$keep/eehctl.txt"
        cp "$work/rust-report.txt" "$keep/"
    fi
fi
echo "== $(date +%s | awk -v t0="$t0" '{print $1 - t0}') s"
[ "$result" = 0 ] || die "some answerable checks differ from the oracle (DIFFER/MISSING/STALE above)"
[ "$rust_result" = 0 ] || die "some Rust backend checks differ from the oracle (DIFFER/MISSING/STALE above)"
[ "$drift" = 0 ] || die "the oracle drifted from the golden file"
echo "ok"
