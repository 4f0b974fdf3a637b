//! The control protocol of a preloaded process and its client, for
//! `eehctl shim/inject/state/events`.
//!
//! One JSON object per line over a Unix stream socket
//! ([`ENV_SOCKET`](crate::config::ENV_SOCKET)): a [`Request`], answered by one
//! [`Response`]. Every request acts on the simulated host inside the running
//! VMM process.
//!
//! ```no_run
//! use vfio_eeh::addr::PeId;
//! use vfio_eeh_shim::client::{Client, Injection};
//!
//! let mut client = Client::connect("/tmp/vmm.sock")?;
//! client.inject(PeId(0), Injection::Freeze)?;
//! for pe in client.state()? {
//!     println!("PE {}: {}", pe.pe, pe.state);
//! }
//! # Ok::<(), vfio_eeh_shim::client::ClientError>(())
//! ```

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::ops::{ErrInjection, PeState};
use vfio_eeh::topology::Topology;
use vfio_eeh_sim::event::SimEvent;

use crate::oplog::OpLogDump;

/// The protocol version, answered by [`Request::Hello`].
pub const PROTOCOL_VERSION: u32 = 1;
/// Longest accepted line, either way.
pub const MAX_MESSAGE: usize = 16 << 20;

/// What an injection does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "how")]
pub enum Injection {
    /// Freeze the PE now (MMIO and DMA stopped), as a detected error would.
    Freeze,
    /// `VFIO_EEH_PE_INJECT_ERR` semantics: the simulator's injection, with
    /// the configured injection mode (immediate or on access).
    Error(ErrInjection),
}

/// A request to the preloaded process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "request")]
pub enum Request {
    /// The protocol version and the process.
    Hello,
    /// The state of every PE.
    State,
    /// Inject an error into a PE.
    Inject {
        /// The PE (IOMMU group).
        pe: PeId,
        /// What to do.
        injection: Injection,
    },
    /// Simulator events with a sequence number above `after`.
    Events {
        /// The last sequence number already seen (0 for all).
        after: u64,
    },
    /// The VFIO/EEH op log.
    OpLog,
    /// The simulated topology.
    Topology,
}

/// One PE's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeReport {
    /// The PE (IOMMU group).
    pub pe: PeId,
    /// Its state.
    pub state: PeState,
    /// While unavailable: milliseconds until usable, if known.
    pub unavailable_for_ms: Option<u64>,
    /// Its devices.
    pub devices: Vec<PciAddr>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "response")]
pub enum Response {
    /// To [`Request::Hello`].
    Hello {
        /// [`PROTOCOL_VERSION`].
        version: u32,
        /// The VMM's process id.
        pid: u32,
    },
    /// To [`Request::State`].
    State {
        /// Every PE.
        pes: Vec<PeReport>,
    },
    /// To [`Request::Inject`]: the PE's state afterwards.
    Injected {
        /// The PE's report.
        pe: PeReport,
    },
    /// To [`Request::Events`].
    Events {
        /// The events, oldest first.
        events: Vec<SimEvent>,
    },
    /// To [`Request::OpLog`].
    OpLog {
        /// The log.
        log: OpLogDump,
    },
    /// To [`Request::Topology`].
    Topology {
        /// The topology.
        topology: Topology,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

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
