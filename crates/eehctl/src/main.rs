//! `eehctl`: drive EEH on a simulated or a real host.
//!
//! `main` parses the command line, sets up logging on stderr and hands the
//! command to its module; each command is one module with an `Args` struct
//! and a `run` function. Exit codes: 0 ok, 1 failure, 2 usage; `shim -- COMMAND`
//! exits with the command's status.

mod bench;
mod connect;
mod daemon_demo;
mod demo;
mod events;
mod host;
mod inject;
mod linux_host;
mod model_ops;
mod oplog;
mod output;
mod shim;
mod socket;
mod state;
mod topo;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Drive PowerPC EEH on a simulated or a real (VFIO) host.
#[derive(Debug, Parser)]
#[command(name = "eehctl", version, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    global: host::HostArgs,
    /// Print JSON on stdout instead of tables.
    #[arg(long, global = true)]
    json: bool,
    /// More logging on stderr (-v debug, -vv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Measure the hot paths on this machine (seconds): resolution, RTAS
    /// calls against a null syscall, recovery cycles, memory, downtime.
    Bench(bench::Args),
    /// The main job: a VM on the simulated host recovers from seeded errors;
    /// prints a timeline and a per-PE table.
    Demo(demo::Args),
    /// Show PHBs, IOMMU groups (PEs) and devices, with passthrough readiness.
    Topo(topo::Args),
    /// Prepare simulated devices for a VMM under the preload library (sysfs
    /// directories, environment, control socket) and optionally run it.
    Shim(shim::Args),
    /// Inject an error into a PE of the simulated host inside a running VMM
    /// (or of the host eehd serves, with --connect).
    Inject(inject::Args),
    /// Show the PEs of the simulated host inside a running VMM (or of the
    /// host eehd serves, with --connect).
    State(state::Args),
    /// Show the simulator's events inside a running VMM (or follow a VM's
    /// events in eehd, with --connect).
    Events(events::Args),
    /// Show the VFIO/EEH operations a running VMM issued on the emulated /dev/vfio.
    Oplog(oplog::Args),
    /// Show or change a VM's address map, claims and virtual PHBs in eehd.
    Map(connect::MapArgs),
    /// Reset a PE a VM claimed in eehd (assert, hold, deactivate).
    Reset(connect::ResetArgs),
    /// Every VM's PHBs, claims and mappings in eehd.
    Claims(connect::ClaimsArgs),
    /// Read or set the kernel's eeh_max_freezes (debugfs) on a Linux host.
    MaxFreezes(MaxFreezesArgs),
    /// The guest model's VFIO_EEH_PE_OP sequence for a frozen device with no
    /// guest driver, to compare with a real guest's op log.
    ModelOps(model_ops::Args),
}

/// `eehctl max-freezes` options.
#[derive(Debug, clap::Args)]
struct MaxFreezesArgs {
    /// The new limit of freezes per PE in an hour; without it, prints the current one.
    value: Option<u32>,
}

impl Command {
    /// Whether a command that also acts on a Linux host was given `--connect`.
    fn asks_eehd(&self) -> bool {
        let daemon = match self {
            Command::State(args) => &args.daemon,
            Command::Inject(args) => &args.daemon,
            Command::Events(args) => &args.daemon,
            _ => return false,
        };
        daemon.connect.is_some()
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(conflict) = cli.global.conflict() {
        Cli::command().error(clap::error::ErrorKind::ArgumentConflict, conflict).exit();
    }
    let level = match cli.verbose {
        0 => tracing::Level::INFO,
        1 => tracing::Level::DEBUG,
        _ => tracing::Level::TRACE,
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .without_time()
        .init();
    let out = output::Output { json: cli.json };
    // A command's own status where it has one (`shim -- COMMAND`).
    let mut exit = ExitCode::SUCCESS;
    // Each command picks its host. `topo` needs no EEH, so `--host auto`
    // takes Linux wherever sysfs lists devices; `demo` and `bench` run on the
    // simulator.
    let linux = cli.global.host == host::HostChoice::Linux;
    if linux && cli.command.asks_eehd() {
        let conflict = "--host linux acts on this host, --connect on the host an eehd serves: give one";
        Cli::command().error(clap::error::ErrorKind::ArgumentConflict, conflict).exit();
    }
    let result = match cli.command {
        Command::Bench(args) => bench::run(&args, &out),
        Command::Demo(args) => demo::run(&cli.global, &args, &out),
        Command::Topo(args) => host::select(&cli.global, false).and_then(|host| topo::run(&host, &args, &out)),
        // The shim's commands act on the simulated host of the preload
        // library (in a VMM process), whatever `--host` says.
        Command::Shim(args) => shim::run(&args, &out).map(|code| exit = code),
        // With `--host linux` they act on this host instead (linux_host).
        Command::Inject(args) if linux => {
            inject::linux_request(&args).and_then(|request| linux_host::inject(&cli.global, &request, &out))
        }
        Command::State(args) if linux => linux_host::state(&cli.global, args.vfio, &out),
        Command::Events(args) if linux => linux_host::events(&cli.global, args.pe, args.follow, &out),
        Command::MaxFreezes(args) => match cli.global.host {
            host::HostChoice::Sim => Err(anyhow::anyhow!("max-freezes acts on a Linux host's debugfs, not --host sim")),
            _ => linux_host::max_freezes(&cli.global, args.value, &out),
        },
        Command::State(args) if args.vfio => {
            Err(anyhow::anyhow!("--vfio asks a Linux host's VFIO: it needs --host linux"))
        }
        Command::Inject(args) => inject::run(&args, &out),
        Command::State(args) => state::run(&args, &out),
        Command::Events(args) => events::run(&args, &out),
        Command::Oplog(args) => oplog::run(&args, &out),
        Command::Map(args) => connect::map(&args, &out),
        Command::Reset(args) => connect::reset(&args, &out),
        Command::Claims(args) => connect::claims(&args, &out),
        Command::ModelOps(args) => model_ops::run(&args, &out),
    };
    match result {
        Ok(()) => exit,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
