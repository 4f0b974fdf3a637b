//! An NVMe 1.4 controller with one namespace, enough for Linux's `nvme`
//! driver to bind, do I/O, reset and shut down (see `docs/nvme.md`).
//!
//! The model is BAR0 of a simulated function whose topology entry says
//! `model = "nvme"`; [`SimHost`](crate::SimHost) routes BAR0 MMIO to it and
//! gates its DMA by the PE's EEH state. It reads and writes the VMM's
//! memory only through a [`DmaMemory`] (in the preload library: the
//! container's IOMMU mappings) and raises interrupts only through an
//! [`InterruptSink`] (the eventfds of `VFIO_DEVICE_SET_IRQS`).
//!
//! BAR0 layout (16 KiB):
//!
//! | offset | what |
//! |---|---|
//! | `0x0000` | registers: CAP, VS, INTMS, INTMC, CC, CSTS, NSSR, AQA, ASQ, ACQ |
//! | `0x1000` | doorbells, stride 4 bytes (CAP.DSTRD = 0): SQ *y* tail at `0x1000 + 8y`, CQ *y* head at `0x1004 + 8y` |
//! | `0x2000` | MSI-X table ([`MSIX_TABLE`]), one entry per queue pair (QEMU emulates it) |
//! | `0x3000` | MSI-X PBA ([`MSIX_PBA`]) |
//!
//! Commands run when their doorbell is written, in the writer's thread:
//! deterministic, and a frozen PE's doorbell write never arrives (the host
//! drops it). A PCI reset ([`Controller::reset`]) brings the controller back
//! to power-on (CC.EN = 0, every queue gone); the namespace is media and
//! keeps its data.

mod command;
mod namespace;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::path::PathBuf;

pub use self::namespace::{Media, MediaError, BLOCK_BYTES};

/// Offset of the first doorbell in BAR0.
pub const DOORBELLS: u64 = 0x1000;
/// Offset of the MSI-X table in BAR0.
pub const MSIX_TABLE: u64 = 0x2000;
/// Offset of the MSI-X pending-bit array in BAR0.
pub const MSIX_PBA: u64 = 0x3000;
/// Size of BAR0.
pub const BAR0_BYTES: u64 = 0x4000;
/// The largest number of I/O queue pairs a topology may ask for (one MSI-X
/// vector each plus the admin queue's fit in the table's 4 KiB).
pub const MAX_IO_QUEUES: u16 = 255;
/// Bytes per submission queue entry (2^6) and completion queue entry (2^4).
const SQ_ENTRY_BYTES: usize = 64;
const CQ_ENTRY_BYTES: usize = 16;
const SQ_ENTRY: u64 = SQ_ENTRY_BYTES as u64;
const CQ_ENTRY: u64 = CQ_ENTRY_BYTES as u64;
/// Memory page size (CC.MPS = 0; CAP.MPSMIN = CAP.MPSMAX = 0).
const PAGE: u64 = 4096;
/// Largest admin queue (AQA's 12-bit fields).
const MAX_ADMIN_ENTRIES: u32 = 4096;
/// CAP.TO: 10 s in 500 ms units.
const TIMEOUT_UNITS: u64 = 20;

/// How the VMM's memory failed a DMA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DmaError {
    /// No IOMMU mapping covers the address: an IOMMU fault, which freezes
    /// the PE on PowerNV.
    #[error("IOVA {iova:#x} is not mapped")]
    Unmapped {
        /// The first unmapped address.
        iova: u64,
    },
    /// The mapping does not allow this direction.
    #[error("IOVA {iova:#x} is not mapped for this direction")]
    Direction {
        /// The address.
        iova: u64,
    },
    /// The mapping points at memory the VMM does not have (`EFAULT`).
    #[error("The memory behind IOVA {iova:#x} cannot be reached")]
    Fault {
        /// The address.
        iova: u64,
    },
    /// The PE's DMA is stopped (frozen, in reset, bus mastering off).
    #[error("The PE's DMA is stopped")]
    Stopped,
}

/// The VMM's memory as the device sees it: I/O virtual addresses.
pub trait DmaMemory {
    /// Copies `buf.len()` bytes at `iova` into `buf` (the device reads).
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError>;
    /// Copies `bytes` to `iova` (the device writes).
    fn write(&mut self, iova: u64, bytes: &[u8]) -> Result<(), DmaError>;
}

/// Where the controller's interrupts go.
pub trait InterruptSink {
    /// Whether the VMM enabled MSI-X (gave vectors with `SET_IRQS`).
    fn msix_enabled(&self) -> bool;
    /// Raises MSI-X vector `vector`.
    fn raise_msix(&self, vector: u16);
    /// Drives the level of the INTx line.
    fn set_intx(&self, asserted: bool);
}

/// What a topology file says about an NVMe controller.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NvmeSpec {
    /// Namespace size in bytes (a multiple of [`BLOCK_BYTES`]).
    pub namespace_bytes: u64,
    /// File backing the namespace; `None` keeps it in memory.
    pub namespace_file: Option<PathBuf>,
    /// I/O queue pairs (each with its MSI-X vector; the admin queue has
    /// vector 0).
    pub io_queues: u16,
    /// Largest I/O queue, in entries (CAP.MQES + 1).
    pub queue_entries: u16,
}

impl NvmeSpec {
    /// The default: 64 MiB in memory, 8 I/O queue pairs of up to 1024
    /// entries.
    pub const DEFAULT: NvmeSpec =
        NvmeSpec { namespace_bytes: 64 << 20, namespace_file: None, io_queues: 8, queue_entries: 1024 };

    /// MSI-X vectors: one per queue pair, admin included.
    pub fn vectors(&self) -> u16 {
        self.io_queues + 1
    }
}

/// CC fields.
const CC_EN: u32 = 1;
const CC_SHN_SHIFT: u32 = 14;
/// CSTS fields.
const CSTS_RDY: u32 = 1;
const CSTS_CFS: u32 = 1 << 1;
const CSTS_SHST_COMPLETE: u32 = 2 << 2;

/// A queue ring in the VMM's memory.
#[derive(Debug, Clone, Copy)]
struct Ring {
    base: u64,
    entries: u16,
    head: u16,
    tail: u16,
}

impl Ring {
    fn new(base: u64, entries: u16) -> Self {
        Ring { base, entries, head: 0, tail: 0 }
    }

    fn next(&self, i: u16) -> u16 {
        if i + 1 == self.entries {
            0
        } else {
            i + 1
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct SubmissionQueue {
    ring: Ring,
    cq: u16,
}

#[derive(Debug, Clone, Copy)]
struct CompletionQueue {
    ring: Ring,
    phase: bool,
    interrupts: bool,
    vector: u16,
}

/// The controller registers the host writes.
#[derive(Debug, Clone, Copy, Default)]
struct Registers {
    cc: u32,
    csts: u32,
    intms: u32,
    aqa: u32,
    asq: u64,
    acq: u64,
}

/// Everything a controller reset (CC.EN 1 → 0) clears.
#[derive(Debug)]
struct Live {
    sqs: Vec<Option<SubmissionQueue>>,
    cqs: Vec<Option<CompletionQueue>>,
    /// Command ids of outstanding Asynchronous Event Requests.
    aers: Vec<u16>,
    /// Asynchronous events not yet reported (completion dword 0).
    events: VecDeque<u32>,
    /// Set Features values by feature id.
    features: [u32; command::FEATURES],
}

impl Live {
    fn new(io_queues: u16) -> Self {
        let n = usize::from(io_queues) + 1;
        Live {
            sqs: vec![None; n],
            cqs: vec![None; n],
            aers: Vec::new(),
            events: VecDeque::new(),
            features: command::default_features(io_queues),
        }
    }
}

/// An NVMe controller and its namespace.
#[derive(Debug)]
pub struct Controller {
    io_queues: u16,
    queue_entries: u16,
    media: Media,
    regs: Registers,
    live: Live,
}

impl Controller {
    /// A controller at power-on with its namespace. A namespace file that
    /// cannot be opened (the topology check opened it once) makes every
    /// I/O fail with Internal Error.
    pub fn new(spec: &NvmeSpec) -> Self {
        let media = match &spec.namespace_file {
            Some(path) => Media::file_or_unusable(path, spec.namespace_bytes),
            None => Media::memory(spec.namespace_bytes),
        };
        Controller {
            io_queues: spec.io_queues,
            queue_entries: spec.queue_entries,
            media,
            regs: Registers::default(),
            live: Live::new(spec.io_queues),
        }
    }

    /// A PCI reset (hot, fundamental, FLR): back to power-on, every queue
    /// and register gone; the namespace's data stays.
    pub fn reset(&mut self) {
        self.regs = Registers::default();
        self.live = Live::new(self.io_queues);
    }

    /// CC.EN 1 → 0: queues and features gone; AQA, ASQ and ACQ stay.
    fn controller_reset(&mut self) {
        self.regs.csts = 0;
        self.regs.intms = 0;
        self.live = Live::new(self.io_queues);
    }

    fn cap(&self) -> u64 {
        let mqes = u64::from(self.queue_entries - 1);
        let cqr = 1 << 16;
        let css_nvm = 1 << 37;
        mqes | cqr | TIMEOUT_UNITS << 24 | css_nvm
    }

    /// The dword of registers at `off` (4-aligned, below the doorbells).
    fn register(&self, off: u64) -> u32 {
        let r = &self.regs;
        let cap = self.cap();
        match off {
            0x00 => low32(cap),
            0x04 => low32(cap >> 32),
            0x08 => 0x0001_0400,
            0x0c | 0x10 => r.intms,
            0x14 => r.cc,
            0x1c => r.csts,
            0x24 => r.aqa,
            0x28 => low32(r.asq),
            0x2c => low32(r.asq >> 32),
            0x30 => low32(r.acq),
            0x34 => low32(r.acq >> 32),
            _ => 0,
        }
    }

    /// Whether BAR0 offset `off` is the controller's (registers and
    /// doorbells); elsewhere (reserved registers, the MSI-X table and PBA)
    /// BAR0 is plain device memory.
    pub fn claims(off: u64) -> bool {
        off < 0x40 || (DOORBELLS..MSIX_TABLE).contains(&off)
    }

    /// A read of `width` bytes at BAR0 offset `off` (aligned, claimed).
    /// Doorbells read as zero.
    pub fn read(&self, off: u64, width: u8) -> u64 {
        if off >= DOORBELLS {
            return 0;
        }
        let mut bytes = [0u8; 8];
        for (i, b) in bytes.iter_mut().enumerate().take(usize::from(width)) {
            let at = off + i as u64;
            *b = self.register(at & !3).to_le_bytes()[usize::try_from(at & 3).expect("Below four")];
        }
        u64::from_le_bytes(bytes)
    }

    /// A write of `width` bytes at BAR0 offset `off` (aligned, claimed).
    /// A doorbell write runs the commands it makes available.
    pub fn write(&mut self, off: u64, width: u8, value: u64, mem: &mut dyn DmaMemory, irq: &dyn InterruptSink) {
        if off >= DOORBELLS {
            if width == 4 {
                self.doorbell((off - DOORBELLS) / 4, low32(value), mem, irq);
            }
            return;
        }
        // Register writes dword by dword, low first; narrower writes merge.
        let end = off + u64::from(width);
        let mut dword = off & !3;
        while dword < end {
            let mut bytes = self.register(dword).to_le_bytes();
            for (i, b) in bytes.iter_mut().enumerate() {
                let at = dword + i as u64;
                if (off..end).contains(&at) {
                    *b = value.to_le_bytes()[usize::try_from(at - off).expect("Below eight")];
                }
            }
            self.write_register(dword, u32::from_le_bytes(bytes), irq);
            dword += 4;
        }
    }

    fn write_register(&mut self, off: u64, value: u32, irq: &dyn InterruptSink) {
        let r = &mut self.regs;
        match off {
            0x0c => r.intms |= value,
            0x10 => r.intms &= !value,
            0x14 => self.write_cc(value),
            0x24 => r.aqa = value & 0x0fff_0fff,
            0x28 => r.asq = r.asq & !0xffff_ffff | u64::from(value),
            0x2c => r.asq = r.asq & 0xffff_ffff | u64::from(value) << 32,
            0x30 => r.acq = r.acq & !0xffff_ffff | u64::from(value),
            0x34 => r.acq = r.acq & 0xffff_ffff | u64::from(value) << 32,
            _ => {}
        }
        if matches!(off, 0x0c | 0x10) {
            self.update_intx(irq);
        }
    }

    fn write_cc(&mut self, value: u32) {
        let was = self.regs.cc;
        self.regs.cc = value & 0x00ff_fff1;
        let shutdown = (value >> CC_SHN_SHIFT) & 3;
        if was & CC_EN != 0 && value & CC_EN == 0 {
            self.controller_reset();
        } else if was & CC_EN == 0 && value & CC_EN != 0 {
            self.enable();
        }
        if shutdown != 0 && self.regs.cc & CC_EN != 0 {
            self.regs.csts |= CSTS_SHST_COMPLETE;
        }
    }

    /// CC.EN 0 → 1: the admin queues from AQA, ASQ and ACQ. A setting the
    /// controller cannot use is a controller fatal status (CSTS.CFS).
    fn enable(&mut self) {
        let r = self.regs;
        let sq_entries = (r.aqa & 0xfff) + 1;
        let cq_entries = (r.aqa >> 16 & 0xfff) + 1;
        let mps = r.cc >> 7 & 0xf;
        let css = r.cc >> 4 & 0x7;
        let sizes_ok = (2..=MAX_ADMIN_ENTRIES).contains(&sq_entries) && (2..=MAX_ADMIN_ENTRIES).contains(&cq_entries);
        let aligned = (r.asq | r.acq) & (PAGE - 1) == 0;
        if !sizes_ok || !aligned || mps != 0 || css != 0 || r.csts & CSTS_CFS != 0 {
            self.regs.csts |= CSTS_CFS;
            return;
        }
        let (sq_entries, cq_entries) = (entries(sq_entries), entries(cq_entries));
        self.live.sqs[0] = Some(SubmissionQueue { ring: Ring::new(r.asq, sq_entries), cq: 0 });
        self.live.cqs[0] =
            Some(CompletionQueue { ring: Ring::new(r.acq, cq_entries), phase: true, interrupts: true, vector: 0 });
        self.regs.csts = CSTS_RDY;
    }

    fn ready(&self) -> bool {
        self.regs.csts & (CSTS_RDY | CSTS_CFS) == CSTS_RDY
    }

    /// A doorbell write: `index` counts dwords from [`DOORBELLS`]. A
    /// doorbell of a queue that does not exist, or a value beyond its queue,
    /// is an error event (Asynchronous Event Request, error status type).
    fn doorbell(&mut self, index: u64, value: u32, mem: &mut dyn DmaMemory, irq: &dyn InterruptSink) {
        if !self.ready() {
            return;
        }
        let qid = usize::try_from(index / 2).unwrap_or(usize::MAX);
        let completion = index % 2 == 1;
        let ring = if completion {
            self.live.cqs.get_mut(qid).and_then(Option::as_mut).map(|q| &mut q.ring)
        } else {
            self.live.sqs.get_mut(qid).and_then(Option::as_mut).map(|q| &mut q.ring)
        };
        match ring {
            None => self.live.events.push_back(command::EVENT_INVALID_DOORBELL_REGISTER),
            Some(ring) if value >= u32::from(ring.entries) => {
                self.live.events.push_back(command::EVENT_INVALID_DOORBELL_VALUE);
            }
            Some(ring) if completion => ring.head = entries(value),
            Some(ring) => ring.tail = entries(value),
        }
        self.live.events.truncate(command::MAX_EVENTS);
        self.process(mem, irq);
    }

    /// Runs available commands, queue by queue, until none can run (every
    /// submission queue empty or its completion queue full), then
    /// interrupts. A DMA failure stops the controller until the next
    /// doorbell: on a real PE the failing DMA froze it.
    fn process(&mut self, mem: &mut dyn DmaMemory, irq: &dyn InterruptSink) {
        let mut posted = vec![false; self.live.cqs.len()];
        let result = self.run(mem, &mut posted);
        if result.is_ok() {
            for (qid, _) in posted.iter().enumerate().filter(|(_, &p)| p) {
                if let Some(cq) = self.live.cqs[qid].filter(|cq| cq.interrupts) {
                    if irq.msix_enabled() {
                        irq.raise_msix(cq.vector);
                    }
                }
            }
        }
        self.update_intx(irq);
    }

    fn run(&mut self, mem: &mut dyn DmaMemory, posted: &mut [bool]) -> Result<(), DmaError> {
        loop {
            let mut progress = self.deliver_events(mem, posted)?;
            for qid in 0..self.live.sqs.len() {
                let Some(sq) = self.live.sqs[qid] else { continue };
                if sq.ring.head == sq.ring.tail || !self.has_room(sq.cq) {
                    continue;
                }
                let mut entry = [0u8; SQ_ENTRY_BYTES];
                mem.read(sq.ring.base + u64::from(sq.ring.head) * SQ_ENTRY, &mut entry)?;
                let head = sq.ring.next(sq.ring.head);
                if let Some(q) = self.live.sqs[qid].as_mut() {
                    q.ring.head = head;
                }
                let cmd = command::Command::parse(&entry);
                let qid16 = u16::try_from(qid).expect("Queue ids are below 256");
                let done = if qid == 0 { self.admin(&cmd, mem)? } else { self.io(&cmd, mem)? };
                if let Some(done) = done {
                    self.post(sq.cq, qid16, head, cmd.cid, done, mem)?;
                    posted[usize::from(sq.cq)] = true;
                }
                progress = true;
            }
            if !progress {
                return Ok(());
            }
        }
    }

    /// Completes outstanding Asynchronous Event Requests with pending
    /// events.
    fn deliver_events(&mut self, mem: &mut dyn DmaMemory, posted: &mut [bool]) -> Result<bool, DmaError> {
        let mut any = false;
        while !self.live.aers.is_empty() && !self.live.events.is_empty() && self.has_room(0) {
            let (cid, event) = (self.live.aers.remove(0), self.live.events.pop_front().unwrap_or_default());
            let head = self.live.sqs[0].map_or(0, |q| q.ring.head);
            self.post(0, 0, head, cid, command::Done::with_result(event), mem)?;
            posted[0] = true;
            any = true;
        }
        Ok(any)
    }

    fn has_room(&self, cq: u16) -> bool {
        self.live.cqs.get(usize::from(cq)).copied().flatten().is_some_and(|q| q.ring.next(q.ring.tail) != q.ring.head)
    }

    /// Posts a completion entry.
    fn post(
        &mut self,
        cq: u16,
        sq: u16,
        sq_head: u16,
        cid: u16,
        done: command::Done,
        mem: &mut dyn DmaMemory,
    ) -> Result<(), DmaError> {
        let Some(q) = self.live.cqs.get_mut(usize::from(cq)).and_then(Option::as_mut) else { return Ok(()) };
        let mut entry = [0u8; CQ_ENTRY_BYTES];
        entry[0..4].copy_from_slice(&done.result.to_le_bytes());
        entry[8..10].copy_from_slice(&sq_head.to_le_bytes());
        entry[10..12].copy_from_slice(&sq.to_le_bytes());
        entry[12..14].copy_from_slice(&cid.to_le_bytes());
        let status = u16::from(q.phase) | done.status << 1;
        entry[14..16].copy_from_slice(&status.to_le_bytes());
        mem.write(q.ring.base + u64::from(q.ring.tail) * CQ_ENTRY, &entry)?;
        q.ring.tail = q.ring.next(q.ring.tail);
        if q.ring.tail == 0 {
            q.phase = !q.phase;
        }
        Ok(())
    }

    /// INTx (no MSI-X): asserted while a completion queue with interrupts
    /// holds entries the host has not consumed, unless INTMS masks it.
    fn update_intx(&self, irq: &dyn InterruptSink) {
        if irq.msix_enabled() {
            return;
        }
        let pending = self.live.cqs.iter().flatten().any(|q| q.interrupts && q.ring.head != q.ring.tail);
        irq.set_intx(pending && self.regs.intms & 1 == 0);
    }
}

/// A queue size already checked to fit 16 bits.
fn entries(n: u32) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

#[allow(clippy::cast_possible_truncation)] // Keeping the low 32 bits is the point.
const fn low32(v: u64) -> u32 {
    v as u32
}
