//! What a VMM needs to use simulated devices through the preload library:
//! a sysfs tree (QEMU's `sysfsdev=` directory with its `iommu_group` link,
//! and the `bus/pci` + `kernel/iommu_groups` layout the Linux backend reads)
//! and the environment (`LD_PRELOAD`, configuration, control socket).
//!
//! ```no_run
//! use vfio_eeh_shim::config::ShimConfig;
//! use vfio_shim_launch::prepare::{default_library, prepare};
//!
//! let library = default_library().expect("build it: cargo build -p vfio-shim --features preload");
//! let dir = std::path::Path::new("/tmp/vm1");
//! let prepared = prepare(dir, &["0000:01:00.0".parse()?], &ShimConfig::default(), &library)?;
//! let status = prepared.command("qemu-system-ppc64").args(prepared.qemu_device_args()).status()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::Command;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::topology::VFIO_DRIVER;
use vfio_eeh_sim::spec::TopologyError;

use vfio_eeh_shim::config::{ShimConfig, ENV_SOCKET};
use vfio_eeh_shim::global::simulated_host;
use vfio_eeh_shim::{LIBRARY_NAME, PRELOAD_MARKER};

/// Why preparation failed.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The topology could not be loaded.
    #[error("Cannot load the simulated topology")]
    Topology(#[from] TopologyError),
    /// A requested device is not on the simulated host.
    #[error("No device {0} on the simulated host")]
    NoDevice(PciAddr),
    /// A file could not be written.
    #[error("Cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// One prepared device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedDevice {
    /// Its host address.
    pub addr: PciAddr,
    /// Its IOMMU group (PE).
    pub group: PeId,
    /// Its sysfs directory, for QEMU's `-device vfio-pci,sysfsdev=`.
    pub sysfsdev: PathBuf,
}

/// The result of [`prepare`].
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The sysfs root (for `vfio_eeh_linux::sysfs::Sysfs::new`).
    pub sysfs: PathBuf,
    /// The devices.
    pub devices: Vec<PreparedDevice>,
    /// The control socket the VMM process will serve.
    pub socket: PathBuf,
    /// The environment for the VMM: `LD_PRELOAD` and the configuration.
    pub env: Vec<(String, String)>,
}

impl Prepared {
    /// A command running `program` with [`env`](Prepared::env) applied.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        command
    }

    /// QEMU's device arguments: `-device vfio-pci,sysfsdev=DIR` for every
    /// device. When the devices span several PEs, each PE gets a PHB of its
    /// own, `-device spapr-pci-host-bridge,index=N,id=phbN` (N from 1; 0 is
    /// the machine's default PHB), and its devices go on `bus=phbN.0`: QEMU
    /// enables EEH on a PHB only when its address space has one container
    /// holding one group (`vfio_eeh_as_ok`, `vfio_eeh_container_ok` in
    /// `hw/ppc/spapr_pci_vfio.c`, research Q6); groups sharing the default
    /// PHB would share its container and get no EEH at all.
    pub fn qemu_device_args(&self) -> Vec<String> {
        let mut pes: Vec<PeId> = self.devices.iter().map(|d| d.group).collect();
        pes.sort_unstable();
        pes.dedup();
        if pes.len() < 2 {
            return self
                .devices
                .iter()
                .flat_map(|d| ["-device".to_owned(), format!("vfio-pci,sysfsdev={}", d.sysfsdev.display())])
                .collect();
        }
        let mut args = Vec::new();
        for (index, pe) in (1..).zip(&pes) {
            args.extend(["-device".to_owned(), format!("spapr-pci-host-bridge,index={index},id=phb{index}")]);
            for d in self.devices.iter().filter(|d| d.group == *pe) {
                args.extend([
                    "-device".to_owned(),
                    format!("vfio-pci,sysfsdev={},bus=phb{index}.0", d.sysfsdev.display()),
                ]);
            }
        }
        args
    }
}

/// Whether `path` is the preload library: a shared object that exports the
/// preload build's marker. A build of this crate without the `preload`
/// feature has the same file name but intercepts nothing.
pub fn is_preload_library(path: &Path) -> io::Result<bool> {
    use object::{Object, ObjectSymbol};
    let data = fs::read(path)?;
    let file = object::File::parse(&*data).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(file.dynamic_symbols().any(|sym| sym.is_definition() && sym.name() == Ok(PRELOAD_MARKER)))
}

/// The preload library next to the running executable
/// (`target/<profile>/`, also from `target/<profile>/deps/`), if built with
/// the `preload` feature.
pub fn default_library() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    exe.ancestors().skip(1).take(2).map(|dir| dir.join(LIBRARY_NAME)).find(|p| is_preload_library(p).unwrap_or(false))
}

fn write(path: &Path, f: impl FnOnce(&Path) -> io::Result<()>) -> Result<(), PrepareError> {
    f(path).map_err(|source| PrepareError::Write { path: path.to_owned(), source })
}

/// Prepares `dir` for `devices` of the simulated host `config` describes (all
/// of its devices when `devices` is empty): `dir/sys` is the sysfs root and
/// the control socket is `config.socket` or `dir/control.sock`.
pub fn prepare(dir: &Path, devices: &[PciAddr], config: &ShimConfig, library: &Path) -> Result<Prepared, PrepareError> {
    let host = simulated_host(config)?;
    let topology = host.topology();
    let all: Vec<_> = topology.devices().map(|(g, d)| (g.pe, d.clone())).collect();
    let chosen: Vec<_> = if devices.is_empty() {
        all
    } else {
        devices
            .iter()
            .map(|addr| all.iter().find(|(_, d)| d.addr == *addr).cloned().ok_or(PrepareError::NoDevice(*addr)))
            .collect::<Result<_, _>>()?
    };
    let sysfs = dir.join("sys");
    let driver = sysfs.join("bus/pci/drivers").join(VFIO_DRIVER);
    write(&driver, |p| fs::create_dir_all(p))?;
    let mut prepared = Vec::new();
    for (pe, device) in chosen {
        let dev_dir = sysfs.join("bus/pci/devices").join(device.addr.to_string());
        let group_dir = sysfs.join("kernel/iommu_groups").join(pe.0.to_string());
        let member = group_dir.join("devices").join(device.addr.to_string());
        write(&dev_dir, |p| fs::create_dir_all(p))?;
        write(&group_dir.join("devices"), |p| fs::create_dir_all(p))?;
        let ids = [("vendor", format!("{:#06x}\n", device.vendor)), ("device", format!("{:#06x}\n", device.device))];
        for (name, text) in ids.into_iter().chain([("class", format!("{:#08x}\n", device.class))]) {
            write(&dev_dir.join(name), |p| fs::write(p, &text))?;
        }
        for (link, target) in
            [(dev_dir.join("iommu_group"), &group_dir), (dev_dir.join("driver"), &driver), (member, &dev_dir)]
        {
            write(&link, |p| {
                if fs::symlink_metadata(p).is_ok() {
                    fs::remove_file(p)?;
                }
                symlink(target, p)
            })?;
        }
        prepared.push(PreparedDevice { addr: device.addr, group: pe, sysfsdev: dev_dir });
    }
    let socket = config.socket.clone().unwrap_or_else(|| dir.join("control.sock"));
    let mut env: Vec<(String, String)> = vec![("LD_PRELOAD".into(), library.display().to_string())];
    env.extend(config.to_env().into_iter().filter(|(k, _)| *k != ENV_SOCKET).map(|(k, v)| (k.to_owned(), v)));
    env.push((ENV_SOCKET.to_owned(), socket.display().to_string()));
    Ok(Prepared { sysfs, devices: prepared, socket, env })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_a_sysfs_tree_qemu_and_the_linux_backend_can_read() {
        let dir = tempfile::tempdir().unwrap();
        let nvme: PciAddr = "0000:01:00.0".parse().unwrap();
        let prepared =
            prepare(dir.path(), &[nvme], &ShimConfig::default(), Path::new("/x/libvfio_eeh_shim.so")).unwrap();
        let dev = &prepared.devices[0];
        assert_eq!(dev.group, PeId(0));
        assert_eq!(fs::read_link(dev.sysfsdev.join("iommu_group")).unwrap().file_name().unwrap(), "0");
        assert_eq!(fs::read_to_string(dev.sysfsdev.join("vendor")).unwrap(), "0x144d\n");
        assert!(prepared.sysfs.join("kernel/iommu_groups/0/devices/0000:01:00.0/vendor").is_file());
        assert!(prepared.env.contains(&("LD_PRELOAD".into(), "/x/libvfio_eeh_shim.so".into())));
        assert_eq!(prepared.qemu_device_args()[1], format!("vfio-pci,sysfsdev={}", dev.sysfsdev.display()));
        let unknown: PciAddr = "0000:7f:00.0".parse().unwrap();
        let err = prepare(dir.path(), &[unknown], &ShimConfig::default(), Path::new("/x")).unwrap_err();
        assert_eq!(err.to_string(), "No device 0000:7f:00.0 on the simulated host");
        // Preparing again over an existing tree works.
        prepare(dir.path(), &[], &ShimConfig::default(), Path::new("/x")).unwrap();
    }

    /// Issue 13 item 5: several PEs get a spapr PHB each (QEMU enables EEH
    /// only for a PHB whose container holds one group; research Q6); the
    /// functions of one PE share theirs.
    #[test]
    fn several_pes_get_a_phb_each() {
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<PciAddr> =
            ["0000:02:00.1", "0000:01:00.0", "0000:02:00.0"].iter().map(|a| a.parse().unwrap()).collect();
        let prepared = prepare(dir.path(), &addrs, &ShimConfig::default(), Path::new("/x")).unwrap();
        let dev = |addr: &str| prepared.sysfs.join("bus/pci/devices").join(addr).display().to_string();
        let expected = [
            "-device".to_owned(),
            "spapr-pci-host-bridge,index=1,id=phb1".to_owned(),
            "-device".to_owned(),
            format!("vfio-pci,sysfsdev={},bus=phb1.0", dev("0000:01:00.0")),
            "-device".to_owned(),
            "spapr-pci-host-bridge,index=2,id=phb2".to_owned(),
            "-device".to_owned(),
            format!("vfio-pci,sysfsdev={},bus=phb2.0", dev("0000:02:00.1")),
            "-device".to_owned(),
            format!("vfio-pci,sysfsdev={},bus=phb2.0", dev("0000:02:00.0")),
        ];
        assert_eq!(prepared.qemu_device_args(), expected);
        let one_pe = prepare(dir.path(), &addrs[..1], &ShimConfig::default(), Path::new("/x")).unwrap();
        assert_eq!(one_pe.qemu_device_args().len(), 2, "one PE stays on the default PHB");
    }
}
