//! The client of a preloaded process's control socket, for
//! `eehctl inject/state/events/oplog`: it sends the library's
//! [`protocol`](vfio_eeh_shim::protocol) messages and reads their answers.
//!
//! ```no_run
//! use vfio_eeh::addr::PeId;
//! use vfio_eeh_shim::protocol::Injection;
//! use vfio_shim_launch::client::Client;
//!
//! let mut client = Client::connect("/tmp/vmm.sock")?;
//! client.inject(PeId(0), Injection::Freeze)?;
//! for pe in client.state()? {
//!     println!("PE {}: {}", pe.pe, pe.state);
//! }
//! # Ok::<(), vfio_shim_launch::client::ClientError>(())
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use vfio_eeh::addr::PeId;
use vfio_eeh_shim::oplog::OpLogDump;
use vfio_eeh_shim::protocol::{Injection, PeReport, Request, Response, MAX_MESSAGE};
use vfio_eeh_sim::event::SimEvent;
use vfio_eeh_sim::phb::{PhbError, PhbStatus};

/// Why a control request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("Cannot connect to the control socket {path}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Sending or receiving failed.
    #[error("Control socket I/O failed")]
    Io(#[from] std::io::Error),
    /// The answer was not protocol JSON.
    #[error("Malformed control answer")]
    Json(#[from] serde_json::Error),
    /// The process refused the request.
    #[error("The VMM process refused the request: {0}")]
    Refused(String),
    /// The answer does not fit the request.
    #[error("Unexpected control answer: {0}")]
    Unexpected(String),
}

/// A connection to a preloaded process's control socket.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Client {
    /// Connects to the socket at `path`.
    pub fn connect(path: impl AsRef<Path>) -> Result<Client, ClientError> {
        let path = path.as_ref();
        let stream =
            UnixStream::connect(path).map_err(|source| ClientError::Connect { path: path.to_owned(), source })?;
        Ok(Client { reader: BufReader::new(stream.try_clone()?), writer: stream })
    }

    /// Sends one request and reads its answer; [`Response::Error`] becomes
    /// [`ClientError::Refused`].
    pub fn request(&mut self, request: &Request) -> Result<Response, ClientError> {
        let mut line = serde_json::to_vec(request)?;
        line.push(b'\n');
        self.writer.write_all(&line)?;
        let mut answer = String::new();
        let n = Read::by_ref(&mut self.reader).take(MAX_MESSAGE as u64).read_line(&mut answer)?;
        if n == 0 {
            return Err(ClientError::Unexpected("The connection closed".into()));
        }
        match serde_json::from_str(&answer)? {
            Response::Error { message } => Err(ClientError::Refused(message)),
            response => Ok(response),
        }
    }

    /// Every PE's state.
    pub fn state(&mut self) -> Result<Vec<PeReport>, ClientError> {
        match self.request(&Request::State)? {
            Response::State { pes } => Ok(pes),
            other => Err(unexpected(&other)),
        }
    }

    /// Injects into a PE; answers its state afterwards.
    pub fn inject(&mut self, pe: PeId, injection: Injection) -> Result<PeReport, ClientError> {
        match self.request(&Request::Inject { pe, injection })? {
            Response::Injected { pe } => Ok(pe),
            other => Err(unexpected(&other)),
        }
    }

    /// Injects a PHB-wide error; answers the PHB and its PEs afterwards.
    pub fn inject_phb(&mut self, domain: u32, error: PhbError) -> Result<(PhbStatus, Vec<PeReport>), ClientError> {
        match self.request(&Request::InjectPhb { domain, error })? {
            Response::PhbInjected { phb, pes } => Ok((phb, pes)),
            other => Err(unexpected(&other)),
        }
    }

    /// Simulator events after sequence number `after`.
    pub fn events(&mut self, after: u64) -> Result<Vec<SimEvent>, ClientError> {
        match self.request(&Request::Events { after })? {
            Response::Events { events } => Ok(events),
            other => Err(unexpected(&other)),
        }
    }

    /// The op log.
    pub fn op_log(&mut self) -> Result<OpLogDump, ClientError> {
        match self.request(&Request::OpLog)? {
            Response::OpLog { log } => Ok(log),
            other => Err(unexpected(&other)),
        }
    }
}

fn unexpected(response: &Response) -> ClientError {
    ClientError::Unexpected(serde_json::to_string(response).unwrap_or_default())
}
