//! The control socket's server: a background thread of the preloaded
//! process answering [`Request`]s on the emulator's simulated host.
//!
//! What it trusts, and why, is in `docs/control-socket.md`: the socket is
//! created 0600 (whatever the umask) and only replaces a stale socket of
//! this user; a connection is served only if its peer is this user or root
//! (`SO_PEERCRED`). It never takes what the program needs: at most
//! [`MAX_CLIENTS`] connections, each on its own small thread, idle ones
//! dropped after [`IDLE_TIMEOUT`], none admitted when fewer than
//! [`RESERVED_PRIVATE_FDS`] descriptor numbers would remain under the
//! process's limit. Its descriptors are private ([`crate::sys::is_private`]): the
//! program's `close` leaves them open, and a listener the program replaced
//! anyway (`dup2` onto it) is bound again, with back-off, never a busy loop.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::Mode;
use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use vfio_eeh::addr::PeId;
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::pe::FreezeScope;
use vfio_eeh_sim::SimHost;

use crate::protocol::{Injection, PeReport, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION};
use crate::sys::PrivateFd;
use crate::vfio::Emulator;

/// Connections served at once; more are closed as soon as accepted.
pub(crate) const MAX_CLIENTS: usize = 16;
/// A connection that sends nothing for this long is closed.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Private descriptor numbers (IRQ eventfds) kept free for the emulation:
/// a connection is refused when fewer would remain.
pub(crate) const RESERVED_PRIVATE_FDS: u64 = 32;
/// Stack of a connection's thread.
const CLIENT_STACK: usize = 256 << 10;
/// Longest pause between two attempts after an error.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Why the control socket cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Another process answers on the path.
    #[error("{0} is in use by a running process")]
    InUse(PathBuf),
    /// Something that is not a socket is at the path.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// A stale socket of another user is at the path.
    #[error("{path} belongs to uid {uid}; refusing to replace it")]
    NotOurs {
        /// The path.
        path: PathBuf,
        /// Its owner.
        uid: u32,
    },
    /// A system call failed.
    #[error("Cannot serve the control socket {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ControlError + '_ {
    move |source| ControlError::Io { path: path.to_owned(), source }
}

/// Removes a stale socket of this user at `path` (one nobody answers);
/// refuses anything else that is there.
fn clear_stale(path: &Path) -> Result<(), ControlError> {
    let meta = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        other => other.map_err(io_error(path))?,
    };
    if !meta.file_type().is_socket() {
        return Err(ControlError::NotASocket(path.to_owned()));
    }
    if meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(ControlError::NotOurs { path: path.to_owned(), uid: meta.uid() });
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(ControlError::InUse(path.to_owned())),
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => std::fs::remove_file(path).map_err(io_error(path)),
        Err(e) => Err(io_error(path)(e)),
    }
}

/// A listening socket at `path`, mode 0600 whatever the umask: it is made
/// 0600 between `bind` and `listen`, when nobody can connect yet.
fn bind(path: &Path) -> Result<PrivateFd, ControlError> {
    clear_stale(path)?;
    let flags = SocketFlags::CLOEXEC;
    let socket = rustix::net::socket_with(AddressFamily::UNIX, SocketType::STREAM, flags, None)
        .map_err(|e| io_error(path)(e.into()))?;
    // Keep the program's own descriptor numbers as they would be.
    let socket = PrivateFd::adopt(socket).map_err(io_error(path))?;
    let listen = || -> rustix::io::Result<()> {
        rustix::net::bind(&socket, &SocketAddrUnix::new(path)?)?;
        rustix::fs::chmod(path, Mode::RUSR | Mode::WUSR)?;
        rustix::net::listen(&socket, 64)
    };
    listen().map_err(|e| io_error(path)(e.into()))?;
    Ok(socket)
}

/// The identity of a listener's open file, to notice that the program put
/// another file at its number.
fn identity(fd: &PrivateFd) -> Option<(u64, u64)> {
    rustix::fs::fstat(fd).ok().map(|st| (st.st_dev, st.st_ino))
}

/// Binds `path` (replacing only a stale socket of this user) and serves it
/// from a thread.
pub(crate) fn serve(path: &Path, emu: Arc<Emulator>) -> Result<(), ControlError> {
    let listener = bind(path)?;
    let path = path.to_owned();
    std::thread::Builder::new()
        .name("vfio-shim-control".into())
        .spawn(move || Server { path, emu, clients: Arc::default() }.run(listener))
        .map_err(|e| ControlError::Io { path: PathBuf::new(), source: e })?;
    Ok(())
}

struct Server {
    path: PathBuf,
    emu: Arc<Emulator>,
    clients: Arc<AtomicUsize>,
}

impl Server {
    /// Accepts forever; errors pause the loop (doubling up to
    /// [`MAX_BACKOFF`]) and a listener the program replaced is bound again.
    fn run(&self, mut listener: PrivateFd) {
        let mut backoff = Duration::from_millis(10);
        let mut id = identity(&listener);
        loop {
            let accepted = rustix::net::accept_with(&listener, SocketFlags::CLOEXEC);
            let replaced = identity(&listener) != id;
            match accepted {
                Ok(conn) => {
                    backoff = Duration::from_millis(10);
                    self.admit(conn);
                }
                Err(Errno::INTR | Errno::CONNABORTED) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "Control socket accept failed; pausing");
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            if replaced {
                tracing::warn!(path = %self.path.display(), "The program replaced the control socket; binding it again");
                listener.abandon();
                listener = loop {
                    match bind(&self.path) {
                        Ok(listener) => break listener,
                        Err(e) => {
                            tracing::warn!(error = %vfio_eeh::error_chain(&e), "Cannot bind the control socket again");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                };
                id = identity(&listener);
            }
        }
    }

    /// Serves `conn` on a thread of its own if its peer may act on the VMM
    /// and the limits allow; else closes it.
    fn admit(&self, conn: std::os::fd::OwnedFd) {
        let Ok(conn) = PrivateFd::adopt(conn) else { return };
        let me = rustix::process::geteuid().as_raw();
        match rustix::net::sockopt::socket_peercred(&conn) {
            Ok(cred) if cred.uid.as_raw() == me || cred.uid.is_root() => {}
            Ok(cred) => {
                tracing::warn!(
                    uid = cred.uid.as_raw(),
                    pid = cred.pid.as_raw_nonzero().get(),
                    "Control client refused: another user"
                );
                return;
            }
            Err(_) => return,
        }
        let slot =
            self.clients.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < MAX_CLIENTS).then_some(n + 1));
        if slot.is_err() || !room_for(&conn) {
            if slot.is_ok() {
                self.clients.fetch_sub(1, Ordering::AcqRel);
            }
            tracing::debug!("Control client refused: too many clients or too few descriptors left");
            return;
        }
        let emu = Arc::clone(&self.emu);
        let clients = Arc::clone(&self.clients);
        let spawned =
            std::thread::Builder::new().name("vfio-shim-client".into()).stack_size(CLIENT_STACK).spawn(move || {
                if let Err(e) = client(&conn, &emu) {
                    tracing::debug!(error = %e, "Control client gone");
                }
                drop(conn);
                clients.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            self.clients.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Whether, with `conn` open, at least [`RESERVED_PRIVATE_FDS`] numbers stay
/// free under the descriptor limit: private numbers are taken lowest first
/// from [`crate::sys::PRIVATE_FD_BASE`], so every number below `conn`'s is in use.
fn room_for(conn: &PrivateFd) -> bool {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    let used = u64::try_from(conn.raw()).unwrap_or(u64::MAX).saturating_add(1);
    limit.is_none_or(|limit| limit.saturating_sub(used) >= RESERVED_PRIVATE_FDS)
}

fn client(conn: &PrivateFd, emu: &Emulator) -> std::io::Result<()> {
    rustix::net::sockopt::set_socket_timeout(conn.as_fd(), rustix::net::sockopt::Timeout::Recv, Some(IDLE_TIMEOUT))?;
    rustix::net::sockopt::set_socket_timeout(conn.as_fd(), rustix::net::sockopt::Timeout::Send, Some(IDLE_TIMEOUT))?;
    let mut reader = BufReader::new(conn);
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if Read::by_ref(&mut reader).take(MAX_MESSAGE as u64).read_line(&mut line)? == 0 {
            return Ok(());
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let _gate = crate::fork::enter();
                answer(emu, &request)
            }
            Err(e) => Response::Error { message: format!("Malformed request: {e}") },
        };
        let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
        out.push(b'\n');
        writer.write_all(&out)?;
    }
}

fn report(host: &SimHost, pe: PeId) -> Result<PeReport, BackendError> {
    let status = host.status(pe)?;
    Ok(PeReport {
        pe,
        state: status.state,
        unavailable_for_ms: status.unavailable_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        devices: host.devices_of(pe)?,
    })
}

/// A PHB's status and the reports of the PEs under it.
fn phb_report(host: &SimHost, domain: u32) -> Result<Response, BackendError> {
    let phb = host.phb_status(domain)?;
    let mut pes = Vec::new();
    for pe in host.pe_ids() {
        if host.phb_of(pe)? == domain {
            pes.push(report(host, pe)?);
        }
    }
    Ok(Response::PhbInjected { phb, pes })
}

/// The answer to one request.
pub(crate) fn answer(emu: &Emulator, request: &Request) -> Response {
    // Under eehd (VFIO_EEH_SHIM_CONNECT) the host is eehd's to report on.
    let host = || {
        emu.sim_host().map(|host| &**host).ok_or_else(|| {
            BackendError::NotSupported("asking this process about eehd's host (ask eehd: eehctl ... --connect)".into())
        })
    };
    let result = match request {
        Request::Hello => Ok(Response::Hello { version: PROTOCOL_VERSION, pid: std::process::id() }),
        Request::State => host().and_then(|host| {
            host.pe_ids().map(|pe| report(host, pe)).collect::<Result<_, _>>().map(|pes| Response::State { pes })
        }),
        Request::Inject { pe, injection } => host().and_then(|host| {
            let done = match injection {
                Injection::Freeze => host.freeze(*pe, FreezeScope::All),
                Injection::Error(inj) => host.inject(*pe, *inj),
            };
            tracing::info!(%pe, ?injection, ok = done.is_ok(), "Control injection");
            done.and_then(|()| report(host, *pe)).map(|pe| Response::Injected { pe })
        }),
        Request::InjectPhb { domain, error } => host().and_then(|host| {
            let done = host.inject_phb(*domain, *error);
            tracing::info!(domain, ?error, ok = done.is_ok(), "Control PHB injection");
            done.and_then(|()| phb_report(host, *domain))
        }),
        Request::Events { after } => host().map(|host| Response::Events { events: host.events_after(*after) }),
        Request::OpLog => Ok(Response::OpLog { log: emu.log().dump() }),
        Request::Topology => host().map(|host| Response::Topology { topology: host.topology() }),
    };
    result.unwrap_or_else(|e| Response::Error { message: e.to_string() })
}
