//! `eehctl bench`: the performance figures of `docs/performance.md`,
//! measured quickly (a few seconds) on this machine, as a table or
//! `--json`. The scenarios are [`vfio_eeh_sim::figures`], the same the
//! criterion benchmarks (`cargo bench`) measure at length.
//!
//! Timed figures are wall-clock and move with the machine's load; the
//! ratios (RTAS call to null syscall, downtime to baseline) travel better.
//! Downtimes are exact virtual time.

use std::time::Duration;

use vfio_eeh_sim::figures::{self, CountingAlloc, Figures, MeasureOptions, CYCLE_DEVICES};

use crate::output::{table, Output};

/// Counts heap bytes so `bench` can weigh the address table. This makes it
/// eehctl's global allocator: the system allocator plus one uncontended
/// relaxed load per call while counting is off (always, outside that
/// weighing), which no command notices.
#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// `eehctl bench` options (`--json` is global).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Milliseconds spent on each timed figure (eleven of them).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub budget_ms: u64,
    /// Threads for the multi-threaded recovery figures, each on its own PE
    /// [default: the cores, at most 2].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=CYCLE_DEVICES.len() as u64))]
    pub threads: Option<u64>,
}

/// Measures every figure and prints them.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    let mut options = MeasureOptions { budget: Duration::from_millis(args.budget_ms), ..MeasureOptions::default() };
    if let Some(threads) = args.threads {
        options.threads = usize::try_from(threads)?;
    }
    tracing::info!("Measuring for about {:.1} s", 11.0 * options.budget.as_secs_f64() + 0.5);
    let figures = figures::measure(&options)?;
    out.print(&figures, || render(&figures))
}

/// A pass/miss mark against a target.
fn mark(ok: bool) -> &'static str {
    if ok {
        "meets"
    } else {
        "misses"
    }
}

/// The human table.
fn render(f: &Figures) -> String {
    let mut t = table(&["figure", "value", "target", ""]);
    for r in &f.resolve {
        t.add_row(vec![
            format!("resolve, {} devices over {} VMs", r.devices, r.vms),
            format!("{:.1} ns", r.ns),
            "≤ 100 ns, flat".to_owned(),
            mark(r.ns <= 100.0).to_owned(),
        ]);
    }
    if let (Some(first), Some(last)) = (f.resolve.first(), f.resolve.last()) {
        t.add_row(vec![
            format!("resolve, {} vs {} devices", last.devices, first.devices),
            format!("{:.2}×", last.ns / first.ns),
            String::new(),
            String::new(),
        ]);
    }
    t.add_row(vec![
        "null syscall (getppid)".to_owned(),
        format!("{:.1} ns", f.null_syscall_ns),
        String::new(),
        String::new(),
    ]);
    for r in &f.rtas {
        t.add_row(vec![
            format!("RTAS {} (whole call)", r.call),
            format!("{:.1} ns = {:.2}× syscall", r.ns, r.ratio_to_syscall),
            "≤ 0.5× syscall".to_owned(),
            mark(r.ratio_to_syscall <= 0.5).to_owned(),
        ]);
    }
    for c in &f.recovery_cycles {
        let (what, target) = match c.path {
            "host" => ("recovery cycles, simulator ops", "≥ 1M/s"),
            _ => ("recovery cycles, guest model over RTAS", "(≥ 1M/s)"),
        };
        t.add_row(vec![
            format!("{what}, {} thread{}", c.threads, if c.threads == 1 { "" } else { "s" }),
            format!("{:.0}/s", c.per_sec),
            target.to_owned(),
            mark(c.per_sec >= 1e6).to_owned(),
        ]);
    }
    match &f.mapping_memory {
        Some(m) => t.add_row(vec![
            format!("memory per mapping, {} entries", m.entries),
            format!("{:.1} B", m.bytes_per_entry),
            "≤ 64 B".to_owned(),
            mark(m.bytes_per_entry <= 64.0).to_owned(),
        ]),
        None => t.add_row(vec![
            "memory per mapping".to_owned(),
            "not measured".to_owned(),
            "≤ 64 B".to_owned(),
            String::new(),
        ]),
    };
    for d in &f.downtime {
        let is_ours = d.case.name == "ours";
        t.add_row(vec![
            format!("downtime, {}", d.case.name),
            format!("{:.0} ms = {:.1} %", d.downtime_ms, 100.0 * d.ratio_to_baseline),
            if is_ours { "≤ 25 %".to_owned() } else { String::new() },
            if is_ours { mark(d.ratio_to_baseline <= 0.25).to_owned() } else { String::new() },
        ]);
    }
    let m = &f.machine;
    format!(
        "{t}\n\nmachine: {} ({} CPUs, {}){}; {} ms per timed figure. Downtimes are virtual time; see docs/performance.md.\n",
        m.cpu.as_deref().unwrap_or("unknown CPU"),
        m.cpus,
        m.arch,
        if m.optimized { "" } else { ", DEBUG BUILD: timings are not representative" },
        f.options.budget.as_millis(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_figure_and_weighs_the_table() {
        let figures =
            figures::measure(&MeasureOptions { budget: Duration::from_millis(2), threads: 2 }).expect("figures");
        let memory = figures.mapping_memory.expect("the counting allocator is installed");
        assert!(memory.bytes_per_entry > 0.0);
        let text = render(&figures);
        for needle in [
            "resolve, 65536 devices",
            "getppid",
            "read-slot-reset-state2",
            "2 threads",
            "memory per mapping",
            "downtime, ours",
        ] {
            assert!(text.contains(needle), "{needle:?} missing from\n{text}");
        }
    }
}
