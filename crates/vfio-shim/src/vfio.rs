//! The emulated `/dev/vfio`: containers, groups and devices with the Linux
//! VFIO core's, vfio-pci's and the IOMMU drivers' semantics and argument
//! checks, served on the simulated host.
//!
//! [`Emulator`] is entered from the interposed libc calls with a descriptor
//! number; it answers `None` for descriptors and paths that are not its own,
//! so the caller passes those through untouched.
//!
//! Object lifetimes follow the kernel: a device file holds its group file, a
//! group holds the container it is attached to (so a closed container fd
//! leaves the container alive), closing the last group file detaches it, and
//! detaching a container's last group releases its IOMMU.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use libc::{EBADFD, EMFILE, ETIMEDOUT};
use vfio_eeh::addr::{GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::errno::{EBADF, EBUSY, EFAULT, EINVAL, EIO, ENODEV, ENOENT, ENOTTY};
use vfio_eeh::backend::{BackendError, EehBackend, Errno, PeOpReply};
use vfio_eeh::container::serve_pe_op;
use vfio_eeh::ops::{AccessKind, EehOp};
use vfio_eeh::uapi::{self, Encoding, FdKind, VfioIoctl};
use vfio_eeh_sim::spec::{BarInfo, BarKind};
use vfio_eeh_sim::SimHost;
use zerocopy::IntoBytes;

use crate::config::{Firmware, IommuMode, Platform, ShimConfig};
use crate::fdtable::FdTable;
use crate::iommu::Iommu;
use crate::oplog::{kind_name, OpLog};
use crate::sys;
use crate::user::UserPtr;

/// The emulated directory; only paths below it are claimed.
pub(crate) const VFIO_DIR: &[u8] = b"/dev/vfio/";
/// vfio-pci: the region index sits in offset bits 40..63.
const REGION_SHIFT: u32 = 40;
/// Bytes of PCIe config space.
const CONFIG_SIZE: u64 = 4096;
/// `VFIO_PCI_NUM_IRQS`: INTx, MSI, MSI-X, ERR, REQ.
const NUM_IRQS: u32 = 5;
/// IRQ indexes.
const IRQ_INTX: u32 = 0;
const IRQ_ERR: u32 = 3;
const IRQ_REQ: u32 = 4;
/// `VFIO_IRQ_INFO_*`.
const IRQ_INFO_EVENTFD: u32 = 1;
const IRQ_INFO_MASKABLE: u32 = 2;
const IRQ_INFO_AUTOMASKED: u32 = 4;
const IRQ_INFO_NORESIZE: u32 = 8;
/// `VFIO_IRQ_SET_*`.
const SET_DATA_NONE: u32 = 1;
const SET_DATA_BOOL: u32 = 2;
const SET_DATA_EVENTFD: u32 = 4;
const SET_DATA_MASK: u32 = 7;
const SET_ACTION_MASK: u32 = 8;
const SET_ACTION_UNMASK: u32 = 16;
const SET_ACTION_TRIGGER: u32 = 32;
const SET_ACTION_TYPE_MASK: u32 = 56;
/// PCI command register and its memory-decode bit.
const PCI_COMMAND: u64 = 4;
const PCI_COMMAND_MEMORY: u8 = 2;
/// `VFIO_DEVICE_FEATURE_*`: the feature index mask and the operations.
const FEATURE_MASK: u32 = 0xffff;
const FEATURE_GET: u32 = 1 << 16;
const FEATURE_SET: u32 = 1 << 17;
const FEATURE_PROBE: u32 = 1 << 18;
/// Feature indexes vfio-pci offers here (the VF token, 0, needs SR-IOV).
const FEATURE_LOW_POWER_ENTRY: u32 = 3;
const FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP: u32 = 4;
const FEATURE_LOW_POWER_EXIT: u32 = 5;
/// Interrupt pin register.
const PCI_INTERRUPT_PIN: u16 = 0x3d;
/// `strndup_user(arg, PAGE_SIZE)` in `GET_DEVICE_FD`.
const DEVICE_NAME_MAX: usize = 4096;

type IoctlResult = Result<i64, i32>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An owned eventfd of the caller's, kept for an IRQ.
#[derive(Debug)]
struct KeptFd(i32);

impl Drop for KeptFd {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// The interrupt state of a device. Every index has at most one vector here
/// (INTx if the function has a pin, ERR, REQ; no MSI or MSI-X), so each
/// keeps at most one trigger.
#[derive(Debug, Default)]
struct IrqState {
    /// vfio-pci's `irq_type == INTX`: INTx is enabled (with or without a
    /// trigger eventfd).
    intx: bool,
    /// The trigger eventfd per index.
    triggers: [Option<KeptFd>; NUM_IRQS as usize],
}

/// The data of a `SET_IRQS` (its first element; `count` says if there is one).
#[derive(Debug, Clone, Copy)]
enum IrqData {
    None,
    Bool(bool),
    Eventfd(i32),
}

/// A caller's eventfd kept as an IRQ trigger: `EBADF` if `fd` is not open,
/// `EINVAL` if it is not an eventfd (`eventfd_ctx_fdget`).
fn keep_eventfd(fd: i32) -> Result<KeptFd, i32> {
    if !sys::is_open(fd) {
        return Err(EBADF);
    }
    if !sys::is_eventfd(fd) {
        return Err(EINVAL);
    }
    sys::dup_private(fd).map(KeptFd).map_err(|_| EBADF)
}

fn fire(trigger: &Option<KeptFd>) -> Result<(), i32> {
    trigger.as_ref().map_or(Ok(()), |kept| sys::signal(kept.0).map_err(|_| EIO))
}

impl IrqState {
    /// INTx `TRIGGER` (`vfio_pci_set_intx_trigger`).
    fn intx_trigger(&mut self, count: u32, data: IrqData) -> IoctlResult {
        if self.intx && count == 0 && matches!(data, IrqData::None) {
            self.intx = false;
            self.triggers[IRQ_INTX as usize] = None;
            return Ok(0);
        }
        if count != 1 {
            return Err(EINVAL);
        }
        match data {
            IrqData::Eventfd(fd) => {
                self.triggers[IRQ_INTX as usize] = if fd >= 0 { Some(keep_eventfd(fd)?) } else { None };
                self.intx = true;
                Ok(0)
            }
            _ if !self.intx => Err(EINVAL),
            IrqData::None | IrqData::Bool(true) => fire(&self.triggers[IRQ_INTX as usize]).map(|()| 0),
            IrqData::Bool(false) => Ok(0),
        }
    }

    /// INTx `MASK`/`UNMASK`: the simulator raises no INTx, so there is
    /// nothing to gate; the answers are vfio-pci's.
    fn intx_mask(&self, count: u32, data: IrqData, action: u32) -> IoctlResult {
        if !self.intx || count != 1 {
            return Err(EINVAL);
        }
        match (data, action) {
            // vfio_pci_set_intx_mask: "XXX implement me".
            (IrqData::Eventfd(_), SET_ACTION_MASK) => Err(ETIMEDOUT),
            // An unmask eventfd would be armed (fd >= 0) or disarmed (-1).
            (IrqData::Eventfd(fd), _) if fd >= 0 => keep_eventfd(fd).map(|_| 0),
            _ => Ok(0),
        }
    }

    /// ERR and REQ `TRIGGER` (`vfio_pci_set_ctx_trigger_single`).
    fn single_trigger(&mut self, index: u32, count: u32, data: IrqData) -> IoctlResult {
        let slot = &mut self.triggers[index as usize];
        match data {
            IrqData::None if slot.is_some() => {
                if count > 0 {
                    fire(slot)?;
                } else {
                    *slot = None;
                }
                Ok(0)
            }
            IrqData::None => Err(EINVAL),
            _ if count == 0 => Err(EINVAL),
            IrqData::Bool(on) => {
                if on {
                    fire(slot)?;
                }
                Ok(0)
            }
            IrqData::Eventfd(-1) => {
                *slot = None;
                Ok(0)
            }
            IrqData::Eventfd(fd) if fd >= 0 => {
                *slot = Some(keep_eventfd(fd)?);
                Ok(0)
            }
            IrqData::Eventfd(_) => Err(EINVAL),
        }
    }
}

/// A container: its groups and its IOMMU.
#[derive(Debug, Default)]
pub(crate) struct Container {
    state: Mutex<ContainerState>,
}

#[derive(Debug, Default)]
struct ContainerState {
    groups: Vec<Arc<Group>>,
    iommu: Option<Iommu>,
}

/// One IOMMU group of the simulated host (one PE).
#[derive(Debug)]
pub(crate) struct Group {
    number: u32,
    pe: PeId,
    devices: Vec<Arc<Device>>,
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    open: bool,
    container: Option<Arc<Container>>,
    device_fds: usize,
}

/// One PCI function of a group.
#[derive(Debug)]
pub(crate) struct Device {
    addr: PciAddr,
    name: String,
    bars: [Option<BarInfo>; 6],
    intx: bool,
    /// vfio-pci's virtualised Memory Space bit: BAR accesses are `EIO`
    /// while it is off.
    memory: AtomicBool,
    irqs: Mutex<IrqState>,
    mapping: Mutex<Option<uapi::VfioAddrMapping>>,
}

/// An open group file; dropping the last reference closes it.
#[derive(Debug)]
pub(crate) struct GroupFile {
    group: Arc<Group>,
}

impl Drop for GroupFile {
    fn drop(&mut self) {
        let mut state = lock(&self.group.state);
        state.open = false;
        if let Some(container) = state.container.take() {
            detach(&container, &self.group);
        }
    }
}

/// An open device file; it holds its group file open.
#[derive(Debug)]
pub(crate) struct DeviceFile {
    device: Arc<Device>,
    group: Arc<GroupFile>,
}

impl Drop for DeviceFile {
    fn drop(&mut self) {
        lock(&self.group.group.state).device_fds -= 1;
    }
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
}

/// Removes `group` from `container`; the last group takes the IOMMU with it.
fn detach(container: &Container, group: &Arc<Group>) {
    let mut state = lock(&container.state);
    state.groups.retain(|g| !Arc::ptr_eq(g, group));
    if state.groups.is_empty() {
        state.iommu = None;
    }
}

/// A positioned read or write on a device fd.
#[derive(Debug)]
pub(crate) enum Access<'a> {
    /// `pread`.
    Read(&'a mut [u8]),
    /// `pwrite`.
    Write(&'a [u8]),
}

impl Access<'_> {
    fn len(&self) -> usize {
        match self {
            Access::Read(b) => b.len(),
            Access::Write(b) => b.len(),
        }
    }
}

/// The host behind `VFIO_EEH_PE_OP`: the simulator, with the firmware's
/// refusal of injection functions it does not implement.
struct Firmwared<'a> {
    host: &'a SimHost,
    firmware: Firmware,
}

impl EehBackend for Firmwared<'_> {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        self.host.pe_of(device)
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        self.host.devices_of(pe)
    }

    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        if let (Firmware::Phb4, EehOp::InjectErr(inj)) = (self.firmware, op) {
            if !matches!(inj.func.access(), AccessKind::ConfigLoad | AccessKind::ConfigStore) {
                // skiboot's PHB4 code answers OPAL_UNSUPPORTED; Linux: -EIO.
                return Err(BackendError::Os {
                    what: format!("OPAL error injection of {:?}", inj.func),
                    source: Errno(EIO),
                });
            }
        }
        self.host.pe_op(pe, op)
    }
}

/// The emulated `/dev/vfio` of one process.
pub(crate) struct Emulator {
    host: Arc<SimHost>,
    config: ShimConfig,
    groups: Vec<Arc<Group>>,
    fds: FdTable<OpenFile>,
    log: OpLog,
    unknown: Mutex<HashSet<(FdKind, u64)>>,
}

impl std::fmt::Debug for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emulator").field("config", &self.config).field("groups", &self.groups.len()).finish()
    }
}

/// The VFIO ioctl an encoded request number names: `n` in `VFIO_BASE + n`.
fn vfio_offset(request: u64) -> Option<u8> {
    let nr = u8::try_from(request & 0xff).ok()?;
    let offset = nr.checked_sub(uapi::VFIO_BASE)?;
    (request == u64::from(Encoding::NATIVE.io(uapi::VFIO_TYPE, nr))).then_some(offset)
}

/// The name of the ioctl at `offset` on `kind`, for logs.
fn ioctl_name(kind: FdKind, offset: u8, iommu_type1: bool) -> &'static str {
    let candidates = uapi::UPSTREAM_IOCTLS.iter().chain([&uapi::DEVICE_ADDR_MAPPING]);
    let mut names = candidates.filter(|i: &&VfioIoctl| i.fd == kind && i.offset == offset).map(|i| i.name);
    match (offset, iommu_type1) {
        (12, false) => "VFIO_IOMMU_SPAPR_TCE_GET_INFO",
        _ => names.next().unwrap_or("unknown"),
    }
}

/// The `op` field of the `struct vfio_eeh_pe_op` at `arg`, if readable.
fn eeh_op_code(arg: UserPtr) -> Option<u32> {
    let mut head = [0u8; uapi::VFIO_EEH_PE_OP_MINSZ as usize];
    arg.read(&mut head).ok()?;
    Some(u32::from_ne_bytes([head[8], head[9], head[10], head[11]]))
}

impl Emulator {
    /// An emulator of `host`'s groups.
    pub(crate) fn new(host: Arc<SimHost>, config: ShimConfig) -> Self {
        let topology = host.topology();
        let groups = topology
            .phbs
            .iter()
            .flat_map(|phb| &phb.groups)
            .map(|g| {
                let devices = g.devices.iter().map(|d| Arc::new(Device::new(&host, d.addr))).collect();
                Arc::new(Group { number: g.pe.0, pe: g.pe, devices, state: Mutex::default() })
            })
            .collect();
        Emulator { host, config, groups, fds: FdTable::new(), log: OpLog::new(), unknown: Mutex::default() }
    }

    /// The simulated host.
    pub(crate) fn host(&self) -> &Arc<SimHost> {
        &self.host
    }

    /// The op log.
    pub(crate) fn log(&self) -> &OpLog {
        &self.log
    }

    /// The kind of an emulated descriptor (the fast "is it ours" check).
    pub(crate) fn kind(&self, fd: i32) -> Option<FdKind> {
        self.fds.kind(fd)
    }

    fn offered(&self) -> &'static [u32] {
        match self.config.iommu {
            IommuMode::SpaprTceV2 => &[uapi::VFIO_SPAPR_TCE_IOMMU, uapi::VFIO_SPAPR_TCE_V2_IOMMU],
            IommuMode::Type1V2 => &[uapi::VFIO_TYPE1_IOMMU, uapi::VFIO_TYPE1V2_IOMMU],
        }
    }

    /// `open` of a path below `/dev/vfio/`; `None` for other paths.
    pub(crate) fn open(&self, path: &[u8], flags: i32) -> Option<Result<i32, i32>> {
        let name = path.strip_prefix(VFIO_DIR)?;
        let result = self.open_name(name, flags & libc::O_CLOEXEC != 0);
        let (fd, kind) = match &result {
            Ok(fd) => (*fd, self.fds.kind(*fd).map_or("path", kind_name)),
            Err(_) => (-1, "path"),
        };
        self.log.record(fd, kind, "open", 0, result.map(i64::from));
        Some(result)
    }

    fn open_name(&self, name: &[u8], cloexec: bool) -> Result<i32, i32> {
        if name == b"vfio" {
            return self.install(OpenFile::Container(Arc::default()), cloexec);
        }
        let number: u32 = std::str::from_utf8(name).ok().and_then(|s| s.parse().ok()).ok_or(ENOENT)?;
        let group = self.groups.iter().find(|g| g.number == number).ok_or(ENOENT)?;
        {
            let mut state = lock(&group.state);
            if state.open {
                return Err(EBUSY);
            }
            state.open = true;
        }
        self.install(OpenFile::Group(Arc::new(GroupFile { group: Arc::clone(group) })), cloexec)
    }

    /// Gives `file` a new real descriptor.
    fn install(&self, file: OpenFile, cloexec: bool) -> Result<i32, i32> {
        let fd = sys::eventfd(cloexec).map_err(|e| e.raw_os_error().unwrap_or(EIO))?;
        let kind = file.kind();
        if self.fds.insert(fd, kind, file).is_err() {
            sys::close(fd);
            return Err(EMFILE);
        }
        Ok(fd)
    }

    /// Forgets `fd` before the caller closes it for real.
    pub(crate) fn forget(&self, fd: i32) {
        // The file drops here, outside the table's lock.
        drop(self.fds.remove(fd));
    }

    /// Forgets `first..=last` (`close_range`).
    pub(crate) fn forget_range(&self, first: u32, last: u32) {
        drop(self.fds.remove_range(first, last));
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

    /// `ioctl(fd, request, arg)` on an emulated descriptor; `None` if `fd` is
    /// not one.
    pub(crate) fn ioctl(&self, fd: i32, request: u64, arg: usize) -> Option<IoctlResult> {
        let file = self.fds.get(fd)?;
        let kind = file.kind();
        // SAFETY: `arg` is the caller's ioctl argument; `UserPtr`'s contract is
        // the ioctl contract the caller accepted.
        let ptr = unsafe { UserPtr::new(arg) };
        let (name, result) = match vfio_offset(request) {
            Some(offset) => {
                let type1 = self.config.iommu == IommuMode::Type1V2;
                let result = match &file {
                    OpenFile::Container(c) => self.container_ioctl(c, offset, arg as u64, ptr),
                    OpenFile::Group(g) => self.group_ioctl(&g.group, g, offset, ptr),
                    OpenFile::Device(d) => self.device_ioctl(d, offset, ptr),
                };
                (ioctl_name(kind, offset, type1), result)
            }
            None => ("unknown", Err(ENOTTY)),
        };
        let name = match result {
            Err(ENOTTY) | Err(EINVAL) if name == "unknown" => {
                if lock(&self.unknown).insert((kind, request)) {
                    tracing::warn!(
                        fd,
                        fd_kind = kind_name(kind),
                        request = format_args!("{request:#x}"),
                        "Unknown ioctl"
                    );
                }
                name
            }
            _ => name,
        };
        // An EEH op is logged with its op code: the pointer says nothing.
        let logged = match name {
            "VFIO_EEH_PE_OP" => eeh_op_code(ptr).map_or(arg as u64, u64::from),
            _ => arg as u64,
        };
        self.log.record(fd, kind_name(kind), name, logged, result);
        Some(result)
    }

    fn container_ioctl(&self, container: &Container, offset: u8, value: u64, arg: UserPtr) -> IoctlResult {
        let mut state = lock(&container.state);
        match offset {
            o if o == uapi::GET_API_VERSION.offset => Ok(i64::from(uapi::VFIO_API_VERSION)),
            o if o == uapi::CHECK_EXTENSION.offset => {
                let ext = u32::try_from(value).ok();
                Ok(i64::from(ext.is_some_and(|e| self.offered().contains(&e) || e == uapi::VFIO_EEH)))
            }
            o if o == uapi::SET_IOMMU.offset => {
                if state.groups.is_empty() || state.iommu.is_some() {
                    return Err(EINVAL);
                }
                state.iommu = Some(Iommu::of_type(value, self.offered()).ok_or(ENODEV)?);
                Ok(0)
            }
            _ => {
                // The VFIO core answers EINVAL until an IOMMU driver is set;
                // then the driver answers, ENOTTY for what it does not know.
                let first_pe = state.groups.first().map(|g| g.pe);
                let iommu = state.iommu.as_mut().ok_or(EINVAL)?;
                match offset {
                    12 => iommu.get_info(arg),
                    13 => iommu.map_dma(arg),
                    14 => iommu.unmap_dma(arg),
                    15..=20 => iommu.spapr(offset, arg),
                    21 => {
                        let pe = first_pe.ok_or(ENODEV)?;
                        drop(state);
                        self.eeh_pe_op(pe, arg)
                    }
                    _ => Err(ENOTTY),
                }
            }
        }
    }

    /// `VFIO_EEH_PE_OP` on the container's (first) group's PE.
    fn eeh_pe_op(&self, pe: PeId, arg: UserPtr) -> IoctlResult {
        let mut raw = [0u8; uapi::VFIO_EEH_PE_OP_INJECT_SZ as usize];
        let min = uapi::VFIO_EEH_PE_OP_MINSZ as usize;
        arg.read(&mut raw[..min])?;
        let word = |raw: &[u8], i: usize| u32::from_ne_bytes([raw[i], raw[i + 1], raw[i + 2], raw[i + 3]]);
        let (argsz, flags, op) = (word(&raw, 0), word(&raw, 4), word(&raw, 8));
        let mut len = min;
        if op == uapi::VFIO_EEH_PE_INJECT_ERR && flags == 0 && argsz >= uapi::VFIO_EEH_PE_OP_INJECT_SZ {
            arg.read(&mut raw)?;
            len = raw.len();
        }
        let backend = Firmwared { host: &self.host, firmware: self.config.firmware };
        let result = serve_pe_op(&backend, pe, &raw[..len]).map(i64::from);
        tracing::debug!(%pe, op, ?result, "EEH op");
        result
    }

    fn group_ioctl(&self, group: &Arc<Group>, file: &Arc<GroupFile>, offset: u8, arg: UserPtr) -> IoctlResult {
        match offset {
            o if o == uapi::GROUP_GET_STATUS.offset => {
                let mut status: uapi::VfioGroupStatus = arg.read_struct(8)?;
                if status.argsz < 8 {
                    return Err(EINVAL);
                }
                let attached = lock(&group.state).container.is_some();
                status.flags =
                    uapi::VFIO_GROUP_FLAGS_VIABLE | if attached { uapi::VFIO_GROUP_FLAGS_CONTAINER_SET } else { 0 };
                arg.write(status.as_bytes()).map(|()| 0)
            }
            o if o == uapi::GROUP_SET_CONTAINER.offset => {
                let mut fd = [0u8; 4];
                arg.read(&mut fd)?;
                self.set_container(group, i32::from_ne_bytes(fd))
            }
            o if o == uapi::GROUP_UNSET_CONTAINER.offset => {
                let mut state = lock(&group.state);
                let container = state.container.as_ref().ok_or(EINVAL)?;
                if state.device_fds > 0 {
                    return Err(EBUSY);
                }
                detach(container, group);
                state.container = None;
                Ok(0)
            }
            o if o == uapi::GROUP_GET_DEVICE_FD.offset => {
                let mut buf = [0u8; DEVICE_NAME_MAX];
                let name = arg.read_cstr(&mut buf)?;
                let device = group.devices.iter().find(|d| d.name.as_bytes() == name).ok_or(ENODEV)?;
                self.open_device(group, file, device)
            }
            _ => Err(ENOTTY),
        }
    }

    fn set_container(&self, group: &Arc<Group>, fd: i32) -> IoctlResult {
        let container = match self.fds.get(fd) {
            Some(OpenFile::Container(c)) => c,
            Some(_) => return Err(EBADFD),
            None if fd >= 0 && sys::is_open(fd) => return Err(EBADFD),
            None => return Err(EBADF),
        };
        let mut state = lock(&group.state);
        if state.container.is_some() {
            return Err(EINVAL);
        }
        lock(&container.state).groups.push(Arc::clone(group));
        state.container = Some(container);
        Ok(0)
    }

    fn open_device(&self, group: &Arc<Group>, file: &Arc<GroupFile>, device: &Arc<Device>) -> IoctlResult {
        {
            let mut state = lock(&group.state);
            let has_iommu = state.container.as_ref().is_some_and(|c| lock(&c.state).iommu.is_some());
            if !has_iommu {
                return Err(EINVAL);
            }
            state.device_fds += 1;
        }
        let file = DeviceFile { device: Arc::clone(device), group: Arc::clone(file) };
        self.install(OpenFile::Device(Arc::new(file)), true).map(i64::from)
    }

    fn device_ioctl(&self, file: &DeviceFile, offset: u8, arg: UserPtr) -> IoctlResult {
        let device = &file.device;
        match offset {
            o if o == uapi::DEVICE_GET_INFO.offset => {
                let mut info: uapi::VfioDeviceInfo = arg.read_struct(16)?;
                if info.argsz < 16 {
                    return Err(EINVAL);
                }
                info.flags = uapi::VFIO_DEVICE_FLAGS_PCI | uapi::VFIO_DEVICE_FLAGS_RESET;
                info.num_regions = uapi::VFIO_PCI_NUM_REGIONS;
                info.num_irqs = NUM_IRQS;
                arg.write(&info.as_bytes()[..16]).map(|()| 0)
            }
            o if o == uapi::DEVICE_GET_REGION_INFO.offset => {
                let mut info: uapi::VfioRegionInfo = arg.read_struct(32)?;
                if info.argsz < 32 {
                    return Err(EINVAL);
                }
                let (size, flags) = device.region(info.index).ok_or(EINVAL)?;
                info.size = size;
                info.flags = flags;
                info.cap_offset = 0;
                info.offset = u64::from(info.index) << REGION_SHIFT;
                arg.write(info.as_bytes()).map(|()| 0)
            }
            o if o == uapi::DEVICE_GET_IRQ_INFO.offset => {
                let mut info: uapi::VfioIrqInfo = arg.read_struct(16)?;
                if info.argsz < 16 || info.index >= NUM_IRQS {
                    return Err(EINVAL);
                }
                info.count = device.irq_count(info.index);
                info.flags = IRQ_INFO_EVENTFD
                    | if info.index == IRQ_INTX { IRQ_INFO_MASKABLE | IRQ_INFO_AUTOMASKED } else { IRQ_INFO_NORESIZE };
                arg.write(info.as_bytes()).map(|()| 0)
            }
            o if o == uapi::DEVICE_SET_IRQS.offset => device.set_irqs(arg),
            o if o == uapi::DEVICE_FEATURE.offset => Device::device_feature(arg),
            o if o == uapi::DEVICE_RESET.offset => {
                self.host.function_reset(device.addr).map(|()| 0).map_err(|e| e.errno())
            }
            o if o == uapi::DEVICE_ADDR_MAPPING.offset => match self.config.platform {
                Platform::None => Err(ENOTTY),
                Platform::Powernv => device.addr_mapping(arg),
            },
            _ => Err(ENOTTY),
        }
    }

    /// `pread`/`pwrite` on an emulated descriptor; `None` if `fd` is not one.
    pub(crate) fn region_access(&self, fd: i32, offset: u64, access: Access<'_>) -> Option<Result<usize, i32>> {
        let file = self.fds.get(fd)?;
        let write = matches!(access, Access::Write(_));
        let result = match &file {
            OpenFile::Device(d) => self.device_access(&d.device, offset, access),
            _ => Err(EINVAL),
        };
        let op = if write { "pwrite" } else { "pread" };
        self.log.record(fd, kind_name(file.kind()), op, offset, result.map(|n| n as i64));
        Some(result)
    }

    fn device_access(&self, device: &Device, offset: u64, mut access: Access<'_>) -> Result<usize, i32> {
        let index = offset >> REGION_SHIFT;
        let pos = offset & ((1 << REGION_SHIFT) - 1);
        let len = access.len() as u64;
        if index == u64::from(uapi::VFIO_PCI_CONFIG_REGION_INDEX) {
            if pos.checked_add(len).is_none_or(|end| end > CONFIG_SIZE) {
                return Err(EFAULT);
            }
            self.config_access(device, pos, &mut access)?;
            return Ok(access.len());
        }
        let bar = u8::try_from(index).ok().and_then(|i| device.bars.get(usize::from(i))).copied().flatten();
        let bar = bar.ok_or(EINVAL)?;
        if pos >= bar.size {
            return Err(EINVAL);
        }
        if bar.kind != BarKind::Io && !device.memory.load(Ordering::Acquire) {
            return Err(EIO);
        }
        let n = usize::try_from(len.min(bar.size - pos)).map_err(|_| EINVAL)?;
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let width = chunk(at, n - done, 8);
            let w = usize::from(width);
            let result = match &mut access {
                Access::Read(buf) => self.host.bar_read(device.addr, bar.index, at, width).map(|v| {
                    buf[done..done + w].copy_from_slice(&v.to_le_bytes()[..w]);
                }),
                Access::Write(buf) => {
                    let mut bytes = [0u8; 8];
                    bytes[..w].copy_from_slice(&buf[done..done + w]);
                    self.host.bar_write(device.addr, bar.index, at, width, u64::from_le_bytes(bytes))
                }
            };
            result.map_err(|e| e.errno())?;
            done += w;
        }
        Ok(n)
    }

    fn config_access(&self, device: &Device, pos: u64, access: &mut Access<'_>) -> Result<(), i32> {
        let n = access.len();
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let width = chunk(at, n - done, 4);
            let w = usize::from(width);
            let reg = u16::try_from(at).map_err(|_| EFAULT)?;
            match access {
                Access::Read(buf) => {
                    let v = self.host.config_read(device.addr, reg, width).map_err(|e| e.errno())?;
                    buf[done..done + w].copy_from_slice(&v.to_le_bytes()[..w]);
                }
                Access::Write(buf) => {
                    let mut bytes = [0u8; 4];
                    bytes[..w].copy_from_slice(&buf[done..done + w]);
                    self.host
                        .config_write(device.addr, reg, width, u32::from_le_bytes(bytes))
                        .map_err(|e| e.errno())?;
                    if (at..at + u64::from(width)).contains(&PCI_COMMAND) {
                        let byte = bytes[usize::try_from(PCI_COMMAND - at).unwrap_or(0)];
                        device.memory.store(byte & PCI_COMMAND_MEMORY != 0, Ordering::Release);
                    }
                }
            }
            done += w;
        }
        Ok(())
    }
}

/// The widest naturally aligned access (at most `max` bytes) at `at` that
/// fits in `left` bytes, as vfio-pci splits a region access.
fn chunk(at: u64, left: usize, max: u8) -> u8 {
    [8u8, 4, 2]
        .into_iter()
        .find(|&w| w <= max && usize::from(w) <= left && at.is_multiple_of(u64::from(w)))
        .unwrap_or(1)
}

impl Device {
    fn new(host: &SimHost, addr: PciAddr) -> Self {
        let mut bars = [None; 6];
        for bar in host.bars(addr).unwrap_or_default() {
            if let Some(slot) = bars.get_mut(usize::from(bar.index)) {
                *slot = Some(*bar);
            }
        }
        let command = host.config_read(addr, 4, 1).unwrap_or(0);
        let pin = host.config_read(addr, PCI_INTERRUPT_PIN, 1).unwrap_or(0);
        Device {
            addr,
            name: addr.to_string(),
            bars,
            intx: pin != 0,
            memory: AtomicBool::new(command & u32::from(PCI_COMMAND_MEMORY) != 0),
            irqs: Mutex::default(),
            mapping: Mutex::default(),
        }
    }

    /// Size and flags of a region, `None` for an index vfio-pci refuses.
    fn region(&self, index: u32) -> Option<(u64, u32)> {
        let rw = uapi::VFIO_REGION_INFO_FLAG_READ | uapi::VFIO_REGION_INFO_FLAG_WRITE;
        match index {
            0..=5 => Some(self.bars[index as usize].map_or((0, 0), |b| (b.size, rw))),
            uapi::VFIO_PCI_ROM_REGION_INDEX => Some((0, 0)),
            uapi::VFIO_PCI_CONFIG_REGION_INDEX => Some((CONFIG_SIZE, rw)),
            _ => None,
        }
    }

    /// Vectors per IRQ index: INTx if the function has a pin; no MSI or
    /// MSI-X capability; ERR (PCIe) and REQ.
    fn irq_count(&self, index: u32) -> u32 {
        match index {
            IRQ_INTX => u32::from(self.intx),
            IRQ_ERR | IRQ_REQ => 1,
            _ => 0,
        }
    }

    /// `VFIO_DEVICE_SET_IRQS`: `vfio_set_irqs_validate_and_prepare`, then
    /// vfio-pci's handlers; a `NONE`/`BOOL` trigger signals the eventfd
    /// (loopback).
    fn set_irqs(&self, arg: UserPtr) -> IoctlResult {
        let hdr: uapi::VfioIrqSet = arg.read_struct(20)?;
        if hdr.argsz < 20
            || hdr.index >= NUM_IRQS
            || hdr.count >= u32::MAX - hdr.start
            || hdr.flags & !(SET_DATA_MASK | SET_ACTION_TYPE_MASK) != 0
        {
            return Err(EINVAL);
        }
        let max = self.irq_count(hdr.index);
        if hdr.start >= max || hdr.start + hdr.count > max {
            return Err(EINVAL);
        }
        let elem = match hdr.flags & SET_DATA_MASK {
            SET_DATA_NONE => 0,
            SET_DATA_BOOL => 1,
            SET_DATA_EVENTFD => 4,
            _ => return Err(EINVAL),
        };
        // count <= max <= 1 from here on.
        let data_len = usize::try_from(hdr.count).map_err(|_| EINVAL)? * elem;
        if usize::try_from(hdr.argsz - 20).map_err(|_| EINVAL)? < data_len {
            return Err(EINVAL);
        }
        let action = hdr.flags & SET_ACTION_TYPE_MASK;
        let handled = match hdr.index {
            IRQ_INTX => matches!(action, SET_ACTION_MASK | SET_ACTION_UNMASK | SET_ACTION_TRIGGER),
            _ => action == SET_ACTION_TRIGGER,
        };
        if !handled {
            return Err(ENOTTY);
        }
        let mut raw = [0u8; 24];
        arg.read(&mut raw[..20 + data_len])?;
        let data = match elem {
            0 => IrqData::None,
            1 => IrqData::Bool(raw[20] != 0),
            _ => IrqData::Eventfd(i32::from_ne_bytes([raw[20], raw[21], raw[22], raw[23]])),
        };
        let mut state = lock(&self.irqs);
        match (hdr.index, action) {
            (IRQ_INTX, SET_ACTION_TRIGGER) => state.intx_trigger(hdr.count, data),
            (IRQ_INTX, _) => state.intx_mask(hdr.count, data, action),
            (index, _) => state.single_trigger(index, hdr.count, data),
        }
    }

    /// `VFIO_DEVICE_FEATURE`: the VFIO core's checks, then vfio-pci's
    /// features. There is no migration or dirty tracking, and no SR-IOV
    /// (no VF token); low-power entry and exit are offered and, as the
    /// simulated function has no power states, do nothing.
    fn device_feature(arg: UserPtr) -> IoctlResult {
        let mut raw = [0u8; 8];
        arg.read(&mut raw)?;
        let argsz = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let flags = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
        let (get, set, probe) = (flags & FEATURE_GET != 0, flags & FEATURE_SET != 0, flags & FEATURE_PROBE != 0);
        if argsz < 8
            || flags & !(FEATURE_MASK | FEATURE_GET | FEATURE_SET | FEATURE_PROBE) != 0
            || (!probe && get && set)
        {
            return Err(EINVAL);
        }
        // vfio_check_feature(flags, argsz, SET, minsz) of the low-power features.
        let minsz = match flags & FEATURE_MASK {
            FEATURE_LOW_POWER_ENTRY | FEATURE_LOW_POWER_EXIT => 0,
            // struct vfio_device_low_power_entry_with_wakeup: an eventfd and a reserved word.
            FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP => 8,
            _ => return Err(ENOTTY),
        };
        if get || (!probe && (!set || (argsz - 8) < minsz)) {
            return Err(EINVAL);
        }
        Ok(0)
    }

    /// The address-mapping ioctl with the PowerNV hook: exactly one of
    /// GET/SET/CLEAR; SET validates and stores the guest address.
    fn addr_mapping(&self, arg: UserPtr) -> IoctlResult {
        let mut m: uapi::VfioDeviceAddrMapping = arg.read_struct(24)?;
        let size = crate::iommu::size_u32::<uapi::VfioDeviceAddrMapping>();
        if m.argsz < size || m.flags.count_ones() != 1 {
            return Err(EINVAL);
        }
        let mut stored = lock(&self.mapping);
        match m.flags {
            uapi::VFIO_DEVICE_ADDR_MAPPING_SET => {
                let p = m.mapping;
                GuestAddr::new(vfio_eeh::addr::Buid(p.buid), p.bus, p.slot, p.func).map_err(|_| EINVAL)?;
                *stored = Some(uapi::VfioAddrMapping { pad: [0; 5], ..p });
                Ok(0)
            }
            uapi::VFIO_DEVICE_ADDR_MAPPING_GET => {
                m.mapping = stored.ok_or(ENOENT)?;
                arg.write(m.as_bytes()).map(|()| 0)
            }
            uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR => stored.take().map(|_| 0).ok_or(ENOENT),
            _ => Err(EINVAL),
        }
    }
}
