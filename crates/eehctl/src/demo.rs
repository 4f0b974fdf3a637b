//! `eehctl demo`: the main job. A VM on the simulated PowerNV host, a guest
//! workload of MMIO traffic, a seeded campaign of injected errors, the guest
//! model recovering from each; prints the timeline and a per-PE table.
//!
//! It always runs on the simulator (on a virtual clock, so it takes
//! milliseconds and the same seed gives the same output): injecting errors
//! into a real host's devices is not a demonstration.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use vfio_eeh_sim::demo::{self, DemoConfig, DemoReport};
use vfio_eeh_sim::vmm::EehModel;

use crate::daemon_demo;
use crate::host::{HostArgs, HostChoice};
use crate::output::{table, Output};

/// `eehctl demo` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Seed of the error campaign.
    #[arg(long, default_value_t = DemoConfig::default().seed)]
    seed: u64,
    /// Errors to inject.
    #[arg(long, default_value_t = DemoConfig::default().errors)]
    errors: u32,
    /// Workload rounds (50 ms of guest time each).
    #[arg(long, default_value_t = DemoConfig::default().rounds)]
    rounds: u32,
    /// The guest's freeze limit per hour (`eeh_max_freezes`).
    #[arg(long, default_value_t = DemoConfig::default().max_freezes)]
    max_freezes: u32,
    /// How the VMM reaches the host: the seed's host-held mapping, or
    /// upstream's VFIO_EEH_PE_OP on a container per PE.
    #[arg(long, value_enum, default_value_t = Model::HostMapping)]
    model: Model,
    /// Run the demo through a real eehd process (started on the simulated
    /// host with a virtual clock, private socket and state): every RTAS
    /// call, device access, sleep and injection goes through the daemon.
    #[arg(long)]
    daemon: bool,
    /// The eehd binary for --daemon [default: the one next to eehctl].
    #[arg(long, value_name = "PATH", requires = "daemon")]
    eehd: Option<PathBuf>,
}

/// `--model` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Model {
    HostMapping,
    Container,
}

/// Runs the demo; fails if a recovery that should have succeeded did not.
pub fn run(host: &HostArgs, args: &Args, out: &Output) -> anyhow::Result<()> {
    if host.host == HostChoice::Linux {
        bail!("The demo runs on the simulated host only (--host sim or auto)");
    }
    if args.daemon && matches!(args.model, Model::Container) {
        bail!("eehd serves RTAS with the host-held mapping: --daemon runs the host-mapping model only");
    }
    let model = match args.model {
        Model::HostMapping => EehModel::HostMapping,
        Model::Container => EehModel::Container,
    };
    let config = DemoConfig {
        seed: args.seed,
        errors: args.errors,
        rounds: args.rounds,
        max_freezes: args.max_freezes,
        model,
        ..DemoConfig::default()
    };
    let report = if args.daemon {
        daemon_demo::run(config, &daemon_demo::locate(args.eehd.as_deref())?)?
    } else {
        demo::run(config)?
    };
    out.print(&report, || human(&report))?;
    let unexpected = report.unexpected();
    if !unexpected.is_empty() {
        bail!("PEs {unexpected:?} did not end as expected (a recovery failed or a failure was missed)");
    }
    Ok(())
}

fn seconds(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn human(report: &DemoReport) -> String {
    let mut text = String::new();
    let c = &report.config;
    let _ = writeln!(
        text,
        "Simulated PowerNV host, one VM ({:?} model), {} errors from seed {}, {} workload rounds\n",
        c.model, c.errors, c.seed, c.rounds
    );
    let mut timeline = table(&["time (s)", "PE", "side", "event"]);
    for entry in &report.timeline {
        timeline.add_row(vec![seconds(entry.at), entry.pe.to_string(), entry.side.to_string(), entry.event.clone()]);
    }
    let _ = writeln!(text, "Timeline\n{timeline}\n");
    let mut pes =
        table(&["PE", "devices (host -> guest)", "injected", "freezes", "recovered", "downtime (s)", "final"]);
    for row in &report.pes {
        let devices: Vec<String> = row.devices.iter().map(|d| format!("{} -> {}", d.host, d.guest)).collect();
        let last = if row.failed { "failed (removed)".to_string() } else { row.host_state.to_string() };
        pes.add_row(vec![
            row.pe.to_string(),
            devices.join("\n"),
            row.injected.to_string(),
            row.freezes.to_string(),
            row.recoveries.to_string(),
            seconds(row.downtime),
            last,
        ]);
    }
    let _ = writeln!(text, "Per PE\n{pes}\n");
    let _ = writeln!(text, "{} s of guest time simulated", seconds(report.elapsed));
    text
}
