//! The host as eehd serves it (`VFIO_EEH_SHIM_CONNECT`): this process is
//! an eehd client acting for one VM (`VFIO_EEH_SHIM_VM`), and the emulated
//! `/dev/vfio` serves that VM's groups of eehd's host. docs/shared-host.md
//! describes the design.
//!
//! * Opening a group is an `attach`: eehd claims it for the VM (`EBUSY` if
//!   another VM holds it, `ENOENT` if the host has none) and hands over
//!   the shared memory of its BARs; closing its last file releases it.
//! * Config space, PE ops, resets, and BAR accesses while the PE's word
//!   does not allow direct access are requests on the socket.
//! * When eehd cannot be reached, a group open answers `ENODEV` (the
//!   kernel's answer for a group whose devices are gone) and any other
//!   request `EIO`; a request cut off by eehd's death answers `EIO`. A
//!   request that could not even be sent (eehd died since the last one)
//!   goes again on a new connection; each new connection says hello and
//!   claims the groups this process holds, so a restarted eehd finds its
//!   VMMs back without them noticing more than the requests made while it
//!   was away.
//! * A device model in eehd (the NVMe controller) gets this process's bus
//!   while its device fd is open: before each request on the function,
//!   the changes to its container's IOMMU mappings since the last one go
//!   to eehd (`dma`, all of them again after a reconnect), and whether
//!   MSI-X is on (`bus`); the interrupts the model raised come back with
//!   the answer and fire this process's `SET_IRQS` eventfds.
//! * The VM's address mappings and RTAS calls ([`crate::vm::ThisVm::Eehd`])
//!   are eehd's too: each session first declares the VM's virtual PHBs
//!   (`phb_add`, again after a reconnect), then the mapping ioctl is
//!   `map_set`/`map_clear`/`map_get` and an RTAS call is `rtas`, carrying
//!   the guest memory the call names.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use eehd_protocol::client::{Client, ClientError};
use eehd_protocol::protocol::{
    Answer, AttachedDevice, DeviceSpace, DmaChange, GuestWindow, PeAction, Request, MAX_DMA_CHANGES,
};
use eehd_protocol::shm::Mapping;
use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::backend::errno::{EFAULT, EINVAL, EIO, ENODEV};
use vfio_eeh::backend::{BackendError, EehBackend, Errno, PeOpReply};
use vfio_eeh::ops::{EehOp, PeState};
use vfio_eeh::rtas::{GuestMemory, RtasCall, RtasOutcome, TokenTable, HEADER_BYTES};
use vfio_eeh_sim::iova::IovaChange;
use vfio_eeh_sim::nvme::InterruptSink;
use vfio_eeh_sim::spec::{BarInfo, BarKind};
use vfio_eeh_sim::SimHost;

use crate::vfio::host::{FunctionInfo, GroupInfo, Host};
use crate::vfio::{DirectBars, VmmBus};

/// How long a request may wait for its answer (a blocking PE reset takes
/// about two seconds).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// eehd's host, reached over its socket.
#[derive(Debug)]
pub(crate) struct EehdHost {
    socket: PathBuf,
    vm: String,
    /// The VM's virtual PHBs, declared to eehd at the start of each session.
    phbs: Vec<Buid>,
    session: Mutex<Session>,
}

/// The connection (if any) and what this process holds.
#[derive(Debug, Default)]
struct Session {
    /// The connection, and the process that opened it (a forked child
    /// opens its own rather than talk over its parent's).
    client: Option<(Client, u32)>,
    /// The groups this process holds, with their functions.
    groups: BTreeMap<PeId, Vec<PciAddr>>,
    /// The functions whose eehd model takes a bus.
    models: BTreeSet<PciAddr>,
    /// The buses lent to them.
    buses: BTreeMap<PciAddr, Lent>,
    /// How many connections this process made (a new one has no buses).
    connections: u64,
}

/// A bus lent to a model in eehd.
#[derive(Debug)]
struct Lent {
    bus: Arc<VmmBus>,
    /// Whether eehd was last told MSI-X is on; `None`: eehd has no bus yet.
    told_msix: Option<bool>,
}

/// Why a request got no answer from eehd.
enum Failure {
    /// eehd refused it, with this errno.
    Refused(i32),
    /// eehd could not be reached.
    Unreachable,
    /// eehd went away during the request.
    Lost,
}

impl Failure {
    /// The errno of a request other than a group open.
    const fn errno(&self) -> i32 {
        match self {
            Failure::Refused(errno) => *errno,
            Failure::Unreachable | Failure::Lost => EIO,
        }
    }
}

impl EehdHost {
    /// The host of the eehd listening on `socket`, acting for VM `vm` with
    /// the virtual PHBs `phbs`. It connects on its first request.
    pub(crate) fn new(socket: PathBuf, vm: String, phbs: Vec<Buid>) -> Self {
        EehdHost { socket, vm, phbs, session: Mutex::default() }
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session's client, connecting (declaring the VM's PHBs and
    /// claiming the held groups again) if there is none.
    fn connected<'a>(&self, session: &'a mut Session) -> Result<&'a mut Client, Failure> {
        let me = std::process::id();
        if session.client.as_ref().is_some_and(|(_, opener)| *opener != me) {
            // Closing this process's copy leaves the parent's session alone.
            session.client = None;
        }
        if session.client.is_none() {
            let mut client = Client::connect(&self.socket, Some(&self.vm)).map_err(|e| {
                tracing::debug!(socket = %self.socket.display(), error = %vfio_eeh::error_chain(&e), "eehd unreachable");
                Failure::Unreachable
            })?;
            client.set_timeout(Some(REQUEST_TIMEOUT)).map_err(|_| Failure::Unreachable)?;
            for &buid in &self.phbs {
                // eehd keeps the VM's PHBs across restarts: one it has is fine.
                if let Err(e) = client.request(&Request::PhbAdd { buid }) {
                    tracing::debug!(%buid, error = %vfio_eeh::error_chain(&e), "PHB not added");
                }
            }
            for &group in session.groups.keys() {
                if let Err(e) = client.request(&Request::Claim { group }) {
                    tracing::warn!(%group, error = %vfio_eeh::error_chain(&e), "Cannot claim the group again");
                }
            }
            // The new session has no buses: each goes again, mappings and all.
            for lent in session.buses.values_mut() {
                lent.bus.start_mirror();
                lent.told_msix = None;
            }
            tracing::info!(socket = %self.socket.display(), vm = %self.vm, "Connected to eehd");
            session.client = Some((client, me));
            session.connections += 1;
        }
        session.client.as_mut().map(|(client, _)| client).ok_or(Failure::Unreachable)
    }

    /// One request and its answer, with the descriptors that came with it.
    /// A request the connection could not even send (eehd died since the
    /// last one) goes once more on a new connection, so that a restarted
    /// eehd costs nothing to a VMM that was idle meanwhile.
    fn call_with_fds(&self, session: &mut Session, request: &Request) -> Result<(Answer, Vec<OwnedFd>), Failure> {
        self.call_prepared(session, request, |_, _| {})
    }

    /// [`EehdHost::call_with_fds`], with `prepare` run before the request
    /// is sent, and again before it is sent on a new connection.
    fn call_prepared(
        &self,
        session: &mut Session,
        request: &Request,
        mut prepare: impl FnMut(&Self, &mut Session),
    ) -> Result<(Answer, Vec<OwnedFd>), Failure> {
        let mut resent = false;
        loop {
            prepare(self, session);
            let client = self.connected(session)?;
            match client.request_with_fds(request) {
                Ok(answered) => return Ok(answered),
                Err(ClientError::Refused(error)) => return Err(Failure::Refused(error.errno)),
                Err(ClientError::NotSent(_)) if !resent => {
                    tracing::info!(op = request.name(), "eehd's connection is gone; sending on a new one");
                    session.client = None;
                    resent = true;
                }
                Err(error) => {
                    tracing::warn!(op = request.name(), error = %vfio_eeh::error_chain(&error), "eehd went away");
                    session.client = None;
                    return Err(Failure::Lost);
                }
            }
        }
    }

    /// One request; errors are the errno the emulated call answers.
    fn call(&self, request: &Request) -> Result<Answer, i32> {
        self.call_with_fds(&mut self.session(), request).map(|(answer, _)| answer).map_err(|f| f.errno())
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_SET` in eehd's table of the VM.
    pub(crate) fn map_set(&self, host: PciAddr, guest: GuestAddr) -> Result<(), i32> {
        self.call(&Request::MapSet { host, guest }).map(drop)
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_CLEAR` in eehd's table of the VM.
    pub(crate) fn map_clear(&self, host: PciAddr) -> Result<(), i32> {
        self.call(&Request::MapClear { host }).map(drop)
    }

    /// `VFIO_DEVICE_ADDR_MAPPING_GET` from eehd's table of the VM.
    pub(crate) fn map_get(&self, host: PciAddr) -> Result<GuestAddr, i32> {
        match self.call(&Request::MapGet { host })? {
            Answer::Mapping { guest, .. } => Ok(guest),
            _ => Err(EIO),
        }
    }

    /// The group of `pe` is being closed: the mappings of its functions
    /// go (best effort, as its release: eehd refuses to release a group
    /// with mapped functions).
    pub(crate) fn clear_mappings_of(&self, pe: PeId) {
        let functions = self.session().groups.get(&pe).cloned().unwrap_or_default();
        for host in functions {
            // Most functions of a closed group were never mapped.
            let _ = self.map_clear(host);
        }
    }

    /// Serves the RTAS call in `buf` (the `rtas_args` cells as guest
    /// memory holds them) in eehd, for this VM: the guest memory the call
    /// names ([`RtasCall::guest_buffer`]) travels with it when `memory`
    /// holds it (else the call finds none and answers -3, as in process),
    /// and the bytes the call wrote come back into `memory`. `EINVAL`: the
    /// buffer is no RTAS call; `EIO`: eehd cannot be reached.
    pub(crate) fn rtas(&self, buf: &mut [u8], memory: &mut dyn GuestMemory) -> Result<RtasOutcome, i32> {
        let cells: Vec<u32> = buf.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes"))).collect();
        let window = guest_window(&cells, memory);
        let request = Request::Rtas { cells, memory: window.clone() };
        let Answer::Rtas { cells, status, call, memory: written } = self.call(&request)? else { return Err(EIO) };
        if cells.len() * 4 != buf.len() {
            return Err(EIO);
        }
        for (at, cell) in buf.chunks_exact_mut(4).zip(&cells) {
            at.copy_from_slice(&cell.to_be_bytes());
        }
        if let Some(written) = written.filter(|written| Some(written) != window.as_ref()) {
            memory.write(written.base, &written.bytes).map_err(|_| EFAULT)?;
        }
        Ok(RtasOutcome { call: call.as_deref().and_then(RtasCall::from_name), status, error: None })
    }

    fn read(&self, host: PciAddr, space: DeviceSpace, offset: u64, width: u8) -> Result<u64, i32> {
        match self.device_request(host, &Request::DeviceRead { host, space, offset, width })? {
            Answer::Value { value, .. } => Ok(value),
            _ => Err(EIO),
        }
    }

    fn write(&self, host: PciAddr, space: DeviceSpace, offset: u64, width: u8, value: u64) -> Result<(), i32> {
        self.device_request(host, &Request::DeviceWrite { host, space, offset, width, value }).map(drop)
    }

    /// A request on function `host`: its model's bus is brought up to date
    /// first (again if the request goes on a new connection), and the
    /// interrupts the model raised fire afterwards.
    fn device_request(&self, host: PciAddr, request: &Request) -> Result<Answer, i32> {
        let mut session = self.session();
        let answered = self.call_prepared(&mut session, request, |me, session| me.update_bus(session, host));
        let answer = answered.map(|(answer, _)| answer).map_err(|f| f.errno())?;
        let interrupts = match &answer {
            Answer::Value { interrupts, .. } | Answer::Raised { interrupts } => interrupts,
            _ => return Ok(answer),
        };
        if let Some(lent) = session.buses.get(&host) {
            for &vector in &interrupts.msix {
                lent.bus.raise_msix(vector);
            }
            if let Some(asserted) = interrupts.intx {
                lent.bus.set_intx(asserted);
            }
        }
        Ok(answer)
    }

    /// Tells eehd what changed of the bus lent to `host`'s model: its
    /// container's mappings, and MSI-X on or off. A new connection midway
    /// (eehd restarted) starts the mirror over and has no bus: all of it
    /// goes once more. A failure leaves the model a stale mirror (its DMA
    /// may fault), logged.
    fn update_bus(&self, session: &mut Session, host: PciAddr) {
        for _ in 0..2 {
            if self.connected(session).is_err() {
                return;
            }
            let connection = session.connections;
            let Some(bus) = session.buses.get(&host).map(|lent| Arc::clone(&lent.bus)) else { return };
            let space = bus.space();
            for changes in bus.take_mirror().chunks(MAX_DMA_CHANGES) {
                let changes = changes.iter().map(dma_change).collect();
                if let Err(failure) = self.call_with_fds(session, &Request::Dma { space, changes }) {
                    tracing::warn!(device = %host, errno = failure.errno(), "eehd did not take the DMA mappings");
                }
            }
            let msix = bus.msix_enabled();
            if session.buses.get(&host).and_then(|lent| lent.told_msix) != Some(msix) {
                match self.call_with_fds(session, &Request::Bus { host, space: Some(space), msix }) {
                    Ok(_) => {
                        if let Some(lent) = session.buses.get_mut(&host) {
                            lent.told_msix = Some(msix);
                        }
                    }
                    Err(failure) => {
                        tracing::warn!(device = %host, errno = failure.errno(), "eehd did not take the bus");
                    }
                }
            }
            if session.connections == connection {
                return;
            }
        }
    }
}

/// A mapping change as the wire carries it.
fn dma_change(change: &IovaChange) -> DmaChange {
    match *change {
        IovaChange::Clear => DmaChange::Clear,
        IovaChange::Map { iova, size, target } => DmaChange::Map {
            iova,
            size,
            vaddr: target.vaddr,
            device_reads: target.device_reads,
            device_writes: target.device_writes,
        },
        IovaChange::Unmap { iova, size } => DmaChange::Unmap { iova, size },
    }
}

/// The RTAS tokens of eehd's firmware: every VM's is the default table
/// ([`vfio_eeh::vm::Vms::add_vm`]).
pub(crate) fn eehds_tokens() -> TokenTable {
    TokenTable::default()
}

/// The guest memory the RTAS call in `cells` names, as `memory` holds it;
/// `None` when it names none or `memory` does not hold it.
fn guest_window(cells: &[u32], memory: &dyn GuestMemory) -> Option<GuestWindow> {
    let (&token, &nargs) = (cells.first()?, cells.get(1)?);
    let args = cells.get(HEADER_BYTES / 4..)?.get(..usize::try_from(nargs).ok()?)?;
    let (base, len) = eehds_tokens().call(token)?.guest_buffer(args)?;
    let mut bytes = vec![0; len];
    memory.read(base, &mut bytes).ok()?;
    Some(GuestWindow { base, bytes })
}

/// A whole file mapped read-only (a PE state file: eehd writes it).
fn mapped_whole(fd: &OwnedFd) -> std::io::Result<Mapping> {
    let len = rustix::fs::fstat(fd)?.st_size;
    Mapping::read_only(fd, u64::try_from(len).map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidData))?)
}

/// The functions of an attached group, with the shared memory of their
/// BARs: `fds` holds the PE's state file (when there is a slot) and then
/// one file per shared BAR, in the order listed.
fn functions(devices: Vec<AttachedDevice>, state_slot: Option<u32>, fds: Vec<OwnedFd>) -> Vec<FunctionInfo> {
    let mut fds = fds.into_iter();
    let states = state_slot.and_then(|_| fds.next()).and_then(|fd| match mapped_whole(&fd) {
        Ok(map) => Some(Arc::new(map)),
        Err(e) => {
            tracing::warn!(error = %e, "Cannot map eehd's PE states; every BAR access goes to eehd");
            None
        }
    });
    devices
        .into_iter()
        .map(|device| {
            let mut shared: [Option<Mapping>; 6] = Default::default();
            let mut bars = Vec::with_capacity(device.bars.len());
            for bar in device.bars {
                let kind = if bar.io { BarKind::Io } else { BarKind::Mem64 };
                bars.push(BarInfo { index: bar.index, kind, prefetchable: false, size: bar.size, addr: 0 });
                let fd = if bar.shared { fds.next() } else { None };
                let slot = shared.get_mut(usize::from(bar.index));
                if let (Some(fd), Some(slot)) = (fd, slot) {
                    *slot = Mapping::new(&fd, bar.size)
                        .inspect_err(|e| tracing::warn!(device = %device.host, bar = bar.index, error = %e, "Cannot map the BAR"))
                        .ok();
                }
            }
            let direct = states.as_ref().zip(state_slot).map(|(states, slot)| DirectBars::new(Arc::clone(states), slot, shared));
            FunctionInfo { addr: device.host, bars, direct, msix_vectors: device.msix_vectors }
        })
        .collect()
}

impl EehBackend for EehdHost {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        let session = self.session();
        let held = session.groups.iter().find(|(_, devices)| devices.contains(&device));
        held.map(|(&pe, _)| pe).ok_or(BackendError::NoDevice(device))
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        self.session().groups.get(&pe).cloned().ok_or(BackendError::NoPe(pe))
    }

    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        let os = |errno| BackendError::Os { what: format!("eehd's {op:?} on PE {pe}"), source: Errno(errno) };
        match self.call(&Request::PeOp { group: pe, action: PeAction::from(op) }).map_err(os)? {
            Answer::PeOp { value } if op == EehOp::GetState => {
                PeState::from_raw(value).map(PeOpReply::State).ok_or_else(|| os(EIO))
            }
            Answer::PeOp { .. } => Ok(PeOpReply::Done),
            _ => Err(os(EIO)),
        }
    }
}

impl Host for EehdHost {
    fn attach(&self, group: u32) -> Result<GroupInfo, i32> {
        let mut session = self.session();
        let pe = PeId(group);
        let answered = self.call_with_fds(&mut session, &Request::Attach { group: pe });
        let (answer, fds) = answered.map_err(|failure| match failure {
            Failure::Refused(errno) => errno,
            Failure::Unreachable | Failure::Lost => ENODEV,
        })?;
        let Answer::Attached { devices, state_slot, .. } = answer else { return Err(EIO) };
        session.groups.insert(pe, devices.iter().map(|d| d.host).collect());
        session.models.extend(devices.iter().filter(|d| d.bus).map(|d| d.host));
        Ok(GroupInfo { pe, functions: functions(devices, state_slot, fds) })
    }

    /// Releases the group in eehd (best effort: eehd keeps claims of VMMs
    /// that are gone, and this VM may claim it again).
    fn detach(&self, pe: PeId) {
        let mut session = self.session();
        for function in session.groups.remove(&pe).unwrap_or_default() {
            session.models.remove(&function);
        }
        if let Err(failure) = self.call_with_fds(&mut session, &Request::Release { group: pe }) {
            tracing::info!(%pe, errno = failure.errno(), "Cannot release the group in eehd");
        }
    }

    /// eehd's claim holds the PE as an open device fd would.
    fn device_opened(&self, _addr: PciAddr) {}

    /// eehd's release lets the PE go as a last close would.
    fn device_released(&self, _addr: PciAddr) {}

    /// The bus goes to eehd with the function's next request
    /// ([`EehdHost::update_bus`]); taking it back is told at once (best
    /// effort: eehd also takes it back when the group or session ends).
    fn attach_bus(&self, addr: PciAddr, bus: Option<Arc<VmmBus>>) {
        let mut session = self.session();
        if !session.models.contains(&addr) {
            return;
        }
        match bus {
            Some(bus) => {
                bus.start_mirror();
                session.buses.insert(addr, Lent { bus, told_msix: None });
            }
            None => {
                let told = session.buses.remove(&addr).is_some_and(|lent| lent.told_msix.is_some());
                if told && session.client.is_some() {
                    let _ = self.call_with_fds(&mut session, &Request::Bus { host: addr, space: None, msix: false });
                }
            }
        }
    }

    fn config_read(&self, addr: PciAddr, offset: u16, width: u8) -> Result<u32, i32> {
        let value = self.read(addr, DeviceSpace::Config, u64::from(offset), width)?;
        u32::try_from(value).map_err(|_| EINVAL)
    }

    fn config_write(&self, addr: PciAddr, offset: u16, width: u8, value: u32) -> Result<(), i32> {
        self.write(addr, DeviceSpace::Config, u64::from(offset), width, u64::from(value))
    }

    fn bar_read(&self, addr: PciAddr, bar: u8, offset: u64, width: u8) -> Result<u64, i32> {
        self.read(addr, DeviceSpace::Bar(bar), offset, width)
    }

    fn bar_write(&self, addr: PciAddr, bar: u8, offset: u64, width: u8, value: u64) -> Result<(), i32> {
        self.write(addr, DeviceSpace::Bar(bar), offset, width, value)
    }

    fn function_reset(&self, addr: PciAddr) -> Result<(), i32> {
        self.device_request(addr, &Request::DeviceReset { host: addr }).map(drop)
    }

    fn in_process(&self) -> Option<&Arc<SimHost>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::atomic::AtomicBool;
    use std::thread::JoinHandle;

    use eehd::core::Core;
    use eehd::metrics::Metrics;
    use eehd::policy::Policy;
    use eehd::protocol::InjectTarget;
    use eehd::server::{Limits, Server};
    use eehd::shared::SharedMemory;
    use eehd::store::Store;
    use vfio_eeh::backend::errno::{EBUSY, ENOENT};
    use vfio_eeh::ops::{ErrFunc, ErrInjection, ErrType, PeState};
    use vfio_eeh::rtas::{status, RtasArgs};
    use vfio_eeh::uapi::{self, VfioEehPeOp};
    use vfio_eeh_sim::clock::VirtualClock;
    use vfio_eeh_sim::config::SimConfig;
    use vfio_eeh_sim::spec::TopologySpec;

    use super::*;
    use crate::config::{Firmware, Platform, ShimConfig};
    use crate::user::ProcessMemory;
    use crate::vfio::testing::Vmm;
    use crate::vfio::{Access, Emulator};

    /// The built-in host's groups 0 and 4, with the NVMe drive as plain
    /// memory: these tests read and write shared BAR memory.
    const TOPOLOGY: &str = include_str!("../tests/plain-host.toml");

    /// An eehd on [`TOPOLOGY`] with virtual time, serving in this process;
    /// its state (and shared memory) in `dir`.
    struct Daemon {
        stop: Arc<std::sync::atomic::AtomicBool>,
        thread: Option<JoinHandle<()>>,
    }

    impl Daemon {
        fn start(dir: &Path) -> Self {
            let spec = TopologySpec::from_toml_str(TOPOLOGY, "test").unwrap();
            let shared = SharedMemory::open(&dir.join("shared"), &spec).unwrap();
            let clock = Arc::new(VirtualClock::new());
            let sim = SimHost::with_bar_memory(&spec, SimConfig::default(), clock, |d| shared.bar_memory(d));
            let store = Store::open(dir).unwrap();
            let core = Core::start(sim, Policy::default(), store, Arc::new(Metrics::default())).unwrap();
            let core = Arc::new(core.with_shared_memory(shared));
            let socket = dir.join("eehd.sock");
            let _ = std::fs::remove_file(&socket);
            let listener = eehd::seqpacket::listen(&socket, 16).unwrap();
            let stop = Arc::new(AtomicBool::new(false));
            let limits = Limits { event_interval: Duration::from_millis(10), ..Limits::default() };
            let server = Server::new(core, limits, Arc::clone(&stop));
            let thread = std::thread::spawn(move || {
                server.run(&listener, Duration::from_secs(2), || {}, || {}).unwrap();
            });
            Daemon { stop, thread: Some(thread) }
        }
    }

    impl Drop for Daemon {
        /// Stops serving: every connection is cut, as by eehd's death.
        fn drop(&mut self) {
            self.stop.store(true, std::sync::atomic::Ordering::Release);
            if let Some(thread) = self.thread.take() {
                thread.join().unwrap();
            }
        }
    }

    struct Process(Emulator);

    impl Vmm for Process {
        fn emu(&self) -> &Emulator {
            &self.0
        }
    }

    fn vmm(dir: &Path, vm: &str) -> Process {
        // Firmware that injects MMIO errors too, and the mapping ioctl.
        let config = ShimConfig { firmware: Firmware::Any, platform: Platform::Powernv, ..ShimConfig::default() };
        let host = EehdHost::new(dir.join("eehd.sock"), vm.into(), config.virtual_phbs(1));
        Process(Emulator::on_eehd(Arc::new(host), config))
    }

    fn bar0_read(vmm: &Process, device: i32, offset: u64) -> Result<u32, i32> {
        let mut buf = [0u8; 4];
        vmm.0.region_access(device, offset, Access::Read(&mut buf)).unwrap().map(|_| u32::from_le_bytes(buf))
    }

    fn bar0_write(vmm: &Process, device: i32, offset: u64, value: u32) -> Result<usize, i32> {
        vmm.0.region_access(device, offset, Access::Write(&value.to_le_bytes())).unwrap()
    }

    fn config_read(vmm: &Process, device: i32) -> Result<u32, i32> {
        let mut buf = [0u8; 4];
        let config = u64::from(uapi::VFIO_PCI_CONFIG_REGION_INDEX) << 40;
        vmm.0.region_access(device, config, Access::Read(&mut buf)).unwrap().map(|_| u32::from_le_bytes(buf))
    }

    /// The VM's first virtual PHB past the machine's default one.
    const PHB: Buid = Buid(Buid::SPAPR_BASE.0 + 1);
    const PARAMETER_ERROR: u32 = status::PARAMETER_ERROR.cast_unsigned();

    /// `VFIO_DEVICE_ADDR_MAPPING` with `flags` and `PHB`'s bus 0 slot `slot`
    /// (SET) on `device`; the slot the answer holds (GET).
    fn mapping(vmm: &Process, device: i32, flags: u32, buid: Buid, slot: u8) -> Result<(Buid, u8), i32> {
        let mapping = uapi::VfioAddrMapping { buid: buid.0, bus: 0, slot, func: 0, pad: [0; 5] };
        let mut arg = uapi::VfioDeviceAddrMapping { argsz: 24, flags, mapping };
        vmm.call(device, uapi::DEVICE_ADDR_MAPPING, &mut arg)?;
        Ok((Buid(arg.mapping.buid), arg.mapping.slot))
    }

    fn map_set(vmm: &Process, device: i32, buid: Buid, slot: u8) -> Result<(), i32> {
        mapping(vmm, device, uapi::VFIO_DEVICE_ADDR_MAPPING_SET, buid, slot).map(drop)
    }

    fn map_get(vmm: &Process, device: i32) -> Result<(Buid, u8), i32> {
        mapping(vmm, device, uapi::VFIO_DEVICE_ADDR_MAPPING_GET, Buid(0), 0)
    }

    fn map_clear(vmm: &Process, device: i32) -> Result<(), i32> {
        mapping(vmm, device, uapi::VFIO_DEVICE_ADDR_MAPPING_CLEAR, Buid(0), 0).map(drop)
    }

    /// The RTAS call `call` with `args` through the exported entry point,
    /// with the guest RAM window at `ram` (0: none); its return cells.
    fn rtas(vmm: &Process, call: RtasCall, args: &[u32], nret: usize, ram: usize) -> Result<Vec<u32>, i32> {
        let args = RtasArgs::new(eehds_tokens().token(call).unwrap(), args, nret);
        let mut buf = args.encode();
        vmm.0.rtas(&ProcessMemory, buf.as_mut_ptr().addr(), ram)?;
        Ok(args.read_rets(&buf))
    }

    /// The address cells of `PHB`'s bus 0 slot `slot` function 0.
    fn at(slot: u8) -> [u32; 3] {
        [u32::from(slot) << 11, PHB.hi(), PHB.lo()]
    }

    /// read-slot-reset-state2's status and state at `PHB`'s slot `slot`.
    fn read_state(vmm: &Process, slot: u8) -> (u32, u32) {
        let rets = rtas(vmm, RtasCall::ReadSlotResetState2, &at(slot), 4, 0).unwrap();
        (rets[0], rets[1])
    }

    fn operator(dir: &Path) -> Client {
        Client::connect(&dir.join("eehd.sock"), None).unwrap()
    }

    #[test]
    fn two_vmms_share_eehds_host_each_with_its_own_groups() {
        let dir = tempfile::tempdir().unwrap();
        let _daemon = Daemon::start(dir.path());
        let (a, b) = (vmm(dir.path(), "a"), vmm(dir.path(), "b"));
        let (container, group) = (a.open("vfio"), a.open("0"));
        a.attach(group, container);
        a.set_iommu(container);
        let mut name = *b"0000:01:00.0\0";
        let nvme = i32::try_from(a.call(group, uapi::GROUP_GET_DEVICE_FD, &mut name).unwrap()).unwrap();
        assert_eq!(b.0.open(b"/dev/vfio/0", 0), Some(Err(EBUSY)), "A's group");
        assert_eq!(b.0.open(b"/dev/vfio/77", 0), Some(Err(ENOENT)), "no such group");
        let ibm = b.device("4", "0001:02:00.0");

        assert_eq!(config_read(&a, nvme), Ok(0xa824_144d), "config space through eehd");
        bar0_write(&a, nvme, 8, 0xfeed).unwrap();
        bar0_write(&b, ibm, 8, 0xbeef).unwrap();
        assert_eq!((bar0_read(&a, nvme, 8), bar0_read(&b, ibm, 8)), (Ok(0xfeed), Ok(0xbeef)));

        // A freeze is seen by the next access; the other VM's device is untouched.
        operator(dir.path()).request(&Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(0) } }).unwrap();
        assert_eq!(bar0_read(&a, nvme, 8), Ok(u32::MAX), "frozen: all-ones");
        assert_eq!(bar0_write(&a, nvme, 8, 1), Ok(4), "dropped");
        assert_eq!(bar0_read(&b, ibm, 8), Ok(0xbeef));
        let mut state = VfioEehPeOp::from(EehOp::GetState);
        assert_eq!(a.call(container, uapi::EEH_PE_OP, &mut state), Ok(i64::from(PeState::Stopped.raw())));
        for op in [EehOp::UnfreezeIo, EehOp::UnfreezeDma] {
            assert_eq!(a.call(container, uapi::EEH_PE_OP, &mut VfioEehPeOp::from(op)), Ok(0));
        }
        assert_eq!(bar0_read(&a, nvme, 8), Ok(0xfeed), "thawed; the dropped write left no trace");

        // eehd's host arms injections until an access names them: the
        // next BAR load is that access, and it reads all-ones.
        let injection = ErrInjection { kind: ErrType::Bus32, func: ErrFunc::LoadMemAddr, addr: 0, mask: 0 };
        assert_eq!(a.call(container, uapi::EEH_PE_OP, &mut VfioEehPeOp::from(EehOp::InjectErr(injection))), Ok(0));
        assert_eq!(bar0_write(&a, nvme, 8, 2), Ok(4), "a store does not match a load injection");
        assert_eq!(bar0_read(&a, nvme, 8), Ok(u32::MAX), "the load the injection names fires it");
        assert_eq!(a.call(container, uapi::EEH_PE_OP, &mut state), Ok(i64::from(PeState::Stopped.raw())));
    }

    #[test]
    fn eehds_death_costs_only_the_requests_it_cuts_off_and_a_restart_is_found_again() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(vmm(dir.path(), "a").0.open(b"/dev/vfio/0", 0), Some(Err(ENODEV)), "eehd is not running");
        let daemon = Daemon::start(dir.path());
        let (a, b) = (vmm(dir.path(), "a"), vmm(dir.path(), "b"));
        let nvme = a.device("0", "0000:01:00.0");
        bar0_write(&a, nvme, 16, 7).unwrap();
        drop(daemon);

        assert_eq!(bar0_read(&a, nvme, 16), Ok(7), "shared memory needs no eehd");
        assert_eq!(config_read(&a, nvme), Err(EIO), "config space does");
        assert_eq!(b.0.open(b"/dev/vfio/1", 0), Some(Err(ENODEV)));

        let daemon = Daemon::start(dir.path());
        assert_eq!(config_read(&a, nvme), Ok(0xa824_144d), "connected and claimed again");
        // A VMM idle while eehd restarts loses nothing: its first request
        // finds the connection gone before sending, and goes on a new one.
        drop(daemon);
        let _daemon = Daemon::start(dir.path());
        assert_eq!(config_read(&a, nvme), Ok(0xa824_144d), "the first request after the restart");
        assert_eq!(bar0_read(&a, nvme, 16), Ok(7), "device memory outlived eehd");
        assert_eq!(b.0.open(b"/dev/vfio/0", 0), Some(Err(EBUSY)), "still A's");
        operator(dir.path()).request(&Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(0) } }).unwrap();
        assert_eq!(bar0_read(&a, nvme, 16), Ok(u32::MAX), "a later freeze is seen");
    }

    #[test]
    fn the_mapping_ioctl_acts_on_eehds_table_of_the_vm_with_every_rule() {
        let dir = tempfile::tempdir().unwrap();
        let _daemon = Daemon::start(dir.path());
        let (a, b) = (vmm(dir.path(), "a"), vmm(dir.path(), "b"));
        let nvme_group = a.group_with_iommu("0");
        let nvme = a.device_of(nvme_group, "0000:01:00.0");
        let ibm = b.device("4", "0001:02:00.0");

        assert_eq!(map_get(&a, nvme), Err(ENOENT), "GET before SET");
        assert_eq!(map_clear(&a, nvme), Err(ENOENT), "CLEAR of nothing");
        assert_eq!(map_set(&a, nvme, Buid(0x1234), 1), Err(EINVAL), "a BUID that is no PHB of this VM");
        assert_eq!(map_set(&a, nvme, PHB, 1), Ok(()));
        assert_eq!(map_set(&a, nvme, PHB, 2), Err(EBUSY), "mapped twice");
        assert_eq!(map_get(&a, nvme), Ok((PHB, 1)), "the refused SET changed nothing");
        let claims = operator(dir.path()).request(&Request::Claims).unwrap();
        assert!(format!("{claims:?}").contains("guest"), "the mapping is eehd's: {claims:?}");

        // Per-VM address spaces: A's address names nothing in B, and B may use it.
        assert_eq!(read_state(&b, 1).0, PARAMETER_ERROR, "A's guest address is not B's");
        assert_eq!(map_set(&b, ibm, PHB, 1), Ok(()), "B maps its device where A has its own");
        assert_eq!(map_set(&b, ibm, PHB, 1), Err(EBUSY));
        assert_eq!(map_clear(&b, ibm), Ok(()));
        assert_eq!(map_clear(&b, ibm), Err(ENOENT), "removing an absent mapping");
        assert_eq!(map_set(&b, ibm, PHB, 1), Ok(()));
        assert_eq!((map_get(&a, nvme), map_get(&b, ibm)), (Ok((PHB, 1)), Ok((PHB, 1))));
        assert_eq!(read_state(&b, 1), (0, PeState::Normal.raw()), "B resolves its own device");

        // A group that is closed takes its mappings along and goes back to eehd.
        a.close(nvme);
        a.close(nvme_group);
        let c = vmm(dir.path(), "c");
        let nvme = c.device("0", "0000:01:00.0");
        assert_eq!(map_set(&c, nvme, PHB, 1), Ok(()), "A's address is free in eehd, and C has it");
    }

    #[test]
    fn a_guest_recovers_through_rtas_served_by_eehd_and_another_vm_sees_none_of_it() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path());
        let (a, b) = (vmm(dir.path(), "a"), vmm(dir.path(), "b"));
        let nvme = a.device("0", "0000:01:00.0");
        let ibm = b.device("4", "0001:02:00.0");
        assert_eq!(map_set(&a, nvme, PHB, 1), Ok(()));
        assert_eq!(map_set(&b, ibm, PHB, 2), Ok(()));
        let enable = |vmm, slot| rtas(vmm, RtasCall::SetEehOption, &[at(slot).as_slice(), &[1]].concat(), 1, 0);
        assert_eq!((enable(&a, 1), enable(&b, 2)), (Ok(vec![0]), Ok(vec![0])));
        assert_eq!(read_state(&b, 1).0, PARAMETER_ERROR, "A's device is not B's");
        assert_eq!(read_state(&a, 2).0, PARAMETER_ERROR, "B's device is not A's");

        operator(dir.path()).request(&Request::Inject { target: InjectTarget::PeFreeze { pe: PeId(0) } }).unwrap();
        assert_eq!(read_state(&a, 1), (0, PeState::Stopped.raw()));
        assert_eq!(read_state(&b, 2), (0, PeState::Normal.raw()), "B's PE is untouched");

        // slot-error-detail writes the log into the VMM's guest RAM window.
        let mut guest_ram = vec![0u8; 0x1000];
        let window: [u64; 3] = [guest_ram.as_mut_ptr().addr() as u64, 0x10_0000, 0x1000];
        let ram = window.as_ptr().addr();
        let detail = [at(1).as_slice(), &[0, 0, 0x10_0000, 1024, 1]].concat();
        assert_eq!(rtas(&a, RtasCall::SlotErrorDetail, &detail, 1, ram), Ok(vec![0]));
        assert!(guest_ram.iter().any(|&byte| byte != 0), "the log is in the VMM's memory");
        let outside = [at(1).as_slice(), &[0, 0, 0x20_0000, 1024, 1]].concat();
        assert_eq!(rtas(&a, RtasCall::SlotErrorDetail, &outside, 1, ram), Ok(vec![PARAMETER_ERROR]));
        assert_eq!(rtas(&b, RtasCall::SlotErrorDetail, &detail, 1, ram), Ok(vec![PARAMETER_ERROR]), "not B's");

        // Thaw MMIO and DMA as eeh_pci_enable does: A is normal again.
        for option in [2, 3] {
            let thaw = [at(1).as_slice(), &[option]].concat();
            assert_eq!(rtas(&a, RtasCall::SetEehOption, &thaw, 1, 0), Ok(vec![0]));
        }
        assert_eq!(read_state(&a, 1), (0, PeState::Normal.raw()));
        assert_eq!(config_read(&a, nvme), Ok(0xa824_144d));

        // eehd down: EIO, never a crash; back: the VM's PHBs and mappings are there.
        drop(daemon);
        let args = RtasArgs::new(eehds_tokens().token(RtasCall::ReadSlotResetState2).unwrap(), &at(1), 4);
        let mut buf = args.encode();
        assert_eq!(a.0.rtas(&ProcessMemory, buf.as_mut_ptr().addr(), 0), Err(EIO));
        assert_eq!(map_get(&a, nvme), Err(EIO));
        assert_eq!(map_set(&b, ibm, PHB, 3), Err(EIO));
        let _daemon = Daemon::start(dir.path());
        assert_eq!(map_get(&a, nvme), Ok((PHB, 1)));
        assert_eq!(read_state(&a, 1), (0, PeState::Normal.raw()));
        assert_eq!(map_clear(&b, ibm), Ok(()));
        assert_eq!(map_set(&b, ibm, Buid::SPAPR_BASE, 1), Ok(()), "B's other PHB");
    }

    #[test]
    fn a_new_session_declares_the_vms_phbs_again_and_claims_its_groups() {
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path());
        let a = vmm(dir.path(), "a");
        let nvme = a.device("0", "0000:01:00.0");
        assert_eq!(map_set(&a, nvme, PHB, 1), Ok(()));
        drop(daemon);
        assert_eq!(map_get(&a, nvme), Err(EIO), "eehd is gone");
        // An eehd that lost its state: it knows neither the VM nor its PHBs.
        std::fs::remove_file(dir.path().join("state.json")).unwrap();
        let _daemon = Daemon::start(dir.path());
        assert_eq!(map_get(&a, nvme), Err(ENOENT), "the mapping is gone with eehd's state");
        assert_eq!(map_set(&a, nvme, PHB, 1), Ok(()), "the PHB was declared and the group claimed again");
        assert_eq!(read_state(&a, 1), (0, PeState::Normal.raw()));
    }
}
