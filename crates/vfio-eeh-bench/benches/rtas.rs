//! A whole RTAS EEH call (decode → resolve → simulator op → encode) for
//! `read-slot-reset-state2` and `set-eeh-option`, against the cost of one
//! trivial system call (`getppid`) measured in the same run: every real path
//! from a VMM to the host costs at least that. Target: a call ≤ 0.5× the
//! syscall. After criterion's report, prints the ratios.
//!
//! `cargo bench -p vfio-eeh-bench --bench rtas`

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput};
use vfio_eeh_bench::measure::ns_per_op;
use vfio_eeh_bench::rtas::{null_syscall, RtasBench};

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut bench = RtasBench::new();
    let mut group = c.benchmark_group("rtas");
    group.throughput(Throughput::Elements(1));
    group.bench_function("null_syscall_getppid", |b| b.iter(null_syscall));
    group.bench_function("read_slot_reset_state2", |b| b.iter(|| black_box(bench.read_slot_reset_state2())));
    group.bench_function("set_eeh_option_enable", |b| b.iter(|| black_box(bench.set_eeh_option())));
    group.finish();
    c.final_summary();

    // Criterion does not hand its estimates back; take the ratio from one
    // more short, interleaved measurement (best of five batches each).
    if std::env::args().any(|a| a == "--bench") {
        let budget = Duration::from_millis(500);
        let syscall = ns_per_op(budget, || {
            black_box(null_syscall());
        });
        let read = ns_per_op(budget, || {
            black_box(bench.read_slot_reset_state2());
        });
        let set = ns_per_op(budget, || {
            black_box(bench.set_eeh_option());
        });
        println!("ratio to one getppid ({syscall:.1} ns): read-slot-reset-state2 {:.3}, set-eeh-option {:.3} (target <= 0.5)", read / syscall, set / syscall);
    }
}
