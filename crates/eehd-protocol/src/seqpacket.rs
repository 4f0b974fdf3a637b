//! `SOCK_SEQPACKET` Unix sockets (which std lacks), through rustix: one
//! message per datagram, boundaries kept, a frame larger than the cap is
//! seen whole-sized and refused rather than cut; a frame may carry
//! descriptors (`SCM_RIGHTS`).

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

use rustix::net::{
    self, sockopt, AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, Shutdown, SocketAddrUnix, SocketFlags, SocketType,
};

use crate::protocol::MAX_FRAME;

/// What a receive got.
#[derive(Debug, PartialEq, Eq)]
pub enum Received {
    /// A frame of this many bytes, at the start of the buffer.
    Frame(usize),
    /// A frame of this many bytes, above [`MAX_FRAME`]; dropped.
    TooLarge(usize),
    /// The peer closed the connection.
    Closed,
}

fn new_socket() -> io::Result<OwnedFd> {
    Ok(net::socket_with(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None)?)
}

/// Connects to a listening socket.
pub fn connect(path: &Path) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    net::connect(&fd, &SocketAddrUnix::new(path)?)?;
    Ok(fd)
}

/// A listening socket bound at `path`.
pub fn listen(path: &Path, backlog: i32) -> io::Result<OwnedFd> {
    let fd = new_socket()?;
    net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    net::listen(&fd, backlog)?;
    Ok(fd)
}

/// Whether `fd` is a `SOCK_SEQPACKET` socket.
pub fn is_seqpacket(fd: impl AsFd) -> bool {
    sockopt::socket_type(fd).is_ok_and(|t| t == SocketType::SEQPACKET)
}

/// Accepts a connection (close-on-exec).
pub fn accept(listener: impl AsFd) -> io::Result<OwnedFd> {
    Ok(net::accept_with(listener, SocketFlags::CLOEXEC)?)
}

/// Sends one frame, waiting for room.
pub fn send(fd: impl AsFd, frame: &[u8]) -> io::Result<()> {
    net::send(fd, frame, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Sends one frame if there is room now; `WouldBlock` if not.
pub fn try_send(fd: impl AsFd, frame: &[u8]) -> io::Result<()> {
    net::send(fd, frame, SendFlags::NOSIGNAL | SendFlags::DONTWAIT)?;
    Ok(())
}

/// The most descriptors one frame carries.
pub const MAX_FDS: usize = 64;

/// Sends one frame with `fds` attached, waiting for room.
pub fn send_with_fds(fd: impl AsFd, frame: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("{} descriptors in one frame", fds.len())));
    }
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("no room for the descriptors"));
    }
    net::sendmsg(fd, &[IoSlice::new(frame)], &mut control, SendFlags::NOSIGNAL)?;
    Ok(())
}

/// Receives one frame as [`recv`] does, with the descriptors it carries
/// (close-on-exec).
pub fn recv_with_fds(fd: impl AsFd, buf: &mut [u8]) -> io::Result<(Received, Vec<OwnedFd>)> {
    debug_assert!(buf.len() >= MAX_FRAME);
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_FDS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut iov = [IoSliceMut::new(&mut buf[..MAX_FRAME])];
    let got = net::recvmsg(fd, &mut iov, &mut control, RecvFlags::TRUNC | RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(rights) = message {
            fds.extend(rights);
        }
    }
    let received = match got.bytes {
        0 => Received::Closed,
        n if n > MAX_FRAME => Received::TooLarge(n),
        n => Received::Frame(n),
    };
    Ok((received, fds))
}

/// Receives one frame into `buf` (which must hold [`MAX_FRAME`] bytes).
/// A receive timeout shows as `WouldBlock`.
pub fn recv(fd: impl AsFd, buf: &mut [u8]) -> io::Result<Received> {
    debug_assert!(buf.len() >= MAX_FRAME);
    let (_, full) = net::recv(fd, &mut buf[..MAX_FRAME], RecvFlags::TRUNC)?;
    Ok(match full {
        0 => Received::Closed,
        n if n > MAX_FRAME => Received::TooLarge(n),
        n => Received::Frame(n),
    })
}

/// Bounds how long a receive and a send wait.
pub fn set_timeouts(fd: impl AsFd, recv: Option<Duration>, send: Option<Duration>) -> io::Result<()> {
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Recv, recv)?;
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, send)?;
    Ok(())
}

/// Shuts a connection down both ways (its reader then sees it closed).
pub fn shutdown(fd: impl AsFd) {
    // A connection already gone is what was wanted.
    let _ = net::shutdown(fd, Shutdown::Both);
}

/// The peer's credentials.
pub fn peer_credentials(fd: impl AsFd) -> io::Result<rustix::net::UCred> {
    Ok(sockopt::socket_peercred(fd)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_keep_their_boundaries_and_oversized_ones_are_seen_whole() {
        let (a, b) = net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        send(&a, b"one").unwrap();
        send(&a, b"two!").unwrap();
        sockopt::set_socket_send_buffer_size(&a, 4 * MAX_FRAME).unwrap();
        send(&a, &vec![7u8; MAX_FRAME + 1]).unwrap();
        let mut buf = vec![0; MAX_FRAME];
        assert_eq!(recv(&b, &mut buf).unwrap(), Received::Frame(3));
        assert_eq!(&buf[..3], b"one");
        assert_eq!(recv(&b, &mut buf).unwrap(), Received::Frame(4));
        assert_eq!(recv(&b, &mut buf).unwrap(), Received::TooLarge(MAX_FRAME + 1));
        let me = peer_credentials(&b).unwrap();
        assert_eq!(me.uid, rustix::process::getuid());
        drop(a);
        assert_eq!(recv(&b, &mut buf).unwrap(), Received::Closed);
    }

    #[test]
    fn descriptors_travel_with_their_frame() {
        let (a, b) = net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        let file = tempfile::tempfile().unwrap();
        send_with_fds(&a, b"with", &[file.as_fd()]).unwrap();
        send_with_fds(&a, b"without", &[]).unwrap();
        let mut buf = vec![0; MAX_FRAME];
        let (got, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!((got, fds.len()), (Received::Frame(4), 1));
        let (mine, theirs) = (rustix::fs::fstat(&file).unwrap(), rustix::fs::fstat(&fds[0]).unwrap());
        assert_eq!((mine.st_dev, mine.st_ino), (theirs.st_dev, theirs.st_ino), "the same file");
        let (got, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!((got, fds.len()), (Received::Frame(7), 0));
    }
}
