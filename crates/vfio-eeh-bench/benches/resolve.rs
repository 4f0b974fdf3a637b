//! Guest (BUID, config address) → host device and PE, in address tables of
//! 1, 1K and 64K mapped functions spread over 256 VMs. The cost should stay
//! flat as the table grows (target ≤ 100 ns).
//!
//! `cargo bench -p vfio-eeh-bench --bench resolve`

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use vfio_eeh_bench::resolve::{ResolveTable, RESOLVE_SIZES, RESOLVE_VMS};

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("resolve");
    group.throughput(Throughput::Elements(1));
    for devices in RESOLVE_SIZES {
        let table = ResolveTable::new(devices, RESOLVE_VMS);
        group.bench_with_input(BenchmarkId::new("devices_over_256_vms", devices), &table, |b, table| {
            let mut i = 0usize;
            b.iter(|| {
                i = i.wrapping_add(1);
                black_box(table.resolve(i))
            });
        });
    }
    group.finish();
    c.final_summary();
}
