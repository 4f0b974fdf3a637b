//! `eehctl demo --daemon`: the demo through a real `eehd` process. eehctl
//! starts eehd on the simulated host with a virtual clock, a private
//! socket, state directory and policy (this user is the operator and VM
//! `demo`), and the guest model's whole traffic goes through the daemon:
//! RTAS calls (served by eehd against the VM's mappings), config and MMIO
//! accesses (`device_read`/`device_write`), the guest's sleeps (`clock`),
//! the campaign's injections (operator `inject`) and the host's side of
//! the timeline (the VM's subscription).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use eehd::client::{Client, ClientError};
use eehd::protocol::{
    Answer, DeviceSpace, ErrorKind, GuestWindow, InjectTarget, PeEventKind, Request, MAX_GUEST_WINDOW,
};
use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};
use vfio_eeh::ops::{ErrInjection, PeState};
use vfio_eeh::rtas::{FlatMemory, GuestMemory, RtasArgs, TokenTable};
use vfio_eeh_sim::clock::Clock;
use vfio_eeh_sim::demo::{self, DemoConfig, DemoReport, DemoTarget, HostPe, TimelineEntry};
use vfio_eeh_sim::guest::GuestPlatform;

/// The VM the demo acts for.
const VM: &str = "demo";
/// Guest memory for RTAS buffers: 2 MiB at guest address 0, as in process.
const GUEST_MEMORY_BYTES: usize = 2 << 20;
/// How long eehd may take to start serving.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Events still on their way at the end: eehd follows its host every 50 ms.
const EVENT_QUIET: Duration = Duration::from_millis(300);

/// The demo's host through eehd failed.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A request was refused or got no answer.
    #[error("eehd: {request}")]
    Request {
        /// The request's op.
        request: &'static str,
        /// Why.
        #[source]
        source: ClientError,
    },
    /// The answer was not the one the request calls for.
    #[error("eehd answered {request} with {answer}")]
    Unexpected {
        /// The request's op.
        request: &'static str,
        /// The answer, as debug text.
        answer: String,
    },
}

/// A running eehd, stopped with SIGTERM (and waited for) when dropped.
pub struct Eehd {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Eehd {
    /// Starts `binary` on the simulated host with a virtual clock, in a
    /// private directory, and waits until it serves.
    pub fn start(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("eehctl-demo-").tempdir().context("Cannot make a directory")?;
        let socket = dir.path().join("eehd.sock");
        let policy = dir.path().join("policy.toml");
        let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
        let grant =
            format!("[operators]\nuids = [{uid}]\n\n[[vm]]\nnames = [\"{VM}\"]\nuids = [{uid}]\ngids = [{gid}]\n");
        std::fs::write(&policy, grant).context("Cannot write eehd's policy")?;
        let log = dir.path().join("eehd.log");
        let stderr = std::fs::File::create(&log).context("Cannot create eehd's log")?;
        let child = Command::new(binary)
            .args(["--host", "sim", "--sim-clock", "virtual", "--socket"])
            .arg(&socket)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .arg("--policy")
            .arg(&policy)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .with_context(|| format!("Cannot start {}", binary.display()))?;
        let mut eehd = Eehd { child, socket, log, _dir: dir };
        let started = Instant::now();
        while Client::connect(&eehd.socket, None).is_err() {
            if let Some(status) = eehd.child.try_wait()? {
                bail!("eehd exited ({status}) before serving:\n{}", eehd.log_text());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("eehd did not serve within {START_TIMEOUT:?}:\n{}", eehd.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!("eehd (pid {}) serves {}", eehd.child.id(), eehd.socket.display());
        Ok(eehd)
    }

    /// Its socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Eehd {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_child(&self.child);
        let stopped = rustix::process::kill_process(pid, rustix::process::Signal::TERM).is_ok();
        if !stopped {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

/// The eehd binary: `explicit`, or the one next to eehctl's own executable.
pub fn locate(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let exe = std::env::current_exe().context("Cannot find eehctl's own executable")?;
    let beside = exe.with_file_name("eehd");
    if beside.is_file() {
        return Ok(beside);
    }
    bail!("No eehd next to {} (build it: cargo build -p eehd), or give --eehd PATH", exe.display())
}

/// Runs the demo through a fresh eehd started from `binary`.
pub fn run(config: DemoConfig, binary: &Path) -> anyhow::Result<DemoReport> {
    let eehd = Eehd::start(binary)?;
    let mut target = DaemonTarget::connect(eehd.socket())?;
    let report = demo::run_on(config, &mut target)?;
    drop(target);
    drop(eehd);
    Ok(report)
}

/// The session with eehd: the VM's, which the policy also makes an
/// operator session. The guest's sleeps take it through `&self`.
#[derive(Debug)]
struct Link {
    client: Mutex<Client>,
    /// The host's virtual clock as of its last answer.
    now_ns: AtomicU64,
    /// The first failure of traffic that cannot report one at once.
    failure: Mutex<Option<DaemonError>>,
}

impl Link {
    fn ask(&self, request: &Request) -> Result<Answer, DaemonError> {
        let mut client = self.client.lock().unwrap_or_else(PoisonError::into_inner);
        client.request(request).map_err(|source| DaemonError::Request { request: request.name(), source })
    }

    /// Keeps the first failure of the guest's traffic for
    /// [`Link::take_failure`].
    fn fail(&self, error: DaemonError) {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).get_or_insert(error);
    }

    fn take_failure(&self) -> Result<(), DaemonError> {
        self.failure.lock().unwrap_or_else(PoisonError::into_inner).take().map_or(Ok(()), Err)
    }

    fn advance(&self, by: Duration) -> Result<u64, DaemonError> {
        let request = Request::Clock { advance_ns: u64::try_from(by.as_nanos()).unwrap_or(u64::MAX) };
        match self.ask(&request)? {
            Answer::Clock { now_ns } => {
                self.now_ns.store(now_ns, Ordering::Release);
                Ok(now_ns)
            }
            other => Err(unexpected(&request, &other)),
        }
    }
}

fn unexpected(request: &Request, answer: &Answer) -> DaemonError {
    DaemonError::Unexpected { request: request.name(), answer: format!("{answer:?}") }
}

/// The guest's time is the host's virtual clock: a sleep advances it.
impl Clock for Link {
    fn now(&self) -> Duration {
        Duration::from_nanos(self.now_ns.load(Ordering::Acquire))
    }

    fn sleep(&self, d: Duration) {
        if let Err(error) = self.advance(d) {
            self.fail(error);
        }
    }
}

/// The VM's platform: RTAS, config and MMIO go to eehd; guest memory is
/// here, and the windows of it that a call names travel with the call.
struct DaemonVm {
    link: Link,
    tokens: TokenTable,
    memory: FlatMemory,
    /// The VM's devices by guest address (the VMM's own table).
    hosts: BTreeMap<GuestAddr, PciAddr>,
}

impl DaemonVm {
    /// A request from the guest's traffic; a failure is kept for later.
    fn traffic(&self, request: &Request) -> Option<Answer> {
        self.link.ask(request).map_err(|error| self.link.fail(error)).ok()
    }

    fn read(&mut self, dev: GuestAddr, space: DeviceSpace, offset: u64) -> u32 {
        let Some(&host) = self.hosts.get(&dev) else { return u32::MAX };
        match self.traffic(&Request::DeviceRead { host, space, offset, width: 4 }) {
            Some(Answer::Value { value, .. }) => u32::try_from(value).unwrap_or(u32::MAX),
            _ => u32::MAX,
        }
    }

    fn write(&mut self, dev: GuestAddr, space: DeviceSpace, offset: u64, value: u32) {
        if let Some(&host) = self.hosts.get(&dev) {
            self.traffic(&Request::DeviceWrite { host, space, offset, width: 4, value: value.into() });
        }
    }

    /// The window of guest memory the call in `buf` names, if any.
    fn window(&self, buf: &[u8]) -> Option<GuestWindow> {
        let args = RtasArgs::decode(buf).ok()?;
        let (base, len) = self.tokens.call(args.token)?.guest_buffer(args.args())?;
        let mut bytes = vec![0; len.min(MAX_GUEST_WINDOW)];
        self.memory.read(base, &mut bytes).ok()?;
        Some(GuestWindow { base, bytes })
    }
}

impl GuestPlatform for DaemonVm {
    fn tokens(&self) -> &TokenTable {
        &self.tokens
    }

    fn rtas(&mut self, buf: &mut [u8]) -> bool {
        let cells = buf.chunks_exact(4).map(|c| u32::from_be_bytes(c.try_into().expect("4 bytes"))).collect();
        let request = Request::Rtas { cells, memory: self.window(buf) };
        match self.link.ask(&request) {
            Ok(Answer::Rtas { cells, memory, .. }) => {
                for (to, cell) in buf.chunks_exact_mut(4).zip(cells) {
                    to.copy_from_slice(&cell.to_be_bytes());
                }
                if let Some(window) = memory {
                    // The window came from this memory, so it fits.
                    let _ = self.memory.write(window.base, &window.bytes);
                }
                true
            }
            // The firmware refused the buffer outright.
            Err(DaemonError::Request { source: ClientError::Refused(refusal), .. })
                if refusal.kind == ErrorKind::RtasBuffer =>
            {
                false
            }
            Ok(other) => {
                self.link.fail(unexpected(&request, &other));
                false
            }
            Err(error) => {
                self.link.fail(error);
                false
            }
        }
    }

    fn config_read32(&mut self, dev: GuestAddr, offset: u16) -> u32 {
        self.read(dev, DeviceSpace::Config, offset.into())
    }

    fn config_write32(&mut self, dev: GuestAddr, offset: u16, value: u32) {
        self.write(dev, DeviceSpace::Config, offset.into(), value);
    }

    fn mmio_read32(&mut self, dev: GuestAddr, bar: u8, offset: u64) -> u32 {
        self.read(dev, DeviceSpace::Bar(bar), offset)
    }

    fn mmio_write32(&mut self, dev: GuestAddr, bar: u8, offset: u64, value: u32) {
        self.write(dev, DeviceSpace::Bar(bar), offset, value);
    }

    fn clock(&self) -> &dyn Clock {
        &self.link
    }
}

/// The demo's host through eehd.
struct DaemonTarget {
    vm: DaemonVm,
}

impl DaemonTarget {
    /// Opens the VM's session (subscribed to its events) and reads the
    /// host's clock.
    fn connect(socket: &Path) -> anyhow::Result<Self> {
        let client = Client::connect(socket, Some(VM)).context("Cannot open the demo VM's session with eehd")?;
        let link = Link { client: Mutex::new(client), now_ns: AtomicU64::new(0), failure: Mutex::new(None) };
        link.ask(&Request::Subscribe)?;
        link.advance(Duration::ZERO)?;
        let vm = DaemonVm {
            link,
            tokens: TokenTable::default(),
            memory: FlatMemory::new(0, GUEST_MEMORY_BYTES),
            hosts: BTreeMap::new(),
        };
        Ok(DaemonTarget { vm })
    }

    fn done(&self, request: &Request) -> Result<(), DaemonError> {
        match self.vm.link.ask(request)? {
            Answer::Done => Ok(()),
            other => Err(unexpected(request, &other)),
        }
    }

    /// The host's PEs with their states (operator).
    fn host_pes(&self) -> Result<Vec<eehd::protocol::PeView>, DaemonError> {
        match self.vm.link.ask(&Request::HostState)? {
            Answer::HostState { phbs, .. } => Ok(phbs.into_iter().flat_map(|phb| phb.pes).collect()),
            other => Err(unexpected(&Request::HostState, &other)),
        }
    }
}

impl DemoTarget for DaemonTarget {
    type Platform = DaemonVm;
    type Error = DaemonError;

    fn add_phb(&mut self, buid: Buid) -> Result<(), DaemonError> {
        self.done(&Request::PhbAdd { buid })
    }

    /// Claims the function's group, then maps it: what a VMM does when it
    /// opens a group and installs a device's guest address.
    fn pass_through(&mut self, host: PciAddr, guest: GuestAddr) -> Result<(), DaemonError> {
        let group = self.pe_of(host)?;
        self.done(&Request::Claim { group })?;
        self.done(&Request::MapSet { host, guest })?;
        self.vm.hosts.insert(guest, host);
        Ok(())
    }

    fn platform(&mut self) -> &mut DaemonVm {
        &mut self.vm
    }

    fn pe_of(&mut self, host: PciAddr) -> Result<PeId, DaemonError> {
        let pes = self.host_pes()?;
        let found = pes.iter().find(|pe| pe.devices.contains(&host)).map(|pe| pe.pe);
        found.ok_or_else(|| DaemonError::Unexpected { request: "host_state", answer: format!("no PE holding {host}") })
    }

    fn host_pe(&mut self, pe: PeId) -> Result<HostPe, DaemonError> {
        let pes = self.host_pes()?;
        let view = pes.iter().find(|p| p.pe == pe);
        Ok(HostPe {
            state: view.map_or(PeState::Unavailable, |p| p.state),
            passed: view.and_then(|p| p.passed).unwrap_or(false),
        })
    }

    fn inject(&mut self, pe: PeId, injection: ErrInjection) -> Result<(), DaemonError> {
        self.done(&Request::Inject { target: InjectTarget::PeError { pe, injection } })
    }

    fn pass_time(&mut self, gap: Duration) -> Result<(), DaemonError> {
        self.vm.link.take_failure()?;
        self.vm.link.advance(gap).map(drop)
    }

    /// The VM's events as eehd pushed them, once they stop coming.
    fn host_timeline(&mut self, pes: &BTreeSet<PeId>) -> Result<Vec<TimelineEntry>, DaemonError> {
        self.vm.link.take_failure()?;
        let mut client = self.vm.link.client.lock().unwrap_or_else(PoisonError::into_inner);
        let mut timeline = Vec::new();
        while let Some(event) =
            client.next_event(EVENT_QUIET).map_err(|source| DaemonError::Request { request: "subscribe", source })?
        {
            if !pes.contains(&event.pe) {
                continue;
            }
            let text = match event.kind {
                PeEventKind::Frozen { count } => format!("PE frozen (freeze {count} in the window)"),
                PeEventKind::Reset { reset } => format!("{reset:?} reset asserted"),
                PeEventKind::Recovered => "usable again".to_owned(),
                PeEventKind::PermanentlyFailed { count } => format!("host: PE failed after {count} freezes"),
                PeEventKind::PhbFrozen { domain } => format!("PE frozen by an error on PHB {domain:04x}"),
                PeEventKind::PhbDead { domain } => format!("host: PHB {domain:04x} is dead, the PE failed"),
            };
            timeline.push(TimelineEntry {
                at: Duration::from_nanos(event.at_ns),
                pe: event.pe,
                side: "host",
                event: text,
            });
        }
        Ok(timeline)
    }
}
