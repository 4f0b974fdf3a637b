//! An emulated `/dev/vfio` backed by the vfio-eeh simulator, as an
//! `LD_PRELOAD` library: unmodified VMMs (QEMU) and C programs drive
//! simulated PCI devices through the real VFIO UAPI, and their guests
//! recover from EEH freezes injected into the simulator.
//!
//! * The preload library is this crate's `cdylib` built with the `preload`
//!   feature: `cargo build -p vfio-shim --features preload` gives
//!   `target/<profile>/libvfio_eeh_shim.so`. It interposes the libc entry
//!   points VMMs use (`open*`, `openat*` and fortified variants, `close`,
//!   `close_range`, `dup*`, `fcntl(F_DUPFD*)`, `ioctl`, `pread*`, `pwrite*`,
//!   `mmap*`) and claims `/dev/vfio/vfio` and `/dev/vfio/<group>` for the
//!   simulated host's groups; everything else passes through.
//! * [`config`]: the environment variables that configure it.
//! * [`client`]: the control protocol and its [`Client`](client::Client)
//!   (inject, state, events, op log inside a running VMM).
//! * [`prepare`]: what a VMM needs for chosen simulated devices (sysfs
//!   directories, environment) and a command runner.
//!
//! Built without `preload`, the library exports nothing into the process, so
//! tools link it for the client and the launcher.

pub mod client;
pub mod config;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod control;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod fdtable;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
pub mod global;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod iommu;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
pub mod oplog;
#[cfg(feature = "preload")]
mod preload;
pub mod prepare;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod sys;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod user;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod vfio;
