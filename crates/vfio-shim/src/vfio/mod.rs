//! The emulated `/dev/vfio`: containers, groups and devices with the Linux
//! VFIO core's, vfio-pci's and the IOMMU drivers' semantics and argument
//! checks, served on the host behind the [`host::Host`] seam: the
//! simulated host in this process, or eehd's shared host.
//!
//! [`Emulator`] is entered from the interposed libc calls with a descriptor
//! number; it answers `None` for descriptors and paths that are not its own,
//! so the caller passes those through untouched. An ioctl is dispatched on
//! its fd kind and the entry of the `uapi` table its number names, to the
//! module of the kernel object that serves it:
//!
//! * [`container`]: `/dev/vfio/vfio`, the IOMMU it holds ([`iommu`]:
//!   `vfio_iommu_type1`, `vfio_iommu_spapr_tce`) and `VFIO_EEH_PE_OP`;
//! * [`group`]: `/dev/vfio/<group>`, attaching and device fds;
//! * [`device`]: vfio-pci's device fd (regions, config space and BARs,
//!   features, reset, the address mapping) with its interrupts ([`irqs`]);
//! * [`rtas`]: the RTAS entry point the library exports to VMMs, served
//!   through the VM's mappings ([`crate::vm`]).
//!
//! Object lifetimes follow the kernel: a device file holds its group file, a
//! group holds the container it is attached to (so a closed container fd
//! leaves the container alive), closing the last group file detaches it, and
//! detaching a container's last group releases its IOMMU.

mod container;
mod device;
mod direct;
mod group;
pub(crate) mod host;
mod iommu;
mod irqs;
mod rtas;
#[cfg(test)]
pub(crate) mod testing;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use libc::EMFILE;
use vfio_eeh::backend::errno::{EBUSY, EINVAL, EIO, ENOENT, ENOTTY};
use vfio_eeh::container::PeOpArg;
use vfio_eeh::uapi::{self, Encoding, FdKind, VfioIoctl};
use vfio_eeh_sim::SimHost;

use self::container::Container;
use self::device::DeviceFile;
pub(crate) use self::device::{Access, VmmBus};
pub(crate) use self::direct::DirectBars;
use self::group::{Group, GroupFile};
use self::host::{Host, InProcess};
use crate::config::ShimConfig;
use crate::daemon::EehdHost;
use crate::fdtable::FdTable;
use crate::oplog::{kind_name, OpLog};
use crate::sys;
use crate::user::{ProcessMemory, UserMemory, UserPtr};
use crate::vm::ThisVm;

/// The emulated directory; only paths below it are claimed.
pub(crate) const VFIO_DIR: &[u8] = b"/dev/vfio/";

/// What an emulated ioctl answers: its value or a positive errno.
type IoctlResult = Result<i64, i32>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What an emulated descriptor refers to.
#[derive(Debug, Clone)]
pub(crate) enum OpenFile {
    /// `/dev/vfio/vfio`.
    Container(Arc<Container>),
    /// `/dev/vfio/<group>`.
    Group(Arc<GroupFile>),
    /// A device fd.
    Device(Arc<DeviceFile>),
}

impl OpenFile {
    fn kind(&self) -> FdKind {
        match self {
            OpenFile::Container(_) => FdKind::Container,
            OpenFile::Group(_) => FdKind::Group,
            OpenFile::Device(_) => FdKind::Device,
        }
    }

    /// The group a group or device file belongs to, for the op log.
    fn groups(&self) -> Vec<u32> {
        match self {
            OpenFile::Container(_) => Vec::new(),
            OpenFile::Group(g) => vec![g.group().number()],
            OpenFile::Device(d) => vec![d.group_number()],
        }
    }
}

/// What an ioctl request number names on an fd kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    /// A VFIO number (`_IO(VFIO_TYPE, VFIO_BASE + n)`): the table's entry
    /// for the fd kind, `None` if the table has none.
    Vfio(Option<VfioIoctl>),
    /// Not a VFIO ioctl number.
    Foreign,
}

/// The VFIO ioctl an encoded request number names: `n` in `VFIO_BASE + n`.
fn vfio_offset(request: u64) -> Option<u8> {
    let nr = u8::try_from(request & 0xff).ok()?;
    let offset = nr.checked_sub(uapi::VFIO_BASE)?;
    (request == u64::from(Encoding::NATIVE.io(uapi::VFIO_TYPE, nr))).then_some(offset)
}

/// The emulated `/dev/vfio` of one process.
pub(crate) struct Emulator {
    host: Arc<dyn Host>,
    config: ShimConfig,
    vm: Arc<ThisVm>,
    /// The groups lent to this process, by number.
    groups: Mutex<HashMap<u32, Arc<Group>>>,
    fds: FdTable<OpenFile>,
    log: OpLog,
    unknown: Mutex<HashSet<(FdKind, u64)>>,
    fd_changes: Mutex<()>,
    /// The memory device models reach by DMA once the IOMMU translated an
    /// address: this process's ([`ProcessMemory`]).
    dma_memory: Arc<dyn UserMemory + Send + Sync>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("config", &self.config).field("host", &self.host).finish()
    }
}

impl Emulator {
    /// An emulator of the groups of `host`, a simulated host in this
    /// process.
    pub(crate) fn new(host: Arc<SimHost>, config: ShimConfig) -> Self {
        let vm = ThisVm::local(&config.virtual_phbs(host.pe_ids().count()));
        Emulator::on(Arc::new(InProcess(host)), vm, config)
    }

    /// An emulator of the groups of eehd's host, for the VM `host` acts
    /// for.
    pub(crate) fn on_eehd(host: Arc<EehdHost>, config: ShimConfig) -> Self {
        Emulator::on(Arc::clone(&host) as Arc<dyn Host>, ThisVm::Eehd(host), config)
    }

    /// An emulator of the groups of `host`, for the VM `vm`.
    fn on(host: Arc<dyn Host>, vm: ThisVm, config: ShimConfig) -> Self {
        Emulator {
            host,
            config,
            vm: Arc::new(vm),
            groups: Mutex::default(),
            fds: FdTable::new(),
            log: OpLog::new(),
            unknown: Mutex::default(),
            fd_changes: Mutex::default(),
            dma_memory: Arc::new(ProcessMemory),
        }
    }

    /// The emulator with device models' DMA into `memory` instead of this
    /// process's (the fuzzing entry point, whose inputs name addresses).
    #[cfg(feature = "fuzzing")]
    pub(crate) fn with_dma_memory(self, memory: Arc<dyn UserMemory + Send + Sync>) -> Self {
        Emulator { dma_memory: memory, ..self }
    }

    /// The simulated host, when it lives in this process.
    pub(crate) fn sim_host(&self) -> Option<&Arc<SimHost>> {
        self.host.in_process()
    }

    /// The op log.
    pub(crate) fn log(&self) -> &OpLog {
        &self.log
    }

    /// The kind of an emulated descriptor (the fast "is it ours" check).
    pub(crate) fn kind(&self, fd: i32) -> Option<FdKind> {
        self.fds.kind(fd)
    }

    /// `open` of a path below `/dev/vfio/`; `None` for other paths.
    pub(crate) fn open(&self, path: &[u8], flags: i32) -> Option<Result<i32, i32>> {
        let name = path.strip_prefix(VFIO_DIR)?;
        let result = self.open_name(name, flags & libc::O_CLOEXEC != 0);
        let (fd, kind) = match &result {
            Ok(fd) => (*fd, self.fds.kind(*fd).map_or("path", kind_name)),
            Err(_) => (-1, "path"),
        };
        // A group's open, even a failed one, is logged with its number.
        let group = std::str::from_utf8(name).ok().and_then(|n| n.parse::<u32>().ok());
        self.log.record(
            fd,
            kind,
            "open",
            group.map_or(0, u64::from),
            group.into_iter().collect(),
            result.map(i64::from),
        );
        Some(result)
    }

    fn open_name(&self, name: &[u8], cloexec: bool) -> Result<i32, i32> {
        if name == b"vfio" {
            return self.install(OpenFile::Container(Arc::new(Container::new())), cloexec);
        }
        let number: u32 = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()).ok_or(ENOENT)?;
        // One open at a time: the host lends a group once.
        let mut groups = lock(&self.groups);
        if groups.get(&number).is_some_and(|g| g.is_open()) {
            return Err(EBUSY);
        }
        let lent = self.host.attach(number)?;
        let devices = lent.functions.into_iter().map(|f| Arc::new(device::Device::new(&*self.host, f))).collect();
        let group = Arc::new(Group::new(lent.pe, devices));
        groups.insert(number, Arc::clone(&group));
        let file = group.open(Arc::clone(&self.host), &self.vm)?;
        drop(groups);
        self.install(OpenFile::Group(Arc::new(file)), cloexec)
    }

    /// Runs `change`, a change of the process's descriptors together with
    /// this emulator's record of it (a real `close`, `close_range`, `dup*`
    /// and the table update, or a new emulated descriptor), as one step for
    /// every other such change: no thread can get a number another thread's
    /// change is about to record, so the table stays exact. Callers forget
    /// a descriptor before its real close and record one after its real
    /// creation, so a call never reaches the emulation with a number the
    /// program has for something else.
    pub(crate) fn changing_fds<T>(&self, change: impl FnOnce() -> T) -> T {
        let _one_at_a_time = lock(&self.fd_changes);
        change()
    }

    /// Gives `file` a new real descriptor.
    fn install(&self, file: OpenFile, cloexec: bool) -> Result<i32, i32> {
        self.changing_fds(|| {
            let fd = sys::eventfd(cloexec).map_err(|e| e.raw_os_error().unwrap_or(EIO))?;
            let kind = file.kind();
            if self.fds.insert(fd, kind, file).is_err() {
                sys::close(fd);
                return Err(EMFILE);
            }
            Ok(fd)
        })
    }

    /// Forgets `fd` before the caller closes it for real.
    pub(crate) fn forget(&self, fd: i32) {
        // The file drops here, outside the table's lock.
        drop(self.fds.remove(fd));
    }

    /// Takes `fd`'s file out of the table, to [`restore`](Self::restore) if
    /// the real call that would replace it fails.
    pub(crate) fn take(&self, fd: i32) -> Option<(i32, OpenFile)> {
        self.fds.remove(fd).map(|file| (fd, file))
    }

    /// Takes `first..=last` out of the table (`close_range`).
    pub(crate) fn take_range(&self, first: u32, last: u32) -> Vec<(i32, OpenFile)> {
        self.fds.remove_range(first, last)
    }

    /// Puts back what [`take`](Self::take) or
    /// [`take_range`](Self::take_range) took: the real call failed.
    pub(crate) fn restore(&self, taken: impl IntoIterator<Item = (i32, OpenFile)>) {
        for (fd, file) in taken {
            let kind = file.kind();
            // The number was emulated a moment ago, so it fits the table.
            let _ = self.fds.insert(fd, kind, file);
        }
    }

    /// Records that `new` (a fresh duplicate of `old`) refers to `old`'s
    /// file; a file that `new` replaced is forgotten.
    pub(crate) fn duplicated(&self, old: i32, new: i32) {
        match self.fds.get(old) {
            Some(file) => {
                let kind = file.kind();
                if let Ok(replaced) = self.fds.insert(new, kind, file) {
                    drop(replaced);
                }
            }
            None => self.forget(new),
        }
    }

    /// What `request` names on an fd of `kind`, from the `uapi` table. The
    /// container's `+12` is `IOMMU_GET_INFO` for type1 and
    /// `IOMMU_SPAPR_TCE_GET_INFO` for sPAPR: it is named after the IOMMU this
    /// emulator offers.
    fn request(&self, kind: FdKind, request: u64) -> Request {
        let Some(offset) = vfio_offset(request) else { return Request::Foreign };
        let other_iommus_get_info =
            if self.config.iommu.is_type1() { uapi::IOMMU_SPAPR_TCE_GET_INFO } else { uapi::IOMMU_GET_INFO };
        let ioctl = uapi::UPSTREAM_IOCTLS
            .iter()
            .chain([&uapi::DEVICE_ADDR_MAPPING])
            .find(|i| i.fd == kind && i.offset == offset && **i != other_iommus_get_info);
        Request::Vfio(ioctl.copied())
    }

    /// `ioctl(fd, request, arg)` on an emulated descriptor, a pointer `arg`
    /// reaching this process's memory; `None` if `fd` is not one.
    pub(crate) fn ioctl(&self, fd: i32, request: u64, arg: usize) -> Option<IoctlResult> {
        self.ioctl_in(&ProcessMemory, fd, request, arg)
    }

    /// `ioctl(fd, request, arg)` with a pointer `arg` into `memory`.
    pub(crate) fn ioctl_in(&self, memory: &dyn UserMemory, fd: i32, request: u64, arg: usize) -> Option<IoctlResult> {
        let file = self.fds.get(fd)?;
        let kind = file.kind();
        let ptr = UserPtr::new(arg, memory);
        let mut logged = arg as u64;
        let mut groups = file.groups();
        let (ioctl, result) = match self.request(kind, request) {
            Request::Foreign => (None, Err(ENOTTY)),
            Request::Vfio(ioctl) => {
                let result = match &file {
                    OpenFile::Container(c) if ioctl == Some(uapi::EEH_PE_OP) => {
                        let request = PeOpArg::copy_in(|buf| ptr.read(buf));
                        // An EEH op is logged with its op code: the pointer says nothing.
                        if let Ok(request) = &request {
                            logged = u64::from(request.op());
                        }
                        let done = self.eeh_pe_op(c, request);
                        groups = done.groups;
                        done.result
                    }
                    OpenFile::Container(c) => self.container_ioctl(c, ioctl, arg as u64, ptr),
                    OpenFile::Group(g) => {
                        if ioctl == Some(uapi::GROUP_SET_CONTAINER) {
                            // Logged with the container fd, not the pointer to it.
                            let mut fd = [0u8; 4];
                            if ptr.read(&mut fd).is_ok() {
                                logged = u64::from(u32::from_ne_bytes(fd));
                            }
                        }
                        self.group_ioctl(g, ioctl, ptr)
                    }
                    OpenFile::Device(d) => self.device_ioctl(d, ioctl, ptr),
                };
                (ioctl, result)
            }
        };
        if ioctl.is_none() && matches!(result, Err(ENOTTY | EINVAL)) && lock(&self.unknown).insert((kind, request)) {
            tracing::warn!(fd, fd_kind = kind_name(kind), request = format_args!("{request:#x}"), "Unknown ioctl");
        }
        let name = ioctl.map_or("unknown", |i| i.name);
        self.log.record(fd, kind_name(kind), name, logged, groups, result);
        Some(result)
    }

    /// `pread`/`pwrite` on an emulated descriptor; `None` if `fd` is not one.
    pub(crate) fn region_access(&self, fd: i32, offset: u64, access: Access<'_>) -> Option<Result<usize, i32>> {
        let file = self.fds.get(fd)?;
        let write = matches!(access, Access::Write(_));
        let result = match &file {
            OpenFile::Device(d) => self.device_access(d, offset, access),
            _ => Err(EINVAL),
        };
        let op = if write { "pwrite" } else { "pread" };
        self.log.record(fd, kind_name(file.kind()), op, offset, Vec::new(), result.map(|n| n as i64));
        Some(result)
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Fixture, Vmm};
    use super::*;
    use crate::config::IommuMode;

    #[test]
    fn names_every_number_from_the_table_by_fd_kind_and_iommu() {
        let fx = Fixture::new(ShimConfig::default());
        let named = |kind, ioctl: VfioIoctl| fx.emu.request(kind, u64::from(ioctl.native()));
        assert_eq!(named(FdKind::Container, uapi::IOMMU_GET_INFO), Request::Vfio(Some(uapi::IOMMU_SPAPR_TCE_GET_INFO)));
        assert_eq!(
            named(FdKind::Device, uapi::DEVICE_GET_PCI_HOT_RESET_INFO),
            Request::Vfio(Some(uapi::DEVICE_GET_PCI_HOT_RESET_INFO))
        );
        assert_eq!(named(FdKind::Group, uapi::DEVICE_GET_INFO), Request::Vfio(None), "a device ioctl on a group");
        assert_eq!(fx.emu.request(FdKind::Device, 0x5401), Request::Foreign, "TCGETS");
        let type1 = Fixture::new(ShimConfig { iommu: IommuMode::Type1V2, ..ShimConfig::default() });
        let request = u64::from(uapi::IOMMU_SPAPR_TCE_GET_INFO.native());
        assert_eq!(type1.emu.request(FdKind::Container, request), Request::Vfio(Some(uapi::IOMMU_GET_INFO)));
        for ioctl in uapi::UPSTREAM_IOCTLS.iter().filter(|i| i.name != "VFIO_IOMMU_GET_INFO") {
            assert_eq!(named(ioctl.fd, *ioctl), Request::Vfio(Some(*ioctl)), "{}", ioctl.name);
        }
    }

    #[test]
    fn unknown_ioctls_are_logged_as_unknown_with_the_core_answers() {
        let fx = Fixture::new(ShimConfig::default());
        let container = fx.open("vfio");
        let mut nothing = [0u8; 8];
        assert_eq!(fx.call(container, uapi::DEVICE_GET_INFO, &mut nothing), Err(EINVAL), "no IOMMU: the core");
        assert_eq!(fx.emu.ioctl(container, 0x5401, 0), Some(Err(ENOTTY)), "not VFIO");
        let group = fx.open("0");
        assert_eq!(fx.call(group, uapi::IOMMU_MAP_DMA, &mut nothing), Err(ENOTTY));
        let ops: Vec<_> = fx.emu.log().dump().records.iter().map(|r| r.op.to_string()).collect();
        assert_eq!(ops, ["open", "unknown", "unknown", "open", "unknown"]);
        assert_eq!(fx.emu.ioctl(999_999, 0, 0), None, "not an emulated fd");
    }

    #[test]
    fn bad_pointers_answer_efault() {
        let fx = Fixture::new(ShimConfig::default());
        let group = fx.open("0");
        let status = u64::from(uapi::GROUP_GET_STATUS.native());
        // Unmapped: the top of the lower half; read-only: this test's code.
        let unmapped = 0x7fff_ffff_0000_usize;
        let read_only = bad_pointers_answer_efault as fn() as usize;
        for arg in [0, 8, unmapped, read_only, usize::MAX - 3] {
            assert_eq!(fx.emu.ioctl(group, status, arg), Some(Err(libc::EFAULT)), "{arg:#x}");
        }
        let get_device = u64::from(uapi::GROUP_GET_DEVICE_FD.native());
        assert_eq!(fx.emu.ioctl(group, get_device, unmapped), Some(Err(libc::EFAULT)));
    }

    #[test]
    fn duplicates_share_the_file_and_the_last_close_releases_it() {
        let fx = Fixture::new(ShimConfig::default());
        let group = fx.open("0");
        let copy = sys::dup_private(group).unwrap();
        fx.emu.duplicated(group, copy);
        assert_eq!(fx.emu.kind(copy), Some(FdKind::Group));
        fx.close(group);
        assert_eq!(fx.emu.open(b"/dev/vfio/0", 0), Some(Err(libc::EBUSY)), "the copy holds the group open");
        fx.close(copy);
        let again = fx.open("0");
        assert_eq!(fx.emu.take_range(0, u32::MAX).len(), 1);
        assert_eq!(fx.emu.kind(again), None);
        sys::close(again);
        assert_eq!(fx.emu.open(b"/dev/vfio/99", 0), Some(Err(ENOENT)));
        assert_eq!(fx.emu.open(b"/dev/null", 0), None, "not below /dev/vfio/");
    }
}
