//! A blocking client: connect, hello, then one request at a time. Events
//! that arrive while an answer is awaited are kept for [`Client::next_event`].
//!
//! ```no_run
//! use eehd_protocol::client::Client;
//! use eehd_protocol::protocol::Request;
//! use vfio_eeh::addr::PeId;
//!
//! let mut vm = Client::connect("/run/eehd/eehd.sock".as_ref(), Some("guest-a"))?;
//! vm.request(&Request::Claim { group: PeId(1) })?;
//! # Ok::<(), eehd_protocol::client::ClientError>(())
//! ```

use std::collections::VecDeque;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::time::Duration;

use crate::protocol::{Answer, PeEvent, Request, ServerFrame, WireError, MAX_FRAME, PROTOCOL_VERSION};
use crate::seqpacket::{self, Received};

/// Why a request did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket failed.
    #[error("Cannot talk to eehd")]
    Io(#[from] std::io::Error),
    /// The request could not be sent (the connection is gone, or eehd with
    /// it): eehd never saw it, and it may be sent again on a new connection.
    #[error("Cannot send to eehd")]
    NotSent(#[source] std::io::Error),
    /// The daemon closed the connection.
    #[error("eehd closed the connection")]
    Closed,
    /// The daemon sent something that is not a frame.
    #[error("eehd sent an unreadable frame")]
    Garbled(#[source] serde_json::Error),
    /// The daemon refused the request.
    #[error("eehd refused: {0}")]
    Refused(WireError),
}

/// A session with eehd.
#[derive(Debug)]
pub struct Client {
    fd: OwnedFd,
    buf: Vec<u8>,
    events: VecDeque<PeEvent>,
    hello: Answer,
    /// The descriptors the last frame carried.
    fds: Vec<OwnedFd>,
    /// How long a request waits for its answer.
    timeout: Option<Duration>,
}

impl Client {
    /// Connects and says hello for `vm` (`None`: an operator session).
    pub fn connect(path: &Path, vm: Option<&str>) -> Result<Self, ClientError> {
        let fd = seqpacket::connect(path)?;
        let mut client = Client {
            fd,
            buf: vec![0; MAX_FRAME],
            events: VecDeque::new(),
            hello: Answer::Done,
            fds: Vec::new(),
            timeout: None,
        };
        client.hello = client.request(&Request::Hello { version: PROTOCOL_VERSION, vm: vm.map(str::to_owned) })?;
        Ok(client)
    }

    /// The answer to hello (host kind, operator, the VM's claims).
    pub fn hello(&self) -> &Answer {
        &self.hello
    }

    /// Sends a request and waits for its answer.
    pub fn request(&mut self, request: &Request) -> Result<Answer, ClientError> {
        let bytes = serde_json::to_vec(request).expect("requests serialize");
        // A datagram is sent whole or not at all.
        seqpacket::send(&self.fd, &bytes).map_err(ClientError::NotSent)?;
        self.answer()
    }

    /// Sends a request and waits for its answer and the descriptors that
    /// came with it ([`Request::Attach`]).
    pub fn request_with_fds(&mut self, request: &Request) -> Result<(Answer, Vec<OwnedFd>), ClientError> {
        let answer = self.request(request)?;
        Ok((answer, std::mem::take(&mut self.fds)))
    }

    /// Bounds how long a request waits for its answer (`None`: forever); a
    /// request that times out fails with an I/O error of kind `WouldBlock`,
    /// and the session is then out of step: drop it.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) -> Result<(), ClientError> {
        seqpacket::set_timeouts(&self.fd, timeout, timeout)?;
        self.timeout = timeout;
        Ok(())
    }

    /// Sends bytes as one frame (for tests of malformed input).
    pub fn send_raw(&mut self, frame: &[u8]) -> Result<(), ClientError> {
        Ok(seqpacket::send(&self.fd, frame)?)
    }

    /// Waits for the next answer, keeping events that come first.
    pub fn answer(&mut self) -> Result<Answer, ClientError> {
        loop {
            match self.frame()? {
                ServerFrame::Ok(answer) => return Ok(answer),
                ServerFrame::Error(error) => return Err(ClientError::Refused(error)),
                ServerFrame::Event(event) => self.events.push_back(event),
            }
        }
    }

    /// The next event, waiting at most `timeout`; `None` if none came.
    /// An answer arriving meanwhile is an error (no request is pending).
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<PeEvent>, ClientError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(Some(event));
        }
        seqpacket::set_timeouts(&self.fd, Some(timeout.max(Duration::from_millis(1))), None)?;
        let frame = self.frame();
        seqpacket::set_timeouts(&self.fd, self.timeout, self.timeout)?;
        match frame {
            Ok(ServerFrame::Event(event)) => Ok(Some(event)),
            Ok(ServerFrame::Ok(_)) => Err(ClientError::Closed),
            Ok(ServerFrame::Error(error)) => Err(ClientError::Refused(error)),
            Err(ClientError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn frame(&mut self) -> Result<ServerFrame, ClientError> {
        let (received, fds) = seqpacket::recv_with_fds(&self.fd, &mut self.buf)?;
        self.fds = fds;
        match received {
            Received::Frame(n) => serde_json::from_slice(&self.buf[..n]).map_err(ClientError::Garbled),
            Received::TooLarge(_) | Received::Closed => Err(ClientError::Closed),
        }
    }
}
