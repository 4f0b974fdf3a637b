//! The controller driven the way Linux's `nvme` driver drives it, over a
//! fake memory that holds one window of IOVAs and refuses everything else.

use std::cell::{Cell, RefCell};

use super::command::status;
use super::*;

/// IOVAs `BASE..BASE + SIZE` are mapped.
const BASE: u64 = 0x10_0000;
const SIZE: usize = 1 << 20;
const ASQ: u64 = BASE;
const ACQ: u64 = BASE + 0x1000;
const SQ1: u64 = BASE + 0x2000;
const CQ1: u64 = BASE + 0x3000;
const DATA: u64 = BASE + 0x1_0000;
const ADMIN_ENTRIES: u16 = 8;
const IO_ENTRIES: u16 = 16;

struct Memory {
    bytes: Vec<u8>,
    stopped: bool,
    writes: usize,
}

impl Memory {
    fn at(&self, iova: u64, len: usize) -> Result<usize, DmaError> {
        if self.stopped {
            return Err(DmaError::Stopped);
        }
        let start = iova.checked_sub(BASE).and_then(|o| usize::try_from(o).ok()).ok_or(DmaError::Unmapped { iova })?;
        match start.checked_add(len) {
            Some(end) if end <= SIZE => Ok(start),
            _ => Err(DmaError::Unmapped { iova }),
        }
    }
}

impl DmaMemory for Memory {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let at = self.at(iova, buf.len())?;
        buf.copy_from_slice(&self.bytes[at..at + buf.len()]);
        Ok(())
    }

    fn write(&mut self, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        let at = self.at(iova, bytes.len())?;
        self.bytes[at..at + bytes.len()].copy_from_slice(bytes);
        self.writes += 1;
        Ok(())
    }
}

#[derive(Default)]
struct Irqs {
    msix: bool,
    raised: RefCell<Vec<u16>>,
    intx: Cell<bool>,
}

impl InterruptSink for Irqs {
    fn msix_enabled(&self) -> bool {
        self.msix
    }
    fn raise_msix(&self, vector: u16) {
        self.raised.borrow_mut().push(vector);
    }
    fn set_intx(&self, asserted: bool) {
        self.intx.set(asserted);
    }
}

/// A submission queue entry.
#[derive(Clone, Copy, Default)]
struct Cmd {
    opcode: u8,
    nsid: u32,
    prp1: u64,
    prp2: u64,
    cdw: [u32; 6],
}

impl Cmd {
    fn new(opcode: u8) -> Self {
        Cmd { opcode, ..Cmd::default() }
    }
    fn ns(self, nsid: u32) -> Self {
        Cmd { nsid, ..self }
    }
    fn prp(self, prp1: u64, prp2: u64) -> Self {
        Cmd { prp1, prp2, ..self }
    }
    fn dw(mut self, n: usize, v: u32) -> Self {
        self.cdw[n - 10] = v;
        self
    }
    fn bytes(&self, cid: u16) -> [u8; 64] {
        let mut e = [0u8; 64];
        e[0] = self.opcode;
        e[2..4].copy_from_slice(&cid.to_le_bytes());
        e[4..8].copy_from_slice(&self.nsid.to_le_bytes());
        e[24..32].copy_from_slice(&self.prp1.to_le_bytes());
        e[32..40].copy_from_slice(&self.prp2.to_le_bytes());
        for (i, v) in self.cdw.iter().enumerate() {
            e[40 + 4 * i..44 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        e
    }
}

/// One queue pair as the driver keeps it.
#[derive(Clone, Copy)]
struct Pair {
    qid: u16,
    sq: u64,
    cq: u64,
    entries: u16,
    tail: u16,
    head: u16,
    phase: bool,
}

/// A completion: status (without phase), dword 0, command id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cqe {
    status: u16,
    result: u32,
    cid: u16,
}

struct Driver {
    ctrl: Controller,
    mem: Memory,
    irqs: Irqs,
    admin: Pair,
    io: Pair,
    cid: u16,
}

impl Driver {
    fn new(spec: &NvmeSpec) -> Self {
        let pair = |qid, sq, cq, entries| Pair { qid, sq, cq, entries, tail: 0, head: 0, phase: true };
        Driver {
            ctrl: Controller::new(spec),
            mem: Memory { bytes: vec![0; SIZE], stopped: false, writes: 0 },
            irqs: Irqs { msix: true, ..Irqs::default() },
            admin: pair(0, ASQ, ACQ, ADMIN_ENTRIES),
            io: pair(1, SQ1, CQ1, IO_ENTRIES),
            cid: 0,
        }
    }

    fn small() -> Self {
        Self::new(&NvmeSpec { namespace_bytes: 1 << 20, ..NvmeSpec::DEFAULT })
    }

    fn reg(&self, off: u64, width: u8) -> u64 {
        self.ctrl.read(off, width)
    }

    fn write_reg(&mut self, off: u64, width: u8, value: u64) {
        self.ctrl.write(off, width, value, &mut self.mem, &self.irqs);
    }

    /// `nvme_pci_configure_admin_queue` + `nvme_enable_ctrl`.
    fn enable(&mut self) {
        self.admin = Pair { tail: 0, head: 0, phase: true, ..self.admin };
        self.io = Pair { tail: 0, head: 0, phase: true, ..self.io };
        // nvme_init_queue: the completion queues start zeroed.
        self.put(ACQ, &[0; 4096]);
        self.put(CQ1, &[0; 4096]);
        let n = u64::from(ADMIN_ENTRIES - 1);
        self.write_reg(0x24, 4, n << 16 | n);
        self.write_reg(0x28, 8, ASQ);
        self.write_reg(0x30, 8, ACQ);
        self.write_reg(0x14, 4, 0x0046_0001); // IOSQES 6, IOCQES 4, EN
        assert_eq!(self.reg(0x1c, 4) & 3, 1, "ready, not fatal");
    }

    fn submit(&mut self, which: u16, cmd: Cmd) -> u16 {
        self.cid += 1;
        let cid = self.cid;
        let pair = if which == 0 { &mut self.admin } else { &mut self.io };
        let at = usize::try_from(pair.sq - BASE + u64::from(pair.tail) * 64).unwrap();
        self.mem.bytes[at..at + 64].copy_from_slice(&cmd.bytes(cid));
        pair.tail = (pair.tail + 1) % pair.entries;
        let (qid, tail) = (pair.qid, pair.tail);
        self.write_reg(DOORBELLS + 8 * u64::from(qid), 4, tail.into());
        cid
    }

    /// The next completion of a queue, if the controller posted one.
    fn reap(&mut self, which: u16) -> Option<Cqe> {
        let pair = if which == 0 { &mut self.admin } else { &mut self.io };
        let at = usize::try_from(pair.cq - BASE + u64::from(pair.head) * 16).unwrap();
        let e = &self.mem.bytes[at..at + 16];
        let word = u16::from_le_bytes([e[14], e[15]]);
        if (word & 1 == 1) != pair.phase {
            return None;
        }
        let cqe = Cqe {
            status: word >> 1,
            result: u32::from_le_bytes(e[0..4].try_into().unwrap()),
            cid: u16::from_le_bytes([e[12], e[13]]),
        };
        pair.head = (pair.head + 1) % pair.entries;
        if pair.head == 0 {
            pair.phase = !pair.phase;
        }
        let (qid, head) = (pair.qid, pair.head);
        self.write_reg(DOORBELLS + 8 * u64::from(qid) + 4, 4, head.into());
        Some(cqe)
    }

    /// Submits and reaps: the completion's status and dword 0.
    fn run(&mut self, which: u16, cmd: Cmd) -> (u16, u32) {
        let cid = self.submit(which, cmd);
        let cqe = self.reap(which).expect("a completion");
        assert_eq!(cqe.cid, cid);
        (cqe.status, cqe.result)
    }

    fn admin(&mut self, cmd: Cmd) -> (u16, u32) {
        self.run(0, cmd)
    }

    /// Creates I/O queue pair 1 with vector 1.
    fn create_io_queues(&mut self) {
        let size = u32::from(IO_ENTRIES - 1) << 16 | 1;
        assert_eq!(self.admin(Cmd::new(0x05).dw(10, size).dw(11, 1 << 16 | 3).prp(CQ1, 0)).0, 0);
        assert_eq!(self.admin(Cmd::new(0x01).dw(10, size).dw(11, 1 << 16 | 1).prp(SQ1, 0)).0, 0);
    }

    fn put(&mut self, iova: u64, bytes: &[u8]) {
        let at = usize::try_from(iova - BASE).unwrap();
        self.mem.bytes[at..at + bytes.len()].copy_from_slice(bytes);
    }

    fn get(&self, iova: u64, len: usize) -> Vec<u8> {
        let at = usize::try_from(iova - BASE).unwrap();
        self.mem.bytes[at..at + len].to_vec()
    }

    /// A PRP list at `list` naming `pages`.
    fn prp_list(&mut self, list: u64, pages: &[u64]) {
        let raw: Vec<u8> = pages.iter().flat_map(|p| p.to_le_bytes()).collect();
        self.put(list, &raw);
    }

    fn rw(&mut self, opcode: u8, lba: u64, blocks: u32, prp1: u64, prp2: u64) -> u16 {
        let cmd = Cmd::new(opcode).ns(1).prp(prp1, prp2).dw(10, low32(lba)).dw(11, low32(lba >> 32));
        self.run(1, cmd.dw(12, blocks - 1)).0
    }
}

const ERR: u16 = status::DNR;

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap() ^ seed).collect()
}

#[test]
fn registers_after_power_on_say_what_linux_needs() {
    let d = Driver::small();
    let cap = d.reg(0, 8);
    assert_eq!(cap & 0xffff, 1023, "MQES");
    assert_eq!(cap >> 16 & 1, 1, "CQR");
    assert_eq!(cap >> 24 & 0xff, 20, "TO: 10 s");
    assert_eq!(cap >> 32 & 0xf, 0, "DSTRD");
    assert_eq!(cap >> 37 & 0xff, 1, "CSS: NVM");
    assert_eq!(cap >> 48 & 0xff, 0, "MPSMIN = MPSMAX = 4 KiB");
    assert_eq!(d.reg(0, 4), cap & 0xffff_ffff, "4-byte halves");
    assert_eq!(d.reg(4, 4), cap >> 32);
    assert_eq!(d.reg(0x08, 4), 0x0001_0400, "NVMe 1.4");
    assert_eq!(d.reg(0x1c, 4), 0, "not ready");
    assert!(Controller::claims(0x14) && Controller::claims(0x1ffc));
    assert!(!Controller::claims(0x40) && !Controller::claims(MSIX_TABLE) && !Controller::claims(MSIX_PBA));
}

#[test]
fn bring_up_identify_and_features_with_msix() {
    let mut d = Driver::small();
    d.enable();
    assert_eq!(d.reg(0x28, 8), ASQ);
    let (st, _) = d.admin(Cmd::new(0x06).dw(10, 1).prp(DATA, 0));
    assert_eq!(st, 0);
    let id = d.get(DATA, 4096);
    assert_eq!(&id[0..2], &[0x4d, 0x14]);
    assert!(String::from_utf8_lossy(&id[24..64]).starts_with("vfio-eeh simulated NVMe"));
    assert_eq!((id[77], id[259], id[512], id[513], id[525]), (5, 3, 0x66, 0x44, 1), "MDTS AERL SQES CQES VWC");
    assert_eq!(u32::from_le_bytes(id[516..520].try_into().unwrap()), 1, "one namespace");
    let nqn = &id[768..1024];
    assert!(nqn.starts_with(b"nqn.") && nqn.contains(&0), "SUBNQN is NUL-terminated (Linux's strnlen < 223)");
    assert_eq!(d.admin(Cmd::new(0x06).dw(10, 6).prp(DATA, 0)).0, 0, "NVM command set controller data");
    assert_eq!(d.admin(Cmd::new(0x06).dw(10, 6).dw(11, 2 << 24).prp(DATA, 0)).0, ERR | status::INVALID_FIELD, "zoned");
    // Namespace: 2048 blocks of 512 bytes, into a buffer crossing a page.
    let (st, _) = d.admin(Cmd::new(0x06).ns(1).prp(DATA + 0x800, DATA + 0x1000));
    assert_eq!(st, 0);
    let ns = d.get(DATA + 0x800, 4096);
    assert_eq!(u64::from_le_bytes(ns[0..8].try_into().unwrap()), 2048);
    assert_eq!(ns[130], 9, "LBA format 0: 2^9 bytes");
    assert_eq!(d.admin(Cmd::new(0x06).dw(10, 2).prp(DATA, 0)), (0, 0));
    assert_eq!(&d.get(DATA, 8), &[1, 0, 0, 0, 0, 0, 0, 0], "active namespaces: 1");
    assert_eq!(d.admin(Cmd::new(0x06).dw(10, 3).ns(1).prp(DATA, 0)).0, 0);
    assert_eq!(&d.get(DATA, 4), &[2, 16, 0, 0], "an NGUID descriptor");
    // Number of queues: all 8 allocated whatever was asked.
    assert_eq!(d.admin(Cmd::new(0x09).dw(10, 7).dw(11, 0x003f_003f)), (0, 0x0007_0007));
    assert_eq!(d.admin(Cmd::new(0x09).dw(10, 7).dw(11, 0xffff)).0, ERR | status::INVALID_FIELD);
    assert_eq!(d.admin(Cmd::new(0x09).dw(10, 0x0b).dw(11, 0x100)).0, 0, "async event configuration");
    assert_eq!(d.admin(Cmd::new(0x0a).dw(10, 0x0b)), (0, 0x100));
    assert_eq!(d.admin(Cmd::new(0x0a).dw(10, 0x06)), (0, 1), "write cache on");
    assert_eq!(d.admin(Cmd::new(0x09).dw(10, 0x0c)).0, ERR | status::INVALID_FIELD, "no APST");
    assert_eq!(d.admin(Cmd::new(0x09).dw(10, 1 << 31 | 6)).0, ERR | status::NOT_SAVEABLE);
    assert_eq!(d.admin(Cmd::new(0x02).dw(10, 127 << 16 | 2).prp(DATA, 0)).0, 0, "SMART log");
    assert_eq!(d.admin(Cmd::new(0x02).dw(10, 0x80)).0, ERR | status::INVALID_LOG_PAGE);
    assert!(d.irqs.raised.borrow().iter().all(|&v| v == 0), "admin completions raise vector 0");
    assert!(d.irqs.raised.borrow().len() >= 12);
    // Shutdown: SHST complete.
    d.write_reg(0x14, 4, 0x0046_4001);
    assert_eq!(d.reg(0x1c, 4) >> 2 & 3, 2);
}

#[test]
fn queues_are_created_deleted_and_checked() {
    let mut d = Driver::small();
    d.enable();
    let size = u32::from(IO_ENTRIES - 1) << 16;
    let create_cq = |qid: u32, size: u32, vector: u32| Cmd::new(0x05).dw(10, size | qid).dw(11, vector << 16 | 3);
    let create_sq = |qid: u32, cq: u32| Cmd::new(0x01).dw(10, size | qid).dw(11, cq << 16 | 1);
    assert_eq!(d.admin(create_cq(0, size, 1).prp(CQ1, 0)).0, ERR | status::INVALID_QUEUE_ID, "qid 0");
    assert_eq!(d.admin(create_cq(9, size, 1).prp(CQ1, 0)).0, ERR | status::INVALID_QUEUE_ID, "beyond 8");
    assert_eq!(d.admin(create_cq(1, 1024 << 16, 1).prp(CQ1, 0)).0, ERR | status::INVALID_QUEUE_SIZE, "> MQES");
    assert_eq!(d.admin(create_cq(1, 0, 1).prp(CQ1, 0)).0, ERR | status::INVALID_QUEUE_SIZE, "one entry");
    assert_eq!(d.admin(create_cq(1, size, 9).prp(CQ1, 0)).0, ERR | status::INVALID_VECTOR);
    assert_eq!(d.admin(create_cq(1, size, 1).prp(CQ1 + 8, 0)).0, ERR | status::PRP_OFFSET_INVALID);
    assert_eq!(d.admin(create_cq(1, size, 1).dw(11, 1 << 16 | 2).prp(CQ1, 0)).0, ERR | status::INVALID_FIELD);
    assert_eq!(d.admin(create_sq(1, 1).prp(SQ1, 0)).0, ERR | status::CQ_INVALID, "no CQ 1 yet");
    d.create_io_queues();
    assert_eq!(d.admin(create_cq(1, size, 1).prp(CQ1, 0)).0, ERR | status::INVALID_QUEUE_ID, "exists");
    assert_eq!(d.admin(Cmd::new(0x04).dw(10, 1)).0, ERR | status::INVALID_QUEUE_DELETION, "SQ 1 uses it");
    assert_eq!(d.admin(Cmd::new(0x00).dw(10, 1)).0, 0);
    assert_eq!(d.admin(Cmd::new(0x00).dw(10, 1)).0, ERR | status::INVALID_QUEUE_ID, "gone");
    assert_eq!(d.admin(Cmd::new(0x00).dw(10, 0)).0, ERR | status::INVALID_QUEUE_ID, "not the admin SQ");
    assert_eq!(d.admin(Cmd::new(0x04).dw(10, 1)).0, 0);
    assert_eq!(d.admin(Cmd::new(0x04).dw(10, 1)).0, ERR | status::INVALID_QUEUE_ID);
    assert_eq!(d.admin(Cmd::new(0x7f)).0, ERR | status::INVALID_OPCODE);
}

#[test]
fn writes_and_reads_through_prp_lists_that_cross_pages_and_chain() {
    let mut d = Driver::small();
    d.enable();
    d.create_io_queues();
    // 64 KiB from an offset in the first page: PRP1 + a 16-entry list.
    let data = pattern(64 << 10, 0x5a);
    let first = DATA + 0x200;
    let pages: Vec<u64> = (1..=16).map(|i| DATA + i * 0x1000).collect();
    d.put(first, &data);
    d.prp_list(BASE + 0x8000, &pages);
    assert_eq!(d.rw(0x01, 100, 128, first, BASE + 0x8000), 0);
    // Read it back into scattered pages through a list that chains: its
    // first page holds two entries, the last pointing at the next page.
    let out: Vec<u64> = (0..16).map(|i| BASE + 0x4_0000 + i * 0x2000).collect();
    d.prp_list(BASE + 0x9ff0, &[out[1], BASE + 0xb000]);
    d.prp_list(BASE + 0xb000, &out[2..]);
    assert_eq!(d.rw(0x02, 100, 128, out[0], BASE + 0x9ff0), 0);
    let back: Vec<u8> = out.iter().flat_map(|&p| d.get(p, 4096)).collect();
    assert_eq!(back, data);
    // Two pages: PRP2 is the second page itself.
    assert_eq!(d.rw(0x02, 100, 16, DATA + 0x10_000, DATA + 0x20_000), 0);
    assert_eq!(d.get(DATA + 0x20_000, 4096), data[4096..8192]);
    assert_eq!(d.run(1, Cmd::new(0x00).ns(1)).0, 0, "flush");
    assert_eq!(d.run(1, Cmd::new(0x00).ns(u32::MAX)).0, 0, "flush of every namespace");
    assert!(d.irqs.raised.borrow().contains(&1), "I/O completions raise vector 1");
}

#[test]
fn bad_commands_get_the_spec_statuses_and_touch_no_memory() {
    let mut d = Driver::small();
    d.enable();
    d.create_io_queues();
    let before = d.mem.writes;
    let bad = ERR | status::PRP_OFFSET_INVALID;
    assert_eq!(d.rw(0x02, 0, 8, DATA + 2, 0), bad, "PRP1 not dword-aligned");
    assert_eq!(d.rw(0x02, 0, 8, DATA + 0x200, DATA + 0x1100), bad, "PRP2 with an offset");
    d.prp_list(BASE + 0x8000, &[DATA + 0x1000, DATA + 0x2010]);
    assert_eq!(d.rw(0x02, 0, 24, DATA, BASE + 0x8000), bad, "a list entry with an offset");
    assert_eq!(d.rw(0x02, 2040, 16, DATA, DATA + 0x1000), ERR | status::LBA_OUT_OF_RANGE);
    assert_eq!(d.rw(0x02, u64::MAX - 2, 8, DATA, 0), ERR | status::LBA_OUT_OF_RANGE, "wraps");
    assert_eq!(d.rw(0x02, 0, 257, DATA, BASE + 0x8000), ERR | status::INVALID_FIELD, "beyond MDTS");
    assert_eq!(d.run(1, Cmd::new(0x02).ns(2).prp(DATA, 0)).0, ERR | status::INVALID_NAMESPACE);
    assert_eq!(d.run(1, Cmd::new(0x02).ns(0).prp(DATA, 0)).0, ERR | status::INVALID_NAMESPACE);
    assert_eq!(d.run(1, Cmd::new(0x09).ns(1)).0, ERR | status::INVALID_OPCODE, "DSM is not offered");
    assert_eq!(d.admin(Cmd::new(0x06).ns(7).prp(DATA, 0)).0, ERR | status::INVALID_NAMESPACE);
    assert_eq!(d.admin(Cmd::new(0x06).dw(10, 0x10)).0, ERR | status::INVALID_FIELD, "unknown CNS");
    assert_eq!(d.mem.writes - before, 11, "completions only");
    // A list running out of the mapped window: the DMA fails, nothing is
    // completed, and the controller carries on with the next doorbell.
    d.prp_list(BASE + 0x8000, &[DATA + 0x1000, 0x10_0000_0000]);
    d.submit(1, Cmd::new(0x02).ns(1).prp(DATA, BASE + 0x8000).dw(12, 23));
    assert_eq!(d.reap(1), None);
}

#[test]
fn async_events_stay_outstanding_until_a_doorbell_goes_wrong() {
    let mut d = Driver::small();
    d.enable();
    let aers: Vec<u16> = (0..4).map(|_| d.submit(0, Cmd::new(0x0c))).collect();
    assert_eq!(d.reap(0), None, "outstanding");
    assert_eq!(d.admin(Cmd::new(0x0c)).0, ERR | status::AER_LIMIT, "AERL + 1 at most");
    // A doorbell of a queue that does not exist, then a value beyond a queue.
    d.write_reg(DOORBELLS + 8 * 5, 4, 1);
    let event = d.reap(0).unwrap();
    assert_eq!((event.cid, event.status, event.result), (aers[0], 0, 0x01_00_00));
    d.write_reg(DOORBELLS, 4, 200);
    assert_eq!(d.reap(0).unwrap().result, 0x01_01_00);
    d.write_reg(0x1ffc, 4, 1);
    assert_eq!(d.reap(0).unwrap().cid, aers[2]);
    assert_eq!(d.reap(0), None);
    assert_eq!(d.reg(0x1c, 4) & u64::from(CSTS_CFS), 0, "not fatal");
}

#[test]
fn a_reset_needs_a_new_bring_up_and_keeps_the_data() {
    let mut d = Driver::small();
    d.enable();
    d.create_io_queues();
    let data = pattern(4096, 7);
    d.put(DATA, &data);
    assert_eq!(d.rw(0x01, 8, 8, DATA, 0), 0);
    d.ctrl.reset();
    assert_eq!((d.reg(0x14, 4), d.reg(0x1c, 4), d.reg(0x28, 8)), (0, 0, 0), "power-on registers");
    let writes = d.mem.writes;
    d.submit(1, Cmd::new(0x02).ns(1).prp(DATA, 0).dw(12, 7));
    assert_eq!(d.mem.writes, writes, "a disabled controller ignores doorbells");
    d.enable();
    d.submit(1, Cmd::new(0x02).ns(1).prp(DATA + 0x4000, 0).dw(12, 7));
    assert_eq!(d.reap(1), None, "the I/O queues are gone");
    d.io.tail = 0;
    assert_eq!(d.reap(0), None, "no outstanding AER: the event waits");
    d.create_io_queues();
    assert_eq!(d.rw(0x02, 8, 8, DATA + 0x4000, 0), 0);
    assert_eq!(d.get(DATA + 0x4000, 4096), data);
    // Clearing CC.EN also deletes the queues but keeps the admin registers.
    d.write_reg(0x14, 4, 0);
    assert_eq!((d.reg(0x1c, 4), d.reg(0x28, 8)), (0, ASQ));
}

#[test]
fn an_unusable_admin_setup_is_controller_fatal() {
    let mut d = Driver::small();
    d.write_reg(0x24, 4, 0); // one-entry queues
    d.write_reg(0x14, 4, 1);
    assert_eq!(d.reg(0x1c, 4) & 3, u64::from(CSTS_CFS), "CFS, not ready");
    d.write_reg(0x14, 4, 0);
    d.write_reg(0x24, 4, 0x0007_0007);
    d.write_reg(0x28, 8, ASQ + 0x10);
    d.write_reg(0x14, 4, 1);
    assert_eq!(d.reg(0x1c, 4) & 3, u64::from(CSTS_CFS), "a misaligned ASQ");
    d.write_reg(0x14, 4, 0);
    d.write_reg(0x14, 4, 1 | 1 << 7);
    assert_eq!(d.reg(0x1c, 4) & 3, u64::from(CSTS_CFS), "8 KiB pages");
}

#[test]
fn stopped_dma_reaches_no_memory() {
    let mut d = Driver::small();
    d.enable();
    d.create_io_queues();
    d.mem.stopped = true;
    let writes = d.mem.writes;
    d.submit(1, Cmd::new(0x02).ns(1).prp(DATA, 0).dw(12, 7));
    assert_eq!(d.mem.writes, writes);
    d.mem.stopped = false;
    assert_eq!(d.reap(1), None, "no completion was posted");
}

#[test]
fn intx_follows_unconsumed_completions_and_intms() {
    let mut d = Driver::small();
    d.irqs.msix = false;
    d.enable();
    let cid = d.submit(0, Cmd::new(0x0a).dw(10, 6));
    assert!(d.irqs.intx.get(), "asserted with a completion pending");
    d.write_reg(0x0c, 4, 1);
    assert!(!d.irqs.intx.get(), "masked by INTMS");
    assert_eq!(d.reg(0x10, 4), 1);
    d.write_reg(0x10, 4, 1);
    assert!(d.irqs.intx.get());
    assert_eq!(d.reap(0).unwrap().cid, cid);
    assert!(!d.irqs.intx.get(), "the head doorbell consumed it");
    assert!(d.irqs.raised.borrow().is_empty());
}

#[test]
fn a_file_backed_namespace_keeps_its_data_across_controllers() {
    let path = std::env::temp_dir().join(format!("vfio-eeh-nvme-{}.img", std::process::id()));
    let spec = NvmeSpec { namespace_bytes: 1 << 20, namespace_file: Some(path.clone()), ..NvmeSpec::DEFAULT };
    let data = pattern(4096, 3);
    {
        let mut d = Driver::new(&spec);
        d.enable();
        d.create_io_queues();
        d.put(DATA, &data);
        assert_eq!(d.rw(0x01, 2040, 8, DATA, 0), 0);
        assert_eq!(d.run(1, Cmd::new(0x00).ns(1)).0, 0);
    }
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 20);
    let mut d = Driver::new(&spec);
    d.enable();
    d.create_io_queues();
    assert_eq!(d.rw(0x02, 2040, 8, DATA + 0x8000, 0), 0);
    assert_eq!(d.get(DATA + 0x8000, 4096), data);
    std::fs::remove_file(&path).unwrap();
}
