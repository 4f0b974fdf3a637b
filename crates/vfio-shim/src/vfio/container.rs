//! Containers (`/dev/vfio/vfio`): the VFIO core's container ioctls, the
//! IOMMU driver a container's groups share once `VFIO_SET_IOMMU` chose it
//! ([`super::iommu`]), and `VFIO_EEH_PE_OP` on the container's PEs.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use super::group::Group;
use super::iommu::Iommu;
use super::{lock, Emulator, IoctlResult};
use crate::config::{Firmware, IommuMode};
use crate::user::{UserMemory, UserPtr};
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::errno::{EINVAL, EIO, ENODEV, ENOTTY};
use vfio_eeh::backend::{BackendError, EehBackend, Errno, PeOpReply, PeStatus};
use vfio_eeh::container::PeOpArg;
use vfio_eeh::ops::{AccessKind, EehOp};
use vfio_eeh::uapi::{self, VfioIoctl};
use vfio_eeh_sim::iova::IovaChange;
use vfio_eeh_sim::nvme::DmaError;

/// The number of the next container the process opens.
static NEXT_CONTAINER_ID: AtomicU32 = AtomicU32::new(0);

/// A container: its groups and its IOMMU.
#[derive(Debug)]
pub(crate) struct Container {
    id: u32,
    state: Mutex<ContainerState>,
}

#[derive(Debug, Default)]
struct ContainerState {
    groups: Vec<Arc<Group>>,
    iommu: Option<Iommu>,
    /// While eehd mirrors the IOMMU's mappings ([`Container::start_mirror`]):
    /// the changes its copy has yet to take that are not in the IOMMU's
    /// journal (the `Clear` of an IOMMU that left, or of none set).
    mirror: Option<Vec<IovaChange>>,
}

impl ContainerState {
    /// `VFIO_SET_IOMMU` chose `iommu`; a mirror goes on with its journal
    /// (which starts with a `Clear`).
    fn set_iommu(&mut self, mut iommu: Iommu) {
        if let Some(pending) = &mut self.mirror {
            pending.clear();
            iommu.start_journal();
        }
        self.iommu = Some(iommu);
    }

    /// The last group left, taking the IOMMU and its mappings with it.
    fn drop_iommu(&mut self) {
        if self.iommu.take().is_some() {
            if let Some(pending) = &mut self.mirror {
                *pending = vec![IovaChange::Clear];
            }
        }
    }
}

impl Container {
    /// A container with no group, numbered after the process's previous
    /// one.
    pub(super) fn new() -> Self {
        Container { id: NEXT_CONTAINER_ID.fetch_add(1, Ordering::Relaxed), state: Mutex::default() }
    }

    /// The container's number, unique in the process.
    pub(crate) fn id(&self) -> u32 {
        self.id
    }

    /// Starts mirroring the IOMMU's mappings: the next
    /// [`take_mirror`](Self::take_mirror) begins with a snapshot (a `Clear`,
    /// then every mapping), and the IOMMUs `VFIO_SET_IOMMU` sets later are
    /// mirrored too.
    pub(crate) fn start_mirror(&self) {
        let mut state = lock(&self.state);
        let state = &mut *state;
        state.mirror = Some(match &mut state.iommu {
            Some(iommu) => {
                iommu.start_journal();
                Vec::new()
            }
            None => vec![IovaChange::Clear],
        });
    }

    /// The changes of the mappings since mirroring started or this was last
    /// called, to [`apply`](vfio_eeh_sim::iova::IovaMap::apply) in order to
    /// a copy; none when not mirroring.
    pub(crate) fn take_mirror(&self) -> Vec<IovaChange> {
        let mut state = lock(&self.state);
        let state = &mut *state;
        let Some(pending) = &mut state.mirror else {
            return Vec::new();
        };
        let mut changes = std::mem::take(pending);
        if let Some(iommu) = &mut state.iommu {
            changes.extend(iommu.take_journal());
        }
        changes
    }

    /// Adds `group` (`VFIO_GROUP_SET_CONTAINER`).
    pub(super) fn attach(&self, group: &Arc<Group>) {
        lock(&self.state).groups.push(Arc::clone(group));
    }

    /// Removes `group`; the last group takes the IOMMU with it.
    pub(super) fn detach(&self, group: &Arc<Group>) {
        let mut state = lock(&self.state);
        state.groups.retain(|g| !Arc::ptr_eq(g, group));
        if state.groups.is_empty() {
            state.drop_iommu();
        }
    }

    /// The device reads `buf.len()` bytes at `iova` through the IOMMU from
    /// `memory` (the process's, [`ProcessMemory`](crate::user::ProcessMemory)).
    pub(super) fn dma_read(&self, memory: &dyn UserMemory, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.dma(iova, buf.len(), false, |vaddr, range| memory.read(vaddr, buf.get_mut(range).ok_or(libc::EFAULT)?))
    }

    /// The device writes `bytes` at `iova` through the IOMMU into `memory`.
    pub(super) fn dma_write(&self, memory: &dyn UserMemory, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        self.dma(iova, bytes.len(), true, |vaddr, range| memory.write(vaddr, bytes.get(range).ok_or(libc::EFAULT)?))
    }

    /// A DMA of `len` bytes at `iova`: `copy(vaddr, range)` moves each
    /// piece between the process's memory at `vaddr` and `range` of the
    /// device's buffer. The IOMMU stays locked while the bytes are copied,
    /// so an unmap never races a DMA; memory the process does not have is
    /// `Fault`, never a crash.
    fn dma(
        &self,
        iova: u64,
        len: usize,
        device_writes: bool,
        mut copy: impl FnMut(usize, std::ops::Range<usize>) -> Result<(), i32>,
    ) -> Result<(), DmaError> {
        let state = lock(&self.state);
        let iommu = state.iommu.as_ref().ok_or(DmaError::Unmapped { iova })?;
        let mut done = 0;
        for (vaddr, n) in iommu.translate(iova, len as u64, device_writes)? {
            let fault = DmaError::Fault { iova: iova + done as u64 };
            let n = usize::try_from(n).map_err(|_| fault)?;
            let vaddr = usize::try_from(vaddr).map_err(|_| fault)?;
            copy(vaddr, done..done + n).map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }

    /// Whether `VFIO_SET_IOMMU` chose an IOMMU (device fds need one).
    pub(super) fn has_iommu(&self) -> bool {
        lock(&self.state).iommu.is_some()
    }
}

/// What `VFIO_EEH_PE_OP` did: its answer and the groups it acted on, in
/// order.
#[derive(Debug)]
pub(super) struct PeOpDone {
    /// The answer.
    pub(super) result: IoctlResult,
    /// The groups the op was applied to.
    pub(super) groups: Vec<u32>,
}

/// The host behind `VFIO_EEH_PE_OP` and the RTAS entry point, with the
/// firmware's refusal of injection functions it does not implement.
pub(super) struct Firmwared<'a> {
    /// The host.
    pub(super) host: &'a dyn EehBackend,
    /// What the firmware carries out.
    pub(super) firmware: Firmware,
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

    fn status(&self, pe: PeId) -> Result<PeStatus, BackendError> {
        self.host.status(pe)
    }

    fn error_log(&self, pe: PeId) -> Result<Option<Vec<u8>>, BackendError> {
        self.host.error_log(pe)
    }
}

impl Emulator {
    /// The IOMMU types the emulated host offers.
    fn offered(&self) -> &'static [u32] {
        match self.config.iommu {
            IommuMode::SpaprTceV2 => &[uapi::VFIO_SPAPR_TCE_IOMMU, uapi::VFIO_SPAPR_TCE_V2_IOMMU],
            IommuMode::Type1V2 | IommuMode::Type1V2WithEeh => &[uapi::VFIO_TYPE1_IOMMU, uapi::VFIO_TYPE1V2_IOMMU],
        }
    }

    /// Whether the container's IOMMU serves EEH (`VFIO_EEH`,
    /// `VFIO_EEH_PE_OP`): the sPAPR TCE driver does (`eeh_enabled()`, on on
    /// this PowerNV host); `vfio_iommu_type1` does not
    /// (`vfio_iommu_type1_check_extension`: `default: return 0`;
    /// `vfio_iommu_type1_ioctl`: `-ENOTTY`), except in the named test mode
    /// [`IommuMode::Type1V2WithEeh`]. A bare container (`None`) answers what
    /// the first registered driver that says yes answers
    /// (`vfio_container_ioctl_check_extension` polls them all): the sPAPR
    /// driver's 1. Research Q1, torvalds/linux `drivers/vfio/container.c`,
    /// `vfio_iommu_type1.c`, `vfio_iommu_spapr_tce.c`.
    fn serves_eeh(&self, iommu: Option<&Iommu>) -> bool {
        match iommu {
            None | Some(Iommu::Spapr(_)) => true,
            Some(Iommu::Type1(_)) => self.config.iommu == IommuMode::Type1V2WithEeh,
        }
    }

    /// A container ioctl other than `VFIO_EEH_PE_OP`: `ioctl` is the table's
    /// entry, `None` for a VFIO number the table has not on containers;
    /// `value` is the argument as a number.
    pub(super) fn container_ioctl(
        &self,
        container: &Container,
        ioctl: Option<VfioIoctl>,
        value: u64,
        arg: UserPtr<'_>,
    ) -> IoctlResult {
        let mut state = lock(&container.state);
        match ioctl {
            Some(uapi::GET_API_VERSION) => Ok(i64::from(uapi::VFIO_API_VERSION)),
            Some(uapi::CHECK_EXTENSION) => {
                let ext = u32::try_from(value).ok();
                let eeh = ext == Some(uapi::VFIO_EEH) && self.serves_eeh(state.iommu.as_ref());
                Ok(i64::from(eeh || ext.is_some_and(|e| self.offered().contains(&e))))
            }
            Some(uapi::SET_IOMMU) => {
                if state.groups.is_empty() || state.iommu.is_some() {
                    return Err(EINVAL);
                }
                state.set_iommu(Iommu::of_type(value, self.offered()).ok_or(ENODEV)?);
                Ok(0)
            }
            // The VFIO core answers EINVAL until an IOMMU driver is set; then
            // the driver answers, ENOTTY for what it does not know.
            Some(ioctl) => state.iommu.as_mut().ok_or(EINVAL)?.ioctl(ioctl, arg),
            None => state.iommu.as_ref().map_or(Err(EINVAL), |_| Err(ENOTTY)),
        }
    }

    /// `VFIO_EEH_PE_OP`, with the argument already copied in (its errno is
    /// answered after the container's own checks, as the kernel's order has
    /// it). The sPAPR TCE driver applies the op to every group of the
    /// container, most recently attached first (`tce_iommu_attach_group`
    /// uses `list_add`), and stops at the first non-zero answer, so
    /// `GET_STATE` reports the first group whose PE is not normal (research
    /// Q2, torvalds/linux `drivers/vfio/vfio_iommu_spapr_tce.c`,
    /// `tce_iommu_ioctl` case `VFIO_EEH_PE_OP`). Without an IOMMU the VFIO
    /// core answers `EINVAL`; type1 answers `ENOTTY`.
    pub(super) fn eeh_pe_op(&self, container: &Container, request: Result<PeOpArg, i32>) -> PeOpDone {
        let pes: Result<Vec<(u32, PeId)>, i32> = {
            let state = lock(&container.state);
            match state.iommu.as_ref() {
                None => Err(EINVAL),
                Some(iommu) if !self.serves_eeh(Some(iommu)) => Err(ENOTTY),
                Some(_) => Ok(state.groups.iter().rev().map(|g| (g.number(), g.pe())).collect()),
            }
        };
        let pes = match pes {
            Ok(pes) => pes,
            Err(errno) => return PeOpDone { result: Err(errno), groups: Vec::new() },
        };
        let backend = Firmwared { host: &*self.host, firmware: self.config.firmware };
        let mut done = PeOpDone { result: Ok(0), groups: Vec::with_capacity(pes.len()) };
        for (group, pe) in pes {
            done.groups.push(group);
            done.result = request.and_then(|request| request.serve(&backend, pe).map(i64::from));
            tracing::debug!(%pe, group, op = request.as_ref().map_or(0, |r| r.op()), result = ?done.result, "EEH op");
            if done.result != Ok(0) {
                break;
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType, PeState};
    use vfio_eeh::uapi::VfioEehPeOp;
    use vfio_eeh_sim::iova::{IovaMap, Target};

    use super::super::testing::{Fixture, Vmm};
    use super::super::OpenFile;
    use super::*;
    use crate::config::{IommuMode, ShimConfig};

    /// The container an emulated descriptor is.
    fn container_of(fx: &Fixture, fd: i32) -> Arc<Container> {
        let Some(OpenFile::Container(container)) = fx.emu.fds.get(fd) else {
            panic!("{fd} is not a container");
        };
        container
    }

    const RW: u32 = uapi::VFIO_DMA_MAP_FLAG_READ | uapi::VFIO_DMA_MAP_FLAG_WRITE;

    #[test]
    fn the_mirror_follows_type1_maps_and_unmaps_and_the_iommu_leaving() {
        let fx = Fixture::new(ShimConfig { iommu: IommuMode::Type1V2, ..ShimConfig::default() });
        let fd = fx.open("vfio");
        let container = container_of(&fx, fd);
        assert_ne!(container.id(), container_of(&fx, fx.open("vfio")).id(), "numbered apart");
        assert_eq!(container.take_mirror(), [], "not mirrored");
        container.start_mirror();
        assert_eq!(container.take_mirror(), [IovaChange::Clear], "no IOMMU: nothing mapped");

        let group = fx.open("0");
        fx.attach(group, fd);
        fx.set_iommu(fd);
        let mut map =
            uapi::VfioIommuType1DmaMap { argsz: 32, flags: RW, vaddr: 0x7000_0000, iova: 0x10000, size: 0x4000 };
        assert_eq!(fx.call(fd, uapi::IOMMU_MAP_DMA, &mut map), Ok(0));
        map.iova = 0x20000;
        assert_eq!(fx.call(fd, uapi::IOMMU_MAP_DMA, &mut map), Ok(0));
        let mut unmap = uapi::VfioIommuType1DmaUnmap { argsz: 24, flags: 0, iova: 0x10000, size: 0x4000 };
        assert_eq!(fx.call(fd, uapi::IOMMU_UNMAP_DMA, &mut unmap), Ok(0));
        let mut update = uapi::VfioIommuType1DmaMap { flags: uapi::VFIO_DMA_MAP_FLAG_VADDR, vaddr: 0x9000_0000, ..map };
        assert_eq!(fx.call(fd, uapi::IOMMU_MAP_DMA, &mut update), Ok(0));
        let target = Target { vaddr: 0x7000_0000, device_reads: true, device_writes: true };
        let changes = container.take_mirror();
        assert_eq!(
            changes,
            [
                IovaChange::Clear,
                IovaChange::Map { iova: 0x10000, size: 0x4000, target },
                IovaChange::Map { iova: 0x20000, size: 0x4000, target },
                IovaChange::Unmap { iova: 0x10000, size: 0x4000 },
                IovaChange::Map { iova: 0x20000, size: 0x4000, target: Target { vaddr: 0x9000_0000, ..target } },
            ]
        );
        let mut copy = IovaMap::default();
        for change in &changes {
            assert_eq!(copy.apply(change), Ok(()));
        }
        let state = lock(&container.state);
        let iommu = state.iommu.as_ref().expect("set");
        for iova in [0x10000, 0x20000, 0x23000] {
            assert_eq!(copy.translate(iova, 0x1000, true), iommu.translate(iova, 0x1000, true), "{iova:#x}");
        }
        drop(state);

        fx.close(group);
        assert_eq!(container.take_mirror(), [IovaChange::Clear], "the IOMMU left with its mappings");
        assert_eq!(container.take_mirror(), []);
    }

    #[test]
    fn the_mirror_starts_with_a_snapshot_and_sees_an_spapr_window_go() {
        let fx = Fixture::new(ShimConfig::default());
        let fd = fx.open("vfio");
        let group = fx.open("0");
        fx.attach(group, fd);
        fx.set_iommu(fd);
        let vaddr = 0x7f00_0000_0000;
        let mut reg = uapi::VfioIommuSpaprRegisterMemory { argsz: 24, flags: 0, vaddr, size: 1 << 20 };
        assert_eq!(fx.call(fd, uapi::IOMMU_SPAPR_REGISTER_MEMORY, &mut reg), Ok(0));
        let mut map = uapi::VfioIommuType1DmaMap { argsz: 32, flags: RW, vaddr, iova: 0x2000, size: 0x3000 };
        assert_eq!(fx.call(fd, uapi::IOMMU_MAP_DMA, &mut map), Ok(0));

        let container = container_of(&fx, fd);
        container.start_mirror();
        let target = Target { vaddr, device_reads: true, device_writes: true };
        let snapshot = [IovaChange::Clear, IovaChange::Map { iova: 0x2000, size: 0x3000, target }];
        assert_eq!(container.take_mirror(), snapshot);
        let mut remove = uapi::VfioIommuSpaprTceRemove { argsz: 16, flags: 0, start_addr: 0 };
        assert_eq!(fx.call(fd, uapi::IOMMU_SPAPR_TCE_REMOVE, &mut remove), Ok(0));
        assert_eq!(container.take_mirror(), [IovaChange::Unmap { iova: 0, size: 2 << 30 }], "the 32-bit window");
    }

    #[test]
    fn needs_a_group_before_an_iommu_and_an_iommu_before_dma() {
        let fx = Fixture::new(ShimConfig::default());
        let container = fx.open("vfio");
        assert_eq!(fx.call_value(container, uapi::GET_API_VERSION, 0), Ok(0));
        assert_eq!(fx.call_value(container, uapi::CHECK_EXTENSION, u64::from(uapi::VFIO_EEH)), Ok(1));
        assert_eq!(fx.call_value(container, uapi::CHECK_EXTENSION, u64::from(uapi::VFIO_TYPE1_IOMMU)), Ok(0));
        let spapr = u64::from(uapi::VFIO_SPAPR_TCE_V2_IOMMU);
        assert_eq!(fx.call_value(container, uapi::SET_IOMMU, spapr), Err(EINVAL), "no group yet");
        let mut info = uapi::VfioIommuSpaprTceInfo { argsz: 32, ..Default::default() };
        assert_eq!(fx.call(container, uapi::IOMMU_SPAPR_TCE_GET_INFO, &mut info), Err(EINVAL), "no IOMMU yet");

        let group = fx.open("0");
        fx.attach(group, container);
        assert_eq!(fx.call_value(container, uapi::SET_IOMMU, u64::from(uapi::VFIO_TYPE1_IOMMU)), Err(ENODEV));
        assert_eq!(fx.call_value(container, uapi::SET_IOMMU, spapr), Ok(0));
        assert_eq!(fx.call_value(container, uapi::SET_IOMMU, spapr), Err(EINVAL), "set once");
        assert_eq!(fx.call(container, uapi::IOMMU_SPAPR_TCE_GET_INFO, &mut info), Ok(0));
        assert_eq!(info.flags, uapi::VFIO_IOMMU_SPAPR_INFO_DDW);
        fx.close(group);
        assert_eq!(fx.call(container, uapi::IOMMU_SPAPR_TCE_GET_INFO, &mut info), Err(EINVAL), "the IOMMU left");
    }

    /// Issue 13 item 3, research Q1: EEH lives in the sPAPR TCE driver.
    /// A bare container polls every registered driver (the sPAPR one answers
    /// `eeh_enabled()`, 1 on this PowerNV host); once type1 is set
    /// `vfio_iommu_type1_check_extension` answers 0 for `VFIO_EEH` and
    /// `vfio_iommu_type1_ioctl` `-ENOTTY` for `VFIO_EEH_PE_OP`
    /// (torvalds/linux `drivers/vfio/container.c`, `vfio_iommu_type1.c`).
    /// The named test mode `type1v2-with-eeh` keeps EEH on type1.
    #[test]
    fn type1_containers_have_no_eeh_unless_the_test_mode_says_so() {
        let eeh = u64::from(uapi::VFIO_EEH);
        let check = |iommu| {
            let fx = Fixture::new(ShimConfig { iommu, ..ShimConfig::default() });
            let container = fx.open("vfio");
            let bare = fx.call_value(container, uapi::CHECK_EXTENSION, eeh);
            let group = fx.open("0");
            fx.attach(group, container);
            fx.set_iommu(container);
            let set = fx.call_value(container, uapi::CHECK_EXTENSION, eeh);
            let mut op = VfioEehPeOp::from(EehOp::GetState);
            let state = fx.call(container, uapi::EEH_PE_OP, &mut op);
            (bare, set, state)
        };
        assert_eq!(check(IommuMode::Type1V2), (Ok(1), Ok(0), Err(ENOTTY)));
        assert_eq!(check(IommuMode::Type1V2WithEeh), (Ok(1), Ok(1), Ok(0)));
        assert_eq!(check(IommuMode::SpaprTceV2), (Ok(1), Ok(1), Ok(0)));
    }

    /// Issue 13 item 3, research Q2: on an sPAPR container with several
    /// groups the op runs on each, most recently attached first
    /// (`list_add` in `tce_iommu_attach_group`), and stops at the first
    /// non-zero answer (`tce_iommu_ioctl`, case `VFIO_EEH_PE_OP`,
    /// torvalds/linux `drivers/vfio/vfio_iommu_spapr_tce.c`); the op log
    /// names the groups acted on.
    #[test]
    fn eeh_ops_run_on_every_group_newest_first_until_one_answers_non_zero() {
        let fx = Fixture::new(ShimConfig::default());
        let container = fx.open("vfio");
        let (g0, g2) = (fx.open("0"), fx.open("2"));
        fx.attach(g0, container);
        fx.attach(g2, container);
        fx.set_iommu(container);
        let mut state = VfioEehPeOp::from(EehOp::GetState);
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut state), Ok(0), "both normal");
        fx.host.freeze(PeId(0), vfio_eeh::pe::FreezeScope::All).unwrap();
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut state), Ok(2), "group 0's state, after group 2's 0");
        fx.host.freeze(PeId(2), vfio_eeh::pe::FreezeScope::All).unwrap();
        let mut thaw = VfioEehPeOp::from(EehOp::UnfreezeIo);
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut thaw), Ok(0));
        assert_eq!(fx.host.status(PeId(0)).unwrap().state, PeState::StoppedDma, "applied to both");
        assert_eq!(fx.host.status(PeId(2)).unwrap().state, PeState::StoppedDma);
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut state), Ok(i64::from(PeState::StoppedDma.raw())));

        let groups: Vec<Vec<u32>> =
            fx.emu.log().dump().records.iter().filter(|r| r.op == "VFIO_EEH_PE_OP").map(|r| r.groups.clone()).collect();
        assert_eq!(groups, [vec![2, 0], vec![2, 0], vec![2, 0], vec![2]], "newest first, stopping at non-zero");
    }

    #[test]
    fn eeh_ops_reach_the_pe_of_the_first_group_through_the_firmware() {
        let fx = Fixture::new(ShimConfig::default());
        let container = fx.open("vfio");
        let mut state = VfioEehPeOp::from(EehOp::GetState);
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut state), Err(EINVAL), "no IOMMU");
        let group = fx.open("1");
        fx.attach(group, container);
        fx.set_iommu(container);
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut state), Ok(i64::from(PeState::Normal.raw())));

        let config_inj = ErrInjection { kind: ErrType::Bus32, func: ErrFunc::LoadConfigAddr, addr: 0, mask: 0 };
        let mut inject = VfioEehPeOp::from(EehOp::InjectErr(config_inj));
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut inject), Ok(0));
        assert_eq!(fx.host.status(PeId(1)).unwrap().state, PeState::Stopped);
        let mmio = ErrInjection { func: ErrFunc::LoadMemAddr, ..config_inj };
        let mut inject = VfioEehPeOp::from(EehOp::InjectErr(mmio));
        assert_eq!(fx.call(container, uapi::EEH_PE_OP, &mut inject), Err(EIO), "PHB4 firmware refuses MMIO");

        let log = fx.emu.log().dump();
        let ops: Vec<u64> = log.records.iter().filter(|r| r.op == "VFIO_EEH_PE_OP").map(|r| r.arg).collect();
        let (get, inj) = (u64::from(uapi::VFIO_EEH_PE_GET_STATE), u64::from(uapi::VFIO_EEH_PE_INJECT_ERR));
        assert_eq!(ops, [get, get, inj, inj], "the op log names the op code");
    }
}
