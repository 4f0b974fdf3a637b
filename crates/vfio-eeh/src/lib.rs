//! PowerPC EEH (Enhanced Error Handling) for PCI devices passed through to
//! virtual machines with VFIO.
//!
//! This crate is the pure core of vfio-eeh: it never touches files, sockets
//! or clocks. It holds
//!
//! * [`addr`]: host PCI addresses, guest addresses (virtual PHB BUID plus
//!   bus/slot/function) and the PAPR configuration-address cell;
//! * [`uapi`]: the VFIO structures and ioctl numbers the project uses, with
//!   per-architecture ioctl encoding (x86_64/arm64 and powerpc64);
//! * [`mapping`]: the per-VM table from guest addresses to host devices and
//!   their PEs;
//! * [`ops`]: EEH operations and PE states as VFIO and PAPR name them;
//! * [`backend`]: the one trait between the front ends and a host;
//! * [`topology`]: a host's PHBs, IOMMU groups (PEs) and devices;
//! * [`vm`]: every VM's virtual PHBs, PEs, mappings and RTAS firmware, with
//!   the rules a VMM's requests go through (shared by eehd and the preload
//!   library).
//!
//! ```
//! use vfio_eeh::addr::{GuestAddr, PciAddr};
//!
//! let host: PciAddr = "0000:01:00.0".parse()?;
//! let guest: GuestAddr = "0x800000020000000:00:01.0".parse()?;
//! assert_eq!(host.to_string(), "0000:01:00.0");
//! assert_eq!(guest.config_addr().raw(), 0x0000_0800);
//! # Ok::<(), vfio_eeh::addr::AddrError>(())
//! ```

#![warn(clippy::unwrap_used, clippy::indexing_slicing)]

pub mod addr;
pub mod backend;
pub mod container;
pub mod mapping;
pub mod ops;
pub mod pe;
pub mod rtas;
pub mod topology;
pub mod uapi;
pub mod vm;

/// An error's message followed by its causes, `: `-separated, for logs and
/// for errors that cross a boundary as text.
///
/// ```
/// #[derive(Debug, thiserror::Error)]
/// #[error("Cannot read the topology")]
/// struct Outer(#[source] std::io::Error);
///
/// let error = Outer(std::io::Error::other("permission denied"));
/// assert_eq!(vfio_eeh::error_chain(&error), "Cannot read the topology: permission denied");
/// ```
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
