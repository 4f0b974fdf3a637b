//! The control protocol of a preloaded process: one JSON object per line
//! over a Unix stream socket ([`ENV_SOCKET`](crate::config::ENV_SOCKET)), a
//! [`Request`] answered by one [`Response`]. Every request acts on the
//! simulated host inside the running VMM process.
//!
//! The library's control server answers these messages; the client that
//! sends them (`eehctl inject/state/events/oplog`) is in the
//! `vfio-shim-launch` crate, so the preload library carries no client code.

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::ops::{ErrInjection, PeState};
use vfio_eeh::topology::Topology;
use vfio_eeh_sim::event::SimEvent;
use vfio_eeh_sim::phb::{PhbError, PhbStatus};

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
    /// Inject a PHB-wide error: every PE under the PHB is affected
    /// ([`vfio_eeh_sim::phb`]).
    InjectPhb {
        /// The PHB (its PCI domain).
        domain: u32,
        /// A fence (the host recovers it) or death.
        error: PhbError,
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
    /// To [`Request::InjectPhb`]: the PHB and its PEs afterwards.
    PhbInjected {
        /// The PHB.
        phb: PhbStatus,
        /// Every PE under it.
        pes: Vec<PeReport>,
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
