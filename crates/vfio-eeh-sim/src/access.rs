//! Device access for the front ends (VFIO emulation, the guest model):
//! config space, BAR MMIO and DMA attempts by host address, each gated by the
//! PE's EEH state and each able to fire an armed injection.
//!
//! A stopped PE answers loads with all-ones and drops stores; its DMA is
//! refused. A function not yet ready after a reset answers config reads with
//! Configuration Request Retry and MMIO with all-ones. A memory (or I/O)
//! access while the function's decoding is off is an Unsupported Request,
//! which freezes the PE, as on PowerNV.
//!
//! A device model's DMA ([`crate::nvme`]) goes through the same gate, then
//! through the [`DeviceBus`] the VMM that opened the device attached: an
//! address the IOMMU does not map is an IOMMU fault, which freezes the PE
//! (cause [`FreezeCause::DmaFault`]), and never reaches memory.

use vfio_eeh::addr::{ConfigAddr, PciAddr};
use vfio_eeh::backend::errno;
use vfio_eeh::ops::AccessKind;
use vfio_eeh::pe::FreezeScope;

use std::sync::Arc;

use crate::device::{ones, CMD_IO, CMD_MASTER, CMD_MEM, CONFIG_SIZE};
use crate::event::FreezeCause;
use crate::host::{Locked, SimHost};
use crate::nvme::{DmaError, DmaMemory, InterruptSink};
use crate::spec::{BarInfo, BarKind, DeviceInfo};

/// Which way a DMA goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmaDir {
    /// The device reads memory.
    Read,
    /// The device writes memory.
    Write,
}

/// Why a DMA did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DmaRefusal {
    /// The PE's DMA is stopped (frozen, in reset, failed), or this DMA fired
    /// an injection.
    Stopped,
    /// Bus mastering is off in the command register.
    BusMasterOff,
    /// The function is not ready after a reset.
    NotReady,
}

/// Why an access was refused. Frozen PEs are not an error: their loads
/// return all-ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    /// No such function.
    #[error("No PCI device {0} on this host")]
    NoDevice(PciAddr),
    /// The function has no such BAR.
    #[error("Device {dev} has no BAR {bar}")]
    NoBar {
        /// The function.
        dev: PciAddr,
        /// The BAR index asked for.
        bar: u8,
    },
    /// Width not 1, 2 or 4 (8 for MMIO).
    #[error("Access width {0} is not supported")]
    Width(u8),
    /// The access is not naturally aligned or runs past the end.
    #[error("Access of {width} bytes at {offset:#x} is misaligned or beyond {size:#x} bytes")]
    Range {
        /// Offset asked for.
        offset: u64,
        /// Width asked for.
        width: u8,
        /// Size of the space.
        size: u64,
    },
    /// The DMA did not happen.
    #[error("DMA by {dev} refused: {why:?}")]
    DmaRefused {
        /// The function.
        dev: PciAddr,
        /// Why.
        why: DmaRefusal,
    },
}

impl AccessError {
    /// The errno a VFIO region access would give.
    pub const fn errno(&self) -> i32 {
        match self {
            AccessError::NoDevice(_) => errno::ENODEV,
            AccessError::DmaRefused { .. } => errno::EIO,
            _ => errno::EINVAL,
        }
    }
}

/// What a VMM lends a device model while it has the device open: its
/// memory as the device sees it through the container's IOMMU, and its
/// interrupt eventfds. Called with the device's PE locked: an
/// implementation must not call back into the host.
pub trait DeviceBus: InterruptSink + Send + Sync + std::fmt::Debug {
    /// Copies `buf.len()` bytes at I/O virtual address `iova` into `buf`.
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    /// Copies `bytes` to I/O virtual address `iova`.
    fn dma_write(&self, iova: u64, bytes: &[u8]) -> Result<(), DmaError>;
}

/// A device with no VMM attached: nothing is mapped, no interrupt goes
/// anywhere.
#[derive(Debug)]
struct Unattached;

impl InterruptSink for Unattached {
    fn msix_enabled(&self) -> bool {
        false
    }
    fn raise_msix(&self, _vector: u16) {}
    fn set_intx(&self, _asserted: bool) {}
}

impl DeviceBus for Unattached {
    fn dma_read(&self, iova: u64, _buf: &mut [u8]) -> Result<(), DmaError> {
        Err(DmaError::Unmapped { iova })
    }
    fn dma_write(&self, iova: u64, _bytes: &[u8]) -> Result<(), DmaError> {
        Err(DmaError::Unmapped { iova })
    }
}

/// A device model's DMA with its PE locked: gated like [`SimHost::dma`],
/// then carried out by the bus; an IOMMU fault freezes the PE.
struct GatedDma<'a, 'l> {
    locked: &'a mut Locked<'l>,
    dev: usize,
    bus: &'a dyn DeviceBus,
}

impl GatedDma<'_, '_> {
    fn transfer(
        &mut self,
        dir: DmaDir,
        iova: u64,
        run: impl FnOnce(&dyn DeviceBus) -> Result<(), DmaError>,
    ) -> Result<(), DmaError> {
        if dma_refusal(self.locked, self.dev, dir, iova).is_some() {
            return Err(DmaError::Stopped);
        }
        let result = run(self.bus);
        if let Err(DmaError::Unmapped { iova } | DmaError::Direction { iova } | DmaError::Fault { iova }) = result {
            self.locked.freeze(FreezeScope::All, FreezeCause::DmaFault, Some(self.dev), iova);
        }
        result
    }
}

impl DmaMemory for GatedDma<'_, '_> {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        self.transfer(DmaDir::Read, iova, |bus| bus.dma_read(iova, buf))
    }

    fn write(&mut self, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        self.transfer(DmaDir::Write, iova, |bus| bus.dma_write(iova, bytes))
    }
}

/// Why function `i` of a locked PE cannot DMA at `iova` now, if it cannot
/// (a matching armed injection fires).
fn dma_refusal(locked: &mut Locked<'_>, i: usize, dir: DmaDir, iova: u64) -> Option<DmaRefusal> {
    let device = &locked.inner.devices[i];
    if !device.ready(locked.now) {
        return Some(DmaRefusal::NotReady);
    }
    if device.command() & CMD_MASTER == 0 {
        return Some(DmaRefusal::BusMasterOff);
    }
    let kind = match dir {
        DmaDir::Read => AccessKind::DmaRead,
        DmaDir::Write => AccessKind::DmaWrite,
    };
    (!locked.gate(i, kind, iova)).then_some(DmaRefusal::Stopped)
}

fn check_range(offset: u64, width: u8, size: u64, widths: &[u8]) -> Result<(), AccessError> {
    if !widths.contains(&width) {
        return Err(AccessError::Width(width));
    }
    let end = offset.checked_add(u64::from(width));
    if offset & (u64::from(width) - 1) != 0 || !matches!(end, Some(end) if end <= size) {
        return Err(AccessError::Range { offset, width, size });
    }
    Ok(())
}

impl SimHost {
    fn locate(&self, dev: PciAddr) -> Result<(usize, usize), AccessError> {
        self.device_index.get(&dev).copied().ok_or(AccessError::NoDevice(dev))
    }

    fn lock_device(&self, dev: PciAddr) -> Result<(Locked<'_>, usize), AccessError> {
        let (pe, i) = self.locate(dev)?;
        Ok((self.lock(&self.pes[pe]), i))
    }

    /// A function's identity, BARs and ready delay.
    pub fn device(&self, dev: PciAddr) -> Result<&DeviceInfo, AccessError> {
        let (pe, i) = self.locate(dev)?;
        Ok(&self.pes[pe].infos[i])
    }

    /// A function's BARs (sizes and flags, for VFIO region info).
    pub fn bars(&self, dev: PciAddr) -> Result<&[BarInfo], AccessError> {
        self.device(dev).map(|d| d.bars.as_slice())
    }

    /// Whether a function answers config requests (false for a while after a
    /// reset; see [`DeviceInfo::ready_delay`]).
    pub fn device_ready(&self, dev: PciAddr) -> Result<bool, AccessError> {
        let (locked, i) = self.lock_device(dev)?;
        Ok(locked.inner.devices[i].ready(locked.now))
    }

    /// A function-level reset (`VFIO_DEVICE_RESET`): the function's memory is
    /// lost; its config space comes back as it was (the kernel saves and
    /// restores it around the reset).
    pub fn function_reset(&self, dev: PciAddr) -> Result<(), AccessError> {
        let (mut locked, i) = self.lock_device(dev)?;
        locked.inner.devices[i].function_reset();
        Ok(())
    }

    /// Reads 1, 2 or 4 bytes of config space at an aligned offset below
    /// 4096. All-ones while the PE is stopped.
    pub fn config_read(&self, dev: PciAddr, offset: u16, width: u8) -> Result<u32, AccessError> {
        check_range(u64::from(offset), width, u64::from(CONFIG_SIZE), &[1, 2, 4])?;
        let (mut locked, i) = self.lock_device(dev)?;
        if !locked.gate(i, AccessKind::ConfigLoad, config_addr(dev, offset)) {
            return Ok(u32::MAX >> (32 - 8 * u32::from(width)));
        }
        Ok(locked.inner.devices[i].config_read(offset, width, locked.now))
    }

    /// Writes 1, 2 or 4 bytes of config space; dropped while the PE is
    /// stopped.
    pub fn config_write(&self, dev: PciAddr, offset: u16, width: u8, value: u32) -> Result<(), AccessError> {
        check_range(u64::from(offset), width, u64::from(CONFIG_SIZE), &[1, 2, 4])?;
        let (mut locked, i) = self.lock_device(dev)?;
        if locked.gate(i, AccessKind::ConfigStore, config_addr(dev, offset)) {
            let now = locked.now;
            locked.inner.devices[i].config_write(offset, width, value, now);
        }
        Ok(())
    }

    /// Reads 1, 2, 4 or 8 bytes of a BAR at an aligned offset. All-ones while
    /// the PE is stopped or the function is not ready.
    pub fn bar_read(&self, dev: PciAddr, bar: u8, offset: u64, width: u8) -> Result<u64, AccessError> {
        let (mut locked, i, info) = self.bar_access(dev, bar, offset, width)?;
        if !mmio_gate(&mut locked, i, &info, offset, true) {
            return Ok(ones(width));
        }
        Ok(locked.inner.devices[i].mem_read(bar, offset, width))
    }

    /// Writes 1, 2, 4 or 8 bytes of a BAR; dropped while the PE is stopped
    /// or the function is not ready. A write to a device model's register
    /// or doorbell runs the model, with the attached [`DeviceBus`].
    pub fn bar_write(&self, dev: PciAddr, bar: u8, offset: u64, width: u8, value: u64) -> Result<(), AccessError> {
        let (mut locked, i, info) = self.bar_access(dev, bar, offset, width)?;
        if !mmio_gate(&mut locked, i, &info, offset, false) {
            return Ok(());
        }
        let device = &mut locked.inner.devices[i];
        if !device.controller_claims(bar, offset) {
            device.mem_write(bar, offset, width, value);
            return Ok(());
        }
        let bus: Arc<dyn DeviceBus> = device.bus.clone().unwrap_or_else(|| Arc::new(Unattached));
        if let Some(mut controller) = device.take_controller() {
            let mut dma = GatedDma { locked: &mut locked, dev: i, bus: &*bus };
            controller.write(offset, width, value, &mut dma, &*bus);
            locked.inner.devices[i].put_controller(controller);
        }
        Ok(())
    }

    /// Lends a device model the VMM's memory and interrupts while the VMM
    /// has the device open (`None` when it closes it).
    pub fn attach_bus(&self, dev: PciAddr, bus: Option<Arc<dyn DeviceBus>>) -> Result<(), AccessError> {
        let (mut locked, i) = self.lock_device(dev)?;
        locked.inner.devices[i].bus = bus;
        Ok(())
    }

    fn bar_access(
        &self,
        dev: PciAddr,
        bar: u8,
        offset: u64,
        width: u8,
    ) -> Result<(Locked<'_>, usize, BarInfo), AccessError> {
        let info = *self.device(dev)?.bar(bar).ok_or(AccessError::NoBar { dev, bar })?;
        check_range(offset, width, info.size, &[1, 2, 4, 8])?;
        let (locked, i) = self.lock_device(dev)?;
        Ok((locked, i, info))
    }

    /// The function tries a DMA at I/O virtual address `iova`; refused while
    /// the PE's DMA is stopped (and a matching armed injection fires).
    pub fn dma(&self, dev: PciAddr, dir: DmaDir, iova: u64) -> Result<(), AccessError> {
        let (mut locked, i) = self.lock_device(dev)?;
        match dma_refusal(&mut locked, i, dir, iova) {
            Some(why) => Err(AccessError::DmaRefused { dev, why }),
            None => Ok(()),
        }
    }
}

/// The PAPR config address of a register, which config injections match.
fn config_addr(dev: PciAddr, offset: u16) -> u64 {
    let addr = ConfigAddr::new(dev.bus(), dev.devfn(), offset).expect("Offsets are checked below 4096");
    u64::from(addr.raw())
}

/// Whether an MMIO (or I/O) access reaches the function's memory. A stopped
/// PE, a fired injection, or a function not ready stop it; decoding off
/// makes it an Unsupported Request that freezes the PE.
fn mmio_gate(locked: &mut Locked<'_>, i: usize, bar: &BarInfo, offset: u64, load: bool) -> bool {
    let (kind, decode) = match (bar.kind, load) {
        (BarKind::Io, true) => (AccessKind::IoLoad, CMD_IO),
        (BarKind::Io, false) => (AccessKind::IoStore, CMD_IO),
        (_, true) => (AccessKind::MemLoad, CMD_MEM),
        (_, false) => (AccessKind::MemStore, CMD_MEM),
    };
    let device = &locked.inner.devices[i];
    let addr = device.bar_addr(bar).wrapping_add(offset);
    if !locked.gate(i, kind, addr) {
        return false;
    }
    let device = &locked.inner.devices[i];
    if !device.ready(locked.now) {
        return false;
    }
    if device.command() & decode == 0 {
        locked.freeze(FreezeScope::All, FreezeCause::UnsupportedRequest, Some(i), addr);
        return false;
    }
    true
}
