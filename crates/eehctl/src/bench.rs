//! `eehctl bench`: the performance figures of `docs/performance.md`,
//! measured quickly (a few seconds) on this machine, as a table or
//! `--json`. The scenarios are the bench crate's ([`vfio_eeh_bench`]), the
//! same the criterion benchmarks (`cargo bench -p vfio-eeh-bench`) measure
//! at length.
//!
//! The memory figure needs a counting global allocator, which eehctl does
//! not carry: a helper binary, `eehctl-bench-memory` (built next to
//! eehctl), weighs the address table in a process of its own and prints the
//! figure. Without it the memory figure is reported as not measured, with
//! the reason, and the others still are.
//!
//! Timed figures are wall-clock and move with the machine's load; the
//! ratios (RTAS call to null syscall, downtime to baseline) travel better.
//! Downtimes are exact virtual time.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use serde::Serialize;
use vfio_eeh_bench::cycle::CYCLE_DEVICES;
use vfio_eeh_bench::measure::{self, Figures, MeasureOptions};
use vfio_eeh_bench::memory::MemoryFigure;

use crate::output::{table, Output};

/// The helper binary that weighs the address table, next to eehctl.
const MEMORY_BIN: &str = "eehctl-bench-memory";
/// Names the helper when `--memory-bin` is not given.
const ENV_MEMORY_BIN: &str = "EEHCTL_BENCH_MEMORY";

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
    /// The helper that weighs the address table [default:
    /// eehctl-bench-memory next to eehctl].
    #[arg(long, value_name = "PATH", env = ENV_MEMORY_BIN)]
    pub memory_bin: Option<PathBuf>,
}

/// What `eehctl bench` prints: the figures measured in this process and
/// the memory figure weighed in the helper's.
#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    figures: Figures,
    /// Memory per mapping (target ≤ 64 B); `None` when not measured.
    mapping_memory: Option<MemoryFigure>,
    /// Why the memory figure was not measured.
    #[serde(skip_serializing_if = "Option::is_none")]
    mapping_memory_unavailable: Option<String>,
}

/// Runs the helper `bin` (default: [`MEMORY_BIN`] next to this executable)
/// and reads the memory figure it prints.
fn weigh_memory(bin: Option<&Path>) -> anyhow::Result<MemoryFigure> {
    let bin = match bin {
        Some(bin) => bin.to_owned(),
        None => std::env::current_exe().context("Cannot find eehctl's own path")?.with_file_name(MEMORY_BIN),
    };
    if !bin.is_file() {
        bail!(
            "No {} (build it with `cargo build -p eehctl`, or name it with --memory-bin / {ENV_MEMORY_BIN})",
            bin.display()
        );
    }
    let output = Command::new(&bin)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("Cannot run {}", bin.display()))?;
    if !output.status.success() {
        bail!("{} failed: {}", bin.display(), output.status);
    }
    serde_json::from_slice(&output.stdout).with_context(|| format!("{} printed no memory figure", bin.display()))
}

/// Measures every figure and prints them.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<()> {
    let mut options = MeasureOptions { budget: Duration::from_millis(args.budget_ms), ..MeasureOptions::default() };
    if let Some(threads) = args.threads {
        options.threads = usize::try_from(threads)?;
    }
    tracing::info!("Measuring for about {:.1} s", 11.0 * options.budget.as_secs_f64() + 0.5);
    // The helper first, alone, so that it does not disturb the timed figures.
    let memory = weigh_memory(args.memory_bin.as_deref()).map_err(|e| format!("{e:#}"));
    if let Err(reason) = &memory {
        tracing::warn!("Memory per mapping not measured: {reason}");
    }
    let report = Report {
        figures: measure::measure(&options)?,
        mapping_memory: memory.as_ref().ok().copied(),
        mapping_memory_unavailable: memory.err(),
    };
    out.print(&report, || render(&report))
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
fn render(report: &Report) -> String {
    let f = &report.figures;
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
    match &report.mapping_memory {
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
    let unmeasured = match &report.mapping_memory_unavailable {
        Some(reason) => format!("\nmemory per mapping not measured: {reason}\n"),
        None => String::new(),
    };
    format!(
        "{t}\n\nmachine: {} ({} CPUs, {}){}; {} ms per timed figure. Downtimes are virtual time; see docs/performance.md.\n{unmeasured}",
        m.cpu.as_deref().unwrap_or("unknown CPU"),
        m.cpus,
        m.arch,
        if m.optimized { "" } else { ", DEBUG BUILD: timings are not representative" },
        f.options.budget.as_millis(),
    )
}
