//! The outside of the vfio-shim preload library, for tools such as
//! `eehctl shim/inject/state/events/oplog`:
//!
//! * [`prepare`]: what a VMM needs for chosen simulated devices (sysfs
//!   directories, environment with `LD_PRELOAD`), a command runner, and the
//!   check that a file is the preload build of the library;
//! * [`client`]: the [`Client`](client::Client) of the control socket a
//!   preloaded process serves (inject, state, events, op log).
//!
//! It lives apart from `vfio-shim` so that the library loaded into every VMM
//! carries neither the ELF reader nor the client.

pub mod client;
pub mod prepare;
