//! Containers (`/dev/vfio/vfio`): the VFIO core's container ioctls, the
//! IOMMU driver a container's groups share once `VFIO_SET_IOMMU` chose it
//! ([`super::iommu`]), and `VFIO_EEH_PE_OP` on the container's PE.

use std::sync::{Arc, Mutex};

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::errno::{EINVAL, EIO, ENODEV, ENOTTY};
use vfio_eeh::backend::{BackendError, EehBackend, Errno, PeOpReply};
use vfio_eeh::container::PeOpArg;
use vfio_eeh::ops::{AccessKind, EehOp};
use vfio_eeh::uapi::{self, VfioIoctl};
use vfio_eeh_sim::SimHost;

use super::group::Group;
use super::iommu::Iommu;
use super::{lock, Emulator, IoctlResult};
use crate::config::{Firmware, IommuMode};
use crate::user::UserPtr;

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

impl Container {
    /// Adds `group` (`VFIO_GROUP_SET_CONTAINER`).
    pub(super) fn attach(&self, group: &Arc<Group>) {
        lock(&self.state).groups.push(Arc::clone(group));
    }

    /// Removes `group`; the last group takes the IOMMU with it.
    pub(super) fn detach(&self, group: &Arc<Group>) {
        let mut state = lock(&self.state);
        state.groups.retain(|g| !Arc::ptr_eq(g, group));
        if state.groups.is_empty() {
            state.iommu = None;
        }
    }

    /// Whether `VFIO_SET_IOMMU` chose an IOMMU (device fds need one).
    pub(super) fn has_iommu(&self) -> bool {
        lock(&self.state).iommu.is_some()
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

impl Emulator {
    /// The IOMMU types the emulated host offers.
    fn offered(&self) -> &'static [u32] {
        match self.config.iommu {
            IommuMode::SpaprTceV2 => &[uapi::VFIO_SPAPR_TCE_IOMMU, uapi::VFIO_SPAPR_TCE_V2_IOMMU],
            IommuMode::Type1V2 => &[uapi::VFIO_TYPE1_IOMMU, uapi::VFIO_TYPE1V2_IOMMU],
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
        arg: UserPtr,
    ) -> IoctlResult {
        let mut state = lock(&container.state);
        match ioctl {
            Some(uapi::GET_API_VERSION) => Ok(i64::from(uapi::VFIO_API_VERSION)),
            Some(uapi::CHECK_EXTENSION) => {
                let ext = u32::try_from(value).ok();
                Ok(i64::from(ext.is_some_and(|e| self.offered().contains(&e) || e == uapi::VFIO_EEH)))
            }
            Some(uapi::SET_IOMMU) => {
                if state.groups.is_empty() || state.iommu.is_some() {
                    return Err(EINVAL);
                }
                state.iommu = Some(Iommu::of_type(value, self.offered()).ok_or(ENODEV)?);
                Ok(0)
            }
            // The VFIO core answers EINVAL until an IOMMU driver is set; then
            // the driver answers, ENOTTY for what it does not know.
            Some(ioctl) => state.iommu.as_mut().ok_or(EINVAL)?.ioctl(ioctl, arg),
            None => state.iommu.as_ref().map_or(Err(EINVAL), |_| Err(ENOTTY)),
        }
    }

    /// `VFIO_EEH_PE_OP` on the container's (first) group's PE, with the
    /// argument already copied in (its errno is answered after the
    /// container's own checks, as the kernel's order has it).
    pub(super) fn eeh_pe_op(&self, container: &Container, request: Result<PeOpArg, i32>) -> IoctlResult {
        let pe = {
            let state = lock(&container.state);
            state.iommu.as_ref().ok_or(EINVAL)?;
            state.groups.first().map(|g| g.pe()).ok_or(ENODEV)?
        };
        let request = request?;
        let backend = Firmwared { host: &self.host, firmware: self.config.firmware };
        let result = request.serve(&backend, pe).map(i64::from);
        tracing::debug!(%pe, op = request.op(), ?result, "EEH op");
        result
    }
}

#[cfg(test)]
mod tests {
    use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType, PeState};
    use vfio_eeh::uapi::VfioEehPeOp;

    use super::super::testing::Fixture;
    use super::*;
    use crate::config::ShimConfig;

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
