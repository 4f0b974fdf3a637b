//! Which host a command drives: `--host sim|linux|auto`, and why.
//!
//! `auto` picks the Linux host where the machine has VFIO EEH
//! (`/dev/vfio/vfio` answers `CHECK_EXTENSION(VFIO_EEH)` with 1), and the
//! simulator otherwise. Commands that only read the topology (`topo`) need
//! no EEH: for them `auto` picks the Linux host whenever its sysfs lists PCI
//! devices (or `--sysfs` names a tree), so `eehctl topo` shows the real
//! machine anywhere. The choice and its reason go to stderr.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use vfio_eeh::topology::Topology;
use vfio_eeh_linux::sysfs::Sysfs;
use vfio_eeh_linux::VfioHost;
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::SimHost;

/// The VFIO device directory of a Linux host.
const DEV_VFIO: &str = "/dev/vfio";
/// Where debugfs is mounted.
const DEBUGFS: &str = "/sys/kernel/debug";
/// The kernel log.
const KMSG: &str = "/dev/kmsg";
/// procfs.
const PROC: &str = "/proc";

/// The `--host` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostChoice {
    /// The simulated PowerNV host.
    Sim,
    /// The real Linux host: sysfs and VFIO.
    Linux,
    /// Linux where it can serve the command, else the simulator.
    Auto,
}

/// The host options every command takes.
#[derive(Debug, clap::Args)]
pub struct HostArgs {
    /// The host to drive.
    #[arg(long, value_enum, default_value_t = HostChoice::Auto, global = true)]
    pub host: HostChoice,
    /// The Linux host's sysfs root [default: /sys]; with `--host auto`, picks the Linux host.
    #[arg(long, value_name = "DIR", global = true)]
    pub sysfs: Option<PathBuf>,
    /// The Linux host's VFIO device directory.
    #[arg(long, value_name = "DIR", default_value = DEV_VFIO, global = true)]
    pub dev_vfio: PathBuf,
    /// The Linux host's debugfs (PowerNV's `powerpc/` files).
    #[arg(long, value_name = "DIR", default_value = DEBUGFS, global = true)]
    pub debugfs: PathBuf,
    /// The Linux host's kernel log (`/dev/kmsg` records).
    #[arg(long, value_name = "FILE", default_value = KMSG, global = true)]
    pub kmsg: PathBuf,
    /// The Linux host's procfs (who holds a VFIO group).
    #[arg(long, value_name = "DIR", default_value = PROC, global = true)]
    pub proc: PathBuf,
}

impl HostArgs {
    /// The usage error of Linux-host options given with `--host sim`.
    pub fn conflict(&self) -> Option<&'static str> {
        let linux_options = self.sysfs.is_some()
            || self.dev_vfio != Path::new(DEV_VFIO)
            || self.debugfs != Path::new(DEBUGFS)
            || self.kmsg != Path::new(KMSG)
            || self.proc != Path::new(PROC);
        (self.host == HostChoice::Sim && linux_options).then_some(
            "--sysfs and --dev-vfio apply to the Linux host, not to --host sim (so do --debugfs, --kmsg and --proc)",
        )
    }

    /// The Linux host's sysfs root.
    pub fn sysfs_root(&self) -> PathBuf {
        self.sysfs.clone().unwrap_or_else(|| Sysfs::default().root().to_owned())
    }
}

/// A host a command runs on.
pub enum Host {
    /// The built-in simulated PowerNV host, on a virtual clock.
    Sim(SimHost),
    /// The real Linux host.
    Linux(VfioHost),
}

impl Host {
    /// `linux` or `sim`, as `--host` spells it.
    pub fn name(&self) -> &'static str {
        match self {
            Host::Sim(_) => "sim",
            Host::Linux(_) => "linux",
        }
    }

    /// The host's PHBs, groups and devices.
    pub fn topology(&self) -> anyhow::Result<Topology> {
        match self {
            Host::Sim(host) => Ok(host.topology()),
            Host::Linux(host) => host.topology().context("Cannot read the PCI topology"),
        }
    }
}

/// Which kind of host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sim,
    Linux,
}

/// What `auto` knows about the machine.
struct Machine<'a> {
    /// Why VFIO EEH is unavailable, or `None` when it is present.
    no_eeh: Option<String>,
    /// The sysfs root, and whether it was given on the command line.
    sysfs: &'a Path,
    sysfs_given: bool,
    /// Whether that sysfs lists PCI devices.
    pci_listed: bool,
}

/// The `auto` decision with its reason.
fn auto(machine: &Machine<'_>, needs_eeh: bool) -> (Kind, String) {
    match &machine.no_eeh {
        None => (Kind::Linux, "VFIO EEH is present".into()),
        Some(why) if !needs_eeh && (machine.sysfs_given || machine.pci_listed) => {
            (Kind::Linux, format!("topology from {}; no EEH: {why}", machine.sysfs.display()))
        }
        Some(why) => (Kind::Sim, format!("no VFIO EEH: {why}")),
    }
}

/// Picks the host for a command and says which on stderr. `--sysfs` and
/// `--dev-vfio` must have been checked against `--host sim` (see
/// [`HostArgs::conflict`]).
pub fn select(args: &HostArgs, needs_eeh: bool) -> anyhow::Result<Host> {
    let sysfs = Sysfs::new(args.sysfs.clone().unwrap_or_else(|| Sysfs::default().root().to_owned()));
    let linux = VfioHost::new(sysfs, &args.dev_vfio);
    let (kind, why) = match args.host {
        HostChoice::Sim => (Kind::Sim, "--host sim".to_owned()),
        HostChoice::Linux => (Kind::Linux, "--host linux".to_owned()),
        HostChoice::Auto => {
            let machine = Machine {
                no_eeh: linux.eeh_support().err().map(|e| format!("{:#}", anyhow::Error::from(e))),
                sysfs: linux.sysfs().root(),
                sysfs_given: args.sysfs.is_some(),
                pci_listed: linux.sysfs().addresses().is_ok_and(|(addrs, _)| !addrs.is_empty()),
            };
            auto(&machine, needs_eeh)
        }
    };
    let host = match kind {
        Kind::Linux => Host::Linux(linux),
        Kind::Sim => Host::Sim(SimHost::builtin(Arc::new(VirtualClock::default()))),
    };
    tracing::info!("host: {} ({why})", host.name());
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn machine(no_eeh: Option<&str>, sysfs_given: bool, pci_listed: bool) -> Machine<'static> {
        Machine { no_eeh: no_eeh.map(Into::into), sysfs: Path::new("/sys"), sysfs_given, pci_listed }
    }

    #[test]
    fn auto_picks_linux_only_where_it_can_serve_the_command() {
        let power = machine(None, false, true);
        assert_eq!(auto(&power, true), (Kind::Linux, "VFIO EEH is present".into()));
        assert_eq!(auto(&power, false).0, Kind::Linux);

        let x86 = machine(Some("/dev/vfio/vfio does not exist"), false, true);
        assert_eq!(auto(&x86, true), (Kind::Sim, "no VFIO EEH: /dev/vfio/vfio does not exist".into()));
        assert_eq!(
            auto(&x86, false),
            (Kind::Linux, "topology from /sys; no EEH: /dev/vfio/vfio does not exist".into())
        );

        let no_pci = machine(Some("no vfio"), false, false);
        assert_eq!(auto(&no_pci, false).0, Kind::Sim);
        let fixture = machine(Some("no vfio"), true, false);
        assert_eq!(auto(&fixture, false).0, Kind::Linux);
        assert_eq!(auto(&fixture, true).0, Kind::Sim);
    }
}
