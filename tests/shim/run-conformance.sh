#!/usr/bin/env bash
# Builds tests/c/vfio_eeh_conformance.c with gcc and runs it under the
# vfio-eeh preload library (crates/vfio-shim) against the simulator's
# built-in host, printing the CHECK lines (and saving them with -o FILE).
#
#   tests/shim/run-conformance.sh [-o FILE] [--group N] [--device BDF] [--release]
#
# Environment: CARGO_TARGET_DIR (default <repo>/target), SHIM_LIBRARY (use
# this .so instead of building one), any VFIO_EEH_SHIM_* variable
# (crates/vfio-shim/src/config.rs) is passed to the program.
# Exit status: the program's (0 no failed check, 1 some failed), 2 usage,
# 3 build failure.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out= group=0 device=0000:01:00.0 profile=debug cargo_profile=()
while [ $# -gt 0 ]; do
	case $1 in
	-o) out=$2; shift 2 ;;
	--group) group=$2; shift 2 ;;
	--device) device=$2; shift 2 ;;
	--release) profile=release cargo_profile=(--release); shift ;;
	-h|--help) sed -n '2,13p' "$0"; exit 0 ;;
	*) echo "run-conformance: unknown argument $1" >&2; exit 2 ;;
	esac
done

target=${CARGO_TARGET_DIR:-$repo/target}
lib=${SHIM_LIBRARY:-}
if [ -z "$lib" ]; then
	(cd "$repo" && cargo build --quiet -p vfio-shim --features preload "${cargo_profile[@]}") || exit 3
	lib=$target/$profile/libvfio_eeh_shim.so
fi
[ -f "$lib" ] || { echo "run-conformance: no preload library at $lib" >&2; exit 3; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -Wall -Wextra -Werror -o "$work/vfio_eeh_conformance" "$repo/tests/c/vfio_eeh_conformance.c" || exit 3

set +e
LD_PRELOAD=$lib "$work/vfio_eeh_conformance" "$group" "$device" >"$work/out.txt"
status=$?
set -e
cat "$work/out.txt"
if [ -n "$out" ]; then
	cp "$work/out.txt" "$out"
fi
exit $status
