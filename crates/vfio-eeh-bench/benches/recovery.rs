//! Inject → detect → full recovery cycles on the simulator, single-threaded
//! and with one thread per core (each thread on its own PE of one shared
//! host, one shared virtual clock). Two paths:
//!
//! * `host`: the op sequence straight on the simulator (arm, MMIO load
//!   fires, state, log, hot reset, deassert, settle on the virtual clock,
//!   device answers);
//! * `guest`: the Linux guest model's whole recovery over RTAS (about 15
//!   RTAS calls, BAR save and restore).
//!
//! Target ≥ 1M cycles/s. After criterion's report, prints the (exact,
//! virtual-clock) recovery downtimes under the QEMU/Linux host policy and
//! ours.
//!
//! `cargo bench -p vfio-eeh-bench --bench recovery`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use vfio_eeh::addr::PciAddr;
use vfio_eeh_bench::cycle::{cycle_host, GuestCycle, HostCycle, CYCLE_DEVICES};
use vfio_eeh_bench::downtime::downtimes;
use vfio_eeh_sim::config::DeactivatePolicy;
use vfio_eeh_sim::guest::Outcome;

fn device(t: usize) -> PciAddr {
    let (d, b, s, f) = CYCLE_DEVICES[t % CYCLE_DEVICES.len()];
    PciAddr::new(d, b, s, f).expect("a built-in device")
}

/// Runs `iters` cycles split over the threads, one per element of
/// `cycles`; the wall time.
fn threaded<C: Send>(iters: u64, cycles: &mut [C], run: impl Fn(&mut C) + Sync) -> Duration {
    let per_thread = iters.div_ceil(cycles.len() as u64);
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in cycles.iter_mut() {
            let run = &run;
            s.spawn(move || {
                for _ in 0..per_thread {
                    run(c);
                }
            });
        }
    });
    start.elapsed()
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()).min(CYCLE_DEVICES.len());
    let mut group = c.benchmark_group("recovery_cycle");
    group.throughput(Throughput::Elements(1));
    let thread_counts = if cores > 1 { vec![1, cores] } else { vec![1] };
    for threads in thread_counts {
        group.bench_function(BenchmarkId::new("host", format!("{threads}_threads")), |b| {
            let (host, clock) = cycle_host(DeactivatePolicy::Reporting);
            let mut cycles: Vec<HostCycle> = (0..threads)
                .map(|t| HostCycle::new(host.clone(), clock.clone(), device(t)).expect("a built-in PE"))
                .collect();
            b.iter_custom(|iters| {
                threaded(iters, &mut cycles, |c| assert!(c.cycle().expect("host ops succeed"), "not recovered"))
            });
        });
        group.bench_function(BenchmarkId::new("guest", format!("{threads}_threads")), |b| {
            let (host, _) = cycle_host(DeactivatePolicy::Blocking);
            let mut cycles: Vec<GuestCycle> =
                (0..threads).map(|t| GuestCycle::new(host.clone(), device(t)).expect("a built-in PE")).collect();
            b.iter_custom(|iters| {
                threaded(iters, &mut cycles, |c| {
                    assert!(matches!(c.cycle(), Ok(Outcome::Recovered(_))), "not recovered");
                })
            });
        });
    }
    group.finish();
    c.final_summary();

    println!("\nrecovery downtime on the virtual clock (built-in NVMe, ready 200 ms after reset):");
    for f in downtimes().expect("every case recovers") {
        println!(
            "  {:<32} {:>8.1} ms  {:>5.1} % of baseline  ({})",
            f.case.name,
            f.downtime_ms,
            100.0 * f.ratio_to_baseline,
            f.case.about
        );
    }
}
