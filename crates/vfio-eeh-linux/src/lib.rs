//! The Linux host backend of vfio-eeh.
//!
//! * [`sysfs`]: the PCI topology from sysfs (devices, drivers, IOMMU groups,
//!   PEs, PHBs), with every root a parameter;
//! * [`vfio`]: safe wrappers over the VFIO container, group and device;
//! * [`host`]: [`VfioHost`], the [`EehBackend`](vfio_eeh::backend::EehBackend)
//!   over `VFIO_EEH_PE_OP`;
//! * [`debugfs`]: PowerNV's `err_injct` and `eeh_max_freezes`;
//! * [`kmsg`]: EEH events from the kernel log;
//! * [`fd`]: the trait seam under the wrappers, and [`sys`], the typed ioctl
//!   table and its implementation on the real kernel: the only `unsafe` code
//!   (every other module is compiled with `unsafe_code` denied).
//!
//! ```
//! use vfio_eeh_linux::sysfs::Sysfs;
//!
//! let topology = Sysfs::new("/nonexistent").topology();
//! assert!(topology.unwrap_err().to_string().starts_with("Cannot list /nonexistent/bus/pci/devices"));
//! ```

#![deny(unsafe_code)]

pub mod debugfs;
pub mod fd;
pub mod host;
pub mod kmsg;
#[allow(unsafe_code)]
pub mod sys;
pub mod sysfs;
pub mod vfio;

pub use host::VfioHost;
