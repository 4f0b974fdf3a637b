//! Device fds (vfio-pci): device and region info, config space and BAR
//! access through `pread`/`pwrite`, interrupts ([`super::irqs`]), device
//! features, function reset, and the address-mapping ioctl.
//!
//! A device file holds its group file open. The first open of a device
//! and its last close are vfio-pci's `open_device`/`close_device`, which
//! call `eeh_dev_open`/`eeh_dev_release` ([`Host::device_opened`],
//! [`Host::device_released`]): while a device is open its PE is passed
//! through, and the host does not count its freezes. While it is open the
//! device's model (an NVMe controller, [`vfio_eeh_sim::nvme`]) gets a
//! [`VmmBus`]: DMA through the container's IOMMU into this process's
//! memory, interrupts through the `SET_IRQS` eventfds. A model's BARs are
//! never mmap-able (no `VFIO_REGION_INFO_FLAG_MMAP`), so every access is a
//! `pread`/`pwrite` the model sees.
//!
//! BAR accesses take the shared-memory path ([`super::direct`]) when the
//! host shares the function's memory and its PE allows it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use vfio_eeh::addr::{Buid, GuestAddr, PciAddr};
use vfio_eeh::backend::errno::{EFAULT, EINVAL, EIO, ENOTTY};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::uapi::{self, VfioIoctl};
use vfio_eeh_sim::iova::IovaChange;
use vfio_eeh_sim::nvme::{DmaError, InterruptSink};
use vfio_eeh_sim::spec::{BarInfo, BarKind};
use vfio_eeh_sim::DeviceBus;
use zerocopy::IntoBytes;

use super::container::Container;
use super::direct::DirectBars;
use super::group::GroupFile;
use super::host::{FunctionInfo, Host};
use super::iommu::size_u32;
use super::irqs::Irqs;
use super::{lock, Emulator, IoctlResult};
use crate::config::Platform;
use crate::user::{UserMemory, UserPtr};
use crate::vm::ThisVm;

/// vfio-pci: the region index sits in offset bits 40..63.
const REGION_SHIFT: u32 = 40;
/// Bytes of PCIe config space.
const CONFIG_SIZE: u64 = 4096;
/// PCI command register and its memory-decode bit (`linux/pci_regs.h`).
const PCI_COMMAND: u64 = 4;
const PCI_COMMAND_MEMORY: u8 = 2;
/// Interrupt pin register.
const PCI_INTERRUPT_PIN: u16 = 0x3d;
/// The `VFIO_DEVICE_FEATURE` flags the VFIO core accepts.
const FEATURE_FLAGS: u32 = uapi::VFIO_DEVICE_FEATURE_MASK
    | uapi::VFIO_DEVICE_FEATURE_GET
    | uapi::VFIO_DEVICE_FEATURE_SET
    | uapi::VFIO_DEVICE_FEATURE_PROBE;

/// One PCI function of a group.
#[derive(Debug)]
pub(crate) struct Device {
    addr: PciAddr,
    name: String,
    bars: [Option<BarInfo>; 6],
    /// vfio-pci's virtualised Memory Space bit: BAR accesses are `EIO`
    /// while it is off.
    memory: AtomicBool,
    /// vfio-pci's virtualised Interrupt Pin (`vconfig`), read from the
    /// function once: reads of it never reach the device, so a frozen PE
    /// or a function in reset cannot make it all-ones.
    pin: u8,
    irqs: Arc<Irqs>,
    /// Open device files (vfio-pci's `open_count`).
    open_files: Mutex<usize>,
    /// The BAR memory the host shares, for direct access.
    direct: Option<DirectBars>,
}

/// An open device file; it holds its group file open.
#[derive(Debug)]
pub(crate) struct DeviceFile {
    device: Arc<Device>,
    group: Arc<GroupFile>,
    host: Arc<dyn Host>,
}

impl DeviceFile {
    /// A device fd of `device`, opened through `group` (which counted it).
    /// The device's first open is `vfio_pci_core_finish_enable` →
    /// `eeh_dev_open`: the PE becomes passed (if it can be thawed; the open
    /// succeeds either way, as the kernel ignores the result).
    pub(super) fn open(
        device: Arc<Device>,
        group: Arc<GroupFile>,
        host: &Arc<dyn Host>,
        memory: &Arc<dyn UserMemory + Send + Sync>,
    ) -> Self {
        let mut open_files = lock(&device.open_files);
        if *open_files == 0 {
            host.device_opened(device.addr);
            if let Some(container) = group.group().container() {
                let bus = VmmBus { container, memory: Arc::clone(memory), irqs: Arc::clone(&device.irqs) };
                host.attach_bus(device.addr, Some(Arc::new(bus)));
            }
        }
        *open_files += 1;
        drop(open_files);
        DeviceFile { device, group, host: Arc::clone(host) }
    }

    /// The number of the device's group.
    pub(super) fn group_number(&self) -> u32 {
        self.group.group().number()
    }
}

impl Drop for DeviceFile {
    /// The last close is `vfio_pci_core_close_device` → `eeh_dev_release`
    /// (before the device is disabled).
    fn drop(&mut self) {
        let mut open_files = lock(&self.device.open_files);
        *open_files -= 1;
        if *open_files == 0 {
            self.host.attach_bus(self.device.addr, None);
            self.host.device_released(self.device.addr);
        }
        drop(open_files);
        self.group.group().device_closed();
    }
}

/// What the VMM lends an open device's model: the container's IOMMU
/// mappings into this process's memory, and the device's interrupts.
pub(crate) struct VmmBus {
    container: Arc<Container>,
    memory: Arc<dyn UserMemory + Send + Sync>,
    irqs: Arc<Irqs>,
}

impl std::fmt::Debug for VmmBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VmmBus").field("container", &self.container).field("irqs", &self.irqs).finish()
    }
}

impl VmmBus {
    /// Starts mirroring the container's mappings (eehd's models DMA
    /// through the mirror): the next [`VmmBus::take_mirror`] has them all.
    pub(crate) fn start_mirror(&self) {
        self.container.start_mirror();
    }

    /// The changes to the container's mappings since the last call.
    pub(crate) fn take_mirror(&self) -> Vec<IovaChange> {
        self.container.take_mirror()
    }

    /// The container's number in this process (its DMA address space).
    pub(crate) fn space(&self) -> u32 {
        self.container.id()
    }

    /// A DMA fault is the VMM's mistake (or a guest's): logged, as the
    /// kernel logs an EEH freeze.
    fn logged(result: Result<(), DmaError>) -> Result<(), DmaError> {
        if let Err(e @ (DmaError::Unmapped { .. } | DmaError::Direction { .. } | DmaError::Fault { .. })) = result {
            tracing::warn!(error = %e, "device DMA fault: the PE freezes");
        }
        result
    }
}

impl InterruptSink for VmmBus {
    fn msix_enabled(&self) -> bool {
        self.irqs.msix_enabled()
    }

    fn raise_msix(&self, vector: u16) {
        self.irqs.raise_msix(vector);
    }

    fn set_intx(&self, asserted: bool) {
        self.irqs.set_intx(asserted);
    }
}

impl DeviceBus for VmmBus {
    fn dma_read(&self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        Self::logged(self.container.dma_read(&*self.memory, iova, buf))
    }

    fn dma_write(&self, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        Self::logged(self.container.dma_write(&*self.memory, iova, bytes))
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

/// Copies the first `w` bytes of `src` into `dst` at `at`; `EINVAL` if
/// either is too short (the chunk loops never ask for that).
pub(super) fn put(dst: &mut [u8], at: usize, src: &[u8], w: usize) -> Result<(), i32> {
    let src = src.get(..w).ok_or(EINVAL)?;
    dst.get_mut(at..at.checked_add(w).ok_or(EINVAL)?).ok_or(EINVAL)?.copy_from_slice(src);
    Ok(())
}

impl Access<'_> {
    fn len(&self) -> usize {
        match self {
            Access::Read(b) => b.len(),
            Access::Write(b) => b.len(),
        }
    }
}

/// The widest naturally aligned access (at most `max` bytes) at `at` that
/// fits in `left` bytes, as vfio-pci splits a region access.
pub(super) fn chunk(at: u64, left: usize, max: u8) -> u8 {
    [8u8, 4, 2]
        .into_iter()
        .find(|&w| w <= max && usize::from(w) <= left && at.is_multiple_of(u64::from(w)))
        .unwrap_or(1)
}

impl Device {
    /// The function `info` describes, with its pin and command register as
    /// `host` has them now.
    pub(super) fn new(host: &dyn Host, info: FunctionInfo) -> Self {
        let FunctionInfo { addr, bars: infos, direct, msix_vectors } = info;
        let mut bars = [None; 6];
        for bar in infos {
            if let Some(slot) = bars.get_mut(usize::from(bar.index)) {
                *slot = Some(bar);
            }
        }
        let command = host.config_read(addr, 4, 1).unwrap_or(0);
        let pin = host.config_read(addr, PCI_INTERRUPT_PIN, 1).map_or(0, |p| p.to_le_bytes()[0]);
        Device {
            addr,
            name: addr.to_string(),
            bars,
            memory: AtomicBool::new(command & u32::from(PCI_COMMAND_MEMORY) != 0),
            pin,
            irqs: Arc::new(Irqs::new(pin != 0, msix_vectors)),
            open_files: Mutex::default(),
            direct,
        }
    }

    /// The name `GROUP_GET_DEVICE_FD` takes: the PCI address.
    pub(super) fn name(&self) -> &str {
        &self.name
    }

    /// Size and flags of a region, `None` for an index vfio-pci refuses.
    fn region(&self, index: u32) -> Option<(u64, u32)> {
        let rw = uapi::VFIO_REGION_INFO_FLAG_READ | uapi::VFIO_REGION_INFO_FLAG_WRITE;
        match index {
            0..=5 => Some(self.bars.get(index as usize).copied().flatten().map_or((0, 0), |b| (b.size, rw))),
            uapi::VFIO_PCI_ROM_REGION_INDEX => Some((0, 0)),
            uapi::VFIO_PCI_CONFIG_REGION_INDEX => Some((CONFIG_SIZE, rw)),
            _ => None,
        }
    }

    /// `pread`/`pwrite` at `offset` of the device fd: config space or a BAR.
    pub(super) fn access(&self, host: &dyn Host, offset: u64, mut access: Access<'_>) -> Result<usize, i32> {
        let index = offset >> REGION_SHIFT;
        let pos = offset & ((1 << REGION_SHIFT) - 1);
        let len = access.len() as u64;
        if index == u64::from(uapi::VFIO_PCI_CONFIG_REGION_INDEX) {
            if pos.checked_add(len).is_none_or(|end| end > CONFIG_SIZE) {
                return Err(EFAULT);
            }
            self.config_access(host, pos, &mut access)?;
            return Ok(access.len());
        }
        let bar = u8::try_from(index).ok().and_then(|i| self.bars.get(usize::from(i))).copied().flatten();
        let bar = bar.ok_or(EINVAL)?;
        if pos >= bar.size {
            return Err(EINVAL);
        }
        if bar.kind != BarKind::Io && !self.memory.load(Ordering::Acquire) {
            return Err(EIO);
        }
        let n = usize::try_from(len.min(bar.size - pos)).map_err(|_| EINVAL)?;
        if self.direct.as_ref().is_some_and(|direct| direct.try_access(bar.index, pos, n, &mut access)) {
            return Ok(n);
        }
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let width = chunk(at, n - done, 8);
            let w = usize::from(width);
            let result = match &mut access {
                Access::Read(buf) => {
                    host.bar_read(self.addr, bar.index, at, width).and_then(|v| put(buf, done, &v.to_le_bytes(), w))
                }
                Access::Write(buf) => {
                    let mut bytes = [0u8; 8];
                    put(&mut bytes, 0, buf.get(done..).unwrap_or_default(), w)?;
                    host.bar_write(self.addr, bar.index, at, width, u64::from_le_bytes(bytes))
                }
            };
            result?;
            done += w;
        }
        Ok(n)
    }

    fn config_access(&self, host: &dyn Host, pos: u64, access: &mut Access<'_>) -> Result<(), i32> {
        let n = access.len();
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let width = chunk(at, n - done, 4);
            let w = usize::from(width);
            let reg = u16::try_from(at).map_err(|_| EFAULT)?;
            match access {
                Access::Read(buf) => {
                    let mut bytes = host.config_read(self.addr, reg, width)?.to_le_bytes();
                    // Linux 6.1 drivers/vfio/pci/vfio_pci_config.c,
                    // init_pci_cap_basic_perm: PCI_INTERRUPT_PIN is ALL_VIRT.
                    // QEMU 7.2's vfio_intx_enable (hw/vfio/pci.c) reads it
                    // when MSI-X goes off, e.g. in spapr_phb_vfio_eeh_pre_reset
                    // while the PE is frozen, and stores it in its config
                    // copy: a device-read 0xff there makes its next INTx
                    // fail pci_irq_handler's pin assertion.
                    let lane = PCI_INTERRUPT_PIN.checked_sub(reg).filter(|&i| i < u16::from(width));
                    if let Some(byte) = lane.and_then(|i| bytes.get_mut(usize::from(i))) {
                        *byte = self.pin;
                    }
                    put(buf, done, &bytes, w)?;
                }
                Access::Write(buf) => {
                    let mut bytes = [0u8; 4];
                    put(&mut bytes, 0, buf.get(done..).unwrap_or_default(), w)?;
                    host.config_write(self.addr, reg, width, u32::from_le_bytes(bytes))?;
                    let command = PCI_COMMAND.checked_sub(at).and_then(|i| bytes.get(usize::try_from(i).ok()?));
                    if let (Some(&byte), true) = (command, (at..at + u64::from(width)).contains(&PCI_COMMAND)) {
                        self.memory.store(byte & PCI_COMMAND_MEMORY != 0, Ordering::Release);
                    }
                }
            }
            done += w;
        }
        Ok(())
    }

    /// `VFIO_DEVICE_GET_INFO`.
    fn get_info(arg: UserPtr<'_>) -> IoctlResult {
        let mut info: uapi::VfioDeviceInfo = arg.read_struct(16)?;
        if info.argsz < 16 {
            return Err(EINVAL);
        }
        info.flags = uapi::VFIO_DEVICE_FLAGS_PCI | uapi::VFIO_DEVICE_FLAGS_RESET;
        info.num_regions = uapi::VFIO_PCI_NUM_REGIONS;
        info.num_irqs = uapi::VFIO_PCI_NUM_IRQS;
        arg.write_prefix(info.as_bytes(), 16).map(|()| 0)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO`.
    fn get_region_info(&self, arg: UserPtr<'_>) -> IoctlResult {
        let mut info: uapi::VfioRegionInfo = arg.read_struct(32)?;
        if info.argsz < 32 {
            return Err(EINVAL);
        }
        let (size, flags) = self.region(info.index).ok_or(EINVAL)?;
        info.size = size;
        info.flags = flags;
        info.cap_offset = 0;
        info.offset = u64::from(info.index) << REGION_SHIFT;
        arg.write(info.as_bytes()).map(|()| 0)
    }

    /// `VFIO_DEVICE_FEATURE`: the VFIO core's checks, then vfio-pci's
    /// features. There is no migration or dirty tracking, and no SR-IOV
    /// (no VF token, feature 0); low-power entry and exit are offered and, as
    /// the simulated function has no power states, do nothing.
    fn feature(arg: UserPtr<'_>) -> IoctlResult {
        let header: uapi::VfioDeviceFeature = arg.read_struct(8)?;
        let (argsz, flags) = (header.argsz, header.flags);
        let get = flags & uapi::VFIO_DEVICE_FEATURE_GET != 0;
        let set = flags & uapi::VFIO_DEVICE_FEATURE_SET != 0;
        let probe = flags & uapi::VFIO_DEVICE_FEATURE_PROBE != 0;
        if argsz < 8 || flags & !FEATURE_FLAGS != 0 || (!probe && get && set) {
            return Err(EINVAL);
        }
        // vfio_check_feature(flags, argsz, SET, minsz) of the low-power features.
        let minsz = match flags & uapi::VFIO_DEVICE_FEATURE_MASK {
            uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT => 0,
            uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP => {
                size_u32::<uapi::VfioDeviceLowPowerEntryWithWakeup>()
            }
            _ => return Err(ENOTTY),
        };
        if get || (!probe && (!set || (argsz - 8) < minsz)) {
            return Err(EINVAL);
        }
        Ok(0)
    }

    /// The address-mapping ioctl with the PowerNV hook, on `vm`'s table:
    /// exactly one of GET/SET/CLEAR (else `EINVAL`, as is an `argsz` below
    /// the structure). SET refuses a slot or function out of range
    /// (`EINVAL`; the payload's tail padding is not looked at: the seed's
    /// structure leaves it implicit, so C callers do not set it), then answers the table's rules
    /// ([`vfio_eeh::vm::Vms::map_set`]): a BUID that is not one of the VM's
    /// virtual PHBs or a PE split across PHBs `EINVAL`, a guest address in
    /// use `EEXIST`, a device mapped already `EBUSY` (clear it first). GET
    /// and CLEAR of an unmapped device answer `ENOENT`. A refused call
    /// changes nothing.
    fn addr_mapping(&self, vm: &ThisVm, backend: &dyn EehBackend, arg: UserPtr<'_>) -> IoctlResult {
        let mut m: uapi::VfioDeviceAddrMapping = arg.read_struct(24)?;
        if m.argsz < size_u32::<uapi::VfioDeviceAddrMapping>() {
            return Err(EINVAL);
        }
        match m.flags {
            uapi::VFIO_DEVICE_ADDR_MAPPING_SET => {
                let p = m.mapping;
                let guest = GuestAddr::new(Buid(p.buid), p.bus, p.slot, p.func).map_err(|_| EINVAL)?;
                vm.map_set(backend, self.addr, guest).map(|()| 0)
            }
            uapi::VFIO_DEVICE_ADDR_MAPPING_GET => {
                let guest = vm.map_get(self.addr)?;
                m.mapping = uapi::VfioAddrMapping {
                    buid: guest.buid().0,
                    bus: guest.bus(),
                    slot: guest.slot(),
                    func: guest.func(),
                    pad: [0; 5],
                };
                arg.write(m.as_bytes()).map(|()| 0)
            }
            uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR => vm.map_clear(self.addr).map(|_| 0),
            _ => Err(EINVAL),
        }
    }
}

impl Emulator {
    /// A device ioctl: `ioctl` is the table's entry, `None` for a VFIO number
    /// the table has not on devices.
    pub(super) fn device_ioctl(&self, file: &DeviceFile, ioctl: Option<VfioIoctl>, arg: UserPtr<'_>) -> IoctlResult {
        let device = &file.device;
        match ioctl {
            Some(uapi::DEVICE_GET_INFO) => Device::get_info(arg),
            Some(uapi::DEVICE_GET_REGION_INFO) => device.get_region_info(arg),
            Some(uapi::DEVICE_GET_IRQ_INFO) => device.irqs.get_info(arg),
            Some(uapi::DEVICE_SET_IRQS) => device.irqs.set(arg),
            Some(uapi::DEVICE_FEATURE) => Device::feature(arg),
            Some(uapi::DEVICE_RESET) => self.host.function_reset(device.addr).map(|()| 0),
            Some(uapi::DEVICE_ADDR_MAPPING) => match self.config.platform {
                Platform::None => Err(ENOTTY),
                Platform::Powernv => device.addr_mapping(&self.vm, &*self.host, arg),
            },
            _ => Err(ENOTTY),
        }
    }

    /// `pread`/`pwrite` on a device file.
    pub(super) fn device_access(&self, file: &DeviceFile, offset: u64, access: Access<'_>) -> Result<usize, i32> {
        file.device.access(&*self.host, offset, access)
    }
}

#[cfg(test)]
mod tests {
    use vfio_eeh::backend::errno::{EBUSY, EEXIST, ENOENT};

    use super::super::testing::{Fixture, Vmm};
    use super::*;
    use crate::config::ShimConfig;

    const CONFIG: u64 = (uapi::VFIO_PCI_CONFIG_REGION_INDEX as u64) << REGION_SHIFT;

    fn read(fx: &Fixture, fd: i32, offset: u64, len: usize) -> Result<Vec<u8>, i32> {
        let mut buf = vec![0u8; len];
        fx.emu.region_access(fd, offset, Access::Read(&mut buf)).unwrap().map(|n| buf[..n].to_vec())
    }

    fn write(fx: &Fixture, fd: i32, offset: u64, bytes: &[u8]) -> Result<usize, i32> {
        fx.emu.region_access(fd, offset, Access::Write(bytes)).unwrap()
    }

    /// Issue 13 item 1 (research Q3): the device's first open is
    /// `eeh_dev_open` (the PE becomes passed, so the host stops counting its
    /// freezes), its last close `eeh_dev_release`.
    #[test]
    fn the_first_open_passes_the_pe_and_the_last_close_releases_it() {
        use vfio_eeh::addr::PeId;
        let fx = Fixture::new(ShimConfig::default());
        assert!(!fx.host.passed(PeId(0)).unwrap());
        let device = fx.device("0", "0000:01:00.0");
        assert!(fx.host.passed(PeId(0)).unwrap(), "open_device -> eeh_dev_open");
        let copy = crate::sys::dup_private(device).unwrap();
        fx.emu.duplicated(device, copy);
        fx.close(device);
        assert!(fx.host.passed(PeId(0)).unwrap(), "a duplicate keeps the file open");
        fx.close(copy);
        assert!(!fx.host.passed(PeId(0)).unwrap(), "close_device -> eeh_dev_release");
    }

    #[test]
    fn regions_config_space_and_bars_with_the_memory_bit() {
        let fx = Fixture::new(ShimConfig::default());
        let device = fx.device("0", "0000:01:00.0");
        let mut info = uapi::VfioDeviceInfo { argsz: 20, ..Default::default() };
        assert_eq!(fx.call(device, uapi::DEVICE_GET_INFO, &mut info), Ok(0));
        assert_eq!((info.num_regions, info.num_irqs), (uapi::VFIO_PCI_NUM_REGIONS, uapi::VFIO_PCI_NUM_IRQS));
        let mut region = uapi::VfioRegionInfo { argsz: 32, index: 0, ..Default::default() };
        assert_eq!(fx.call(device, uapi::DEVICE_GET_REGION_INFO, &mut region), Ok(0));
        assert_eq!((region.size, region.offset), (16 << 10, 0), "the NVMe BAR0");
        region.index = uapi::VFIO_PCI_NUM_REGIONS;
        assert_eq!(fx.call(device, uapi::DEVICE_GET_REGION_INFO, &mut region), Err(EINVAL));

        assert_eq!(read(&fx, device, CONFIG, 4), Ok(vec![0x4d, 0x14, 0x24, 0xa8]), "vendor and device");
        assert_eq!(read(&fx, device, CONFIG + 4094, 4), Err(EFAULT), "beyond config space");
        write(&fx, device, CONFIG + PCI_COMMAND, &[0]).unwrap();
        assert_eq!(read(&fx, device, 0, 4), Err(EIO), "memory decode is off");
        write(&fx, device, CONFIG + PCI_COMMAND, &[PCI_COMMAND_MEMORY]).unwrap();
        assert_eq!(read(&fx, device, 0, 4).map(|b| b.len()), Ok(4));
        assert_eq!(read(&fx, device, (16 << 10) - 2, 8).map(|b| b.len()), Ok(2), "clipped at the BAR's end");
        assert_eq!(read(&fx, device, 1 << REGION_SHIFT, 4), Err(EINVAL), "no BAR1");
        let container = fx.open("vfio");
        assert_eq!(read(&fx, container, 0, 4), Err(EINVAL), "only device fds have regions");
    }

    /// QEMU's `vfio_intx_enable` reads the Interrupt Pin while the PE is
    /// frozen (spapr's EEH reset turns MSI-X off first) and keeps what it
    /// read: vfio-pci answers it from its virtual config, never all-ones.
    #[test]
    fn the_interrupt_pin_is_virtual_and_survives_a_frozen_pe() {
        use vfio_eeh::addr::PeId;
        use vfio_eeh::pe::FreezeScope;
        let fx = Fixture::new(ShimConfig::default());
        let device = fx.device("0", "0000:01:00.0");
        let pin = CONFIG + u64::from(PCI_INTERRUPT_PIN);
        assert_eq!(read(&fx, device, pin, 1), Ok(vec![1]), "INTA#");
        fx.host.freeze(PeId(0), FreezeScope::All).unwrap();
        assert_eq!(read(&fx, device, CONFIG, 4), Ok(vec![0xff; 4]), "the device reads all-ones");
        assert_eq!(read(&fx, device, pin, 1), Ok(vec![1]), "the pin does not");
        assert_eq!(read(&fx, device, pin - 1, 4), Ok(vec![0xff, 1, 0xff, 0xff]), "only the pin's byte");
        assert_eq!(read(&fx, device, pin - 1, 2), Ok(vec![0xff, 1]));
        assert_eq!(read(&fx, device, pin + 1, 2), Ok(vec![0xff, 0xff]));
    }

    #[test]
    fn features_offer_low_power_only() {
        let fx = Fixture::new(ShimConfig::default());
        let device = fx.device("0", "0000:01:00.0");
        let feature = |flags: u32, argsz: u32| {
            let mut header = uapi::VfioDeviceFeature { argsz, flags };
            fx.call(device, uapi::DEVICE_FEATURE, &mut header)
        };
        let (probe, set, get) =
            (uapi::VFIO_DEVICE_FEATURE_PROBE, uapi::VFIO_DEVICE_FEATURE_SET, uapi::VFIO_DEVICE_FEATURE_GET);
        assert_eq!(feature(probe | set | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY, 8), Ok(0));
        assert_eq!(feature(set | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, 8), Ok(0));
        assert_eq!(feature(set | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_ENTRY_WITH_WAKEUP, 8), Err(EINVAL), "no data");
        assert_eq!(feature(get | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, 8), Err(EINVAL), "SET-only");
        assert_eq!(feature(get | set | uapi::VFIO_DEVICE_FEATURE_LOW_POWER_EXIT, 8), Err(EINVAL));
        assert_eq!(feature(probe | get, 8), Err(ENOTTY), "no VF token");
        assert_eq!(feature(1 << 20, 8), Err(EINVAL), "unknown flag");
    }

    #[test]
    fn the_address_mapping_is_stored_only_on_powernv() {
        let mapping = uapi::VfioAddrMapping { buid: 0x800_0000_2000_0000, bus: 0, slot: 1, func: 0, pad: [0; 5] };
        let call = |fx: &Fixture, device: i32, flags: u32| {
            let mut m = uapi::VfioDeviceAddrMapping { argsz: 24, flags, mapping };
            fx.call(device, uapi::DEVICE_ADDR_MAPPING, &mut m).map(|_| m.mapping)
        };
        let fx = Fixture::new(ShimConfig::default());
        let device = fx.device("0", "0000:01:00.0");
        assert_eq!(call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_SET), Err(ENOTTY), "no platform hook");

        let fx = Fixture::new(ShimConfig { platform: Platform::Powernv, ..ShimConfig::default() });
        let device = fx.device("0", "0000:01:00.0");
        assert_eq!(call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_GET), Err(ENOENT));
        assert_eq!(call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_SET), Ok(mapping));
        assert_eq!(call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_GET), Ok(mapping));
        assert_eq!(
            call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_SET | uapi::VFIO_DEVICE_ADDR_MAPPING_GET),
            Err(EINVAL)
        );
        assert_eq!(call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR), Ok(mapping));
        assert_eq!(call(&fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR), Err(ENOENT));
    }

    /// The `index`th sPAPR PHB's address `slot.func` on bus 0.
    fn at(index: u64, slot: u8, func: u8) -> uapi::VfioAddrMapping {
        uapi::VfioAddrMapping { buid: Buid::SPAPR_BASE.0 + index, bus: 0, slot, func, pad: [0; 5] }
    }

    fn mapping(
        fx: &Fixture,
        device: i32,
        flags: u32,
        mapping: uapi::VfioAddrMapping,
    ) -> Result<uapi::VfioAddrMapping, i32> {
        let mut m = uapi::VfioDeviceAddrMapping { argsz: 24, flags, mapping };
        fx.call(device, uapi::DEVICE_ADDR_MAPPING, &mut m).map(|_| m.mapping)
    }

    fn set(fx: &Fixture, device: i32, mapping: uapi::VfioAddrMapping) -> Result<uapi::VfioAddrMapping, i32> {
        self::mapping(fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_SET, mapping)
    }

    fn get(fx: &Fixture, device: i32) -> Result<uapi::VfioAddrMapping, i32> {
        mapping(fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_GET, at(0, 0, 0))
    }

    fn clear(fx: &Fixture, device: i32) -> Result<uapi::VfioAddrMapping, i32> {
        mapping(fx, device, uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR, at(0, 0, 0))
    }

    /// Issue 15 item 3: SET, CLEAR and GET act on the VM's table with every
    /// rule's errno, and a refused call changes nothing.
    #[test]
    fn the_address_mapping_follows_the_vms_rules_and_a_refusal_changes_nothing() {
        let fx = Fixture::new(ShimConfig { platform: Platform::Powernv, ..ShimConfig::default() });
        let nvme = fx.device("0", "0000:01:00.0");
        let nic_group = fx.group_with_iommu("1");
        let (nic0, nic1) = (fx.device_of(nic_group, "0000:02:00.0"), fx.device_of(nic_group, "0000:02:00.1"));

        assert_eq!(set(&fx, nvme, at(1, 1, 0)), Ok(at(1, 1, 0)));
        assert_eq!(set(&fx, nic0, at(1, 1, 0)), Err(EEXIST), "a guest address used twice");
        assert_eq!(get(&fx, nic0), Err(ENOENT), "the refused SET mapped nothing");
        assert_eq!(set(&fx, nvme, at(1, 2, 0)), Err(EBUSY), "mapped already: clear first");
        assert_eq!(get(&fx, nvme), Ok(at(1, 1, 0)), "the refused SET moved nothing");
        let not_a_phb = uapi::VfioAddrMapping { buid: 0, ..at(0, 1, 0) };
        assert_eq!(set(&fx, nic0, not_a_phb), Err(EINVAL), "BUID 0 is none of the VM's PHBs");
        assert_eq!(set(&fx, nic0, at(6, 1, 0)), Err(EINVAL), "the default PHBs are 0..=5 (5 groups)");
        assert_eq!(set(&fx, nic0, at(2, 32, 0)), Err(EINVAL), "slot out of range");
        assert_eq!(set(&fx, nic0, at(2, 1, 8)), Err(EINVAL), "function out of range");
        let padded = uapi::VfioAddrMapping { pad: [0, 0, 1, 0, 0], ..at(2, 1, 0) };
        assert_eq!(set(&fx, nic0, padded), Ok(padded), "the implicit padding is not looked at");
        assert_eq!(get(&fx, nic0), Ok(at(2, 1, 0)));
        assert_eq!(set(&fx, nic1, at(1, 2, 0)), Err(EINVAL), "one PE under one virtual PHB");
        assert_eq!(set(&fx, nic1, at(2, 1, 1)), Ok(at(2, 1, 1)));
        assert_eq!(clear(&fx, nic1), Ok(at(0, 0, 0)));
        assert_eq!(clear(&fx, nic1), Err(ENOENT), "removing an absent mapping");

        // Garbage arguments.
        let mut short =
            uapi::VfioDeviceAddrMapping { argsz: 23, flags: uapi::VFIO_DEVICE_ADDR_MAPPING_GET, mapping: at(0, 0, 0) };
        assert_eq!(fx.call(nvme, uapi::DEVICE_ADDR_MAPPING, &mut short), Err(EINVAL));
        for flags in [0, 1 << 3, uapi::VFIO_DEVICE_ADDR_MAPPING_SET | uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR] {
            assert_eq!(mapping(&fx, nic1, flags, at(2, 1, 1)), Err(EINVAL), "flags {flags:#x}");
        }
        let request = u64::from(uapi::DEVICE_ADDR_MAPPING.native());
        for arg in [0, 0x7fff_ffff_0000_usize] {
            assert_eq!(fx.emu.ioctl(nvme, request, arg), Some(Err(EFAULT)), "{arg:#x}");
        }
        assert_eq!(get(&fx, nic1), Err(ENOENT), "no garbage call mapped anything");
        assert_eq!(get(&fx, nvme), Ok(at(1, 1, 0)));

        // Closing the group gives its PE back with its mappings.
        for fd in [nic0, nic1, nic_group] {
            fx.close(fd);
        }
        let nic0 = fx.device_of(fx.group_with_iommu("1"), "0000:02:00.0");
        assert_eq!(get(&fx, nic0), Err(ENOENT));
        assert_eq!(set(&fx, nic0, at(2, 1, 0)), Ok(at(2, 1, 0)), "the address is free again");
    }

    #[test]
    fn the_vm_has_the_virtual_phbs_it_declares() {
        let phbs = Some(vec![Buid(0x1000)]);
        let fx = Fixture::new(ShimConfig { platform: Platform::Powernv, phbs, ..ShimConfig::default() });
        let nvme = fx.device("0", "0000:01:00.0");
        assert_eq!(set(&fx, nvme, at(0, 1, 0)), Err(EINVAL), "not declared");
        let declared = uapi::VfioAddrMapping { buid: 0x1000, ..at(0, 1, 0) };
        assert_eq!(set(&fx, nvme, declared), Ok(declared));
        assert_eq!(get(&fx, nvme), Ok(declared));
    }
}
