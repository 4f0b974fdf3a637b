//! An emulated `/dev/vfio` backed by the vfio-eeh simulator, as an
//! `LD_PRELOAD` library: unmodified VMMs (QEMU) and C programs drive
//! simulated PCI devices through the real VFIO UAPI, and their guests
//! recover from EEH freezes injected into the simulator.
//!
//! * The preload library is this crate's `cdylib` built with the `preload`
//!   feature: `cargo build -p vfio-shim --features preload` gives
//!   `target/<profile>/libvfio_eeh_shim.so` ([`LIBRARY_NAME`]). It interposes
//!   the libc entry points VMMs use (`open*`, `openat*` and fortified
//!   variants, `close`, `close_range`, `dup*`, `fcntl(F_DUPFD*)`, `ioctl`,
//!   `pread*`, `pwrite*`, `mmap*`) and claims `/dev/vfio/vfio` and
//!   `/dev/vfio/<group>` for the simulated host's groups; everything else
//!   passes through.
//! * Devices with a model behind their BARs (the simulated NVMe controller,
//!   `docs/nvme.md`) do DMA through the container's IOMMU mappings into the
//!   VMM's memory and raise interrupts through its `SET_IRQS` eventfds.
//! * [`config`]: the environment variables that configure it.
//! * [`global`]: the process-wide emulator and the simulated host a
//!   configuration describes.
//! * [`protocol`]: the messages of its control socket; [`oplog`]: the op
//!   log it keeps and dumps.
//! * The VM: the address-mapping ioctl and the exported RTAS entry point
//!   (`vfio_eeh_rtas`, `vfio_eeh_rtas_token`; declared in
//!   `include/vfio_eeh.h`, see `docs/rtas.md`) act on the process's VM: its
//!   virtual PHBs ([`config::ENV_PHBS`]), the groups it opened, and the
//!   guest address of each device.
//!
//! The library is loaded into every VMM process, so it carries only what
//! serves `/dev/vfio` and the control socket. What only tools need (the
//! launcher that prepares a VMM's sysfs tree and environment, the check that
//! a file is the preload build, the control-socket client) is in the
//! `vfio-shim-launch` crate, which links this one without `preload`: built
//! that way, the library exports nothing into the process.

#![warn(clippy::unwrap_used, clippy::indexing_slicing)]

pub mod config;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
pub mod control;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod daemon;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod fdtable;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod fork;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
pub mod global;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
pub mod oplog;
#[cfg(feature = "preload")]
mod preload;
pub mod protocol;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod sys;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod user;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod vfio;
#[cfg_attr(not(feature = "preload"), allow(dead_code))] // Reached only from the preload entry points.
mod vm;

/// The preload library's file name.
pub const LIBRARY_NAME: &str = "libvfio_eeh_shim.so";

/// The symbol only the preload build exports (a `u32` static), so that tools
/// can tell it from a build without the `preload` feature, which has the same
/// file name but intercepts nothing.
pub const PRELOAD_MARKER: &str = "VFIO_EEH_SHIM_PRELOAD";
