//! An emulator on the built-in simulated host with a virtual clock (and the
//! library's default immediate injections), and the calls the module tests
//! make on an emulator ([`Vmm`]).

use std::sync::Arc;

use vfio_eeh::uapi::{self, VfioIoctl};
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::config::{InjectionMode, SimConfig};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::SimHost;
use zerocopy::{FromBytes, IntoBytes};

use super::{Emulator, IoctlResult};
use crate::config::ShimConfig;
use crate::sys;

/// An emulator and its host.
pub(super) struct Fixture {
    /// The simulated host.
    pub(super) host: Arc<SimHost>,
    /// The emulator serving it.
    pub(super) emu: Emulator,
}

impl Fixture {
    /// The built-in host under `config`.
    pub(super) fn new(config: ShimConfig) -> Self {
        let sim = SimConfig { injection: InjectionMode::Immediate, ..SimConfig::default() };
        let host = Arc::new(SimHost::new(&TopologySpec::builtin(), sim, Arc::new(VirtualClock::new())));
        Fixture { emu: Emulator::new(Arc::clone(&host), config), host }
    }
}

impl Vmm for Fixture {
    fn emu(&self) -> &Emulator {
        &self.emu
    }
}

/// The calls module tests make on an emulator, as a VMM would.
pub(crate) trait Vmm {
    /// The emulator.
    fn emu(&self) -> &Emulator;

    /// Opens `/dev/vfio/<name>`.
    fn open(&self, name: &str) -> i32 {
        let path = [super::VFIO_DIR, name.as_bytes()].concat();
        self.emu().open(&path, libc::O_CLOEXEC).expect("below /dev/vfio").expect("opens")
    }

    /// Closes an emulated descriptor, as the interposed `close` does.
    fn close(&self, fd: i32) {
        self.emu().forget(fd);
        sys::close(fd);
    }

    /// `ioctl(fd, ioctl, &value)`.
    fn call<T: IntoBytes + FromBytes>(&self, fd: i32, ioctl: VfioIoctl, value: &mut T) -> IoctlResult {
        let arg = std::ptr::from_mut(value).addr();
        self.emu().ioctl(fd, u64::from(ioctl.native()), arg).expect("an emulated fd")
    }

    /// `ioctl(fd, ioctl, value)` with a number as the argument.
    fn call_value(&self, fd: i32, ioctl: VfioIoctl, value: u64) -> IoctlResult {
        let arg = usize::try_from(value).expect("a small argument");
        self.emu().ioctl(fd, u64::from(ioctl.native()), arg).expect("an emulated fd")
    }

    /// `VFIO_GROUP_SET_CONTAINER`.
    fn attach(&self, group: i32, container: i32) {
        let mut fd = container;
        assert_eq!(self.call(group, uapi::GROUP_SET_CONTAINER, &mut fd), Ok(0));
    }

    /// `VFIO_SET_IOMMU` with the v2 IOMMU the configuration offers.
    fn set_iommu(&self, container: i32) {
        let iommu =
            if self.emu().config.iommu.is_type1() { uapi::VFIO_TYPE1V2_IOMMU } else { uapi::VFIO_SPAPR_TCE_V2_IOMMU };
        assert_eq!(self.call_value(container, uapi::SET_IOMMU, u64::from(iommu)), Ok(0));
    }

    /// A device fd of `device` in group `group`, with a container and an
    /// IOMMU.
    fn device(&self, group: &str, device: &str) -> i32 {
        self.device_of(self.group_with_iommu(group), device)
    }

    /// Opens group `group` and attaches it to a new container with an IOMMU.
    fn group_with_iommu(&self, group: &str) -> i32 {
        let (container, group) = (self.open("vfio"), self.open(group));
        self.attach(group, container);
        self.set_iommu(container);
        group
    }

    /// A device fd of `device` in the open group `group`.
    fn device_of(&self, group: i32, device: &str) -> i32 {
        let mut name = [device.as_bytes(), b"\0"].concat();
        let arg = name.as_mut_ptr().addr();
        let fd = self.emu().ioctl(group, u64::from(uapi::GROUP_GET_DEVICE_FD.native()), arg).expect("an emulated fd");
        i32::try_from(fd.expect("the device opens")).expect("a descriptor")
    }
}
