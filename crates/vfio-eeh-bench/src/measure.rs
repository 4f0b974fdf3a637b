//! Quick measurement of every figure taken in one process, for
//! `eehctl bench`: about `11 × budget` of wall time. The memory figure
//! needs its own process ([`crate::memory`]).

use std::hint::black_box;
use std::time::{Duration, Instant};

use serde::Serialize;
use vfio_eeh::rtas::RtasCall;
use vfio_eeh_sim::config::DeactivatePolicy;
use vfio_eeh_sim::guest::Outcome;

use crate::cycle::{cycle_host, GuestCycle, HostCycle, CYCLE_DEVICES};
use crate::downtime::{downtimes, DowntimeFigure};
use crate::resolve::{ResolveTable, RESOLVE_SIZES, RESOLVE_VMS};
use crate::rtas::{null_syscall, RtasBench};
use crate::{ms, pci, FigureError};

/// Nanoseconds per call of `op`: batches sized to about `budget / 8`, the
/// best of five (the least disturbed by other load).
pub fn ns_per_op(budget: Duration, mut op: impl FnMut()) -> f64 {
    let mut n: u64 = 1;
    let target = budget / 8;
    loop {
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        if start.elapsed() >= target / 4 || n >= 1 << 32 {
            break;
        }
        n *= 2;
    }
    let batch = n.saturating_mul(4);
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                op();
            }
            start.elapsed().as_nanos() as f64 / batch as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// Cycles per second of `threads` threads each running `cycle` (made per
/// thread by `make(thread)`) for `duration`, and for one batch of 64 cycles
/// at least (a thread that starts late on a loaded machine still counts).
pub fn cycles_per_sec<C>(
    threads: usize,
    duration: Duration,
    make: impl Fn(usize) -> C + Sync,
    cycle: impl Fn(&mut C) -> bool + Sync,
) -> f64 {
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (make, cycle) = (&make, &cycle);
                s.spawn(move || {
                    let mut c = make(t);
                    let mut n = 0u64;
                    loop {
                        for _ in 0..64 {
                            if cycle(&mut c) {
                                n += 1;
                            }
                        }
                        if start.elapsed() >= duration {
                            break n;
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    #[allow(clippy::cast_precision_loss)] // Counts far below 2^52.
    let rate = total as f64 / start.elapsed().as_secs_f64();
    rate
}

/// What [`measure`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MeasureOptions {
    /// Time spent on each timed figure.
    #[serde(rename = "budget_ms", serialize_with = "serialize_ms")]
    pub budget: Duration,
    /// Threads for the multi-threaded cycle figures (the machine's cores).
    pub threads: usize,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).min(CYCLE_DEVICES.len());
        MeasureOptions { budget: Duration::from_millis(300), threads }
    }
}

/// The machine the figures were taken on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Machine {
    /// CPU model (from `/proc/cpuinfo`, if readable).
    pub cpu: Option<String>,
    /// Logical CPUs available.
    pub cpus: usize,
    /// `std::env::consts::ARCH`.
    pub arch: &'static str,
    /// Whether this is an optimised build.
    pub optimized: bool,
}

impl Machine {
    /// This machine.
    pub fn this() -> Self {
        let cpu = std::fs::read_to_string("/proc/cpuinfo").ok().and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name") || l.starts_with("cpu\t"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        });
        Machine {
            cpu,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            arch: std::env::consts::ARCH,
            optimized: !cfg!(debug_assertions),
        }
    }
}

/// Resolution cost at one table size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ResolveFigure {
    /// Mapped devices.
    pub devices: usize,
    /// VMs they are spread over.
    pub vms: u32,
    /// Nanoseconds per resolution.
    pub ns: f64,
}

/// One RTAS call's cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RtasFigure {
    /// The call.
    pub call: &'static str,
    /// Nanoseconds per call, decode to encode.
    pub ns: f64,
    /// Its cost as a fraction of one null syscall (target ≤ 0.5).
    pub ratio_to_syscall: f64,
}

/// Recovery cycles per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CycleFigure {
    /// `host` (straight on the simulator) or `guest` (the guest model over
    /// RTAS).
    pub path: &'static str,
    /// Threads, each on its own PE of one shared host.
    pub threads: usize,
    /// Cycles per second, all threads together.
    pub per_sec: f64,
}

/// Every figure but memory, which needs a process of its own
/// ([`crate::memory`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    /// Where they were taken.
    pub machine: Machine,
    /// How.
    pub options: MeasureOptions,
    /// Guest address → PE, by table size (target ≤ 100 ns, flat).
    pub resolve: Vec<ResolveFigure>,
    /// `getppid`, the floor of a real host path.
    pub null_syscall_ns: f64,
    /// Whole RTAS calls.
    pub rtas: Vec<RtasFigure>,
    /// Inject → detect → recover cycles (target ≥ 1M/s).
    pub recovery_cycles: Vec<CycleFigure>,
    /// Recovery downtimes (target: ours ≤ 25 % of the baseline).
    pub downtime: Vec<DowntimeFigure>,
}

/// Measures every figure but memory: about `11 × budget` of wall time plus the table
/// builds.
pub fn measure(options: &MeasureOptions) -> Result<Figures, FigureError> {
    let budget = options.budget;
    let resolve = RESOLVE_SIZES
        .iter()
        .map(|&devices| {
            let table = ResolveTable::new(devices, RESOLVE_VMS);
            let mut i = 0usize;
            let ns = ns_per_op(budget, || {
                black_box(table.resolve(i));
                i = i.wrapping_add(1);
            });
            ResolveFigure { devices, vms: RESOLVE_VMS, ns }
        })
        .collect();
    let null_syscall_ns = ns_per_op(budget, || {
        black_box(null_syscall());
    });
    let mut bench = RtasBench::new();
    let rtas_figure = |call: &'static str, ns: f64| RtasFigure { call, ns, ratio_to_syscall: ns / null_syscall_ns };
    let read_ns = ns_per_op(budget, || {
        black_box(bench.read_slot_reset_state2());
    });
    let set_ns = ns_per_op(budget, || {
        black_box(bench.set_eeh_option());
    });
    let rtas = vec![
        rtas_figure(RtasCall::ReadSlotResetState2.name(), read_ns),
        rtas_figure(RtasCall::SetEehOption.name(), set_ns),
    ];
    let mut recovery_cycles = Vec::new();
    let mut thread_counts = vec![1];
    if options.threads > 1 {
        thread_counts.push(options.threads);
    }
    for &threads in &thread_counts {
        let (host, clock) = cycle_host(DeactivatePolicy::Reporting);
        let per_sec = cycles_per_sec(
            threads,
            budget,
            |t| HostCycle::new(host.clone(), clock.clone(), pci(CYCLE_DEVICES[t % CYCLE_DEVICES.len()])),
            |c| c.as_ref().is_ok_and(|c| c.cycle().unwrap_or(false)),
        );
        recovery_cycles.push(CycleFigure { path: "host", threads, per_sec });
    }
    for &threads in &thread_counts {
        let (host, _) = cycle_host(DeactivatePolicy::Blocking);
        let per_sec = cycles_per_sec(
            threads,
            budget,
            |t| GuestCycle::new(host.clone(), pci(CYCLE_DEVICES[t % CYCLE_DEVICES.len()])),
            |c| c.as_mut().is_ok_and(|c| matches!(c.cycle(), Ok(Outcome::Recovered(_)))),
        );
        recovery_cycles.push(CycleFigure { path: "guest", threads, per_sec });
    }
    Ok(Figures {
        machine: Machine::this(),
        options: *options,
        resolve,
        null_syscall_ns,
        rtas,
        recovery_cycles,
        downtime: downtimes()?,
    })
}

fn serialize_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(ms(*d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_measure_produces_every_figure() {
        let figures = measure(&MeasureOptions { budget: Duration::from_millis(5), threads: 2 }).unwrap();
        assert_eq!(figures.resolve.len(), 3);
        assert_eq!(figures.rtas.len(), 2);
        assert_eq!(figures.recovery_cycles.len(), 4);
        assert!(figures.recovery_cycles.iter().all(|c| c.per_sec > 0.0), "{figures:?}");
        assert_eq!(figures.downtime.len(), 4);
        serde_json::to_string(&figures).unwrap();
    }
}
