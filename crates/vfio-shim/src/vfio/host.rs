//! The host behind the emulated `/dev/vfio`, as one seam: the in-process
//! simulator ([`InProcess`], the default) or eehd's shared host
//! ([`crate::daemon::EehdHost`], `VFIO_EEH_SHIM_CONNECT`). The emulation
//! above it (groups, containers, device fds, the kernel's argument checks)
//! is the same for both.

use std::fmt::Debug;
use std::sync::Arc;

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::errno::ENOENT;
use vfio_eeh::backend::EehBackend;
use vfio_eeh_sim::spec::{BarInfo, DeviceModel};
use vfio_eeh_sim::{DeviceBus, SimHost};

use super::device::VmmBus;
use super::direct::DirectBars;

/// A group as the host lends it to this process.
#[derive(Debug)]
pub(crate) struct GroupInfo {
    /// The PE the group is.
    pub(crate) pe: PeId,
    /// Its functions.
    pub(crate) functions: Vec<FunctionInfo>,
}

/// A function of a lent group.
#[derive(Debug)]
pub(crate) struct FunctionInfo {
    /// Its address.
    pub(crate) addr: PciAddr,
    /// Its BARs.
    pub(crate) bars: Vec<BarInfo>,
    /// Its BAR memory shared for direct access, if the host shares it.
    pub(crate) direct: Option<DirectBars>,
    /// MSI-X vectors of its device model (0: no MSI-X).
    pub(crate) msix_vectors: u16,
}

/// What the emulation needs of a host. Errors are the positive errnos the
/// emulated call answers. PE ops go through [`EehBackend`].
pub(crate) trait Host: EehBackend + Send + Sync + Debug {
    /// `open("/dev/vfio/<group>")` reaches the host: the group is lent to
    /// this process (`ENOENT`: no such group; `EBUSY`: another VM's;
    /// `ENODEV`: the host cannot be reached).
    fn attach(&self, group: u32) -> Result<GroupInfo, i32>;

    /// The group's last file closed: the host may lend it to others.
    fn detach(&self, pe: PeId);

    /// A function's first device fd opened (`eeh_dev_open`).
    fn device_opened(&self, addr: PciAddr);

    /// A function's last device fd closed (`eeh_dev_release`).
    fn device_released(&self, addr: PciAddr);

    /// Lends a function's device model this VMM's DMA and interrupts while
    /// its device fd is open (`None` takes them back). A host without a
    /// model for the function ignores it.
    fn attach_bus(&self, addr: PciAddr, bus: Option<Arc<VmmBus>>);

    /// Reads 1, 2 or 4 bytes of config space.
    fn config_read(&self, addr: PciAddr, offset: u16, width: u8) -> Result<u32, i32>;

    /// Writes 1, 2 or 4 bytes of config space.
    fn config_write(&self, addr: PciAddr, offset: u16, width: u8, value: u32) -> Result<(), i32>;

    /// Reads 1, 2, 4 or 8 bytes of a BAR.
    fn bar_read(&self, addr: PciAddr, bar: u8, offset: u64, width: u8) -> Result<u64, i32>;

    /// Writes 1, 2, 4 or 8 bytes of a BAR.
    fn bar_write(&self, addr: PciAddr, bar: u8, offset: u64, width: u8, value: u64) -> Result<(), i32>;

    /// `VFIO_DEVICE_RESET`.
    fn function_reset(&self, addr: PciAddr) -> Result<(), i32>;

    /// The simulated host, when it lives in this process (the control
    /// socket serves only that one).
    fn in_process(&self) -> Option<&Arc<SimHost>>;
}

/// The simulated host inside this process.
#[derive(Debug)]
pub(crate) struct InProcess(pub(crate) Arc<SimHost>);

impl EehBackend for InProcess {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, vfio_eeh::backend::BackendError> {
        self.0.pe_of(device)
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, vfio_eeh::backend::BackendError> {
        self.0.devices_of(pe)
    }

    fn pe_op(
        &self,
        pe: PeId,
        op: vfio_eeh::ops::EehOp,
    ) -> Result<vfio_eeh::backend::PeOpReply, vfio_eeh::backend::BackendError> {
        self.0.pe_op(pe, op)
    }

    fn status(&self, pe: PeId) -> Result<vfio_eeh::backend::PeStatus, vfio_eeh::backend::BackendError> {
        self.0.status(pe)
    }

    fn error_log(&self, pe: PeId) -> Result<Option<Vec<u8>>, vfio_eeh::backend::BackendError> {
        self.0.error_log(pe)
    }
}

impl Host for InProcess {
    /// Every group of the simulated host is this process's.
    fn attach(&self, group: u32) -> Result<GroupInfo, i32> {
        let pe = PeId(group);
        let addrs = self.0.devices_of(pe).map_err(|_| ENOENT)?;
        let functions = addrs
            .into_iter()
            .map(|addr| {
                let msix_vectors = match self.0.device(addr).map(|d| &d.model) {
                    Ok(DeviceModel::Nvme(spec)) => spec.vectors(),
                    _ => 0,
                };
                FunctionInfo { addr, bars: self.0.bars(addr).unwrap_or_default().to_vec(), direct: None, msix_vectors }
            })
            .collect();
        Ok(GroupInfo { pe, functions })
    }

    fn detach(&self, _pe: PeId) {}

    fn device_opened(&self, addr: PciAddr) {
        if let Err(e) = self.0.dev_open(addr) {
            tracing::warn!(device = %addr, error = %e, "eeh_dev_open failed");
        }
    }

    fn device_released(&self, addr: PciAddr) {
        if let Err(e) = self.0.dev_release(addr) {
            tracing::warn!(device = %addr, error = %e, "eeh_dev_release failed");
        }
    }

    fn attach_bus(&self, addr: PciAddr, bus: Option<Arc<VmmBus>>) {
        // The device exists: it is one of the host's.
        let _ = self.0.attach_bus(addr, bus.map(|bus| bus as Arc<dyn DeviceBus>));
    }

    fn config_read(&self, addr: PciAddr, offset: u16, width: u8) -> Result<u32, i32> {
        self.0.config_read(addr, offset, width).map_err(|e| e.errno())
    }

    fn config_write(&self, addr: PciAddr, offset: u16, width: u8, value: u32) -> Result<(), i32> {
        self.0.config_write(addr, offset, width, value).map_err(|e| e.errno())
    }

    fn bar_read(&self, addr: PciAddr, bar: u8, offset: u64, width: u8) -> Result<u64, i32> {
        self.0.bar_read(addr, bar, offset, width).map_err(|e| e.errno())
    }

    fn bar_write(&self, addr: PciAddr, bar: u8, offset: u64, width: u8, value: u64) -> Result<(), i32> {
        self.0.bar_write(addr, bar, offset, width, value).map_err(|e| e.errno())
    }

    fn function_reset(&self, addr: PciAddr) -> Result<(), i32> {
        self.0.function_reset(addr).map_err(|e| e.errno())
    }

    fn in_process(&self) -> Option<&Arc<SimHost>> {
        Some(&self.0)
    }
}
