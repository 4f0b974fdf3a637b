//! eehd's wire protocol and its client side, without the daemon: the
//! messages ([`protocol`]), `SOCK_SEQPACKET` sockets with descriptor
//! passing ([`seqpacket`]), a blocking client ([`client`]), the memory
//! eehd shares with VMMs ([`shm`]) and a VMM's memory as eehd reaches it
//! ([`process`]). The preload library links this crate to be an eehd
//! client; the daemon re-exports it.

pub mod client;
pub mod process;
pub mod protocol;
pub mod seqpacket;
pub mod shm;
