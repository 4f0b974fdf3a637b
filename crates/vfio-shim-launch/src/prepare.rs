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
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::process::Command;

use rustix::fs::{AtFlags, Mode, OFlags};

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
    /// The directory is not private to this user: a symbolic link or file
    /// others can replace would let them redirect what is written (as root,
    /// onto any file).
    #[error("Refusing the directory {path}: it {reason}")]
    UnsafeDir {
        /// The directory.
        path: PathBuf,
        /// What makes it unsafe.
        reason: String,
    },
    /// The control socket's path does not fit a Unix socket address.
    #[error("The control socket path {path} is {len} bytes; a Unix socket path holds at most {max}")]
    SocketPathTooLong {
        /// The path.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
        /// The most `sun_path` holds (without its NUL).
        max: usize,
    },
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

/// The longest path a Unix socket can be bound to: `sun_path` is 108 bytes
/// with its terminating NUL.
pub const MAX_SOCKET_PATH: usize = 107;

/// A new private directory (mode 0700, a random name) in the temporary
/// directory, for [`prepare`]; it is left in place for the VMM.
pub fn private_dir() -> io::Result<PathBuf> {
    let dir =
        tempfile::Builder::new().prefix("eehctl-shim.").permissions(fs::Permissions::from_mode(0o700)).tempdir()?;
    Ok(dir.keep())
}

/// The directory a tree is written into, opened once: every file below it
/// is reached from this descriptor one component at a time, never through a
/// symbolic link, and replaced rather than written through.
struct Tree {
    root: OwnedFd,
    path: PathBuf,
}

impl Tree {
    /// Opens `dir` (created 0700 if missing), which must belong to this
    /// user and be writable by nobody else.
    fn open(dir: &Path) -> Result<Tree, PrepareError> {
        let opened = || -> io::Result<(OwnedFd, fs::Metadata)> {
            fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
            let root = rustix::fs::open(dir, OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
            let meta = fs::File::from(root.try_clone()?).metadata()?;
            Ok((root, meta))
        };
        let (root, meta) = opened().map_err(|source| PrepareError::Write { path: dir.to_owned(), source })?;
        let unsafe_dir = |reason: String| Err(PrepareError::UnsafeDir { path: dir.to_owned(), reason });
        let me = rustix::process::geteuid().as_raw();
        if meta.uid() != me {
            return unsafe_dir(format!("belongs to uid {}, not to this user (uid {me})", meta.uid()));
        }
        if meta.mode() & 0o022 != 0 {
            return unsafe_dir(format!("is writable by its group or others (mode {:o})", meta.mode() & 0o7777));
        }
        Ok(Tree { root, path: dir.to_owned() })
    }

    fn error(&self, relative: &Path) -> impl FnOnce(io::Error) -> PrepareError + '_ {
        let path = self.path.join(relative);
        move |source| PrepareError::Write { path, source }
    }

    /// The directory `relative` (created 0755 where missing), reached
    /// without following symbolic links.
    fn dir(&self, relative: &Path) -> Result<OwnedFd, PrepareError> {
        let mut dir = self.root.try_clone().map_err(self.error(relative))?;
        for component in relative.components() {
            let Component::Normal(name) = component else {
                return Err(self.error(relative)(io::Error::from(io::ErrorKind::InvalidInput)));
            };
            match rustix::fs::mkdirat(&dir, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(self.error(relative)(e.into())),
            }
            let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
            dir = rustix::fs::openat(&dir, name, flags, Mode::empty()).map_err(|e| self.error(relative)(e.into()))?;
        }
        Ok(dir)
    }

    /// The parent directory of `relative` and its last component, after
    /// removing whatever was there (a file or a link, never followed).
    fn replace<'a>(&self, relative: &'a Path) -> Result<(OwnedFd, &'a OsStr), PrepareError> {
        let invalid = || self.error(relative)(io::Error::from(io::ErrorKind::InvalidInput));
        let name = relative.file_name().ok_or_else(invalid)?;
        let parent = self.dir(relative.parent().ok_or_else(invalid)?)?;
        match rustix::fs::unlinkat(&parent, name, AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok((parent, name)),
            Err(e) => Err(self.error(relative)(e.into())),
        }
    }

    /// Writes a new file `relative` (mode 0644) holding `text`.
    fn file(&self, relative: &Path, text: &str) -> Result<(), PrepareError> {
        let (parent, name) = self.replace(relative)?;
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let file = rustix::fs::openat(&parent, name, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| self.error(relative)(e.into()))?;
        fs::File::from(file).write_all(text.as_bytes()).map_err(self.error(relative))
    }

    /// Makes `relative` a symbolic link to `target`.
    fn symlink(&self, relative: &Path, target: &Path) -> Result<(), PrepareError> {
        let (parent, name) = self.replace(relative)?;
        rustix::fs::symlinkat(target, &parent, name).map_err(|e| self.error(relative)(e.into()))
    }
}

/// Prepares `dir` for `devices` of the simulated host `config` describes (all
/// of its devices when `devices` is empty): `dir/sys` is the sysfs root and
/// the control socket is `config.socket` or `dir/control.sock`.
///
/// `dir` is created (0700) if missing, and refused if it belongs to another
/// user or others can write to it ([`PrepareError::UnsafeDir`]). Nothing
/// below it is written through a symbolic link: every file and link is
/// replaced by a new one.
pub fn prepare(dir: &Path, devices: &[PciAddr], config: &ShimConfig, library: &Path) -> Result<Prepared, PrepareError> {
    let socket = config.socket.clone().unwrap_or_else(|| dir.join("control.sock"));
    let len = socket.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(PrepareError::SocketPathTooLong { path: socket, len, max: MAX_SOCKET_PATH });
    }
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
    let tree = Tree::open(dir)?;
    let driver = Path::new("sys/bus/pci/drivers").join(VFIO_DRIVER);
    tree.dir(&driver)?;
    let mut prepared = Vec::new();
    for (pe, device) in chosen {
        let dev_dir = Path::new("sys/bus/pci/devices").join(device.addr.to_string());
        let group_dir = Path::new("sys/kernel/iommu_groups").join(pe.0.to_string());
        let member = group_dir.join("devices").join(device.addr.to_string());
        tree.dir(&dev_dir)?;
        tree.dir(&group_dir.join("devices"))?;
        let ids = [("vendor", format!("{:#06x}\n", device.vendor)), ("device", format!("{:#06x}\n", device.device))];
        for (name, text) in ids.into_iter().chain([("class", format!("{:#08x}\n", device.class))]) {
            tree.file(&dev_dir.join(name), &text)?;
        }
        for (link, target) in
            [(dev_dir.join("iommu_group"), &group_dir), (dev_dir.join("driver"), &driver), (member, &dev_dir)]
        {
            tree.symlink(&link, &dir.join(target))?;
        }
        prepared.push(PreparedDevice { addr: device.addr, group: pe, sysfsdev: dir.join(dev_dir) });
    }
    let sysfs = dir.join("sys");
    let mut env: Vec<(String, String)> = vec![("LD_PRELOAD".into(), library.display().to_string())];
    env.extend(config.to_env().into_iter().filter(|(k, _)| *k != ENV_SOCKET).map(|(k, v)| (k.to_owned(), v)));
    env.push((ENV_SOCKET.to_owned(), socket.display().to_string()));
    Ok(Prepared { sysfs, devices: prepared, socket, env })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

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

    #[test]
    fn writes_nothing_through_links_and_refuses_directories_of_others() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let victim = elsewhere.path().join("victim");
        fs::write(&victim, "precious").unwrap();
        let vendor = dir.path().join("sys/bus/pci/devices/0000:01:00.0/vendor");
        fs::create_dir_all(vendor.parent().unwrap()).unwrap();
        symlink(&victim, &vendor).unwrap();
        let config = ShimConfig::default();
        let nvme: PciAddr = "0000:01:00.0".parse().unwrap();
        prepare(dir.path(), &[nvme], &config, Path::new("/x")).unwrap();
        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious", "written through the link");
        assert_eq!(fs::read_to_string(&vendor).unwrap(), "0x144d\n");
        assert!(!fs::symlink_metadata(&vendor).unwrap().file_type().is_symlink());

        // A linked directory in the tree is not entered.
        fs::remove_dir_all(dir.path().join("sys")).unwrap();
        fs::create_dir_all(dir.path().join("sys")).unwrap();
        symlink(elsewhere.path(), dir.path().join("sys/bus")).unwrap();
        let err = prepare(dir.path(), &[nvme], &config, Path::new("/x")).unwrap_err();
        assert!(matches!(err, PrepareError::Write { .. }), "{err}");
        assert_eq!(fs::read_dir(elsewhere.path()).unwrap().count(), 1, "only the victim");

        let open = tempfile::tempdir().unwrap();
        fs::set_permissions(open.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let err = prepare(open.path(), &[nvme], &config, Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("writable by its group or others (mode 777)"), "{err}");

        // Someone else's directory: root's `/` for a user, nobody's for root.
        let theirs = if rustix::process::geteuid().is_root() {
            let theirs = tempfile::tempdir().unwrap();
            std::os::unix::fs::chown(theirs.path(), Some(65534), Some(65534)).unwrap();
            theirs.keep()
        } else {
            PathBuf::from("/")
        };
        let err = prepare(&theirs, &[nvme], &config, Path::new("/x")).unwrap_err();
        assert!(err.to_string().contains("not to this user"), "{err}");
        if theirs != Path::new("/") {
            fs::remove_dir_all(&theirs).unwrap();
        }
    }

    #[test]
    fn refuses_a_socket_path_a_unix_socket_cannot_have() {
        let dir = tempfile::tempdir().unwrap();
        let socket = PathBuf::from(format!("/{}", "s".repeat(MAX_SOCKET_PATH)));
        let config = ShimConfig { socket: Some(socket), ..ShimConfig::default() };
        let err = prepare(dir.path(), &[], &config, Path::new("/x")).unwrap_err();
        assert!(err.to_string().ends_with("is 108 bytes; a Unix socket path holds at most 107"), "{err}");
        let fits = ShimConfig { socket: Some(PathBuf::from(format!("/{}", "s".repeat(106)))), ..config };
        prepare(dir.path(), &[], &fits, Path::new("/x")).unwrap();
    }

    #[test]
    fn private_directories_are_new_and_private() {
        let (a, b) = (private_dir().unwrap(), private_dir().unwrap());
        assert_ne!(a, b);
        assert!(a.file_name().unwrap().to_str().unwrap().starts_with("eehctl-shim."));
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o7777, 0o700);
        fs::remove_dir(a).unwrap();
        fs::remove_dir(b).unwrap();
    }
}
