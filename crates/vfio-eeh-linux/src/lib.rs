//! The Linux host backend of vfio-eeh.
//!
//! * [`sysfs`]: the PCI topology from sysfs (devices, drivers, IOMMU groups,
//!   PEs, PHBs), with every root a parameter;
//! * [`vfio`]: safe wrappers over the VFIO container, group and device;
//! * [`host`]: [`VfioHost`], the [`EehBackend`](vfio_eeh::backend::EehBackend)
//!   over `VFIO_EEH_PE_OP`;
//! * [`fd`]: the trait seam under the wrappers, and [`sys`], its
//!   implementation on the real kernel (the only `unsafe` code).
//!
//! ```
//! use vfio_eeh_linux::sysfs::Sysfs;
//!
//! let topology = Sysfs::new("/nonexistent").topology();
//! assert!(topology.unwrap_err().to_string().starts_with("Cannot list /nonexistent/bus/pci/devices"));
//! ```

pub mod fd;
pub mod host;
pub mod sys;
pub mod sysfs;
pub mod vfio;

use std::error::Error;

pub use host::VfioHost;

/// An error's message followed by its causes, `: `-separated.
fn report(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
