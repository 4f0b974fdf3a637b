#!/usr/bin/env bash
# Runs every fuzz target for N seconds each (default 60), starting from the
# committed seeds (fuzz/seeds/<target>) plus what earlier runs found
# (fuzz/corpus/<target>, not committed). A crash leaves its input in
# fuzz/artifacts/<target>/ and makes this script fail.
#
#   scripts/fuzz.sh            # 60 s per target
#   scripts/fuzz.sh 600 rtas   # 10 min on one target
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a C++ compiler. On a
# stable toolchain RUSTC_BOOTSTRAP=1 lets cargo-fuzz's sanitizer flags
# through.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds=${1:-60}
shift || true
targets=("$@")
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "error: cargo-fuzz is missing; install it with: cargo install cargo-fuzz" >&2
    exit 1
fi
if ((${#targets[@]} == 0)); then
    mapfile -t targets < <(RUSTC_BOOTSTRAP=1 cargo fuzz list)
fi

export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
status=0
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    if ! cargo fuzz run -O "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096; then
        echo "!! $target failed; see fuzz/artifacts/$target/" >&2
        status=1
    fi
done
exit "$status"
