#!/usr/bin/env bash
# Run the ppc64le test harnesses that scripts/cross/build-ppc64le.sh built,
# under qemu-ppc64le-static (from Debian's qemu-user-static, unpacked into
# the cache by scripts/fetch-deb.sh; no binfmt registration needed).
#
#   scripts/cross/run-ppc64le-tests.sh TARGET_DIR
#
# TARGET_DIR is what build-ppc64le.sh printed; its ppc64le-tests.txt lists
# cargo's test harnesses only (never the programs themselves). Each runs in
# its crate's directory, as cargo runs it. Left out, by name (left_out
# below, with the reason printed):
#   * eehctl's integration tests: they run the ppc64le eehctl, and without
#     binfmt a ppc64le program cannot start another ppc64le program;
#   * vfio-eeh's uapi_header: it compares the HOST's <linux/vfio.h> with the
#     Rust uapi and compiles C with the host's gcc, which says nothing about
#     ppc64le (the x86_64 run covers it);
#   * single tests that rerun themselves as another user (SKIPS below).
# The real kernel runs eehctl itself (scripts/oracle/eehctl-checks.sh).
set -euo pipefail

prog=run-ppc64le-tests.sh
die() { echo "$prog: error: $*" >&2; exit 1; }
[ $# = 1 ] || die "usage: $prog TARGET_DIR"
out=$1
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
list=$out/ppc64le-tests.txt
[ -s "$list" ] || die "$list is missing or empty (run scripts/cross/build-ppc64le.sh)"

# Tests that rerun their own binary through setpriv (a host program, which
# cannot exec a ppc64le binary without binfmt).
SKIPS=(unreadable_files_are_problems_naming_their_paths)

qemu_dir=$("$repo/scripts/fetch-deb.sh" --suite bookworm --arch amd64 --no-resolve qemu-user-static | tail -n1) ||
    die "could not fetch qemu-user-static (amd64)"
qemu=$qemu_dir/usr/bin/qemu-ppc64le-static
[ -x "$qemu" ] || die "no usr/bin/qemu-ppc64le-static in $qemu_dir"

# Why a harness is left out, or nothing: CRATE KIND NAME.
left_out() {
    case "$1 $2 $3" in
        "eehctl test "*) echo "runs the ppc64le eehctl; needs binfmt" ;;
        "vfio-eeh test uapi_header") echo "compares the host's (x86_64) vfio.h and compiles with the host's gcc" ;;
    esac
}

skip_args=()
for s in "${SKIPS[@]}"; do skip_args+=(--skip "$s"); done
t0=$(date +%s)
ran=0 failed=()
while read -r crate kind name bin; do
    [ -n "$bin" ] || die "$list: '$crate $kind $name' has no path (rerun scripts/cross/build-ppc64le.sh)"
    why=$(left_out "$crate" "$kind" "$name")
    if [ -n "$why" ]; then
        echo "-- $crate $kind $name: left out ($why)"
        continue
    fi
    dir=$repo/crates/$crate
    [ -d "$dir" ] || die "no crate directory $dir for $bin"
    log=$(mktemp)
    if (cd "$dir" && INSTA_WORKSPACE_ROOT=$repo INSTA_UPDATE=no "$qemu" "$bin" -q "${skip_args[@]}") >"$log" 2>&1; then
        echo "-- $crate $kind $name: $(grep -E '^test result' "$log" | tail -n1)"
    else
        cat "$log"
        failed+=("$crate $kind $name")
    fi
    rm -f "$log"
    ran=$((ran + 1))
done <"$list"
echo "-- $ran test harnesses in $(( $(date +%s) - t0 )) s"
[ ${#failed[@]} = 0 ] || die "failed under qemu-ppc64le-static: ${failed[*]}"
