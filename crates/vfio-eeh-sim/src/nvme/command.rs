//! Admin and NVM commands, their statuses, and PRP data transfers.

use super::{entries, CompletionQueue, Controller, DmaError, DmaMemory, Ring, SubmissionQueue, BLOCK_BYTES, PAGE};

/// Status codes: status code type << 8 | status code (NVMe 1.4, 4.6.1).
pub(super) mod status {
    /// Successful Completion.
    pub const SUCCESS: u16 = 0x000;
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: u16 = 0x001;
    /// Invalid Field in Command.
    pub const INVALID_FIELD: u16 = 0x002;
    /// Internal Error.
    pub const INTERNAL: u16 = 0x006;
    /// Invalid Namespace or Format.
    pub const INVALID_NAMESPACE: u16 = 0x00b;
    /// PRP Offset Invalid.
    pub const PRP_OFFSET_INVALID: u16 = 0x013;
    /// LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: u16 = 0x080;
    /// Completion Queue Invalid.
    pub const CQ_INVALID: u16 = 0x100;
    /// Invalid Queue Identifier.
    pub const INVALID_QUEUE_ID: u16 = 0x101;
    /// Invalid Queue Size.
    pub const INVALID_QUEUE_SIZE: u16 = 0x102;
    /// Asynchronous Event Request Limit Exceeded.
    pub const AER_LIMIT: u16 = 0x105;
    /// Invalid Interrupt Vector.
    pub const INVALID_VECTOR: u16 = 0x108;
    /// Invalid Log Page.
    pub const INVALID_LOG_PAGE: u16 = 0x109;
    /// Invalid Queue Deletion.
    pub const INVALID_QUEUE_DELETION: u16 = 0x10c;
    /// Feature Identifier Not Saveable.
    pub const NOT_SAVEABLE: u16 = 0x10d;
    /// Do Not Retry.
    pub const DNR: u16 = 0x4000;
}

/// Asynchronous event (completion dword 0): error status type, "write to
/// invalid doorbell register", error log page.
pub(super) const EVENT_INVALID_DOORBELL_REGISTER: u32 = 0x01_00_00;
/// Asynchronous event: error status type, "invalid doorbell write value".
pub(super) const EVENT_INVALID_DOORBELL_VALUE: u32 = 0x01_01_00;
/// Events kept until an Asynchronous Event Request reports them.
pub(super) const MAX_EVENTS: usize = 8;
/// Identify AERL: outstanding Asynchronous Event Requests, 0-based.
const AERL: u8 = 3;
/// Identify MDTS: 2^5 pages, 128 KiB per command.
const MDTS: u8 = 5;
const MAX_TRANSFER: u64 = PAGE << MDTS;
/// Feature ids 0..FEATURES are kept (arbitration 0x01 ... async event
/// configuration 0x0b).
pub(super) const FEATURES: usize = 0x0c;
const FEATURE_NUMBER_OF_QUEUES: usize = 0x07;
const FEATURE_WRITE_CACHE: usize = 0x06;
/// The one namespace.
const NSID: u32 = 1;
const BROADCAST_NSID: u32 = u32::MAX;

/// Feature values after a reset: the write cache on, every queue
/// allocated.
pub(super) fn default_features(io_queues: u16) -> [u32; FEATURES] {
    let mut features = [0; FEATURES];
    features[FEATURE_WRITE_CACHE] = 1;
    let n = u32::from(io_queues) - 1;
    features[FEATURE_NUMBER_OF_QUEUES] = n << 16 | n;
    features
}

/// A submission queue entry.
#[derive(Debug, Clone, Copy)]
pub(super) struct Command {
    opcode: u8,
    /// FUSE and PSDT (bits 9:8 and 15:14 of dword 0); both must be zero.
    flags: u8,
    pub(super) cid: u16,
    nsid: u32,
    prp1: u64,
    prp2: u64,
    cdw: [u32; 6],
}

impl Command {
    pub(super) fn parse(e: &[u8; 64]) -> Self {
        let u32_at = |i: usize| u32::from_le_bytes([e[i], e[i + 1], e[i + 2], e[i + 3]]);
        let u64_at = |i: usize| u64::from(u32_at(i)) | u64::from(u32_at(i + 4)) << 32;
        Command {
            opcode: e[0],
            flags: e[1],
            cid: u16::from_le_bytes([e[2], e[3]]),
            nsid: u32_at(4),
            prp1: u64_at(24),
            prp2: u64_at(32),
            cdw: [u32_at(40), u32_at(44), u32_at(48), u32_at(52), u32_at(56), u32_at(60)],
        }
    }

    /// Command dword `n` (10..=15).
    fn dw(&self, n: usize) -> u32 {
        self.cdw[n - 10]
    }
}

/// A command's completion: status and dword 0.
#[derive(Debug, Clone, Copy)]
pub(super) struct Done {
    pub(super) status: u16,
    pub(super) result: u32,
}

impl Done {
    pub(super) fn with_result(result: u32) -> Self {
        Done { status: status::SUCCESS, result }
    }

    fn ok() -> Self {
        Self::with_result(0)
    }

    fn error(code: u16) -> Self {
        Done { status: code | status::DNR, result: 0 }
    }
}

/// What a command yields: its completion, `None` for one kept outstanding
/// (an Asynchronous Event Request), or a DMA failure that stops the
/// controller.
type Outcome = Result<Option<Done>, DmaError>;

/// Why a data transfer did not happen.
enum TransferError {
    Status(u16),
    Dma(DmaError),
}

impl From<DmaError> for TransferError {
    fn from(e: DmaError) -> Self {
        TransferError::Dma(e)
    }
}

fn finish(r: Result<Done, TransferError>) -> Outcome {
    match r {
        Ok(done) => Ok(Some(done)),
        Err(TransferError::Status(code)) => Ok(Some(Done::error(code))),
        Err(TransferError::Dma(e)) => Err(e),
    }
}

/// The memory segments `(iova, bytes)` that PRP1 and PRP2 describe for a
/// transfer of `len` bytes (NVMe 1.4, 4.3): PRP1 with a dword-aligned
/// offset, then PRP2 as the second page or as a PRP list (chained through
/// the last entry of each list page); every later entry page-aligned.
fn prp_segments(cmd: &Command, len: u64, mem: &mut dyn DmaMemory) -> Result<Vec<(u64, usize)>, TransferError> {
    let invalid = || TransferError::Status(status::PRP_OFFSET_INVALID);
    let bytes = |n: u64| usize::try_from(n).expect("Transfers are small");
    if cmd.prp1 & 3 != 0 {
        return Err(invalid());
    }
    let first = len.min(PAGE - cmd.prp1 % PAGE);
    let mut segments = vec![(cmd.prp1, bytes(first))];
    let mut left = len - first;
    if left == 0 {
        return Ok(segments);
    }
    if left <= PAGE {
        if !cmd.prp2.is_multiple_of(PAGE) {
            return Err(invalid());
        }
        segments.push((cmd.prp2, bytes(left)));
        return Ok(segments);
    }
    if cmd.prp2 & 7 != 0 {
        return Err(invalid());
    }
    let mut list = cmd.prp2;
    while left > 0 {
        let pages_needed = left.div_ceil(PAGE);
        let in_list = (PAGE - list % PAGE) / 8;
        let chained = pages_needed > in_list;
        let n = if chained { in_list } else { pages_needed };
        let mut raw = vec![0u8; bytes(n * 8)];
        mem.read(list, &mut raw)?;
        let entries: Vec<u64> =
            raw.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("Eight bytes"))).collect();
        let data = if chained { &entries[..entries.len() - 1] } else { &entries[..] };
        for &page in data {
            if !page.is_multiple_of(PAGE) {
                return Err(invalid());
            }
            let n = left.min(PAGE);
            segments.push((page, bytes(n)));
            left -= n;
        }
        if chained {
            list = entries[entries.len() - 1];
            if !list.is_multiple_of(PAGE) {
                return Err(invalid());
            }
        }
    }
    Ok(segments)
}

/// Copies `data` to the memory PRP1/PRP2 describe (controller to host).
fn send(cmd: &Command, data: &[u8], mem: &mut dyn DmaMemory) -> Result<(), TransferError> {
    let mut done = 0;
    for (iova, n) in prp_segments(cmd, data.len() as u64, mem)? {
        mem.write(iova, &data[done..done + n])?;
        done += n;
    }
    Ok(())
}

/// Copies `len` bytes from the memory PRP1/PRP2 describe.
fn receive(cmd: &Command, len: u64, mem: &mut dyn DmaMemory) -> Result<Vec<u8>, TransferError> {
    let mut data = vec![0u8; usize::try_from(len).expect("Transfers are small")];
    let mut done = 0;
    for (iova, n) in prp_segments(cmd, len, mem)? {
        mem.read(iova, &mut data[done..done + n])?;
        done += n;
    }
    Ok(data)
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    buf[at..at + bytes.len()].copy_from_slice(bytes);
}

/// A space-padded ASCII field.
fn text(buf: &mut [u8], at: usize, len: usize, s: &str) {
    buf[at..at + len].fill(b' ');
    put(buf, at, &s.as_bytes()[..s.len().min(len)]);
}

impl Controller {
    fn blocks(&self) -> u64 {
        self.media.bytes() / BLOCK_BYTES
    }

    /// An admin command.
    pub(super) fn admin(&mut self, cmd: &Command, mem: &mut dyn DmaMemory) -> Outcome {
        if cmd.flags != 0 {
            return Ok(Some(Done::error(status::INVALID_FIELD)));
        }
        match cmd.opcode {
            0x00 => Ok(Some(self.delete_sq(cmd))),
            0x01 => Ok(Some(self.create_sq(cmd))),
            0x02 => finish(self.get_log_page(cmd, mem)),
            0x04 => Ok(Some(self.delete_cq(cmd))),
            0x05 => Ok(Some(self.create_cq(cmd))),
            0x06 => finish(self.identify(cmd, mem)),
            // Abort: the command was not aborted (dword 0 bit 0).
            0x08 => Ok(Some(Done::with_result(1))),
            0x09 => Ok(Some(self.set_features(cmd))),
            0x0a => Ok(Some(self.get_features(cmd))),
            0x0c => Ok(self.async_event_request(cmd)),
            _ => Ok(Some(Done::error(status::INVALID_OPCODE))),
        }
    }

    /// The queue id and size (entries) of a create command, checked.
    fn new_queue(&self, cmd: &Command, taken: bool) -> Result<(u16, u16), u16> {
        let qid = cmd.dw(10) & 0xffff;
        let size = (cmd.dw(10) >> 16) + 1;
        if qid == 0 || qid > u32::from(self.io_queues) || taken {
            return Err(status::INVALID_QUEUE_ID);
        }
        if size < 2 || size > u32::from(self.queue_entries) {
            return Err(status::INVALID_QUEUE_SIZE);
        }
        // Physically contiguous only (CAP.CQR).
        if cmd.dw(11) & 1 == 0 {
            return Err(status::INVALID_FIELD);
        }
        if !cmd.prp1.is_multiple_of(PAGE) {
            return Err(status::PRP_OFFSET_INVALID);
        }
        Ok((entries(qid), entries(size)))
    }

    fn qid_of(cmd: &Command) -> usize {
        usize::try_from(cmd.dw(10) & 0xffff).expect("16 bits fit")
    }

    fn create_cq(&mut self, cmd: &Command) -> Done {
        let taken = self.live.cqs.get(Self::qid_of(cmd)).is_some_and(Option::is_some);
        let (qid, size) = match self.new_queue(cmd, taken) {
            Ok(q) => q,
            Err(code) => return Done::error(code),
        };
        let vector = cmd.dw(11) >> 16;
        if vector > u32::from(self.io_queues) {
            return Done::error(status::INVALID_VECTOR);
        }
        self.live.cqs[usize::from(qid)] = Some(CompletionQueue {
            ring: Ring::new(cmd.prp1, size),
            phase: true,
            interrupts: cmd.dw(11) & 2 != 0,
            vector: entries(vector),
        });
        Done::ok()
    }

    fn create_sq(&mut self, cmd: &Command) -> Done {
        let taken = self.live.sqs.get(Self::qid_of(cmd)).is_some_and(Option::is_some);
        let (qid, size) = match self.new_queue(cmd, taken) {
            Ok(q) => q,
            Err(code) => return Done::error(code),
        };
        let cq = cmd.dw(11) >> 16;
        if cq == 0 || !self.live.cqs.get(usize::try_from(cq).unwrap_or(usize::MAX)).is_some_and(Option::is_some) {
            return Done::error(status::CQ_INVALID);
        }
        self.live.sqs[usize::from(qid)] = Some(SubmissionQueue { ring: Ring::new(cmd.prp1, size), cq: entries(cq) });
        Done::ok()
    }

    fn delete_sq(&mut self, cmd: &Command) -> Done {
        let qid = Self::qid_of(cmd);
        match self.live.sqs.get_mut(qid) {
            Some(slot @ Some(_)) if qid != 0 => {
                *slot = None;
                Done::ok()
            }
            _ => Done::error(status::INVALID_QUEUE_ID),
        }
    }

    fn delete_cq(&mut self, cmd: &Command) -> Done {
        let qid = Self::qid_of(cmd);
        if qid == 0 || !self.live.cqs.get(qid).is_some_and(Option::is_some) {
            return Done::error(status::INVALID_QUEUE_ID);
        }
        if self.live.sqs.iter().flatten().any(|sq| usize::from(sq.cq) == qid) {
            return Done::error(status::INVALID_QUEUE_DELETION);
        }
        self.live.cqs[qid] = None;
        Done::ok()
    }

    fn identify(&self, cmd: &Command, mem: &mut dyn DmaMemory) -> Result<Done, TransferError> {
        let mut data = vec![0u8; 4096];
        let ns_ok = cmd.nsid == NSID;
        match cmd.dw(10) & 0xff {
            0x00 if ns_ok => self.identify_namespace(&mut data),
            0x01 => self.identify_controller(&mut data),
            0x02 if cmd.nsid < NSID => put(&mut data, 0, &NSID.to_le_bytes()),
            0x02 if cmd.nsid < BROADCAST_NSID - 1 => {}
            // Namespace identification descriptors: the NGUID.
            0x03 if ns_ok => {
                put(&mut data, 0, &[0x02, 16, 0, 0]);
                put(&mut data, 4, &self.nguid());
            }
            // I/O command set specific controller data of the NVM set
            // (CSI 0): no limits beyond MDTS.
            0x06 if cmd.dw(11) >> 24 == 0 => {}
            0x00 | 0x02 | 0x03 => return Err(TransferError::Status(status::INVALID_NAMESPACE)),
            _ => return Err(TransferError::Status(status::INVALID_FIELD)),
        }
        send(cmd, &data, mem)?;
        Ok(Done::ok())
    }

    fn nguid(&self) -> [u8; 16] {
        let mut nguid = *b"vfio-eeh-nvme-ns";
        nguid[15] = b'1';
        nguid
    }

    fn identify_controller(&self, d: &mut [u8]) {
        put(d, 0, &0x144du16.to_le_bytes()); // VID
        put(d, 2, &0x144du16.to_le_bytes()); // SSVID
        text(d, 4, 20, "VFIOEEH0001");
        text(d, 24, 40, "vfio-eeh simulated NVMe");
        text(d, 64, 8, "1.0");
        d[72] = 6; // RAB
        d[77] = MDTS;
        put(d, 78, &1u16.to_le_bytes()); // CNTLID
        put(d, 80, &0x0001_0400u32.to_le_bytes()); // VER
        d[111] = 1; // CNTRLTYPE: I/O controller
        d[258] = 3; // ACL
        d[259] = AERL;
        d[260] = 0x02; // FRMW: one slot
        put(d, 266, &0x0157u16.to_le_bytes()); // WCTEMP
        put(d, 268, &0x0175u16.to_le_bytes()); // CCTEMP
        d[512] = 0x66; // SQES
        d[513] = 0x44; // CQES
        put(d, 516, &1u32.to_le_bytes()); // NN
        d[525] = 1; // VWC
                    // SUBNQN is NUL-terminated, not padded.
        put(d, 768, b"nqn.2026-12.invalid.vfio-eeh:nvme");
        put(d, 2048, &2500u16.to_le_bytes()); // PSD0 MP: 25 W
    }

    fn identify_namespace(&self, d: &mut [u8]) {
        let blocks = self.blocks().to_le_bytes();
        put(d, 0, &blocks); // NSZE
        put(d, 8, &blocks); // NCAP
        put(d, 16, &blocks); // NUSE
        put(d, 104, &self.nguid()); // NGUID
        d[130] = 9; // LBAF0: 512-byte blocks
    }

    fn get_log_page(&self, cmd: &Command, mem: &mut dyn DmaMemory) -> Result<Done, TransferError> {
        let dwords = (u64::from(cmd.dw(11) & 0xffff) << 16 | u64::from(cmd.dw(10) >> 16)) + 1;
        let len = dwords * 4;
        if len > MAX_TRANSFER {
            return Err(TransferError::Status(status::INVALID_FIELD));
        }
        // Error information, SMART / health, firmware slots: nothing to report.
        if !matches!(cmd.dw(10) & 0xff, 0x01..=0x03) {
            return Err(TransferError::Status(status::INVALID_LOG_PAGE));
        }
        send(cmd, &vec![0u8; usize::try_from(len).expect("Small")], mem)?;
        Ok(Done::ok())
    }

    fn set_features(&mut self, cmd: &Command) -> Done {
        let fid = usize::try_from(cmd.dw(10) & 0xff).expect("Eight bits fit");
        if cmd.dw(10) >> 31 != 0 {
            return Done::error(status::NOT_SAVEABLE);
        }
        if fid == 0 || fid >= FEATURES || fid == 0x03 {
            return Done::error(status::INVALID_FIELD);
        }
        let value = cmd.dw(11);
        if fid == FEATURE_NUMBER_OF_QUEUES {
            if value & 0xffff == 0xffff || value >> 16 == 0xffff {
                return Done::error(status::INVALID_FIELD);
            }
            // Every queue is allocated whatever was asked.
            return Done::with_result(self.live.features[fid]);
        }
        self.live.features[fid] = value;
        Done::ok()
    }

    fn get_features(&self, cmd: &Command) -> Done {
        let fid = usize::try_from(cmd.dw(10) & 0xff).expect("Eight bits fit");
        if fid == 0 || fid >= FEATURES || fid == 0x03 {
            return Done::error(status::INVALID_FIELD);
        }
        // SEL 3: supported capabilities (changeable).
        if cmd.dw(10) >> 8 & 7 == 3 {
            return Done::with_result(0b100);
        }
        Done::with_result(self.live.features[fid])
    }

    fn async_event_request(&mut self, cmd: &Command) -> Option<Done> {
        if self.live.aers.len() > usize::from(AERL) {
            return Some(Done::error(status::AER_LIMIT));
        }
        self.live.aers.push(cmd.cid);
        None
    }

    /// An NVM command (Flush, Write, Read).
    pub(super) fn io(&mut self, cmd: &Command, mem: &mut dyn DmaMemory) -> Outcome {
        if !matches!(cmd.opcode, 0x00..=0x02) {
            return Ok(Some(Done::error(status::INVALID_OPCODE)));
        }
        if cmd.flags != 0 {
            return Ok(Some(Done::error(status::INVALID_FIELD)));
        }
        let flush = cmd.opcode == 0x00;
        if cmd.nsid != NSID && !(flush && cmd.nsid == BROADCAST_NSID) {
            return Ok(Some(Done::error(status::INVALID_NAMESPACE)));
        }
        if flush {
            return Ok(Some(match self.media.flush() {
                Ok(()) => Done::ok(),
                Err(_) => Done::error(status::INTERNAL),
            }));
        }
        let start = u64::from(cmd.dw(10)) | u64::from(cmd.dw(11)) << 32;
        let count = u64::from(cmd.dw(12) & 0xffff) + 1;
        if start.checked_add(count).is_none_or(|end| end > self.blocks()) {
            return Ok(Some(Done::error(status::LBA_OUT_OF_RANGE)));
        }
        let len = count * BLOCK_BYTES;
        if len > MAX_TRANSFER {
            return Ok(Some(Done::error(status::INVALID_FIELD)));
        }
        let offset = start * BLOCK_BYTES;
        finish(if cmd.opcode == 0x01 {
            receive(cmd, len, mem).and_then(|data| {
                self.media.write(offset, &data).map_err(|_| TransferError::Status(status::INTERNAL))?;
                Ok(Done::ok())
            })
        } else {
            let mut data = vec![0u8; usize::try_from(len).expect("Small")];
            match self.media.read(offset, &mut data) {
                Ok(()) => send(cmd, &data, mem).map(|()| Done::ok()),
                Err(_) => Err(TransferError::Status(status::INTERNAL)),
            }
        })
    }
}
