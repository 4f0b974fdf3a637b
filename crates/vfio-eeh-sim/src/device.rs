//! One simulated PCI function: a 4 KiB config space with a type-0 header and
//! a PCIe capability, BAR registers with sizing semantics (write all-ones,
//! read back the size mask), BAR memory ([`BarMemory`]: sparse 4 KiB pages
//! by default, or memory shared with other processes), and the
//! three config images a reset moves between: power-on (BARs cleared,
//! decoding off), firmware-assigned (saved; what a deactivated reset
//! restores) and current.
//!
//! Callers check offsets and widths; this module trusts them. EEH gating
//! (frozen PEs) is the host's business, not the device's.

use std::collections::HashMap;
use std::time::Duration;

use crate::access::DeviceBus;
use crate::nvme::{Controller, MSIX_PBA, MSIX_TABLE};
use crate::spec::{BarInfo, BarKind, DeviceInfo, DeviceModel};

/// Bytes of config space (PCIe extended).
pub const CONFIG_SIZE: u16 = 4096;
/// Bytes per backing page of BAR memory.
const PAGE_BYTES: usize = 4096;
const PAGE: u64 = PAGE_BYTES as u64;

/// Command register.
pub const COMMAND: u16 = 0x04;
/// Command: I/O space decoding.
pub const CMD_IO: u16 = 0x1;
/// Command: memory space decoding.
pub const CMD_MEM: u16 = 0x2;
/// Command: bus mastering (DMA).
pub const CMD_MASTER: u16 = 0x4;
const STATUS: usize = 0x06;
const STATUS_CAP_LIST: u16 = 0x10;
const BAR0: usize = 0x10;
const BAR_END: usize = 0x28;
const SUBSYSTEM: usize = 0x2c;
const CAP_PTR: usize = 0x34;
const INTERRUPT_PIN: usize = 0x3d;
const PCIE_CAP_PTR: u8 = 0x40;
/// Offset of the PCIe capability.
pub const PCIE_CAP: u16 = PCIE_CAP_PTR as u16;
const CAP_ID_PCIE: u8 = 0x10;
/// Offset of the MSI-X capability of a function with a device model that
/// has one (after the PCIe capability's 0x3c bytes).
pub const MSIX_CAP: u16 = 0x80;
const CAP_ID_MSIX: u8 = 0x11;

/// Config value a not-yet-ready device answers for its vendor/device dword
/// (Configuration Request Retry Status with software visibility).
const CRS: u32 = 0xffff_0001;

type Config = Box<[u8; CONFIG_SIZE as usize]>;

/// Bits of `width` bytes, all ones.
pub const fn ones(width: u8) -> u64 {
    if width >= 8 {
        u64::MAX
    } else {
        (1u64 << (width * 8)) - 1
    }
}

#[allow(clippy::cast_possible_truncation)] // Keeping the low 32 bits is the point.
const fn lo32(v: u64) -> u32 {
    v as u32
}

/// Where a function's BAR memory lives. Offsets and widths (1, 2, 4 or 8
/// bytes, naturally aligned, inside the BAR) are checked by the caller.
pub trait BarMemory: Send + std::fmt::Debug {
    /// Reads `width` bytes at `offset` of BAR `bar`, little-endian;
    /// unwritten memory reads as zero.
    fn read(&self, bar: u8, offset: u64, width: u8) -> u64;
    /// Writes the low `width` bytes of `value` at `offset` of BAR `bar`.
    fn write(&mut self, bar: u8, offset: u64, width: u8, value: u64);
    /// Forgets every byte of every BAR (a reset): all read as zero again.
    fn clear(&mut self);
}

/// BAR memory in sparse 4 KiB pages allocated on first write (the default).
#[derive(Debug, Default)]
pub struct SparsePages {
    pages: HashMap<(u8, u64), Box<[u8; PAGE_BYTES]>>,
}

impl BarMemory for SparsePages {
    fn read(&self, bar: u8, offset: u64, width: u8) -> u64 {
        let Some(page) = self.pages.get(&(bar, offset / PAGE)) else { return 0 };
        let at = usize::try_from(offset % PAGE).expect("Page offsets fit");
        let mut bytes = [0; 8];
        bytes[..usize::from(width)].copy_from_slice(&page[at..at + usize::from(width)]);
        u64::from_le_bytes(bytes)
    }

    fn write(&mut self, bar: u8, offset: u64, width: u8, value: u64) {
        let page = self.pages.entry((bar, offset / PAGE)).or_insert_with(|| Box::new([0; PAGE_BYTES]));
        let at = usize::try_from(offset % PAGE).expect("Page offsets fit");
        page[at..at + usize::from(width)].copy_from_slice(&value.to_le_bytes()[..usize::from(width)]);
    }

    fn clear(&mut self) {
        self.pages.clear();
    }
}

/// The mutable state of one function.
#[derive(Debug)]
pub struct DeviceState {
    config: Config,
    saved: Config,
    power_on: Config,
    bar_masks: [u32; 6],
    memory: Box<dyn BarMemory>,
    ready_at: Duration,
    /// The NVMe controller in BAR0, if the device has that model; `None`
    /// also while a BAR0 write runs it ([`Self::take_controller`]).
    controller: Option<Box<Controller>>,
    /// What the VMM that opened the device lends it (memory, interrupts).
    pub(crate) bus: Option<std::sync::Arc<dyn DeviceBus>>,
}

/// Writable bits of a header or capability byte outside the BARs; `msix`
/// if the function has the MSI-X capability.
const fn writable(off: usize, msix: bool) -> u8 {
    match off {
        0x83 if msix => 0xc0, // MSI-X enable, function mask
        0x04 => 0x47,         // I/O, memory, master, parity
        0x05 => 0x05,         // SERR#, INTx disable
        0x0c | 0x0d | 0x3c => 0xff,
        0x48 | 0x50 | 0x51 => 0xff, // PCIe device control (low), link control
        0x49 => 0x7f,               // device control (high), FLR bit excluded
        _ => 0,
    }
}

fn put(c: &mut Config, off: usize, bytes: &[u8]) {
    c[off..off + bytes.len()].copy_from_slice(bytes);
}

fn image(info: &DeviceInfo, assigned: bool) -> Config {
    let mut c: Config = Box::new([0; CONFIG_SIZE as usize]);
    put(&mut c, 0, &info.vendor.to_le_bytes());
    put(&mut c, 2, &info.device.to_le_bytes());
    if assigned {
        let io = info.bars.iter().any(|b| b.kind == BarKind::Io);
        let command = CMD_MEM | CMD_MASTER | if io { CMD_IO } else { 0 };
        put(&mut c, usize::from(COMMAND), &command.to_le_bytes());
    }
    put(&mut c, STATUS, &STATUS_CAP_LIST.to_le_bytes());
    put(&mut c, 0x08, &(u32::from(info.revision) | info.class << 8).to_le_bytes());
    c[0x0e] = if info.multifunction { 0x80 } else { 0 };
    for bar in &info.bars {
        let addr = if assigned { bar.addr } else { 0 };
        let off = BAR0 + 4 * usize::from(bar.index);
        let flag_bits = if bar.kind == BarKind::Io { 0x3 } else { 0xf };
        put(&mut c, off, &(lo32(addr) & !flag_bits | bar.flags()).to_le_bytes());
        if bar.kind == BarKind::Mem64 {
            put(&mut c, off + 4, &lo32(addr >> 32).to_le_bytes());
        }
    }
    put(&mut c, SUBSYSTEM, &info.vendor.to_le_bytes());
    put(&mut c, SUBSYSTEM + 2, &info.device.to_le_bytes());
    c[CAP_PTR] = PCIE_CAP_PTR;
    c[INTERRUPT_PIN] = 1; // INTA#
    let cap = usize::from(PCIE_CAP);
    c[cap] = CAP_ID_PCIE;
    if let DeviceModel::Nvme(nvme) = &info.model {
        c[cap + 1] = MSIX_CAP.to_le_bytes()[0];
        let msix = usize::from(MSIX_CAP);
        c[msix] = CAP_ID_MSIX;
        put(&mut c, msix + 2, &(nvme.vectors() - 1).to_le_bytes()); // table size, disabled
        put(&mut c, msix + 4, &lo32(MSIX_TABLE).to_le_bytes()); // BIR 0
        put(&mut c, msix + 8, &lo32(MSIX_PBA).to_le_bytes()); // BIR 0
    }
    put(&mut c, cap + 0x02, &0x0002u16.to_le_bytes()); // version 2, endpoint
    put(&mut c, cap + 0x04, &0x1000_8001u32.to_le_bytes()); // FLR, role-based errors, MPS 256
    put(&mut c, cap + 0x08, &0x2810u16.to_le_bytes()); // MRRS 512, extended tags
    put(&mut c, cap + 0x0c, &0x0000_0083u32.to_le_bytes()); // 8 GT/s x8
    put(&mut c, cap + 0x12, &0x0083u16.to_le_bytes()); // trained at 8 GT/s x8
    c
}

/// Writable address bits of each BAR dword.
fn bar_masks(bars: &[BarInfo]) -> [u32; 6] {
    let mut masks = [0; 6];
    for bar in bars {
        let i = usize::from(bar.index);
        let addr_bits = !(bar.size - 1);
        match bar.kind {
            BarKind::Io => masks[i] = lo32(addr_bits) & !0x3,
            BarKind::Mem32 => masks[i] = lo32(addr_bits) & !0xf,
            BarKind::Mem64 => {
                masks[i] = lo32(addr_bits) & !0xf;
                masks[i + 1] = lo32(addr_bits >> 32);
            }
        }
    }
    masks
}

impl DeviceState {
    /// The function as firmware left it: BARs assigned, decoding and bus
    /// mastering on, ready; its BAR memory in `memory`.
    pub fn new(info: &DeviceInfo, memory: Box<dyn BarMemory>) -> Self {
        let saved = image(info, true);
        DeviceState {
            config: saved.clone(),
            saved,
            power_on: image(info, false),
            bar_masks: bar_masks(&info.bars),
            memory,
            ready_at: Duration::ZERO,
            controller: match &info.model {
                DeviceModel::Memory => None,
                DeviceModel::Nvme(spec) => Some(Box::new(Controller::new(spec))),
            },
            bus: None,
        }
    }

    /// Whether a BAR access at `offset` is the controller's (registers,
    /// doorbells) rather than plain memory.
    pub fn controller_claims(&self, bar: u8, offset: u64) -> bool {
        bar == 0 && self.controller.is_some() && Controller::claims(offset)
    }

    /// Takes the controller out to run a BAR0 write with the PE locked;
    /// [`Self::put_controller`] puts it back.
    pub fn take_controller(&mut self) -> Option<Box<Controller>> {
        self.controller.take()
    }

    /// Puts back what [`Self::take_controller`] took.
    pub fn put_controller(&mut self, controller: Box<Controller>) {
        self.controller = Some(controller);
    }

    fn reset_controller(&mut self) {
        if let Some(c) = self.controller.as_mut() {
            c.reset();
        }
    }

    fn dword(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.config[off..off + 4].try_into().expect("Four bytes"))
    }

    /// Whether the function answers config requests at `now`.
    pub fn ready(&self, now: Duration) -> bool {
        now >= self.ready_at
    }

    /// A config read of `width` bytes at `offset` (aligned, in range).
    /// Before the function is ready it answers Configuration Request Retry:
    /// `0x0001` for the vendor id, all-ones elsewhere.
    pub fn config_read(&self, offset: u16, width: u8, now: Duration) -> u32 {
        let off = usize::from(offset);
        let shift = (off & 3) * 8;
        let lanes = lo32(ones(width));
        let dword = if self.ready(now) {
            self.dword(off & !3)
        } else if off < 4 {
            CRS
        } else {
            u32::MAX
        };
        (dword >> shift) & lanes
    }

    /// A config write (aligned, in range): read-only bits keep their value,
    /// BAR address bits below the BAR's size read back as zero. Dropped
    /// while the function is not ready.
    pub fn config_write(&mut self, offset: u16, width: u8, value: u32, now: Duration) {
        if !self.ready(now) {
            return;
        }
        let off = usize::from(offset);
        let base = off & !3;
        let shift = (off & 3) * 8;
        let lanes = lo32(ones(width)) << shift;
        let old = self.dword(base);
        let merged = old & !lanes | (value << shift) & lanes;
        let writable_bits = if (BAR0..BAR_END).contains(&base) {
            self.bar_masks[(base - BAR0) / 4]
        } else {
            let msix = self.controller.is_some();
            u32::from_le_bytes([
                writable(base, msix),
                writable(base + 1, msix),
                writable(base + 2, msix),
                writable(base + 3, msix),
            ])
        };
        let new = old & !writable_bits | merged & writable_bits;
        self.config[base..base + 4].copy_from_slice(&new.to_le_bytes());
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        u16::from_le_bytes([self.config[0x04], self.config[0x05]])
    }

    /// The bus address a BAR currently decodes.
    pub fn bar_addr(&self, bar: &BarInfo) -> u64 {
        let off = BAR0 + 4 * usize::from(bar.index);
        let flag_bits = if bar.kind == BarKind::Io { 0x3 } else { 0xf };
        let low = u64::from(self.dword(off) & !flag_bits);
        let high = if bar.kind == BarKind::Mem64 { u64::from(self.dword(off + 4)) << 32 } else { 0 };
        high | low
    }

    /// Reads `width` bytes of BAR memory (aligned, in range); unwritten
    /// memory reads as zero; the controller's registers answer for
    /// themselves.
    pub fn mem_read(&self, bar: u8, offset: u64, width: u8) -> u64 {
        if let Some(c) = self.controller.as_ref().filter(|_| self.controller_claims(bar, offset)) {
            return c.read(offset, width);
        }
        self.memory.read(bar, offset, width)
    }

    /// Writes `width` bytes of BAR memory (aligned, in range).
    pub fn mem_write(&mut self, bar: u8, offset: u64, width: u8, value: u64) {
        self.memory.write(bar, offset, width, value);
    }

    /// Reset asserted: power-on config (BARs cleared, decoding off), device
    /// memory and controller state lost (not its namespace), not ready
    /// until told.
    pub fn power_on_reset(&mut self) {
        self.config.copy_from_slice(&self.power_on[..]);
        self.memory.clear();
        self.reset_controller();
        self.ready_at = Duration::MAX;
    }

    /// A function-level reset as VFIO's `DEVICE_RESET` does it: the
    /// device's internal state (its memory, its controller's queues) is
    /// lost, while the kernel saves
    /// and restores the config space around the reset.
    pub fn function_reset(&mut self) {
        self.memory.clear();
        self.reset_controller();
    }

    /// Reset deasserted: the function is ready `delay` after `now`.
    pub fn ready_after(&mut self, now: Duration, delay: Duration) {
        self.ready_at = now.saturating_add(delay);
    }

    /// Restores the saved (firmware-assigned) config, as Linux's
    /// `eeh_pe_reenable_devices` does.
    pub fn restore_saved(&mut self) {
        self.config.copy_from_slice(&self.saved[..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TopologySpec;

    fn gpu() -> (DeviceInfo, DeviceState) {
        let spec = TopologySpec::builtin();
        let info = spec.phbs()[0].pes[2].devices[0].clone();
        let state = DeviceState::new(&info, Box::<SparsePages>::default());
        (info, state)
    }

    const NOW: Duration = Duration::from_secs(1);

    #[test]
    fn header_has_ids_class_and_a_pcie_capability() {
        let (info, dev) = gpu();
        assert_eq!(dev.config_read(0, 2, NOW), u32::from(info.vendor));
        assert_eq!(dev.config_read(2, 2, NOW), u32::from(info.device));
        assert_eq!(dev.config_read(0, 4, NOW), u32::from(info.device) << 16 | u32::from(info.vendor));
        assert_eq!(dev.config_read(0x08, 4, NOW) >> 8, info.class);
        assert_eq!(dev.config_read(0x06, 2, NOW) & 0x10, 0x10);
        let cap = dev.config_read(0x34, 1, NOW);
        assert_eq!(dev.config_read(u16::try_from(cap).unwrap(), 1, NOW), 0x10);
        assert_eq!(dev.config_read(0x100, 4, NOW), 0);
        assert_eq!(u32::from(dev.command()), dev.config_read(COMMAND, 2, NOW));
        assert_eq!(dev.command() & (CMD_MEM | CMD_MASTER), CMD_MEM | CMD_MASTER);
    }

    #[test]
    fn the_nvme_model_adds_an_msix_capability_after_the_pcie_one() {
        let info = TopologySpec::builtin().phbs()[0].pes[0].devices[0].clone();
        let mut dev = DeviceState::new(&info, Box::<SparsePages>::default());
        let pcie = dev.config_read(0x34, 1, NOW);
        assert_eq!(dev.config_read(u16::try_from(pcie).unwrap() + 1, 1, NOW), u32::from(MSIX_CAP));
        assert_eq!(dev.config_read(MSIX_CAP, 1, NOW), 0x11);
        assert_eq!(dev.config_read(MSIX_CAP + 1, 1, NOW), 0, "the last capability");
        assert_eq!(dev.config_read(MSIX_CAP + 2, 2, NOW), 8, "nine vectors, disabled");
        assert_eq!(dev.config_read(MSIX_CAP + 4, 4, NOW), 0x2000, "table at BAR0 0x2000");
        assert_eq!(dev.config_read(MSIX_CAP + 8, 4, NOW), 0x3000, "PBA at BAR0 0x3000");
        dev.config_write(MSIX_CAP + 2, 2, 0xffff, NOW);
        assert_eq!(dev.config_read(MSIX_CAP + 2, 2, NOW), 0xc008, "only enable and mask are writable");
        assert_eq!(dev.mem_read(0, 0x08, 4), 0x0001_0400, "BAR0 is the controller: VS");
        dev.mem_write(0, 0x40, 4, 7);
        assert_eq!(dev.mem_read(0, 0x40, 4), 7, "unclaimed BAR0 stays memory");
        let (_, gpu) = gpu();
        assert_eq!(gpu.config_read(u16::try_from(pcie).unwrap() + 1, 1, NOW), 0, "no MSI-X without a model");
    }

    #[test]
    fn bars_answer_sizing_and_keep_flags() {
        let (info, mut dev) = gpu();
        // 32-bit BAR0, 16 MiB.
        let bar0 = info.bar(0).unwrap();
        assert_eq!(dev.bar_addr(bar0), bar0.addr);
        dev.config_write(0x10, 4, u32::MAX, NOW);
        assert_eq!(dev.config_read(0x10, 4, NOW), !(16 << 20) + 1);
        // 64-bit prefetchable BAR1, 16 GiB: both dwords size.
        dev.config_write(0x14, 4, u32::MAX, NOW);
        dev.config_write(0x18, 4, u32::MAX, NOW);
        assert_eq!(dev.config_read(0x14, 4, NOW), 0x0000_000c);
        assert_eq!(dev.config_read(0x18, 4, NOW), 0xffff_fffc);
        // An unimplemented BAR slot reads zero whatever is written.
        dev.config_write(0x24, 4, u32::MAX, NOW);
        assert_eq!(dev.config_read(0x24, 4, NOW), 0);
        // Writing an address back reassigns the BAR.
        dev.config_write(0x10, 4, 0x9000_0000, NOW);
        assert_eq!(dev.bar_addr(bar0), 0x9000_0000);
        // Sub-dword writes merge with the rest.
        dev.config_write(0x13, 1, 0xa1, NOW);
        assert_eq!(dev.bar_addr(bar0), 0xa100_0000);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let (info, mut dev) = gpu();
        dev.config_write(0, 4, 0x1234_5678, NOW);
        assert_eq!(dev.config_read(0, 2, NOW), u32::from(info.vendor));
        dev.config_write(COMMAND, 2, 0xffff, NOW);
        assert_eq!(dev.command(), 0x0547);
        dev.config_write(0x3c, 1, 0x2a, NOW);
        assert_eq!(dev.config_read(0x3c, 1, NOW), 0x2a);
    }

    #[test]
    fn memory_is_little_endian_and_sparse() {
        let (_, mut dev) = gpu();
        assert_eq!(dev.mem_read(1, 1 << 33, 8), 0);
        dev.mem_write(1, 1 << 33, 8, 0x0102_0304_0506_0708);
        assert_eq!(dev.mem_read(1, 1 << 33, 4), 0x0506_0708);
        assert_eq!(dev.mem_read(1, (1 << 33) + 6, 2), 0x0102);
        assert_eq!(dev.mem_read(0, 1 << 33, 8), 0, "BARs do not share memory");
    }

    #[test]
    fn reset_clears_bars_and_memory_then_restore_brings_bars_back() {
        let (info, mut dev) = gpu();
        dev.mem_write(0, 0, 4, 7);
        dev.power_on_reset();
        assert!(!dev.ready(NOW));
        assert_eq!(dev.config_read(0, 2, NOW), 0x0001, "CRS before ready");
        assert_eq!(dev.config_read(0, 4, NOW), CRS);
        assert_eq!(dev.config_read(0x10, 4, NOW), u32::MAX);
        dev.config_write(COMMAND, 2, 0x6, NOW);
        dev.ready_after(NOW, info.ready_delay);
        let later = NOW + info.ready_delay;
        assert_eq!(dev.config_read(0x10, 4, later), 0, "BAR cleared at power-on");
        assert_eq!(dev.command(), 0, "The write before ready was dropped");
        assert_eq!(dev.mem_read(0, 0, 4), 0);
        dev.restore_saved();
        assert_eq!(dev.bar_addr(info.bar(0).unwrap()), info.bar(0).unwrap().addr);
        assert_eq!(dev.command() & CMD_MEM, CMD_MEM);
    }
}
