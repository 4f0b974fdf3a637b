//! eehd's wire protocol and its client side, without the daemon: the
//! messages ([`protocol`]), `SOCK_SEQPACKET` sockets with descriptor
//! passing ([`seqpacket`]), a blocking client ([`client`]) and the memory
//! eehd shares with VMMs ([`shm`]). The preload
//! library links this crate to be an eehd client; the daemon re-exports it.

pub mod client;
pub mod protocol;
pub mod seqpacket;
pub mod shm;
