//! The protocol core, without I/O: a [`Core`] (the host, the per-VM
//! registry, the state store) answers each [`Session`]'s requests, makes
//! every acknowledged change durable before answering, and turns host
//! events into per-VM [`Delivery`]s. The I/O loop ([`crate::server`]) only
//! moves frames.
//!
//! Isolation: every request acts within the caller's VM. A group, PE,
//! device, BUID or guest address of another VM is answered exactly as one
//! that does not exist.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockWriteGuard};
use std::time::Duration;

use eehd_protocol::process::Process;
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::BackendError;
use vfio_eeh::mapping::{MapError, VmId};
use vfio_eeh::ops::{EehOp, ResetKind};
use vfio_eeh::rtas::{FlatMemory, RtasCall};
use vfio_eeh::topology::Topology;
use vfio_eeh::vm::{VmError, Vms};
use vfio_eeh_sim::clock::{Clock, VirtualClock};

use crate::bus::{iova_change, locked, Space, VmmBus, MAX_RANGES};
use crate::host::{phb_views, saved_condition, DaemonHost, HostEvent, PeRecord};
use crate::metrics::Metrics;
use crate::policy::{Peer, Policy};
use crate::protocol::{
    wire_errno, Answer, AttachedDevice, DmaChange, ErrorKind, GuestWindow, InjectTarget, Interrupts, MappingView,
    PeEvent, PeEventKind, PeView, Request, ServerFrame, VmView, WireError, MAX_DMA_CHANGES, MAX_GUEST_WINDOW,
    PROTOCOL_VERSION,
};
use crate::shared::SharedMemory;
use crate::store::{Saved, SavedVm, Store, StoreError};

/// The longest VM name.
pub const MAX_VM_NAME: usize = 64;

/// Why the core could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The host's topology could not be read.
    #[error("Cannot read the host's topology")]
    Topology(#[source] BackendError),
    /// The state could not be loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The saved state is for another kind of host.
    #[error("State file {path} is for a {saved} host, not {host}; start with --host {saved}, or move it aside (mv {path} {path}.{saved})")]
    OtherHost {
        /// The file.
        path: String,
        /// The saved host kind.
        saved: String,
        /// This host's kind.
        host: &'static str,
    },
    /// The saved state does not fit this host (the topology changed).
    #[error("State file {path} does not fit this host: {why}; move it aside (mv {path} {path}.old) to start empty")]
    Mismatch {
        /// The file.
        path: String,
        /// What does not fit.
        why: String,
    },
}

/// A connection's state.
#[derive(Debug)]
pub struct Session {
    peer: Peer,
    open: Option<Opened>,
    subscribed: bool,
    /// The process that connected, whose memory its buses reach.
    process: Option<Arc<Process>>,
    /// Its DMA address spaces, by its numbers.
    spaces: BTreeMap<u32, Space>,
    /// The buses it lent, by function.
    buses: BTreeMap<PciAddr, Arc<VmmBus>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Opened {
    vm: Option<VmId>,
    operator: bool,
}

impl Session {
    /// A connection from `peer`, before hello.
    pub fn new(peer: Peer) -> Self {
        Session { peer, open: None, subscribed: false, process: None, spaces: BTreeMap::new(), buses: BTreeMap::new() }
    }

    /// The session of `process`, whose memory the session's buses reach
    /// (without one, lending a bus is refused).
    #[must_use]
    pub fn with_process(self, process: Process) -> Self {
        Session { process: Some(Arc::new(process)), ..self }
    }

    /// The VM the session acts for, once hello has named one.
    pub fn vm(&self) -> Option<VmId> {
        self.open.as_ref().and_then(|o| o.vm)
    }

    /// Whether hello was answered.
    pub fn opened(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the session asked for events.
    pub fn subscribed(&self) -> bool {
        self.subscribed
    }
}

/// What one request produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The request's op (`invalid` for a frame that is none), for metrics.
    pub op: &'static str,
    /// The answer to send.
    pub frame: ServerFrame,
    /// Whether to close the connection after sending it.
    pub close: bool,
    /// Events to push to subscribed sessions.
    pub deliveries: Vec<Delivery>,
    /// Descriptors to send with the answer ([`Answer::Attached`]'s).
    pub fds: Vec<Arc<File>>,
}

/// An event for the sessions of one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// The VM.
    pub vm: VmId,
    /// The event.
    pub event: PeEvent,
}

/// What the daemon follows per PE from the host's events.
#[derive(Debug, Clone, Copy, Default)]
struct PeTrack {
    enabled: bool,
    freezes: u32,
    last_reset: Option<ResetKind>,
}

/// Everything behind the registry lock.
#[derive(Debug, Default)]
struct Registry {
    ids: BTreeMap<String, VmId>,
    names: BTreeMap<VmId, String>,
    vms: Vms,
    tracks: BTreeMap<PeId, PeTrack>,
    event_seq: u64,
    event_at_ns: u64,
}

impl Registry {
    fn vm_id(&mut self, name: &str) -> VmId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = VmId(self.names.keys().next_back().map_or(1, |v| v.0 + 1));
        self.add_vm(name, id);
        id
    }

    fn add_vm(&mut self, name: &str, id: VmId) {
        self.ids.insert(name.to_owned(), id);
        self.names.insert(id, name.to_owned());
        self.vms.add_vm(id).expect("a new id");
    }

    fn view(&self, vm: VmId) -> VmView {
        let table = self.vms.table(vm).expect("a registered VM has a table");
        VmView {
            vm: self.names[&vm].clone(),
            phbs: table.phbs(),
            claims: table.pes(),
            mappings: table
                .entries()
                .into_iter()
                .map(|m| MappingView { guest: m.guest, host: m.host, pe: m.pe })
                .collect(),
        }
    }
}

/// The daemon's state and logic.
pub struct Core<H> {
    host: H,
    topology: Topology,
    policy: Policy,
    store: Store,
    registry: RwLock<Registry>,
    metrics: std::sync::Arc<Metrics>,
    /// The simulated host's clock when it is virtual: operators drive it.
    virtual_clock: Option<Arc<VirtualClock>>,
    /// The memory shared with VMMs, if the host's is.
    shared: Option<Arc<SharedMemory>>,
    /// The buses lent to device models, by function.
    lent: Mutex<BTreeMap<PciAddr, Arc<VmmBus>>>,
}

type Answered = Result<Answer, WireError>;

/// The answer for a group, PE or device the VM cannot see.
fn no_pe(pe: PeId) -> WireError {
    WireError::from(&BackendError::NoPe(pe))
}

fn map_error(error: &MapError) -> WireError {
    WireError::from(error)
}

fn vm_error(error: &VmError) -> WireError {
    match error {
        VmError::Map(error) => WireError::from(error),
        VmError::Host(error) => WireError::from(error),
    }
}

/// What `host`'s model raised through the session's bus.
fn raised(session: &Session, host: PciAddr) -> Interrupts {
    session.buses.get(&host).map(|bus| bus.take_interrupts()).unwrap_or_default()
}

/// A device write's or reset's answer.
fn done_raising(interrupts: Interrupts) -> Answer {
    if interrupts.is_empty() {
        Answer::Done
    } else {
        Answer::Raised { interrupts }
    }
}

/// Applies a session's changes to its address space `number`, in order. A
/// space may hold at most [`MAX_RANGES`] ranges: a change that could go
/// beyond is refused with those after it (`ENOSPC`; those before it stay
/// applied, as the VMM's own IOMMU has them), and more than
/// [`MAX_DMA_CHANGES`] at once are refused whole.
fn mirror(session: &mut Session, number: u32, changes: &[DmaChange]) -> Answered {
    use vfio_eeh::backend::errno::EINVAL;
    if changes.len() > MAX_DMA_CHANGES {
        let why = format!("{} changes at once; at most {MAX_DMA_CHANGES}", changes.len());
        return Err(WireError::new(ErrorKind::BadRequest, EINVAL, why));
    }
    let space = space_in(session, number)?;
    let mut table = locked(&space);
    for change in changes {
        // A change adds at most two ranges (one split, one insert).
        if *change != DmaChange::Clear && table.len() + 2 > MAX_RANGES {
            let why = format!("DMA address space {number} would hold more than {MAX_RANGES} ranges");
            return Err(WireError::new(ErrorKind::Host, wire_errno::ENOSPC, why));
        }
        if let Err(error) = table.apply(&iova_change(change)) {
            return Err(WireError::bad_request(format!("DMA change refused, with those after it: {error}")));
        }
    }
    Ok(Answer::Done)
}

/// The most DMA address spaces (VFIO containers) one session mirrors.
const MAX_SPACES: usize = 64;

/// The session's address space `number`, made if new (at most
/// [`MAX_SPACES`]: `ENOSPC`).
fn space_in(session: &mut Session, number: u32) -> Result<Space, WireError> {
    if !session.spaces.contains_key(&number) && session.spaces.len() >= MAX_SPACES {
        let why = format!("A session has at most {MAX_SPACES} DMA address spaces");
        return Err(WireError::new(ErrorKind::Host, wire_errno::ENOSPC, why));
    }
    Ok(Arc::clone(session.spaces.entry(number).or_default()))
}

fn hello_required(message: &str) -> WireError {
    WireError::new(ErrorKind::HelloRequired, wire_errno::EPROTO, message)
}

impl<H: DaemonHost> Core<H> {
    /// A core over `host`, with the state in `store` restored (the host's
    /// PE states driven back, every VM's claims and mappings reinstated).
    pub fn start(host: H, policy: Policy, store: Store, metrics: std::sync::Arc<Metrics>) -> Result<Self, StartError> {
        let topology = host.topology().map_err(StartError::Topology)?;
        let mut registry = Registry::default();
        if let Some(saved) = store.load()? {
            restore(&host, &mut registry, &saved, &store.path().display().to_string())?;
        }
        let core = Core {
            host,
            topology,
            policy,
            store,
            registry: RwLock::new(registry),
            metrics,
            virtual_clock: None,
            shared: None,
            lent: Mutex::default(),
        };
        // The restore's own events only rebuild the records.
        let mut registry = core.write();
        core.follow_events(&mut registry);
        drop(registry);
        Ok(core)
    }

    /// Lets operators drive `clock`, the simulated host's virtual clock
    /// (`clock` requests); without one they are refused.
    #[must_use]
    pub fn with_virtual_clock(self, clock: Arc<VirtualClock>) -> Self {
        Core { virtual_clock: Some(clock), ..self }
    }

    /// Shares the host's device memory with VMMs through `shared` (the
    /// memory the host was built on): attaching VMMs get its descriptors,
    /// and each PE's word follows the requests (docs/shared-host.md).
    #[must_use]
    pub fn with_shared_memory(self, shared: Arc<SharedMemory>) -> Self {
        shared.end(&[], |pe| self.host.plain_memory_access(pe));
        Core { shared: Some(shared), ..self }
    }

    /// The host.
    pub fn host(&self) -> &H {
        &self.host
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    fn write(&self) -> RwLockWriteGuard<'_, Registry> {
        self.registry.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Answers one frame's bytes.
    pub fn handle_frame(&self, session: &mut Session, bytes: &[u8]) -> Outcome {
        match serde_json::from_slice::<Request>(bytes) {
            Ok(request) => self.handle(session, &request),
            Err(error) => Outcome {
                op: "invalid",
                frame: ServerFrame::Error(WireError::bad_request(format!("Not a request: {error}"))),
                close: false,
                deliveries: Vec::new(),
                fds: Vec::new(),
            },
        }
    }

    /// Answers one request. With shared memory, the words of the PEs the
    /// request may stop are closed while it is served.
    pub fn handle(&self, session: &mut Session, request: &Request) -> Outcome {
        let Some(shared) = &self.shared else { return self.handle_unshared(session, request) };
        let stoppable = self.stoppable_by(session, request);
        shared.begin(&stoppable);
        let mut outcome = self.handle_unshared(session, request);
        shared.end(&stoppable, |pe| self.host.plain_memory_access(pe));
        if let ServerFrame::Ok(Answer::Attached { group, devices, state_slot }) = &outcome.frame {
            let state = state_slot.and_then(|_| shared.state_file(*group).cloned());
            let bars = devices.iter().flat_map(|d| {
                d.bars.iter().filter(|b| b.shared).filter_map(|b| shared.bar_file(d.host, b.index).cloned())
            });
            outcome.fds = state.into_iter().chain(bars).collect();
        }
        outcome
    }

    /// The PEs a request may stop: those an injection (any), an RTAS call
    /// (the VM's) or an op may freeze or reset, and the PE of an accessed
    /// device (an armed injection fires on an access).
    fn stoppable_by(&self, session: &Session, request: &Request) -> Vec<PeId> {
        match request {
            Request::Inject { .. } => self.topology.phbs.iter().flat_map(|phb| &phb.groups).map(|g| g.pe).collect(),
            Request::Rtas { .. } => {
                let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
                session.vm().and_then(|vm| registry.vms.maps().vm(vm).ok()).map(|table| table.pes()).unwrap_or_default()
            }
            Request::PeOp { group, action } if *action != crate::protocol::PeAction::GetState => vec![*group],
            Request::DeviceRead { host, .. } | Request::DeviceWrite { host, .. } | Request::DeviceReset { host } => {
                self.host.pe_of(*host).into_iter().collect()
            }
            _ => Vec::new(),
        }
    }

    fn handle_unshared(&self, session: &mut Session, request: &Request) -> Outcome {
        let mut deliveries = Vec::new();
        let mut close = false;
        let result = match (&session.open, request) {
            (None, Request::Hello { version, vm }) => {
                let result = self.hello(session, *version, vm.as_deref());
                close = result.is_err();
                result
            }
            (None, _) => Err(hello_required("The first request must be hello")),
            (Some(_), Request::Hello { .. }) => Err(hello_required("Hello was sent already")),
            (Some(opened), request) => {
                let opened = opened.clone();
                self.request(session, &opened, request, &mut deliveries)
            }
        };
        let frame = match result {
            Ok(answer) => ServerFrame::Ok(answer),
            Err(error) => ServerFrame::Error(error),
        };
        Outcome { op: request.name(), frame, close, deliveries, fds: Vec::new() }
    }

    fn hello(&self, session: &mut Session, version: u32, vm: Option<&str>) -> Answered {
        if version != PROTOCOL_VERSION {
            return Err(WireError::new(
                ErrorKind::Version,
                wire_errno::EPROTONOSUPPORT,
                format!("Protocol version {version} is not spoken here; this eehd speaks {PROTOCOL_VERSION}"),
            ));
        }
        let operator = self.policy.is_operator(session.peer);
        let (vm, claims) = match vm {
            None if operator => (None, Vec::new()),
            None => return Err(WireError::denied(format!("uid {} is not an operator", session.peer.uid))),
            Some(name) => {
                check_vm_name(name)?;
                if !self.policy.may_act_as(session.peer, name) {
                    return Err(WireError::denied(format!("uid {} may not act as VM {name:?}", session.peer.uid)));
                }
                let mut registry = self.write();
                let id = registry.vm_id(name);
                let claims = registry.vms.table(id).expect("registered").pes();
                (Some(id), claims)
            }
        };
        session.open = Some(Opened { vm, operator });
        Ok(Answer::Hello { version: PROTOCOL_VERSION, host: self.host.kind().to_owned(), operator, claims })
    }

    fn request(&self, session: &mut Session, opened: &Opened, request: &Request, out: &mut Vec<Delivery>) -> Answered {
        let vm = || opened.vm.ok_or_else(|| WireError::denied("This session acts for no VM (hello named none)"));
        let operator = || {
            if opened.operator {
                Ok(())
            } else {
                Err(WireError::denied(format!("uid {} is not an operator", session.peer.uid)))
            }
        };
        match request {
            Request::Hello { .. } => unreachable!("hello is answered before"),
            Request::Claim { group } => self.claim(vm()?, *group, out),
            Request::Attach { group } => self.attach(vm()?, *group, out),
            Request::Release { group } => {
                let vm = vm()?;
                let released = self.mutate(out, |r| {
                    r.vms.release(vm, *group).map_err(|e| map_error(&e))?;
                    self.host.hold(*group, false).map_err(|e| WireError::from(&e))?;
                    Ok(Answer::Done)
                });
                if released.is_ok() {
                    self.take_back_buses(*group);
                }
                released
            }
            Request::PhbAdd { buid } => {
                let vm = vm()?;
                self.mutate(out, |r| r.vms.add_phb(vm, *buid).map(|()| Answer::Done).map_err(|e| map_error(&e)))
            }
            Request::PhbRemove { buid } => {
                let vm = vm()?;
                self.mutate(out, |r| r.vms.remove_phb(vm, *buid).map(|()| Answer::Done).map_err(|e| map_error(&e)))
            }
            Request::MapSet { host, guest } => {
                let vm = vm()?;
                self.mutate(out, |r| {
                    r.vms.map_set(vm, &self.host, *host, *guest).map(|()| Answer::Done).map_err(|e| vm_error(&e))
                })
            }
            Request::MapClear { host } => {
                let vm = vm()?;
                self.mutate(out, |r| r.vms.map_clear(vm, *host).map(|_| Answer::Done).map_err(|e| map_error(&e)))
            }
            Request::MapGet { host } => {
                let vm = vm()?;
                let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
                let guest = registry.vms.map_get(vm, *host);
                guest.map(|guest| Answer::Mapping { host: *host, guest }).map_err(|e| map_error(&e))
            }
            Request::MapList => {
                let vm = vm()?;
                Ok(Answer::Maps(self.registry.read().unwrap_or_else(PoisonError::into_inner).view(vm)))
            }
            Request::Rtas { cells, memory } => self.rtas(vm()?, cells, memory.as_ref(), out),
            Request::PeOp { group, action } => self.pe_op(vm()?, *group, EehOp::from(*action), out),
            Request::State => {
                let vm = vm()?;
                let pes = self
                    .registry
                    .read()
                    .unwrap_or_else(PoisonError::into_inner)
                    .vms
                    .table(vm)
                    .expect("registered")
                    .pes();
                Ok(Answer::State { pes: pes.into_iter().map(|pe| self.pe_view(pe, None)).collect() })
            }
            Request::Subscribe => {
                vm()?;
                session.subscribed = true;
                Ok(Answer::Done)
            }
            Request::Inject { target } => {
                operator()?;
                self.inject(*target, out)
            }
            Request::HostState => {
                operator()?;
                let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
                let owner = |pe| registry.vms.maps().owner_of(pe).map(|vm| registry.names[&vm].clone());
                let phbs = phb_views(&self.topology, |pe| self.pe_view(pe, Some(owner(pe))));
                Ok(Answer::HostState { host: self.host.kind().to_owned(), phbs })
            }
            Request::Claims => {
                operator()?;
                let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
                Ok(Answer::Claims { vms: registry.names.keys().map(|&vm| registry.view(vm)).collect() })
            }
            Request::DeviceRead { host, space, offset, width } => {
                self.owned_device(vm()?, *host)?;
                let value = self.host.device_read(*host, *space, *offset, *width).map_err(|e| WireError::from(&e))?;
                Ok(Answer::Value { value, interrupts: raised(session, *host) })
            }
            Request::DeviceWrite { host, space, offset, width, value } => {
                self.owned_device(vm()?, *host)?;
                let written = self.host.device_write(*host, *space, *offset, *width, *value);
                written.map_err(|e| WireError::from(&e))?;
                Ok(done_raising(raised(session, *host)))
            }
            Request::DeviceReset { host } => {
                self.owned_device(vm()?, *host)?;
                self.host.function_reset(*host).map_err(|e| WireError::from(&e))?;
                Ok(done_raising(raised(session, *host)))
            }
            Request::Dma { space, changes } => {
                vm()?;
                mirror(session, *space, changes)
            }
            Request::Bus { host, space, msix } => {
                self.owned_device(vm()?, *host)?;
                self.lend_bus(session, *host, *space, *msix)
            }
            Request::Clock { advance_ns } => {
                operator()?;
                let clock = self.virtual_clock.as_ref().ok_or_else(|| {
                    let why = "The host's clock is real time; start eehd with --sim-clock virtual to drive it";
                    WireError::new(ErrorKind::Host, vfio_eeh::backend::errno::EOPNOTSUPP, why)
                })?;
                clock.advance(Duration::from_nanos(*advance_ns));
                Ok(Answer::Clock { now_ns: u64::try_from(clock.now().as_nanos()).unwrap_or(u64::MAX) })
            }
        }
    }

    /// Lends `host`'s device model the session's bus through its address
    /// space `space` (`None` takes it back).
    fn lend_bus(&self, session: &mut Session, host: PciAddr, space: Option<u32>, msix: bool) -> Answered {
        let mut lent = self.lent.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(space) = space else {
            if let Some(bus) = session.buses.remove(&host) {
                if lent.get(&host).is_some_and(|l| Arc::ptr_eq(l, &bus)) {
                    lent.remove(&host);
                    self.host.attach_bus(host, None).map_err(|e| WireError::from(&e))?;
                }
            }
            return Ok(Answer::Done);
        };
        if self.host.bus_model(host).is_none() {
            let why = format!("{host} has no device model that does DMA");
            return Err(WireError::new(ErrorKind::Host, vfio_eeh::backend::errno::EINVAL, why));
        }
        let Some(process) = session.process.clone() else {
            let why = "eehd cannot name the process of this connection, so it cannot reach its memory";
            return Err(WireError::new(ErrorKind::Host, vfio_eeh::backend::errno::EOPNOTSUPP, why));
        };
        let space = space_in(session, space)?;
        if let Some(bus) = session.buses.get(&host).filter(|b| b.uses(&space)) {
            if lent.get(&host).is_some_and(|l| Arc::ptr_eq(l, bus)) {
                bus.set_msix(msix);
                return Ok(Answer::Done);
            }
        }
        let bus = Arc::new(VmmBus::new(process, space, msix));
        self.host.attach_bus(host, Some(bus.clone())).map_err(|e| WireError::from(&e))?;
        lent.insert(host, Arc::clone(&bus));
        session.buses.insert(host, bus);
        Ok(Answer::Done)
    }

    /// The buses lent to the functions of `pe` go: the group changed hands.
    fn take_back_buses(&self, pe: PeId) {
        let mut lent = self.lent.lock().unwrap_or_else(PoisonError::into_inner);
        for host in self.host.devices_of(pe).unwrap_or_default() {
            if lent.remove(&host).is_some() {
                // The function exists: it is one of the PE's.
                let _ = self.host.attach_bus(host, None);
            }
        }
    }

    /// A connection ended: the buses it lent go.
    pub fn end_session(&self, session: &Session) {
        let mut lent = self.lent.lock().unwrap_or_else(PoisonError::into_inner);
        for (host, bus) in &session.buses {
            if lent.get(host).is_some_and(|l| Arc::ptr_eq(l, bus)) {
                lent.remove(host);
                let _ = self.host.attach_bus(*host, None);
            }
        }
    }

    /// Checks that `host` is a function of one of `vm`'s groups; any other
    /// is answered as one the host lacks.
    fn owned_device(&self, vm: VmId, host: PciAddr) -> Result<(), WireError> {
        let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
        registry.vms.owned_device(vm, &self.host, host).map(drop).map_err(|e| WireError::from(&e))
    }

    fn claim(&self, vm: VmId, pe: PeId, out: &mut Vec<Delivery>) -> Answered {
        self.host.devices_of(pe).map_err(|_| no_pe(pe))?;
        self.mutate(out, |r| {
            let newly = r.vms.maps().owner_of(pe) != Some(vm);
            match r.vms.claim(vm, pe) {
                // Another VM's group is answered as a group that does not exist.
                Err(MapError::PeOwnedByOther { .. }) => return Err(no_pe(pe)),
                Err(error) => return Err(map_error(&error)),
                Ok(()) => {}
            }
            if newly {
                if let Err(e) = self.host.hold(pe, true) {
                    // Nothing half-done: the claim goes with the failed open.
                    let _ = r.vms.release(vm, pe);
                    return Err(WireError::from(&e));
                }
            }
            Ok(Answer::Done)
        })
    }

    /// A VFIO group open: `ENOENT` for a group the host lacks, `EBUSY` for
    /// one another VM holds, else a claim and the group's functions.
    fn attach(&self, vm: VmId, pe: PeId, out: &mut Vec<Delivery>) -> Answered {
        use vfio_eeh::backend::errno::{EBUSY, ENOENT};
        let functions = self
            .host
            .devices_of(pe)
            .map_err(|_| WireError::new(ErrorKind::Host, ENOENT, format!("The host has no group {pe}")))?;
        self.claim(vm, pe, out).map_err(|error| {
            // The group exists, so "no such group" means another VM's.
            if error == no_pe(pe) {
                WireError::new(ErrorKind::Host, EBUSY, format!("Group {pe} is in use by another VM"))
            } else {
                error
            }
        })?;
        let shared = self.shared.as_deref();
        let devices = functions
            .into_iter()
            .map(|host| {
                let mut bars = self.host.bars(host).map_err(|e| WireError::from(&e))?;
                for bar in &mut bars {
                    bar.shared = shared.is_some_and(|s| s.bar_file(host, bar.index).is_some());
                }
                let model = self.host.bus_model(host);
                Ok(AttachedDevice { host, bars, msix_vectors: model.unwrap_or(0), bus: model.is_some() })
            })
            .collect::<Result<_, WireError>>()?;
        // The PE's word is the first of its state file.
        let state_slot = shared.and_then(|s| s.state_file(pe)).map(|_| 0);
        Ok(Answer::Attached { group: pe, devices, state_slot })
    }

    fn pe_op(&self, vm: VmId, pe: PeId, op: EehOp, out: &mut Vec<Delivery>) -> Answered {
        let owned = self.registry.read().unwrap_or_else(PoisonError::into_inner).vms.maps().owner_of(pe) == Some(vm);
        if !owned {
            return Err(no_pe(pe));
        }
        let result = self.host.pe_op(pe, op);
        if op != EehOp::GetState {
            self.commit_host_change(out)?;
        }
        result.map(|reply| Answer::PeOp { value: reply.ioctl_value() }).map_err(|e| WireError::from(&e))
    }

    fn rtas(&self, vm: VmId, cells: &[u32], memory: Option<&GuestWindow>, out: &mut Vec<Delivery>) -> Answered {
        let mut buf: Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        let (base, bytes) = memory.map_or((0, &[][..]), |w| (w.base, &w.bytes[..]));
        if bytes.len() > MAX_GUEST_WINDOW {
            return Err(WireError::bad_request(format!("Guest memory window above {MAX_GUEST_WINDOW} bytes")));
        }
        let mut guest = FlatMemory::new(base, bytes.len());
        vfio_eeh::rtas::GuestMemory::write(&mut guest, base, bytes).expect("the window holds its own bytes");
        let outcome = {
            let registry = self.registry.read().unwrap_or_else(PoisonError::into_inner);
            registry.vms.serve_rtas(vm, &mut buf, &self.host, &mut guest)
        };
        let outcome = outcome
            .map_err(|e| WireError::new(ErrorKind::RtasBuffer, vfio_eeh::backend::errno::EINVAL, e.to_string()))?;
        let name = outcome.call.map(RtasCall::name);
        self.metrics.rtas_call(name.unwrap_or("unknown"), outcome.status);
        if outcome.call.is_some_and(changes_pe_state) {
            self.commit_host_change(out)?;
        }
        let mut window = memory.cloned();
        if let Some(window) = window.as_mut() {
            vfio_eeh::rtas::GuestMemory::read(&guest, base, &mut window.bytes).expect("the window holds its own bytes");
        }
        let cells = buf.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes"))).collect();
        Ok(Answer::Rtas { cells, status: outcome.status, call: name.map(str::to_owned), memory: window })
    }

    fn inject(&self, target: InjectTarget, out: &mut Vec<Delivery>) -> Answered {
        let result = match target {
            InjectTarget::PeFreeze { pe } => self.host.freeze(pe),
            InjectTarget::PeError { pe, injection } => self.host.pe_op(pe, EehOp::InjectErr(injection)).map(drop),
            // The PHB's events (fenced, dead) reach each owner through the
            // host's event log like any other.
            InjectTarget::Phb { domain, dead } => self.host.inject_phb(domain, dead),
        };
        let mut registry = self.write();
        self.commit_locked(&mut registry, out)?;
        result.map(|()| Answer::Done).map_err(|e| WireError::from(&e))
    }

    fn pe_view(&self, pe: PeId, owner: Option<Option<String>>) -> PeView {
        let status = self.host.status(pe);
        PeView {
            pe,
            state: status.as_ref().map_or(vfio_eeh::ops::PeState::Unavailable, |s| s.state),
            unavailable_for_ms: status
                .ok()
                .and_then(|s| s.unavailable_for)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
            devices: self.host.devices_of(pe).unwrap_or_default(),
            passed: self.host.passed(pe),
            owner: owner.flatten(),
        }
    }

    /// Applies a registry change, follows host events and commits; on a
    /// refusal or a failed commit nothing is changed.
    fn mutate(&self, out: &mut Vec<Delivery>, change: impl FnOnce(&mut Registry) -> Answered) -> Answered {
        let mut registry = self.write();
        let before = registry.vms.clone();
        let answer = change(&mut registry)?;
        if let Err(error) = self.commit_locked(&mut registry, out) {
            registry.vms = before;
            return Err(error);
        }
        Ok(answer)
    }

    /// After the host's PE state changed: follows its events and commits.
    fn commit_host_change(&self, out: &mut Vec<Delivery>) -> Result<(), WireError> {
        let mut registry = self.write();
        self.commit_locked(&mut registry, out)
    }

    fn commit_locked(&self, registry: &mut Registry, out: &mut Vec<Delivery>) -> Result<(), WireError> {
        out.extend(self.follow_events(registry));
        self.store.commit(&self.saved(registry)).map_err(|error| {
            tracing::error!("{}", vfio_eeh::error_chain(&error));
            WireError::new(ErrorKind::Storage, vfio_eeh::backend::errno::EIO, vfio_eeh::error_chain(&error))
        })
    }

    /// Commits the current state (on the way out).
    pub fn persist(&self) -> Result<(), StoreError> {
        let mut registry = self.write();
        // Nobody is left to tell; the records are what matters.
        drop(self.follow_events(&mut registry));
        self.store.commit(&self.saved(&registry))
    }

    /// Follows the host's new events: PE records, metrics, and the
    /// deliveries to the VMs that own the PEs now.
    pub fn poll_events(&self) -> Vec<Delivery> {
        let seq = self.registry.read().unwrap_or_else(PoisonError::into_inner).event_seq;
        if self.host.events_after(seq).is_empty() {
            return Vec::new();
        }
        if let Some(shared) = &self.shared {
            // A settle or a PHB recovery may have made a PE plain again.
            shared.end(&[], |pe| self.host.plain_memory_access(pe));
        }
        let mut out = Vec::new();
        // Host changes seen here (a settle completing) are persisted too.
        if let Err(error) = self.commit_host_change(&mut out) {
            tracing::warn!("events followed but not persisted: {}", error.message);
        }
        out
    }

    fn follow_events(&self, registry: &mut Registry) -> Vec<Delivery> {
        let events: Vec<HostEvent> = self.host.events_after(registry.event_seq);
        let mut out = Vec::new();
        for event in events {
            registry.event_seq = registry.event_seq.max(event.seq);
            registry.event_at_ns = registry.event_at_ns.max(event.at_ns);
            let track = registry.tracks.entry(event.pe).or_default();
            track.enabled |= event.enabled;
            let Some(kind) = event.kind else { continue };
            match kind {
                PeEventKind::Frozen { count } => {
                    track.freezes = count;
                    self.metrics.freeze();
                }
                PeEventKind::PermanentlyFailed { count } => {
                    track.freezes = count;
                    self.metrics.permanent_failure();
                }
                PeEventKind::Recovered => self.metrics.recovery(),
                PeEventKind::Reset { reset } => track.last_reset = Some(reset),
                PeEventKind::PhbFrozen { .. } => {}
                PeEventKind::PhbDead { .. } => self.metrics.permanent_failure(),
            }
            if let Some(vm) = registry.vms.maps().owner_of(event.pe) {
                out.push(Delivery { vm, event: PeEvent { seq: event.seq, at_ns: event.at_ns, pe: event.pe, kind } });
            }
        }
        out
    }

    fn saved(&self, registry: &Registry) -> Saved {
        let vms = registry
            .names
            .iter()
            .map(|(&id, name)| {
                let table = registry.vms.table(id).expect("registered");
                SavedVm {
                    name: name.clone(),
                    id: id.0,
                    phbs: table.phbs(),
                    claims: table.pes(),
                    mappings: table.entries().into_iter().map(|m| (m.host, m.guest)).collect(),
                }
            })
            .filter(|vm| !(vm.phbs.is_empty() && vm.claims.is_empty()))
            .collect();
        let pes = if self.host.keeps_pe_state() {
            self.topology
                .phbs
                .iter()
                .flat_map(|phb| &phb.groups)
                .filter_map(|group| {
                    let status = self.host.status(group.pe).ok()?;
                    let track = registry.tracks.get(&group.pe).copied().unwrap_or_default();
                    let condition = saved_condition(
                        status.state,
                        status.unavailable_for,
                        track.last_reset.unwrap_or(ResetKind::Hot),
                    );
                    let record = PeRecord { pe: group.pe, enabled: track.enabled, freezes: track.freezes, condition };
                    (record != PeRecord::fresh(group.pe)).then_some(record)
                })
                .collect()
        } else {
            Vec::new()
        };
        Saved { host: self.host.kind().to_owned(), vms, pes }
    }
}

/// Whether a served RTAS call can change a PE's state (all but the reads).
fn changes_pe_state(call: RtasCall) -> bool {
    !matches!(
        call,
        RtasCall::GetConfigAddrInfo
            | RtasCall::GetConfigAddrInfo2
            | RtasCall::ReadSlotResetState
            | RtasCall::ReadSlotResetState2
    )
}

/// VM names: 1 to 64 of `A-Z a-z 0-9 . _ -`.
fn check_vm_name(name: &str) -> Result<(), WireError> {
    let valid = !name.is_empty()
        && name.len() <= MAX_VM_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(WireError::bad_request(format!("VM names are 1 to {MAX_VM_NAME} of A-Z a-z 0-9 . _ -, not {name:?}")))
    }
}

/// Reinstates a saved state: PE states on the host, then each VM's PHBs,
/// claims and mappings through the same rules as live requests.
fn restore<H: DaemonHost>(host: &H, registry: &mut Registry, saved: &Saved, path: &str) -> Result<(), StartError> {
    if saved.host != host.kind() {
        return Err(StartError::OtherHost { path: path.to_owned(), saved: saved.host.clone(), host: host.kind() });
    }
    let mismatch = |why: String| StartError::Mismatch { path: path.to_owned(), why };
    // The claimed PEs are held first, as their VMMs held them: holding thaws
    // a PE (eeh_dev_open), so it must come before the saved states.
    for &pe in saved.vms.iter().flat_map(|vm| &vm.claims) {
        host.hold(pe, true).map_err(|e| mismatch(format!("PE {pe}: {}", vfio_eeh::error_chain(&e))))?;
    }
    for record in &saved.pes {
        host.restore(record).map_err(|e| mismatch(format!("PE {}: {}", record.pe, vfio_eeh::error_chain(&e))))?;
    }
    for vm in &saved.vms {
        if registry.ids.contains_key(&vm.name) || registry.names.contains_key(&VmId(vm.id)) {
            return Err(mismatch(format!("VM {:?} (id {}) appears twice", vm.name, vm.id)));
        }
        registry.add_vm(&vm.name, VmId(vm.id));
        let id = VmId(vm.id);
        let in_vm = |e: MapError| mismatch(format!("VM {:?}: {e}", vm.name));
        for &buid in &vm.phbs {
            registry.vms.add_phb(id, buid).map_err(in_vm)?;
        }
        for &pe in &vm.claims {
            host.devices_of(pe).map_err(|e| mismatch(format!("VM {:?}: {e}", vm.name)))?;
            registry.vms.claim(id, pe).map_err(in_vm)?;
        }
        for &(device, guest) in &vm.mappings {
            registry.vms.map_set(id, host, device, guest).map_err(|e| mismatch(format!("VM {:?}: {e}", vm.name)))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
