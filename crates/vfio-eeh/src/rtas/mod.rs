//! The PAPR RTAS EEH front end: a guest's EEH calls, which name devices by
//! guest address, served through one VM's address map onto a host backend.
//!
//! [`EehRtas`] is one VM's EEH firmware. [`EehRtas::serve`] takes the RTAS
//! argument buffer as guest memory holds it and writes the return cells back
//! in place; every failure is a PAPR status, never a panic, and a call that
//! fails its checks touches nothing.
//!
//! # The two models
//!
//! * The seed's: the host holds the mapping. Serve with the host's
//!   [`AddrMaps`](crate::mapping::AddrMaps) and the host backend itself.
//! * Upstream's: the VMM holds the mapping and reaches the host only through
//!   `VFIO_EEH_PE_OP` on containers it owns. Serve with the VMM's own map and
//!   a [`ContainerPath`](crate::container::ContainerPath) as the backend.
//!
//! The handlers are the same; only what the backend can tell differs (the
//! container path cannot carry the remaining reset delay or an error log).
//!
//! # Where we differ from QEMU
//!
//! QEMU allows one host PE per virtual PHB and answers accordingly. Because
//! the seed maps each device, we serve several host PEs under one virtual PHB,
//! and [`RtasPolicy::default`] answers truthfully:
//!
//! | call | QEMU ([`RtasPolicy::QEMU`]) | ours ([`RtasPolicy::default`]) |
//! |---|---|---|
//! | get-config-addr-info2 fn 0 | `(bus << 16) \| 1` | the PE's lowest mapped function, register byte 1: PEs under one PHB get distinct addresses, all functions of one PE the same |
//! | get-config-addr-info2 fn 1 | always 2 (shared) | 1 or 2: whether the host PE has more than one function |
//! | read-slot-reset-state2, state 5 | always 1000 ms | the host's true remaining delay (1000 ms when the host cannot tell) |
//! | slot-error-detail | always 1 (no log) | the host's error log (status 0), 1 when there is none; function 2 marks the PE permanently unavailable |
//! | open-errinjct / errinjct / close-errinjct | not offered (-3) | `ioa-bus-error` and `ioa-bus-error-64` onto the backend's injection |
//! | get-config-addr-info, read-slot-reset-state, configure-bridge | not registered | served (the older forms) |
//! | read-slot-reset-state2, configure-pe, get-config-addr-info2 fn 1 when the host fails | -3 | -1 (hardware error) |
//!
//! | set-eeh-option 2/3, set-slot-reset 0/1/3 refused in a state PAPR's "PE State Control" table forbids | -1 | -7 (the state is read again after the host's `EIO`) |
//! | set-slot-reset 3 on a host without fundamental reset | -1 | -8 (the Linux guest retries with a hot reset, `pseries_eeh_phb_reset`) |
//! | configure-pe / configure-bridge while the PE settles after a reset | 0 (`VFIO_EEH_PE_CONFIGURE` is a no-op) | 9900..=9902 for the remaining time (9902 when the host cannot tell) |
//!
//! The PE-address form is ours under both policies: QEMU's `(bus << 16) | 1`
//! cannot tell two PEs on one bus apart.
//!
//! # The statuses each call answers
//!
//! PAPR's sets (project reference §2.3–2.5) against ours under
//! [`RtasPolicy::default`]:
//!
//! | call | PAPR | ours |
//! |---|---|---|
//! | set-eeh-option | 0, -1, -3, -7 | all four |
//! | read-slot-reset-state2 | 0, -3 | both, and -1 for a host failure (see below) |
//! | get-config-addr-info2 | 0, -3 | both (-1 for a host failure, as above) |
//! | set-slot-reset | 0, -1, -3, -7, -8 | all five |
//! | configure-pe / configure-bridge | 990x, 0, -3 | 9900..=9902, 0, -3 (-1 for a host failure) |
//! | slot-error-detail | 1, 0, -1 | all three |
//! | open-errinjct | 990x, 0, -1, -2, -4, -5 | 0, -4; -3 when the policy does not offer errinjct (QEMU registers no token) |
//! | errinjct | 990x, 0, -1, -2, -3, -4 | 0, -1, -3, -4 |
//! | close-errinjct | 990x, 0, -1, -2, -4 | 0, -4 |
//!
//! Never answered: -2 (busy) and 990x outside configure-pe, because every
//! call completes at once, and a Linux guest takes -2 or 990x from any other
//! EEH call as a failure (or, from read-slot-reset-state2, as state bits);
//! "busy" is said with state 5 and the remaining time instead. 990x stays at
//! or below 9902, within the 200 ms the guest allows
//! (`pseries_eeh_phb_configure_bridge`).

//! # Failures and their causes
//!
//! A handler that fails answers an [`RtasError`]: its PAPR status and, when
//! the backend refused the operation, the [`BackendError`](crate::backend::BackendError)
//! as its source. [`EehRtas::serve`] writes the status and hands the error to
//! its caller in [`RtasOutcome::error`], for the log. The status follows the
//! cause:
//!
//! * arguments, addresses and errinjct ownership that fail their checks, and
//!   a backend answering "no such device or PE" (the address names nothing
//!   on the host): -3, parameter error;
//! * any other backend failure: -1, hardware error. ibm,errinjct keeps the
//!   2025 RFC's errno mapping (`EINVAL`, `ERANGE`, `ENOTTY`, `EOPNOTSUPP`:
//!   -3).
//!
//! QEMU (`hw/ppc/spapr_pci_vfio.c`, `spapr_phb_vfio_eeh_set_option`,
//! `_eeh_reset`, `_eeh_get_state`, `_eeh_configure`) answers a failed
//! `VFIO_EEH_PE_OP` with `RTAS_OUT_HW_ERROR` (-1) for set-eeh-option and
//! set-slot-reset, as we do, but with `RTAS_OUT_PARAM_ERROR` (-3) for
//! get-state and configure, so a host failure looks like a bad address to the
//! guest. [`RtasPolicy::QEMU`] keeps QEMU's answers; the default policy
//! answers -1. PAPR lists only 0 and -3 for read-slot-reset-state2 and
//! configure-pe (and 990x); -1 there is our choice to keep a host failure
//! distinguishable from a bad address, and Linux guests treat every non-zero
//! status of those calls alike.

mod calls;
mod codec;
mod handlers;
mod memory;

pub use calls::{status, RtasCall, TokenTable, ERRINJCT_IOA_BUS_ERROR, ERRINJCT_IOA_BUS_ERROR_64};
pub use codec::{DecodeError, RtasArgs, HEADER_BYTES, MAX_CELLS};
pub use handlers::{EehRtas, Reply, RtasContext, RtasError, RtasOutcome, RtasPolicy};
pub use memory::{FlatMemory, GuestMemory, MemoryError};
