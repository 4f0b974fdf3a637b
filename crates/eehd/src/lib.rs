//! eehd: the host side of vfio-eeh as a service. One host (the simulated
//! PowerNV host or the real Linux host) is shared by many VMMs, each acting
//! for one VM, and by operators.
//!
//! * [`protocol`]: the wire messages (docs/protocol.md describes them);
//! * [`client`]: a blocking client library (both live in the light
//!   `eehd-protocol` crate, which the preload library links);
//! * [`core`]: the protocol core without I/O — per-VM authority (claims,
//!   address maps, the RTAS front end), isolation, persistence, events;
//! * [`server`]: the thread-per-connection I/O loop around it;
//! * [`host`], [`store`], [`policy`], [`metrics`], [`seqpacket`]: the
//!   host seam, the state file, the credentials policy, Prometheus
//!   metrics and `SOCK_SEQPACKET` sockets;
//! * [`shared`]: the memory shared with VMMs for their fast data path
//!   (docs/shared-host.md);
//! * [`bus`]: the DMA and interrupts a VMM lends the device models of its
//!   functions.

pub use eehd_protocol::{client, protocol, seqpacket};

pub mod bus;
pub mod core;
pub mod host;
pub mod metrics;
pub mod policy;
pub mod server;
pub mod shared;
pub mod store;
