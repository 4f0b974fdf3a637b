//! `eehctl shim [DEVICE...] [-- COMMAND...]`: prepares what a VMM needs to
//! use devices of the simulated host through the preload library
//! (`libvfio_eeh_shim.so`): a sysfs directory per device with its
//! `iommu_group` link (QEMU's `-device vfio-pci,sysfsdev=DIR`), and the
//! environment (`LD_PRELOAD`, the shim's configuration, the control socket
//! that `eehctl inject/state/events/oplog --socket` talk to).
//!
//! Without a command it prints what it prepared: a table, `--json`, or for
//! scripts `--print env` (`NAME=VALUE` lines) or `--print qemu-args` (one
//! QEMU argument per line). With a command it runs it under that
//! environment (with `--qemu-args`, the `-device` arguments appended) and
//! exits with its status.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use serde::Serialize;
use vfio_eeh::addr::{Buid, PciAddr, PeId};
use vfio_eeh_shim::config::{Firmware, Injection, IommuMode, Platform, ResetMode, ShimConfig};
use vfio_eeh_shim::LIBRARY_NAME;
use vfio_shim_launch::prepare::{default_library, is_preload_library, prepare, private_dir, Prepared};

use crate::output::{table, Output};

/// Names the preload library when `--library` is not given.
const ENV_LIBRARY: &str = "VFIO_EEH_SHIM_LIBRARY";

/// `eehctl shim` options.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Host addresses of the simulated devices to pass through [default: all].
    #[arg(value_name = "DEVICE")]
    devices: Vec<PciAddr>,
    /// Directory for the sysfs tree and the control socket; it must belong
    /// to this user and be writable by nobody else [default: a new private
    /// directory in the temporary directory].
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
    /// The preload library [default: libvfio_eeh_shim.so next to eehctl;
    /// build it with `cargo build -p vfio-shim --features preload`].
    #[arg(long, value_name = "PATH", env = ENV_LIBRARY)]
    library: Option<PathBuf>,
    /// Simulated host topology file [default: the built-in host].
    #[arg(long, value_name = "FILE")]
    topology: Option<PathBuf>,
    /// IOMMU the emulated container offers: spapr-tce-v2 (a POWER host),
    /// type1v2 (no EEH once set, as Linux) or type1v2-with-eeh (a test mode:
    /// EEH on type1, which no kernel has).
    #[arg(long, value_name = "MODE")]
    iommu: Option<IommuMode>,
    /// How the host's PE resets wait: blocking (like Linux: 250 ms on
    /// assert, 1800 ms on deassert) or report-unavailable (return at once;
    /// the PE reports unavailable with the true remaining delay).
    #[arg(long, value_name = "MODE")]
    reset: Option<ResetMode>,
    /// The address-mapping ioctl: none (ENOTTY) or powernv.
    #[arg(long, value_name = "NAME")]
    platform: Option<Platform>,
    /// A virtual PHB (BUID) of the VM, for the address-mapping ioctl and the
    /// RTAS entry point; repeat for more [default: QEMU's sPAPR PHBs 0 to N,
    /// 0x800000020000000 + index, N the host's group count].
    #[arg(long = "phb", value_name = "BUID")]
    phbs: Vec<Buid>,
    /// Injection functions the firmware accepts: phb4 (config space only) or any.
    #[arg(long, value_name = "NAME")]
    firmware: Option<Firmware>,
    /// When an injected error freezes its PE: immediate or on-access.
    #[arg(long, value_name = "WHEN")]
    injection: Option<Injection>,
    /// Serve the devices of the eehd listening on this socket (its shared
    /// host) instead of a simulated host inside the VMM; --topology must then
    /// name eehd's topology (both default to the built-in host).
    #[arg(long, value_name = "SOCKET")]
    connect: Option<PathBuf>,
    /// With --connect: the VM the VMM acts for [default: vmm-<pid>].
    #[arg(long, value_name = "NAME", requires = "connect")]
    vm: Option<String>,
    /// Control socket path [default: DIR/control.sock].
    #[arg(long, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Write the VMM's op log as JSON here when it exits.
    #[arg(long, value_name = "PATH")]
    oplog: Option<PathBuf>,
    /// The shim's log filter on the VMM's stderr (`info`, `vfio_eeh_shim=debug`, ...).
    #[arg(long, value_name = "FILTER")]
    shim_log: Option<String>,
    /// Without a command: print only this, as plain lines for scripts.
    #[arg(long, value_enum, conflicts_with = "command")]
    print: Option<Print>,
    /// Append QEMU's device arguments to the command: `-device
    /// vfio-pci,sysfsdev=DIR` for every device and, when they span several
    /// PEs, a `spapr-pci-host-bridge` per PE that carries its devices.
    #[arg(long, requires = "command")]
    qemu_args: bool,
    /// The command to run under the preload library, after `--`.
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// `--print` values.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Print {
    /// The environment, one `NAME=VALUE` per line.
    Env,
    /// QEMU's device arguments, one per line.
    QemuArgs,
}

/// One prepared device in the JSON document.
#[derive(Serialize)]
struct DeviceView {
    addr: PciAddr,
    group: PeId,
    sysfsdev: PathBuf,
}

/// The JSON document.
#[derive(Serialize)]
struct ShimView {
    dir: PathBuf,
    sysfs: PathBuf,
    socket: PathBuf,
    devices: Vec<DeviceView>,
    env: Vec<(String, String)>,
    qemu_args: Vec<String>,
}

impl ShimView {
    fn new(dir: &Path, prepared: &Prepared) -> Self {
        ShimView {
            dir: dir.to_owned(),
            sysfs: prepared.sysfs.clone(),
            socket: prepared.socket.clone(),
            devices: prepared
                .devices
                .iter()
                .map(|d| DeviceView { addr: d.addr, group: d.group, sysfsdev: d.sysfsdev.clone() })
                .collect(),
            env: prepared.env.clone(),
            qemu_args: prepared.qemu_device_args(),
        }
    }

    fn human(&self) -> String {
        let mut rows = table(&["DEVICE", "GROUP", "SYSFSDEV"]);
        for d in &self.devices {
            rows.add_row([d.addr.to_string(), d.group.to_string(), d.sysfsdev.display().to_string()]);
        }
        let env: Vec<String> = self.env.iter().map(|(k, v)| format!("  {k}={v}")).collect();
        format!(
            "{rows}\n\nEnvironment for the VMM:\n{}\n\nQEMU arguments: {}\nControl socket: {}\n",
            env.join("\n"),
            self.qemu_args.join(" "),
            self.socket.display()
        )
    }
}

/// The preload library to use, which must exist.
fn library(args: &Args) -> anyhow::Result<PathBuf> {
    let library = match &args.library {
        Some(path) => path.clone(),
        None => default_library().with_context(|| {
            format!(
                "No {LIBRARY_NAME} next to eehctl: build it with `cargo build -p vfio-shim --features preload` \
                 or name it with --library / {ENV_LIBRARY}"
            )
        })?,
    };
    if !library.is_file() {
        bail!("The preload library {} does not exist", library.display());
    }
    let is_preload = is_preload_library(&library)
        .with_context(|| format!("Cannot read the preload library {}", library.display()))?;
    if !is_preload {
        bail!(
            "{} was built without the preload feature and would intercept nothing: \
             build it with `cargo build -p vfio-shim --features preload`",
            library.display()
        );
    }
    // LD_PRELOAD of a relative path would be looked up by the dynamic loader.
    absolute(&library)
}

fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    std::path::absolute(path).with_context(|| format!("Cannot resolve {}", path.display()))
}

/// Prepares, then prints or runs the command.
pub fn run(args: &Args, out: &Output) -> anyhow::Result<ExitCode> {
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => private_dir().context("Cannot create a private directory for the VMM")?,
    };
    let dir = absolute(&dir)?;
    // The VMM may change its directory: it gets absolute paths.
    let absolute_opt = |path: &Option<PathBuf>| path.as_deref().map(absolute).transpose();
    let config = ShimConfig {
        topology: absolute_opt(&args.topology)?,
        iommu: args.iommu.unwrap_or_default(),
        platform: args.platform.unwrap_or_default(),
        phbs: (!args.phbs.is_empty()).then(|| args.phbs.clone()),
        firmware: args.firmware.unwrap_or_default(),
        injection: args.injection.unwrap_or_default(),
        reset: args.reset.unwrap_or_default(),
        connect: absolute_opt(&args.connect)?,
        vm: args.vm.clone(),
        socket: absolute_opt(&args.socket)?,
        oplog: absolute_opt(&args.oplog)?,
        log: args.shim_log.clone(),
    };
    let library = library(args)?;
    let prepared = prepare(&dir, &args.devices, &config, &library)
        .with_context(|| format!("Cannot prepare {} for the VMM", dir.display()))?;
    let view = ShimView::new(&dir, &prepared);
    let Some((program, rest)) = args.command.split_first() else {
        let lines = match args.print {
            None => {
                out.print(&view, || view.human())?;
                return Ok(ExitCode::SUCCESS);
            }
            Some(Print::Env) => view.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            Some(Print::QemuArgs) => view.qemu_args.clone(),
        };
        // Plain lines for scripts, also under --json.
        let text = lines.iter().map(|l| format!("{l}\n")).collect::<String>();
        Output { json: false }.print(&lines, || text)?;
        return Ok(ExitCode::SUCCESS);
    };
    let devices: Vec<String> = view.devices.iter().map(|d| format!("{} (group {})", d.addr, d.group)).collect();
    tracing::info!("{} under the shim with {}; control socket {}", program, devices.join(", "), view.socket.display());
    let mut command = prepared.command(program);
    command.args(rest);
    if args.qemu_args {
        command.args(&view.qemu_args);
    }
    let status = command.status().with_context(|| format!("Cannot run {program}"))?;
    Ok(exit_code(status))
}

/// The exit code that reports `status`: its own, or 128 + the signal.
fn exit_code(status: std::process::ExitStatus) -> ExitCode {
    use std::os::unix::process::ExitStatusExt;
    let code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(1);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
