//! The I/O loop around [`Core`]: one accept loop, a thread per connection
//! (bounded in number, with hello and idle timeouts), an event thread that
//! pushes host events to subscribed sessions, and an orderly stop.
//!
//! A connection's troubles stay its own: a malformed or oversized frame
//! gets an error answer, a client that stops reading its events is cut
//! off, one that vanishes ends its thread; nothing blocks the others.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use eehd_protocol::process::Process;
use rustix::event::{poll, PollFd, PollFlags, Timespec};
use vfio_eeh::mapping::VmId;

use crate::core::{Core, Delivery, Session};
use crate::host::DaemonHost;
use crate::protocol::{wire_errno, ErrorKind, ServerFrame, WireError, MAX_FRAME};
use crate::seqpacket::{self, Received};

/// The I/O loop's limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections at once; more are answered `busy` and closed.
    pub max_clients: usize,
    /// A connection that has not said hello by then is closed.
    pub hello_timeout: Duration,
    /// A connection silent this long is closed (subscribed ones are kept).
    pub idle_timeout: Duration,
    /// An answer that cannot be sent this long closes the connection.
    pub send_timeout: Duration,
    /// How often the host's events are followed.
    pub event_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: 4096,
            hello_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(600),
            send_timeout: Duration::from_secs(5),
            event_interval: Duration::from_millis(50),
        }
    }
}

/// How often a connection's thread wakes to look at the stop flag.
const TICK: Duration = Duration::from_millis(200);
/// Stack of a connection's thread.
const CLIENT_STACK: usize = 256 * 1024;

struct Subscriber {
    id: u64,
    vm: VmId,
    fd: Arc<OwnedFd>,
}

/// The server: a core, a listening socket and its connections.
pub struct Server<H> {
    core: Arc<Core<H>>,
    limits: Limits,
    stop: Arc<AtomicBool>,
    active: Arc<AtomicUsize>,
    next_id: AtomicU64,
    subscribers: Mutex<Vec<Subscriber>>,
}

impl<H: DaemonHost + 'static> Server<H> {
    /// A server over `core`; it stops when `stop` is set.
    pub fn new(core: Arc<Core<H>>, limits: Limits, stop: Arc<AtomicBool>) -> Arc<Self> {
        Arc::new(Server {
            core,
            limits,
            stop,
            active: Arc::new(AtomicUsize::new(0)),
            next_id: AtomicU64::new(1),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    /// Accepts connections until the stop flag is set, then refuses new
    /// requests, lets requests in progress finish and returns once every
    /// connection is closed (or after `drain`). `tick` runs about every
    /// event interval (the watchdog), `stopping` once when the stop begins.
    pub fn run(
        self: &Arc<Self>,
        listener: &OwnedFd,
        drain: Duration,
        mut tick: impl FnMut(),
        stopping: impl FnOnce(),
    ) -> std::io::Result<()> {
        let events = {
            let server = Arc::clone(self);
            std::thread::Builder::new().name("events".into()).spawn(move || server.follow_events())?
        };
        let interval = Timespec::try_from(self.limits.event_interval).expect("a small interval");
        while !self.stop.load(Ordering::Acquire) {
            tick();
            let mut fds = [PollFd::new(listener, PollFlags::IN)];
            match poll(&mut fds, Some(&interval)) {
                Ok(0) => continue,
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(error) => return Err(error.into()),
            }
            match seqpacket::accept(listener) {
                Ok(fd) => self.admit(fd),
                Err(error) => tracing::warn!("accept failed: {error}"),
            }
        }
        stopping();
        let deadline = Instant::now() + drain;
        while self.active.load(Ordering::Acquire) > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // The event thread looks at the flag every interval.
        let _ = events.join();
        Ok(())
    }

    fn admit(self: &Arc<Self>, fd: OwnedFd) {
        if self.active.load(Ordering::Acquire) >= self.limits.max_clients {
            let busy = WireError::new(ErrorKind::Busy, wire_errno::EAGAIN, "Too many connections; try again later");
            let _ = seqpacket::try_send(&fd, &frame_bytes(&ServerFrame::Error(busy)));
            return;
        }
        let peer = match crate::policy::Peer::of(&fd) {
            Ok(peer) => peer,
            Err(error) => return tracing::warn!("no peer credentials: {error}"),
        };
        self.active.fetch_add(1, Ordering::AcqRel);
        let server = Arc::clone(self);
        let spawned = std::thread::Builder::new().name(format!("client-{}", peer.pid)).stack_size(CLIENT_STACK).spawn(
            move || {
                let id = server.next_id.fetch_add(1, Ordering::Relaxed);
                let fd = Arc::new(fd);
                let session = match Process::peer_of(&*fd) {
                    Ok(process) => Session::new(peer).with_process(process),
                    Err(error) => {
                        tracing::info!(pid = peer.pid, "no pidfd of the peer; its device models get no DMA: {error}");
                        Session::new(peer)
                    }
                };
                let session = server.serve(id, &fd, session);
                server.core.end_session(&session);
                server.subscribers.lock().unwrap_or_else(PoisonError::into_inner).retain(|s| s.id != id);
                if session.vm().is_some() {
                    server.core.metrics().vm_sessions(-1);
                }
                server.active.fetch_sub(1, Ordering::AcqRel);
            },
        );
        if let Err(error) = spawned {
            self.active.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!("cannot start a connection thread: {error}");
        }
    }

    /// One connection: frames in, answers out, until it closes.
    fn serve(&self, id: u64, fd: &Arc<OwnedFd>, mut session: Session) -> Session {
        if let Err(error) = seqpacket::set_timeouts(&**fd, Some(TICK), Some(self.limits.send_timeout)) {
            tracing::warn!("cannot set socket timeouts: {error}");
            return session;
        }
        let mut buf = vec![0u8; MAX_FRAME];
        let mut last_heard = Instant::now();
        loop {
            let received = match seqpacket::recv(&**fd, &mut buf) {
                Ok(received) => received,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::Interrupted => {
                    let quiet = last_heard.elapsed();
                    let limit = if session.opened() { self.limits.idle_timeout } else { self.limits.hello_timeout };
                    let expired = self.stop.load(Ordering::Acquire) || (!session.subscribed() && quiet > limit);
                    if expired {
                        break;
                    }
                    continue;
                }
                Err(_) => break,
            };
            last_heard = Instant::now();
            let started = Instant::now();
            let (frame, close, op) = match received {
                Received::Closed => break,
                Received::TooLarge(n) => {
                    let message = format!("Frame of {n} bytes is above the {MAX_FRAME}-byte limit");
                    (
                        ServerFrame::Error(WireError::new(ErrorKind::FrameTooLarge, wire_errno::EMSGSIZE, message)),
                        false,
                        "oversized",
                    )
                }
                Received::Frame(_) if self.stop.load(Ordering::Acquire) => {
                    let refusal = WireError::new(ErrorKind::ShuttingDown, wire_errno::ESHUTDOWN, "eehd is stopping");
                    (ServerFrame::Error(refusal), true, "refused")
                }
                Received::Frame(n) => {
                    let had_vm = session.vm().is_some();
                    let was_subscribed = session.subscribed();
                    let outcome = self.core.handle_frame(&mut session, &buf[..n]);
                    if !had_vm && session.vm().is_some() {
                        self.core.metrics().vm_sessions(1);
                    }
                    if let (false, true, Some(vm)) = (was_subscribed, session.subscribed(), session.vm()) {
                        let subscriber = Subscriber { id, vm, fd: Arc::clone(fd) };
                        self.subscribers.lock().unwrap_or_else(PoisonError::into_inner).push(subscriber);
                    }
                    let fds: Vec<_> = outcome.fds.iter().map(|f| std::os::fd::AsFd::as_fd(&**f)).collect();
                    let sent = seqpacket::send_with_fds(&**fd, &frame_bytes(&outcome.frame), &fds);
                    self.deliver(&outcome.deliveries);
                    self.core.metrics().request(outcome.op, started.elapsed());
                    if sent.is_err() || outcome.close {
                        break;
                    }
                    continue;
                }
            };
            let sent = seqpacket::send(&**fd, &frame_bytes(&frame));
            self.core.metrics().request(op, started.elapsed());
            if sent.is_err() || close {
                break;
            }
        }
        session
    }

    /// Pushes events to the subscribed sessions of their VMs. A session
    /// that has no room for one is cut off: it is not reading.
    fn deliver(&self, deliveries: &[Delivery]) {
        if deliveries.is_empty() {
            return;
        }
        let subscribers = self.subscribers.lock().unwrap_or_else(PoisonError::into_inner);
        for delivery in deliveries {
            let bytes = frame_bytes(&ServerFrame::Event(delivery.event));
            for subscriber in subscribers.iter().filter(|s| s.vm == delivery.vm) {
                if seqpacket::try_send(&*subscriber.fd, &bytes).is_err() {
                    tracing::info!("subscriber of {} is not reading its events; closing it", delivery.vm);
                    seqpacket::shutdown(&*subscriber.fd);
                }
            }
        }
    }

    fn follow_events(&self) {
        while !self.stop.load(Ordering::Acquire) {
            std::thread::sleep(self.limits.event_interval);
            self.deliver(&self.core.poll_events());
        }
    }
}

/// A frame's bytes.
pub fn frame_bytes(frame: &ServerFrame) -> Vec<u8> {
    serde_json::to_vec(frame).expect("frames serialize")
}
