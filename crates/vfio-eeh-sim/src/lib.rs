//! A simulated PowerNV host with full EEH semantics: the embedded default
//! backend of vfio-eeh, which makes the system runnable and testable on any
//! machine.
//!
//! * [`SimHost`]: PHBs (one PCI domain each), PEs (one IOMMU group each) and
//!   devices with a 4 KiB config space and memory-backed BARs; it implements
//!   [`EehBackend`](vfio_eeh::backend::EehBackend) and offers device access
//!   ([`SimHost::config_read`], [`SimHost::bar_read`], [`SimHost::dma`], …)
//!   gated by EEH state;
//! * [`spec`]: topology files (TOML) and the built-in topology;
//! * [`nvme`]: an NVMe controller behind a device's BAR0 (`model =
//!   "nvme"`), whose DMA and interrupts reach the VMM through the
//!   [`DeviceBus`] it attaches with [`SimHost::attach_bus`];
//! * [`iova`]: IOVA translation tables (what an IOMMU maps where), with a
//!   journal of their changes to keep a copy in another process;
//! * [`clock`]: virtual and monotonic clocks;
//! * [`config`]: policy knobs (freeze limit, reset timing, blocking or
//!   reporting resets, injection mode);
//! * [`phb`]: PHB-wide errors (fence, dead PHB) and the host's recovery;
//! * [`event`] and [`diag`]: the event log and the PHB diag blob;
//! * [`campaign`]: seeded fault campaigns;
//! * [`guest`] and [`vmm`]: the Linux guest's EEH recovery model and the VM
//!   it runs in.
//!
//! The PE state machine itself is [`vfio_eeh::pe`]. The simulator contains
//! no `unsafe` code (`forbid(unsafe_code)`); the performance scenarios live
//! in the bench crate (`crates/vfio-eeh-bench`).
//!
//! ```
//! use std::sync::Arc;
//! use vfio_eeh::backend::EehBackend;
//! use vfio_eeh::ops::{EehOp, ErrFunc, ErrInjection, ErrType, PeState, ResetKind};
//! use vfio_eeh_sim::{clock::VirtualClock, SimHost};
//!
//! let clock = Arc::new(VirtualClock::new());
//! let host = SimHost::builtin(clock.clone());
//! let nvme = "0000:01:00.0".parse().unwrap();
//! let pe = host.pe_of(nvme)?;
//! host.enable(pe)?;
//! let inj = ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadMemAddr, addr: 0, mask: 0 };
//! host.inject(pe, inj)?;
//! assert_eq!(host.bar_read(nvme, 0, 0, 4).unwrap(), 0xffff_ffff); // fires, freezes
//! assert_eq!(host.status(pe)?.state, PeState::Stopped);
//! host.reset(pe, ResetKind::Hot)?;
//! host.pe_op(pe, EehOp::ResetDeactivate)?; // Sleeps 1.8 s of virtual time.
//! assert_eq!(host.status(pe)?.state, PeState::Normal);
//! assert_eq!(host.config_read(nvme, 0, 2).unwrap(), 0x144d);
//! # Ok::<(), vfio_eeh::backend::BackendError>(())
//! ```

#![forbid(unsafe_code)]

mod access;
pub mod campaign;
pub mod clock;
pub mod config;
pub mod demo;
mod device;
pub mod diag;
pub mod event;
pub mod guest;
mod host;
pub mod iova;
pub mod nvme;
pub mod opseq;
pub mod phb;
pub mod spec;
pub mod vmm;

pub use access::{AccessError, DeviceBus, DmaDir, DmaRefusal};
pub use device::{BarMemory, SparsePages};
pub use host::SimHost;
