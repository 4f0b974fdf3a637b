//! The fuzz targets' bodies, one function per target, so that the seed
//! generator (`examples/make_seeds.rs`) and the targets share the input
//! formats. Every function must never panic except on a broken invariant
//! (each `assert!` below is one).
//!
//! Input formats (byte 0 is a flags byte where noted):
//!
//! * [`rtas`]: flags, then records. A first byte in `0x80..=0xbf` is a
//!   guest access (MMIO and config read of device `byte & 0x3f`, which fires
//!   armed injections); in `0xc0..=0xff`, a length `n` and `n` bytes written
//!   into guest memory at `(byte & 0x3f)` KiB (errinjct work buffers);
//!   otherwise the byte advances the virtual clock by `8 ms × byte`, then a
//!   length `n` and `n` bytes are one RTAS buffer served by the firmware.
//! * [`topology`]: the whole input is a topology file (UTF-8 TOML).
//! * [`addr`]: the whole input is address text; its first 4 bytes are also
//!   a PAPR config-address cell.
//! * [`pe_op`]: flags (bit 0: through [`ContainerPath`]; bits 1..3: which
//!   PE, 5..7 naming none; bits 4..7: the [`rtas`] flags of the host), then
//!   records as for [`rtas`] whose buffers are `VFIO_EEH_PE_OP` arguments as
//!   the caller's pointer reaches them.
//! * [`nvme`]: flags (bit 0: MSI-X enabled, else INTx), then records on one
//!   NVMe controller: `0x00..=0x3f` a 4-byte register or doorbell write
//!   (2-byte BAR0 offset, 4-byte value); `0x40..=0x7f` a length and that
//!   many bytes written into memory at `(byte & 0x3f) × 512`; `0x80..=0xbf`
//!   a PCI reset; `0xc0..=0xff` an 8-byte register write (2-byte offset,
//!   8-byte value).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use vfio_eeh::addr::{Buid, ConfigAddr, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::EehBackend;
use vfio_eeh::container::{serve_pe_op, ContainerPath};
use vfio_eeh::mapping::{AddrMaps, VmId};
use vfio_eeh::ops::{EehOp, PeState};
use vfio_eeh::rtas::{EehRtas, FlatMemory, GuestMemory, RtasArgs, RtasContext, RtasPolicy, TokenTable};
use vfio_eeh::uapi::VfioEehPeOp;
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::config::{DeactivatePolicy, InjectionMode, SimConfig};
use vfio_eeh_sim::nvme::{Controller, DmaError, DmaMemory, InterruptSink, NvmeSpec};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::SimHost;
use zerocopy::FromBytes;

/// The VM the RTAS target serves.
pub const VM: VmId = VmId(1);
/// Guest memory of the RTAS target: 64 KiB at guest address 0.
pub const GUEST_MEMORY: usize = 64 << 10;
/// The IOVA of the [`nvme`] target's memory; below and above it nothing is
/// mapped.
pub const NVME_IOVA: u64 = 0x10_0000;
/// Bytes of the [`nvme`] target's memory: the first half the device may
/// read and write, the second it may only read.
pub const NVME_MEMORY: usize = 64 << 10;
/// The [`nvme`] target's controller: small queues and namespace, so that
/// one doorbell's work stays bounded.
pub const NVME_SPEC: NvmeSpec = NvmeSpec { namespace_bytes: 1 << 20, namespace_file: None, io_queues: 2, queue_entries: 64 };
/// [`nvme`] record kinds (the top two bits of a record's first byte).
pub mod nvme_record {
    /// A 4-byte register or doorbell write.
    pub const WRITE32: u8 = 0x00;
    /// Bytes into memory.
    pub const MEMORY: u8 = 0x40;
    /// A PCI reset.
    pub const RESET: u8 = 0x80;
    /// An 8-byte register write.
    pub const WRITE64: u8 = 0xc0;
}

/// Flags bits of [`rtas`] and [`pe_op`].
pub mod flags {
    /// `rtas`: resets return at once (else they block on the clock).
    pub const REPORTING: u8 = 1;
    /// `rtas`: injections freeze at once (else on the next access).
    pub const IMMEDIATE: u8 = 2;
    /// `rtas`: QEMU's answers (else ours).
    pub const QEMU: u8 = 4;
    /// `rtas`: upstream's model, through `VFIO_EEH_PE_OP` bytes.
    pub const CONTAINER: u8 = 8;
    /// `pe_op`: through [`ContainerPath`](vfio_eeh::container::ContainerPath).
    pub const PE_OP_CONTAINER: u8 = 1;
}

/// The built-in topology, parsed once (parsing dominates a short input).
fn builtin_spec() -> &'static TopologySpec {
    static SPEC: OnceLock<TopologySpec> = OnceLock::new();
    SPEC.get_or_init(TopologySpec::builtin)
}

/// The guest's virtual PHB for host PCI domain `domain`.
pub fn guest_buid(domain: u32) -> Buid {
    Buid(Buid::SPAPR_BASE.0 + u64::from(domain))
}

/// Where the RTAS target maps a host function: bus 0 of its domain's PHB,
/// slot = host bus, same function.
pub fn guest_addr_of(host: PciAddr) -> GuestAddr {
    GuestAddr::new(guest_buid(host.domain()), 0, host.bus() & 0x1f, host.func()).expect("slot masked, func valid")
}

/// The built-in host's devices, in topology order.
pub fn builtin_devices(host: &SimHost) -> Vec<PciAddr> {
    host.topology().phbs.iter().flat_map(|p| &p.groups).flat_map(|g| &g.devices).map(|d| d.addr).collect()
}

fn builtin_maps(host: &SimHost) -> AddrMaps {
    let mut maps = AddrMaps::default();
    maps.add_vm(VM).expect("new VM");
    for phb in &host.topology().phbs {
        maps.add_phb(VM, guest_buid(phb.domain)).expect("new PHB");
        for group in &phb.groups {
            maps.assign_pe(VM, group.pe).expect("free PE");
            for dev in &group.devices {
                maps.insert(VM, dev.addr, group.pe, guest_addr_of(dev.addr)).expect("distinct addresses");
            }
        }
    }
    maps
}

/// A guest access to device `index` of the built-in host: an MMIO load of
/// BAR 0 and a config read (results ignored; they may fire injections).
fn touch(host: &SimHost, devices: &[PciAddr], index: u8) {
    let dev = devices[usize::from(index) % devices.len()];
    let _ = host.bar_read(dev, 0, 0, 4);
    let _ = host.config_read(dev, 0, 4);
}

/// One record of a [`rtas`] or [`pe_op`] input.
enum Record<'a> {
    /// A guest access to a built-in device (by index).
    Access(u8),
    /// Bytes written into guest memory at an address.
    Memory(u64, &'a [u8]),
    /// Advance the clock this many milliseconds, then serve the bytes.
    Call(u64, &'a [u8]),
}

/// Splits a record off `rest`: `0x80..=0xbf` access device `byte & 0x3f`;
/// `0xc0..=0xff` length, bytes written to guest memory at
/// `(byte & 0x3f) × 1 KiB`; else advance `8 ms × byte`, length, bytes.
fn next_record<'a>(rest: &mut &'a [u8]) -> Option<Record<'a>> {
    let (&op, tail) = rest.split_first()?;
    if op & 0xc0 == 0x80 {
        *rest = tail;
        return Some(Record::Access(op & 0x3f));
    }
    let (&len, tail) = tail.split_first()?;
    let len = usize::from(len).min(tail.len());
    let (bytes, tail) = tail.split_at(len);
    *rest = tail;
    Some(if op & 0xc0 == 0xc0 {
        Record::Memory(u64::from(op & 0x3f) << 10, bytes)
    } else {
        Record::Call(8 * u64::from(op), bytes)
    })
}

fn sim_config(bits: u8) -> SimConfig {
    SimConfig {
        deactivate: if bits & flags::REPORTING != 0 { DeactivatePolicy::Reporting } else { DeactivatePolicy::Blocking },
        injection: if bits & flags::IMMEDIATE != 0 { InjectionMode::Immediate } else { InjectionMode::OnAccess },
        ..SimConfig::default()
    }
}

/// RTAS buffers through a VM's firmware onto the built-in simulated host,
/// with every device mapped. Checks that a served call writes only its
/// return cells and a refused buffer nothing.
pub fn rtas(data: &[u8]) {
    let Some((&bits, mut rest)) = data.split_first() else { return };
    let clock = Arc::new(VirtualClock::new());
    let host = Arc::new(SimHost::new(builtin_spec(), sim_config(bits), clock.clone()));
    let devices = builtin_devices(&host);
    let maps = builtin_maps(&host);
    let policy = if bits & flags::QEMU != 0 { RtasPolicy::QEMU } else { RtasPolicy::default() };
    let mut firmware = EehRtas::new(VM, TokenTable::default(), policy);
    let mut memory = FlatMemory::new(0, GUEST_MEMORY);
    let container = ContainerPath::new(host.clone(), host.pe_ids().collect::<Vec<_>>());
    let backend: &dyn EehBackend = if bits & flags::CONTAINER != 0 { &container } else { &*host };
    while let Some(record) = next_record(&mut rest) {
        let (advance_ms, call) = match record {
            Record::Access(device) => {
                touch(&host, &devices, device);
                continue;
            }
            Record::Memory(at, bytes) => {
                let _ = memory.write(at, bytes);
                continue;
            }
            Record::Call(ms, bytes) => (ms, bytes),
        };
        clock.advance(Duration::from_millis(advance_ms));
        let mut buf = call.to_vec();
        let mut ctx = RtasContext { maps: &maps, backend, memory: &mut memory };
        match firmware.serve(&mut buf, &mut ctx) {
            Ok(_) => {
                let args = RtasArgs::decode(call).expect("a served buffer decodes");
                let end = args.buffer_len();
                let rets = end - 4 * args.nret();
                assert_eq!(buf[..rets], call[..rets], "header or arguments overwritten");
                assert_eq!(buf[end..], call[end..], "bytes past the return cells overwritten");
            }
            Err(_) => assert_eq!(buf, call, "a refused buffer was written"),
        }
    }
}

/// A topology file: parsed and checked; a valid one builds a host whose
/// every device answers config reads and whose every PE takes the basic ops.
pub fn topology(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let spec = match TopologySpec::from_toml_str(text, "fuzz.toml") {
        Ok(spec) => spec,
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml:"), "error without its place: {message}");
            return;
        }
    };
    let host = SimHost::new(&spec, SimConfig::default(), Arc::new(VirtualClock::new()));
    for dev in builtin_devices(&host) {
        host.config_read(dev, 0, 4).expect("a listed device answers");
        let bars = host.bars(dev).expect("a listed device has BAR info").to_vec();
        for bar in bars {
            let _ = host.bar_read(dev, bar.index, 0, 4);
        }
    }
    let pes: Vec<PeId> = host.pe_ids().collect();
    for pe in pes {
        host.enable(pe).expect("a listed PE enables");
        assert_eq!(host.status(pe).expect("a listed PE").state, PeState::Normal);
    }
}

/// Address text through every parser; whatever parses prints back to text
/// that parses to the same address. The first 4 bytes as a config-address
/// cell: whatever is accepted rebuilds from its fields.
pub fn addr(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(a) = text.parse::<PciAddr>() {
            assert_eq!(a.to_string().parse::<PciAddr>(), Ok(a), "{text:?}");
            assert_eq!(PciAddr::new(a.domain(), a.bus(), a.slot(), a.func()), Ok(a));
        }
        if let Ok(g) = text.parse::<GuestAddr>() {
            assert_eq!(g.to_string().parse::<GuestAddr>(), Ok(g), "{text:?}");
            assert_eq!(GuestAddr::from_config(g.buid(), g.config_addr()), g);
        }
        if let Ok(b) = text.parse::<Buid>() {
            assert_eq!(b.to_string().parse::<Buid>(), Ok(b), "{text:?}");
            assert_eq!(Buid::from_cells(b.hi(), b.lo()), b);
        }
    }
    if let Some(cell) = data.first_chunk::<4>() {
        if let Ok(c) = ConfigAddr::from_raw(u32::from_be_bytes(*cell)) {
            assert_eq!(ConfigAddr::new(c.bus(), c.devfn(), c.register()), Ok(c));
        }
    }
}

/// `VFIO_EEH_PE_OP` arguments as the emulated `/dev/vfio` gets them,
/// served on a PE of the built-in host (or on no PE). Every decodable
/// argument re-encodes to the same op, `GET_STATE` answers a valid state,
/// and the container path agrees with the direct one on what it refuses.
pub fn pe_op(data: &[u8]) {
    let Some((&bits, mut rest)) = data.split_first() else { return };
    let clock = Arc::new(VirtualClock::new());
    let host = Arc::new(SimHost::new(builtin_spec(), sim_config(bits >> 4), clock.clone()));
    let devices = builtin_devices(&host);
    let pe = PeId(u32::from((bits >> 1) & 7));
    let container = ContainerPath::new(host.clone(), [pe]);
    while let Some(record) = next_record(&mut rest) {
        let (advance_ms, arg) = match record {
            Record::Access(device) => {
                touch(&host, &devices, device);
                continue;
            }
            Record::Memory(..) => continue,
            Record::Call(ms, bytes) => (ms, bytes),
        };
        clock.advance(Duration::from_millis(advance_ms));
        let mut raw = VfioEehPeOp::default();
        let n = arg.len().min(size_of::<VfioEehPeOp>());
        zerocopy::IntoBytes::as_mut_bytes(&mut raw)[..n].copy_from_slice(&arg[..n]);
        let decoded = EehOp::try_from(&raw);
        if let Ok(op) = decoded {
            assert_eq!(EehOp::try_from(&VfioEehPeOp::from(op)).ok(), Some(op), "op does not round-trip");
        }
        if let Ok(full) = VfioEehPeOp::read_from_bytes(arg) {
            assert_eq!(full, raw);
        }
        let result = if bits & flags::PE_OP_CONTAINER != 0 {
            match decoded {
                Ok(op) if n == size_of::<VfioEehPeOp>() => {
                    container.pe_op(pe, op).map(|r| r.ioctl_value()).map_err(|e| e.errno())
                }
                _ => serve_pe_op(&*host, pe, arg),
            }
        } else {
            serve_pe_op(&*host, pe, arg)
        };
        match result {
            Ok(value) if matches!(decoded, Ok(EehOp::GetState)) => {
                assert!(PeState::from_raw(value).is_some(), "GET_STATE returned {value}");
            }
            Ok(value) => assert_eq!(value, 0, "only GET_STATE returns a value"),
            Err(errno) => assert!(errno > 0, "errno {errno}"),
        }
    }
}

/// The [`nvme`] target's memory: a read-write half and a half the device
/// may only read, both in bounds of what it was given.
struct NvmeMemory {
    bytes: Vec<u8>,
    device_writes: usize,
}

impl NvmeMemory {
    fn range(&self, iova: u64, len: usize) -> Result<std::ops::Range<usize>, DmaError> {
        let start = iova.checked_sub(NVME_IOVA).and_then(|o| usize::try_from(o).ok());
        match start.and_then(|s| Some(s..s.checked_add(len)?)) {
            Some(r) if r.end <= self.bytes.len() => Ok(r),
            _ => Err(DmaError::Unmapped { iova }),
        }
    }
}

impl DmaMemory for NvmeMemory {
    fn read(&mut self, iova: u64, buf: &mut [u8]) -> Result<(), DmaError> {
        let r = self.range(iova, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, iova: u64, bytes: &[u8]) -> Result<(), DmaError> {
        let r = self.range(iova, bytes.len())?;
        if r.end > NVME_MEMORY / 2 {
            return Err(DmaError::Direction { iova });
        }
        self.bytes[r].copy_from_slice(bytes);
        self.device_writes += 1;
        Ok(())
    }
}

/// Interrupts of the [`nvme`] target: MSI-X vectors are checked against
/// the controller's.
struct NvmeInterrupts {
    msix: bool,
}

impl InterruptSink for NvmeInterrupts {
    fn msix_enabled(&self) -> bool {
        self.msix
    }

    fn raise_msix(&self, vector: u16) {
        assert!(self.msix, "an MSI-X vector while MSI-X is off");
        assert!(vector < NVME_SPEC.vectors(), "vector {vector} beyond the table");
    }

    fn set_intx(&self, _asserted: bool) {
        assert!(!self.msix, "INTx while MSI-X is on");
    }
}

/// The NVMe controller's command path: register and doorbell writes,
/// memory the driver fills, PCI resets. The controller never panics, never
/// writes outside the read-write half of its memory (the read-only half
/// stays what the driver put there), and answers every register read.
pub fn nvme(data: &[u8]) {
    let Some((&bits, mut rest)) = data.split_first() else { return };
    let mut controller = Controller::new(&NVME_SPEC);
    let mut memory = NvmeMemory { bytes: vec![0; NVME_MEMORY], device_writes: 0 };
    let irqs = NvmeInterrupts { msix: bits & 1 != 0 };
    let take = |rest: &mut &[u8], n: usize| -> Option<Vec<u8>> {
        let (head, tail) = rest.split_at_checked(n)?;
        *rest = tail;
        Some(head.to_vec())
    };
    while let Some((&op, tail)) = rest.split_first() {
        rest = tail;
        let read_only = memory.bytes[NVME_MEMORY / 2..].to_vec();
        match op & 0xc0 {
            nvme_record::MEMORY => {
                let Some(len) = take(&mut rest, 1) else { return };
                let at = usize::from(op & 0x3f) * 512;
                let n = usize::from(len[0]).min(rest.len());
                let bytes = take(&mut rest, n).unwrap_or_default();
                let end = (at + bytes.len()).min(NVME_MEMORY);
                memory.bytes[at..end].copy_from_slice(&bytes[..end - at]);
                continue;
            }
            nvme_record::RESET => controller.reset(),
            kind => {
                let width = if kind == nvme_record::WRITE64 { 8 } else { 4 };
                let (Some(off), Some(value)) = (take(&mut rest, 2), take(&mut rest, width)) else { return };
                let off = u64::from(u16::from_le_bytes([off[0], off[1]]) & 0x1fff) & !(width as u64 - 1);
                if !Controller::claims(off) {
                    continue;
                }
                let mut v = [0u8; 8];
                v[..width].copy_from_slice(&value);
                let width = u8::try_from(width).expect("4 or 8");
                controller.write(off, width, u64::from_le_bytes(v), &mut memory, &irqs);
                let _ = controller.read(off, width);
            }
        }
        assert_eq!(memory.bytes[NVME_MEMORY / 2..], read_only[..], "the device wrote read-only memory");
    }
}
