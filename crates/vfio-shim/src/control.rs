//! The control socket's server: a background thread of the preloaded
//! process answering [`Request`]s on the emulator's simulated host.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::Arc;

use vfio_eeh::addr::PeId;
use vfio_eeh::backend::{BackendError, EehBackend};
use vfio_eeh::pe::FreezeScope;

use crate::protocol::{Injection, PeReport, Request, Response, MAX_MESSAGE, PROTOCOL_VERSION};
use crate::sys;
use crate::vfio::Emulator;

/// Binds `path` (replacing a stale socket) and serves it from a thread.
pub(crate) fn serve(path: &Path, emu: Arc<Emulator>) -> std::io::Result<()> {
    if std::fs::symlink_metadata(path).is_ok() {
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)?;
    // Keep the program's own descriptor numbers as they would be.
    let fd = sys::move_private(listener.into_raw_fd())?;
    // SAFETY: `fd` is the listening socket just moved; nothing else owns it.
    let listener = unsafe { UnixListener::from_raw_fd(fd) };
    std::thread::Builder::new().name("vfio-shim-control".into()).spawn(move || {
        for stream in listener.incoming().flatten() {
            let emu = Arc::clone(&emu);
            let _ = std::thread::Builder::new().name("vfio-shim-client".into()).spawn(move || {
                if let Err(e) = client(stream, &emu) {
                    tracing::debug!(error = %e, "Control client gone");
                }
            });
        }
    })?;
    Ok(())
}

fn client(stream: UnixStream, emu: &Emulator) -> std::io::Result<()> {
    let stream = match sys::move_private(stream.into_raw_fd()) {
        // SAFETY: the accepted socket, just moved; nothing else owns it.
        Ok(fd) => unsafe { UnixStream::from_raw_fd(fd) },
        Err(e) => return Err(e),
    };
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if Read::by_ref(&mut reader).take(MAX_MESSAGE as u64).read_line(&mut line)? == 0 {
            return Ok(());
        }
        let response = match serde_json::from_str::<Request>(&line) {
            Ok(request) => answer(emu, &request),
            Err(e) => Response::Error { message: format!("Malformed request: {e}") },
        };
        let mut out = serde_json::to_vec(&response).map_err(std::io::Error::other)?;
        out.push(b'\n');
        writer.write_all(&out)?;
    }
}

fn report(emu: &Emulator, pe: PeId) -> Result<PeReport, BackendError> {
    let host = emu.host();
    let status = host.status(pe)?;
    Ok(PeReport {
        pe,
        state: status.state,
        unavailable_for_ms: status.unavailable_for.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        devices: host.devices_of(pe)?,
    })
}

/// A PHB's status and the reports of the PEs under it.
fn phb_report(emu: &Emulator, domain: u32) -> Result<Response, BackendError> {
    let host = emu.host();
    let phb = host.phb_status(domain)?;
    let mut pes = Vec::new();
    for pe in host.pe_ids() {
        if host.phb_of(pe)? == domain {
            pes.push(report(emu, pe)?);
        }
    }
    Ok(Response::PhbInjected { phb, pes })
}

/// The answer to one request.
pub(crate) fn answer(emu: &Emulator, request: &Request) -> Response {
    let host = emu.host();
    let result = match request {
        Request::Hello => Ok(Response::Hello { version: PROTOCOL_VERSION, pid: std::process::id() }),
        Request::State => {
            host.pe_ids().map(|pe| report(emu, pe)).collect::<Result<_, _>>().map(|pes| Response::State { pes })
        }
        Request::Inject { pe, injection } => {
            let done = match injection {
                Injection::Freeze => host.freeze(*pe, FreezeScope::All),
                Injection::Error(inj) => host.inject(*pe, *inj),
            };
            tracing::info!(%pe, ?injection, ok = done.is_ok(), "Control injection");
            done.and_then(|()| report(emu, *pe)).map(|pe| Response::Injected { pe })
        }
        Request::InjectPhb { domain, error } => {
            let done = host.inject_phb(*domain, *error);
            tracing::info!(domain, ?error, ok = done.is_ok(), "Control PHB injection");
            done.and_then(|()| phb_report(emu, *domain))
        }
        Request::Events { after } => Ok(Response::Events { events: host.events_after(*after) }),
        Request::OpLog => Ok(Response::OpLog { log: emu.log().dump() }),
        Request::Topology => Ok(Response::Topology { topology: host.topology() }),
    };
    result.unwrap_or_else(|e| Response::Error { message: e.to_string() })
}
