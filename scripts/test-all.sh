#!/usr/bin/env bash
# Runs every test of vfio-eeh on a fresh Debian 12 machine: installs what is
# missing (as root, via apt-get), then formatting, lints, unit, property,
# header-comparison and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each stage's header carries the run's elapsed time, so a CI log shows
# where its minutes go.
stage() { echo "== $* [$((SECONDS / 60))m$((SECONDS % 60))s]"; }

# background NAME COMMAND...: starts COMMAND in the background, its output
# kept for `collect NAME`.
declare -A background_pid background_log
background() {
    local name=$1
    shift
    background_log[$name]=$(mktemp)
    "$@" >"${background_log[$name]}" 2>&1 &
    background_pid[$name]=$!
}
# collect NAME: waits for what `background NAME` started, prints its
# output, and fails the run if it failed.
collect() {
    local status=0
    wait "${background_pid[$1]}" || status=$?
    cat "${background_log[$1]}"
    rm -f "${background_log[$1]}"
    if [[ $status != 0 ]]; then
        echo "error: $1 failed (exit $status)" >&2
        exit 1
    fi
}

# Debian packages the tests need: C compilers and the UAPI headers for the
# header comparisons.
need_pkgs=()
need() { dpkg -s "$1" >/dev/null 2>&1 || need_pkgs+=("$1"); }
need gcc
need linux-libc-dev
need gcc-powerpc64le-linux-gnu
need libc6-dev-ppc64el-cross
if ((${#need_pkgs[@]})); then
    stage "installing ${need_pkgs[*]}"
    if [[ $(id -u) -ne 0 ]]; then
        echo "error: missing packages ${need_pkgs[*]}; run as root or install them" >&2
        exit 1
    fi
    apt-get update -qq || echo "warning: apt-get update reported errors; trying the install anyway" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

stage "cargo fmt --check"
cargo fmt --all -- --check
stage "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The preload library's entry points and the fuzzing entry point exist only
# with their features.
cargo clippy -p vfio-shim --all-targets --locked --features preload -- -D warnings
cargo clippy -p vfio-shim --all-targets --locked --features fuzzing -- -D warnings
# The nextest run includes tests/c/shim_hardening.c (built with gcc and run
# under the preload library by crates/vfio-shim/tests/hardening.rs) and
# tests/c/vfio_eeh_rtas.c (crates/vfio-shim/tests/rtas.rs).
stage "cargo test"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    # vfio-shim's unit tests again with its `fuzzing` feature, which adds the
    # fuzzing entry point and its own test (none is filtered out).
    cargo nextest run -p vfio-shim --locked --features fuzzing --lib
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
    cargo test -p vfio-shim --locked --features fuzzing --lib
fi

# ---- real-guest end to end (tests/qemu/e2e.sh) ------------------------------
# QEMU pseries with Debian's ppc64le kernel, the simulated device passed
# through the preload library: a freeze recovered (sPAPR TCE v2 and type1v2)
# and the permanent failure past eeh_max_freezes; and the guest's nvme driver
# with the block I/O workload against QEMU's own -device nvme (nvme-baseline,
# ~40 s) and against our simulated NVMe controller passed through, a freeze
# recovered by the driver and a permanent failure, in both IOMMU modes
# (~3 min). Installs qemu-system-ppc, fetches the kernel and busybox
# (cached). One after another the runs take about 6 minutes; in two lanes
# (one guest per core) about half that.
stage "real pseries guest end to end (tests/qemu/e2e.sh)"
tests/qemu/e2e.sh --jobs 2

# ---- guests sharing one eehd (tests/qemu/shared-host.sh) -----------------------
# Two pseries guests booted at once under one eehd (the preload library as
# its client, docs/shared-host.md): one guest's freeze leaves the other's
# reads intact, a PHB fence reaches both, kill -9 of eehd and a restart
# keep both running; events followed live per VM. Then a third guest's nvme
# driver drives the controller model in eehd (DMA and interrupts through
# eehd) across a freeze. About 3 minutes, most of it waiting on the guests'
# own sleeps and timeouts: it runs in the background while the ppc64le
# cross build below keeps the cores busy, and its output is printed when it
# ends.
stage "guests sharing one eehd (tests/qemu/shared-host.sh), in the background"
background tests/qemu/shared-host.sh tests/qemu/shared-host.sh

# ---------------------------------------------------------------------------
# ppc64le: the cross build with Debian's rustc-web and its ppc64el std
# (fetched into ~/.cache/vfio-eeh, nothing installed), then the pure crates'
# test harnesses under qemu-ppc64le-static. The binaries it builds also run
# in the oracle's Linux 6.12 PowerNV guest below (the Rust backend's checks,
# eehctl's host commands and eehd --host linux). Measured on 2 cores with
# other load: from a clean target directory 313 s (binaries 193 s, test
# harnesses 120 s); after a change to the workspace crates 88-355 s (they
# rebuild in release for ppc64le); nothing changed, about 1 s. The harnesses
# under qemu-ppc64le-static take about 3 s.
# VFIO_EEH_SKIP_CROSS=1 skips it (and the Rust side of the oracle stage).
cross_dir=''
if [[ ${VFIO_EEH_SKIP_CROSS:-0} != 1 ]]; then
    stage "ppc64le cross build (scripts/cross/build-ppc64le.sh)"
    cross_target=$(scripts/cross/build-ppc64le.sh | tail -n1)
    cross_dir=$cross_target/powerpc64le-unknown-linux-gnu/release
    stage "ppc64le test binaries under qemu-ppc64le-static (scripts/cross/run-ppc64le-tests.sh)"
    scripts/cross/run-ppc64le-tests.sh "$cross_target"
fi

stage "guests sharing one eehd (tests/qemu/shared-host.sh): its output"
collect tests/qemu/shared-host.sh

# ---------------------------------------------------------------------------
# Differential conformance against real Linux (docs/oracle.md): the C
# conformance program on Linux 6.12 under QEMU powernv9 and under our preload
# library, compared check by check; also the fresh oracle against the golden
# file. About 1 minute (QEMU ~35 s, downloads cached in ~/.cache/vfio-eeh);
# 85-100 s with the Rust side (one boot of about 55 s).
# VFIO_EEH_SKIP_ORACLE=1 compares with the golden file only (no QEMU).
# The PowerNV guest keeps one core busy: it runs in the background during
# the fuzz stage (one fuzzer at a time) and its output is printed after it.
stage "differential conformance (scripts/conformance/compare.sh), in the background"
if [[ ${VFIO_EEH_SKIP_ORACLE:-0} == 1 ]]; then
    background scripts/conformance/compare.sh timeout 600 scripts/conformance/compare.sh --offline
else
    # The same boot runs the Rust backend's checks and eehctl's host
    # commands when the cross build ran.
    background scripts/conformance/compare.sh \
        timeout 900 scripts/conformance/compare.sh ${cross_dir:+--rust "$cross_dir"}
fi

# ---------------------------------------------------------------------------
# A short fuzz run of every cargo-fuzz target (fuzz/, scripts/fuzz.sh): the
# RTAS firmware, topology files, address text, VFIO_EEH_PE_OP arguments,
# the emulated /dev/vfio's ioctl surface and the simulated NVMe controller's
# command path, from the committed seeds.
# VFIO_EEH_FUZZ_SECONDS sets the time per target (default 15);
# VFIO_EEH_SKIP_FUZZ=1 skips the stage.
if [[ ${VFIO_EEH_SKIP_FUZZ:-0} != 1 ]]; then
    stage "fuzzing (scripts/fuzz.sh)"
    if ! cargo fuzz --version >/dev/null 2>&1; then
        cargo install --locked cargo-fuzz
    fi
    # libFuzzer prints a line per new input: keep it in a log, show the
    # per-target totals, and the log's end if a target fails.
    fuzz_log=$(mktemp)
    if timeout 1200 scripts/fuzz.sh "${VFIO_EEH_FUZZ_SECONDS:-15}" >"$fuzz_log" 2>&1; then
        grep -E '^== fuzz|stat::number_of_executed_units|stat::new_units_added' "$fuzz_log"
    else
        tail -n 200 "$fuzz_log"
        echo "error: fuzzing failed (full log: $fuzz_log)" >&2
        exit 1
    fi
    rm -f "$fuzz_log"
fi

stage "differential conformance (scripts/conformance/compare.sh): its output"
collect scripts/conformance/compare.sh
stage "done"
