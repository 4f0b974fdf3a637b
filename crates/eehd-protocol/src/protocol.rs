//! The wire protocol: one JSON message per `SOCK_SEQPACKET` datagram, at
//! most [`MAX_FRAME`] bytes, snake_case throughout. docs/protocol.md is the
//! reference; this module is its code.
//!
//! A client sends [`Request`]s, each tagged by `op`, and gets one
//! [`ServerFrame::Ok`] or [`ServerFrame::Error`] per request, in order.
//! After [`Request::Subscribe`], [`ServerFrame::Event`]s arrive between
//! answers. The first request must be [`Request::Hello`] with
//! [`PROTOCOL_VERSION`].
//!
//! ```
//! use eehd_protocol::protocol::{Request, PROTOCOL_VERSION};
//!
//! let hello = Request::Hello { version: PROTOCOL_VERSION, vm: Some("guest-a".into()) };
//! let json = serde_json::to_string(&hello).unwrap();
//! assert_eq!(json, r#"{"op":"hello","version":1,"vm":"guest-a"}"#);
//! assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), hello);
//! ```

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::{errno, BackendError};
use vfio_eeh::mapping::MapError;
use vfio_eeh::ops::{EehOp, ErrInjection, PeState, ResetKind};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u32 = 1;

/// The largest datagram either side sends or accepts (64 KiB).
pub const MAX_FRAME: usize = 64 * 1024;

/// The most guest memory one RTAS request may carry (8 KiB: a byte takes up
/// to four characters of JSON, so the window fits a frame with room).
pub const MAX_GUEST_WINDOW: usize = 8 * 1024;

/// The most changes one [`Request::Dma`] carries (each is about 100 bytes
/// of JSON, so a full request fits a frame with room).
pub const MAX_DMA_CHANGES: usize = 256;

/// A client's request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Opens the session: the protocol version and the VM acted for (none
    /// for an operator-only session).
    Hello {
        /// Must be [`PROTOCOL_VERSION`].
        version: u32,
        /// The VM's name.
        vm: Option<String>,
    },
    /// Claims a group (PE) for the caller's VM.
    Claim {
        /// The group.
        group: PeId,
    },
    /// Opens a group for the VM as a VFIO group open does: claims it and
    /// describes its functions. Unlike [`Request::Claim`] it answers with
    /// the kernel's errnos for `open("/dev/vfio/<group>")`: `ENOENT` for a
    /// group the host lacks, `EBUSY` for one another VM holds. The answer
    /// ([`Answer::Attached`]) carries descriptors (`SCM_RIGHTS`) of the
    /// memory the VMM may access directly (docs/shared-host.md).
    Attach {
        /// The group.
        group: PeId,
    },
    /// Releases a group the VM claimed (refused while devices are mapped).
    Release {
        /// The group.
        group: PeId,
    },
    /// Gives the VM a virtual PHB.
    PhbAdd {
        /// Its BUID.
        buid: Buid,
    },
    /// Takes a virtual PHB away (refused while devices are mapped under it).
    PhbRemove {
        /// Its BUID.
        buid: Buid,
    },
    /// Maps a host function of a claimed group at a guest address
    /// (`VFIO_DEVICE_ADDR_MAPPING_SET`).
    MapSet {
        /// The host function.
        host: PciAddr,
        /// The guest address.
        guest: GuestAddr,
    },
    /// Removes a host function's mapping (`VFIO_DEVICE_ADDR_MAPPING_CLEAR`).
    MapClear {
        /// The host function.
        host: PciAddr,
    },
    /// A host function's guest address (`VFIO_DEVICE_ADDR_MAPPING_GET`).
    MapGet {
        /// The host function.
        host: PciAddr,
    },
    /// Every mapping, PHB and claim of the VM.
    MapList,
    /// An RTAS EEH call, served against this VM's mappings only.
    Rtas {
        /// The `rtas_args` cells as numbers: token, nargs, nret, the
        /// arguments, then room for the returns.
        cells: Vec<u32>,
        /// Guest memory the call reads or writes (slot-error-detail's log
        /// buffer, errinjct's work buffer); absent means none.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory: Option<GuestWindow>,
    },
    /// A `VFIO_EEH_PE_OP` on a group the VM claimed.
    PeOp {
        /// The group.
        group: PeId,
        /// The operation.
        action: PeAction,
    },
    /// The VM's groups with their states.
    State,
    /// Pushes this VM's PE events from now on.
    Subscribe,
    /// Reads a host function of one of the VM's groups, as a VMM does
    /// through the function's VFIO device fd.
    DeviceRead {
        /// The host function.
        host: PciAddr,
        /// Config space or a BAR.
        space: DeviceSpace,
        /// Byte offset, naturally aligned to `width`.
        offset: u64,
        /// 1, 2 or 4 bytes (8 in a BAR).
        width: u8,
    },
    /// Writes a host function of one of the VM's groups.
    DeviceWrite {
        /// The host function.
        host: PciAddr,
        /// Config space or a BAR.
        space: DeviceSpace,
        /// Byte offset, naturally aligned to `width`.
        offset: u64,
        /// 1, 2 or 4 bytes (8 in a BAR).
        width: u8,
        /// The value (its low `width` bytes).
        value: u64,
    },
    /// Resets a host function of one of the VM's groups
    /// (`VFIO_DEVICE_RESET`: its memory is lost, its config space kept).
    DeviceReset {
        /// The host function.
        host: PciAddr,
    },
    /// Mirrors changes to one of the VMM's DMA address spaces (a VFIO
    /// container's IOMMU mappings, numbered by the VMM) into eehd, in the
    /// order the VMM made them, so that the device models it lends a bus
    /// reach its memory as its IOMMU lets them (docs/shared-host.md).
    Dma {
        /// The VMM's number for the address space.
        space: u32,
        /// The changes, at most [`MAX_DMA_CHANGES`].
        changes: Vec<DmaChange>,
    },
    /// Lends the model of a function of one of the VM's groups this
    /// session's bus: DMA through address space `space` into the VMM's
    /// memory, and interrupts, which come back with the answers to the
    /// session's device requests. `space: None` takes the bus back.
    Bus {
        /// The host function.
        host: PciAddr,
        /// The DMA address space, or `None` to take the bus back.
        space: Option<u32>,
        /// Whether the VMM enabled MSI-X (else the model drives INTx).
        msix: bool,
    },
    /// Operator: injects an error.
    Inject {
        /// Where and what.
        target: InjectTarget,
    },
    /// Operator: every PHB and PE of the host with its state and owner.
    HostState,
    /// Operator: every VM's claims and mappings.
    Claims,
    /// Operator: the simulated host's virtual clock (`--sim-clock
    /// virtual`), first advanced by `advance_ns`.
    Clock {
        /// Nanoseconds to move the clock forward (0 only reads it).
        advance_ns: u64,
    },
}

impl Request {
    /// The request's `op` name, for metrics and logs.
    pub const fn name(&self) -> &'static str {
        match self {
            Request::Hello { .. } => "hello",
            Request::Claim { .. } => "claim",
            Request::Attach { .. } => "attach",
            Request::Release { .. } => "release",
            Request::PhbAdd { .. } => "phb_add",
            Request::PhbRemove { .. } => "phb_remove",
            Request::MapSet { .. } => "map_set",
            Request::MapClear { .. } => "map_clear",
            Request::MapGet { .. } => "map_get",
            Request::MapList => "map_list",
            Request::Rtas { .. } => "rtas",
            Request::PeOp { .. } => "pe_op",
            Request::State => "state",
            Request::Subscribe => "subscribe",
            Request::Inject { .. } => "inject",
            Request::HostState => "host_state",
            Request::Claims => "claims",
            Request::DeviceRead { .. } => "device_read",
            Request::DeviceWrite { .. } => "device_write",
            Request::DeviceReset { .. } => "device_reset",
            Request::Dma { .. } => "dma",
            Request::Bus { .. } => "bus",
            Request::Clock { .. } => "clock",
        }
    }
}

/// A window of guest real memory carried with an RTAS call and returned
/// with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestWindow {
    /// Guest real address of the first byte.
    pub base: u64,
    /// The bytes (at most [`MAX_GUEST_WINDOW`]).
    pub bytes: Vec<u8>,
}

/// One change to a VMM's DMA address space.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case", deny_unknown_fields)]
pub enum DmaChange {
    /// Nothing is mapped any more (a mirror starts over, or the IOMMU went).
    Clear,
    /// `size` bytes at `iova` reach the VMM's memory at `vaddr`, replacing
    /// whatever mapped them.
    Map {
        /// The first I/O virtual address.
        iova: u64,
        /// Bytes.
        size: u64,
        /// The VMM's address of the first byte.
        vaddr: u64,
        /// The device may read (`VFIO_DMA_MAP_FLAG_READ`).
        device_reads: bool,
        /// The device may write (`VFIO_DMA_MAP_FLAG_WRITE`).
        device_writes: bool,
    },
    /// `size` bytes at `iova` reach nothing.
    Unmap {
        /// The first I/O virtual address.
        iova: u64,
        /// Bytes.
        size: u64,
    },
}

/// The interrupts a device model raised through a session's bus since the
/// session's last device request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interrupts {
    /// MSI-X vectors raised, each once, in the order first raised.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub msix: Vec<u16>,
    /// The INTx line's last level, if the model drove it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intx: Option<bool>,
}

impl Interrupts {
    /// Whether nothing was raised.
    pub fn is_empty(&self) -> bool {
        self.msix.is_empty() && self.intx.is_none()
    }
}

/// Which space of a host function a device access reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceSpace {
    /// PCI config space (4 KiB).
    Config,
    /// A memory BAR, by index.
    Bar(u8),
}

/// A `VFIO_EEH_PE_*` operation as the wire names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum PeAction {
    /// `VFIO_EEH_PE_DISABLE`.
    Disable,
    /// `VFIO_EEH_PE_ENABLE`.
    Enable,
    /// `VFIO_EEH_PE_UNFREEZE_IO`.
    UnfreezeIo,
    /// `VFIO_EEH_PE_UNFREEZE_DMA`.
    UnfreezeDma,
    /// `VFIO_EEH_PE_GET_STATE`.
    GetState,
    /// `VFIO_EEH_PE_RESET_DEACTIVATE`.
    ResetDeactivate,
    /// `VFIO_EEH_PE_RESET_HOT`.
    ResetHot,
    /// `VFIO_EEH_PE_RESET_FUNDAMENTAL`.
    ResetFundamental,
    /// `VFIO_EEH_PE_CONFIGURE`.
    Configure,
    /// `VFIO_EEH_PE_INJECT_ERR`.
    InjectErr {
        /// The error.
        injection: ErrInjection,
    },
}

impl From<EehOp> for PeAction {
    fn from(op: EehOp) -> Self {
        match op {
            EehOp::Disable => PeAction::Disable,
            EehOp::Enable => PeAction::Enable,
            EehOp::UnfreezeIo => PeAction::UnfreezeIo,
            EehOp::UnfreezeDma => PeAction::UnfreezeDma,
            EehOp::GetState => PeAction::GetState,
            EehOp::ResetDeactivate => PeAction::ResetDeactivate,
            EehOp::Reset(ResetKind::Hot) => PeAction::ResetHot,
            EehOp::Reset(ResetKind::Fundamental) => PeAction::ResetFundamental,
            EehOp::Configure => PeAction::Configure,
            EehOp::InjectErr(injection) => PeAction::InjectErr { injection },
        }
    }
}

impl From<PeAction> for EehOp {
    fn from(action: PeAction) -> Self {
        match action {
            PeAction::Disable => EehOp::Disable,
            PeAction::Enable => EehOp::Enable,
            PeAction::UnfreezeIo => EehOp::UnfreezeIo,
            PeAction::UnfreezeDma => EehOp::UnfreezeDma,
            PeAction::GetState => EehOp::GetState,
            PeAction::ResetDeactivate => EehOp::ResetDeactivate,
            PeAction::ResetHot => EehOp::Reset(ResetKind::Hot),
            PeAction::ResetFundamental => EehOp::Reset(ResetKind::Fundamental),
            PeAction::Configure => EehOp::Configure,
            PeAction::InjectErr { injection } => EehOp::InjectErr(injection),
        }
    }
}

/// What an operator injects where.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InjectTarget {
    /// Freezes one PE now.
    PeFreeze {
        /// The PE.
        pe: PeId,
    },
    /// An error with `VFIO_EEH_PE_INJECT_ERR` semantics.
    PeError {
        /// The PE.
        pe: PeId,
        /// The error.
        injection: ErrInjection,
    },
    /// A PHB-wide error: the PHB fences (every PE on it reads frozen, the
    /// host recovers the PHB, each owner then recovers its PE) or, with
    /// `dead`, dies for good.
    Phb {
        /// The PHB's PCI domain.
        domain: u32,
        /// The PHB dies instead of fencing.
        #[serde(default)]
        dead: bool,
    },
}

/// Everything the daemon sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerFrame {
    /// A request succeeded.
    Ok(Answer),
    /// A request failed (or the connection is refused before it is closed).
    Error(WireError),
    /// A subscribed VM's PE event.
    Event(PeEvent),
}

/// The answer to a successful request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// The session is open.
    Hello {
        /// The daemon's protocol version.
        version: u32,
        /// `sim` or `linux`.
        host: String,
        /// Whether the peer may make operator requests.
        operator: bool,
        /// The groups the VM holds (claims survive reconnects and restarts).
        claims: Vec<PeId>,
    },
    /// Done; nothing to report.
    Done,
    /// An attached group. The frame carries descriptors, in this order:
    /// the PE's state file (read-only) if `state_slot` is set, then one for
    /// each BAR marked `shared`, in the order listed.
    Attached {
        /// The group.
        group: PeId,
        /// Its functions.
        devices: Vec<AttachedDevice>,
        /// The index of the PE's word ([`crate::shm::PeWord`]) in its
        /// state file, if the host shares memory.
        state_slot: Option<u32>,
    },
    /// A mapping.
    Mapping {
        /// The host function.
        host: PciAddr,
        /// Its guest address.
        guest: GuestAddr,
    },
    /// The VM's table.
    Maps(VmView),
    /// A served RTAS call.
    Rtas {
        /// The cells with the returns written.
        cells: Vec<u32>,
        /// The PAPR status.
        status: i32,
        /// The call's name, if the token named one.
        call: Option<String>,
        /// The guest memory window, as the call left it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        memory: Option<GuestWindow>,
    },
    /// A PE op's result: the value `VFIO_EEH_PE_OP` returns.
    PeOp {
        /// 0, or the state for get-state.
        value: u32,
    },
    /// PE states.
    State {
        /// The PEs.
        pes: Vec<PeView>,
    },
    /// The whole host.
    HostState {
        /// `sim` or `linux`.
        host: String,
        /// Its PHBs.
        phbs: Vec<PhbView>,
    },
    /// Every VM's table.
    Claims {
        /// The VMs, by name.
        vms: Vec<VmView>,
    },
    /// A device read's value.
    Value {
        /// The bytes read, as a number (all-ones while the PE is frozen).
        value: u64,
        /// What the function's model raised through the session's bus.
        #[serde(default, skip_serializing_if = "Interrupts::is_empty")]
        interrupts: Interrupts,
    },
    /// A device write or reset done, during which (or since the session's
    /// last device request) the function's model raised interrupts through
    /// the session's bus; without any, the answer is [`Answer::Done`].
    Raised {
        /// What was raised.
        interrupts: Interrupts,
    },
    /// The host's virtual clock.
    Clock {
        /// Nanoseconds since the clock's start.
        now_ns: u64,
    },
}

/// A function of an attached group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedDevice {
    /// The host function.
    pub host: PciAddr,
    /// Its BARs.
    pub bars: Vec<AttachedBar>,
    /// MSI-X vectors of its device model (0: none).
    #[serde(default)]
    pub msix_vectors: u16,
    /// Its device model does DMA and raises interrupts: lend it a bus
    /// ([`Request::Bus`]).
    #[serde(default)]
    pub bus: bool,
}

/// A BAR of an attached function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachedBar {
    /// BAR index 0..=5.
    pub index: u8,
    /// Size in bytes.
    pub size: u64,
    /// I/O space rather than memory.
    pub io: bool,
    /// Its memory comes as a descriptor with the answer.
    pub shared: bool,
}

/// One VM's PHBs, claims and mappings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmView {
    /// The VM's name.
    pub vm: String,
    /// Its virtual PHBs.
    pub phbs: Vec<Buid>,
    /// Its groups.
    pub claims: Vec<PeId>,
    /// Its mappings, by guest address.
    pub mappings: Vec<MappingView>,
}

/// One mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappingView {
    /// The guest address.
    pub guest: GuestAddr,
    /// The host function.
    pub host: PciAddr,
    /// Its PE.
    pub pe: PeId,
}

/// One PE's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeView {
    /// The PE.
    pub pe: PeId,
    /// Its state.
    pub state: PeState,
    /// While unavailable: milliseconds until usable, if known (0: never).
    pub unavailable_for_ms: Option<u64>,
    /// Its host functions.
    pub devices: Vec<PciAddr>,
    /// Whether the host sees it passed through to a VFIO user (its freezes
    /// are then the guest's to count), where the host can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    /// The owning VM (operator views only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// One PHB with its PEs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhbView {
    /// The PCI domain.
    pub domain: u32,
    /// Its PEs.
    pub pes: Vec<PeView>,
}

/// A PE event pushed to a subscribed VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeEvent {
    /// The host's event order.
    pub seq: u64,
    /// When, in ns of the host clock.
    pub at_ns: u64,
    /// The PE.
    pub pe: PeId,
    /// What happened.
    #[serde(flatten)]
    pub kind: PeEventKind,
}

/// What happened to a PE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum PeEventKind {
    /// The PE froze.
    Frozen {
        /// Freezes in the current window.
        count: u32,
    },
    /// The PE is usable again (thawed, re-enabled or settled after a reset).
    Recovered,
    /// A reset was asserted.
    Reset {
        /// Which.
        reset: ResetKind,
    },
    /// The PE failed for good.
    PermanentlyFailed {
        /// Freezes in the window.
        count: u32,
    },
    /// A PHB-wide error froze every PE of the PHB this PE sits on.
    PhbFrozen {
        /// The PHB's PCI domain.
        domain: u32,
    },
    /// The PE's PHB died (or fenced once too often): every PE on it failed
    /// for good.
    PhbDead {
        /// The PHB's PCI domain.
        domain: u32,
    },
}

/// A refusal as the wire carries it: the errno a kernel interface would
/// give, a stable kind and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message} (errno {errno})")]
pub struct WireError {
    /// The errno.
    pub errno: i32,
    /// The kind.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
}

/// The kinds of [`WireError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The frame is not a request (malformed JSON, unknown op or field).
    BadRequest,
    /// The frame is larger than [`MAX_FRAME`].
    FrameTooLarge,
    /// The first request was not hello, or hello came twice.
    HelloRequired,
    /// The client speaks another protocol version.
    Version,
    /// The peer's credentials do not allow this.
    Denied,
    /// An address-map rule refused the change.
    Mapping,
    /// The host refused or failed.
    Host,
    /// The RTAS buffer cannot be decoded.
    RtasBuffer,
    /// The change could not be made durable; nothing was changed.
    Storage,
    /// The daemon is shutting down.
    ShuttingDown,
    /// Too many connections.
    Busy,
}

/// Errno values the protocol adds to [`vfio_eeh::backend::errno`].
pub mod wire_errno {
    /// Try again (too many connections).
    pub const EAGAIN: i32 = 11;
    /// No space left (a DMA mirror's bounds).
    pub const ENOSPC: i32 = 28;
    /// Protocol error (no hello).
    pub const EPROTO: i32 = 71;
    /// Message too long.
    pub const EMSGSIZE: i32 = 90;
    /// Protocol not supported (version).
    pub const EPROTONOSUPPORT: i32 = 93;
    /// Cannot send after transport endpoint shutdown.
    pub const ESHUTDOWN: i32 = 108;
}

impl WireError {
    /// An error of `kind` with `errno` and `message`.
    pub fn new(kind: ErrorKind, errno: i32, message: impl Into<String>) -> Self {
        WireError { errno, kind, message: message.into() }
    }

    /// A malformed or unknown request.
    pub fn bad_request(message: impl Into<String>) -> Self {
        WireError::new(ErrorKind::BadRequest, errno::EINVAL, message)
    }

    /// A refusal by policy.
    pub fn denied(message: impl Into<String>) -> Self {
        WireError::new(ErrorKind::Denied, errno::EACCES, message)
    }
}

impl From<&MapError> for WireError {
    fn from(error: &MapError) -> Self {
        WireError::new(ErrorKind::Mapping, error.errno(), error.to_string())
    }
}

impl From<&BackendError> for WireError {
    fn from(error: &BackendError) -> Self {
        WireError::new(ErrorKind::Host, error.errno(), vfio_eeh::error_chain(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_op_in_snake_case() {
        let op = Request::PeOp { group: PeId(3), action: PeAction::ResetHot };
        let json = serde_json::to_string(&op).unwrap();
        assert_eq!(json, r#"{"op":"pe_op","group":3,"action":{"action":"reset_hot"}}"#);
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), op);
        assert!(serde_json::from_str::<Request>(r#"{"op":"format_disk"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"claim","group":1,"extra":1}"#).is_err());
    }

    #[test]
    fn frames_are_externally_tagged() {
        let frame = ServerFrame::Error(WireError::bad_request("no"));
        let json = serde_json::to_string(&frame).unwrap();
        assert_eq!(json, r#"{"error":{"errno":22,"kind":"bad_request","message":"no"}}"#);
        let event =
            ServerFrame::Event(PeEvent { seq: 4, at_ns: 9, pe: PeId(1), kind: PeEventKind::Frozen { count: 2 } });
        let json = serde_json::to_string(&event).unwrap();
        assert_eq!(json, r#"{"event":{"seq":4,"at_ns":9,"pe":1,"event":"frozen","count":2}}"#);
        assert_eq!(serde_json::from_str::<ServerFrame>(&json).unwrap(), event);
    }

    #[test]
    fn dma_changes_and_interrupts_on_the_wire() {
        let dma = Request::Dma {
            space: 2,
            changes: vec![
                DmaChange::Clear,
                DmaChange::Map {
                    iova: 0x1000,
                    size: 0x2000,
                    vaddr: 0x7f00_0000,
                    device_reads: true,
                    device_writes: false,
                },
                DmaChange::Unmap { iova: 0x1000, size: 0x1000 },
            ],
        };
        let json = serde_json::to_string(&dma).unwrap();
        assert_eq!(
            json,
            r#"{"op":"dma","space":2,"changes":[{"change":"clear"},{"change":"map","iova":4096,"size":8192,"vaddr":2130706432,"device_reads":true,"device_writes":false},{"change":"unmap","iova":4096,"size":4096}]}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&json).unwrap(), dma);
        let worst =
            DmaChange::Map { iova: u64::MAX, size: u64::MAX, vaddr: u64::MAX, device_reads: true, device_writes: true };
        let full = Request::Dma { space: u32::MAX, changes: vec![worst; MAX_DMA_CHANGES] };
        assert!(serde_json::to_vec(&full).unwrap().len() < MAX_FRAME, "a full dma request fits a frame");
        let quiet = Answer::Value { value: 7, interrupts: Interrupts::default() };
        assert_eq!(serde_json::to_string(&quiet).unwrap(), r#"{"answer":"value","value":7}"#, "as before");
        let raised = Answer::Raised { interrupts: Interrupts { msix: vec![0, 3], intx: None } };
        let json = serde_json::to_string(&raised).unwrap();
        assert_eq!(json, r#"{"answer":"raised","interrupts":{"msix":[0,3]}}"#);
        assert_eq!(serde_json::from_str::<Answer>(&json).unwrap(), raised);
    }

    #[test]
    fn every_pe_action_is_its_vfio_op() {
        let actions = [
            PeAction::Disable,
            PeAction::Enable,
            PeAction::UnfreezeIo,
            PeAction::UnfreezeDma,
            PeAction::GetState,
            PeAction::ResetDeactivate,
            PeAction::ResetHot,
            PeAction::ResetFundamental,
            PeAction::Configure,
        ];
        let ops: Vec<EehOp> = actions.into_iter().map(EehOp::from).collect();
        assert_eq!(ops, EehOp::WITHOUT_ARGUMENTS);
        let back: Vec<PeAction> = ops.into_iter().map(PeAction::from).collect();
        assert_eq!(back, actions, "and back");
    }
}
