//! Another process's memory, reached as the kernel lets a debugger reach
//! it: `process_vm_readv`/`process_vm_writev`, which check every address
//! against the process's mappings (`EFAULT`, never a fault here).
//!
//! eehd carries out its device models' DMA into a VMM's memory this way
//! (docs/shared-host.md), and the preload library reads its own process's
//! ioctl arguments so. The process is named by a pidfd taken from the
//! connection itself (`SO_PEERPIDFD`), so a VMM that exits never lends its
//! number to another process: every copy first checks that the pidfd's
//! process still runs.

use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};

use rustix::event::{poll, PollFd, PollFlags, Timespec};
use rustix::process::{Pid, PidfdFlags};

/// `SO_PEERPIDFD` (Linux 6.5): a pidfd of the process that connected.
/// `include/uapi/asm-generic/socket.h`, which x86, arm64, powerpc and riscv
/// use; libc and rustix do not name it yet.
const SO_PEERPIDFD: libc::c_int = 77;

/// A running process, by pidfd.
#[derive(Debug)]
pub struct Process {
    pid: Pid,
    pidfd: OwnedFd,
}

impl Process {
    /// The process at the other end of a connected Unix socket: the one
    /// that connected. Kernels before 6.5 have no `SO_PEERPIDFD`; there
    /// the pidfd is opened on the credentials' pid at once.
    pub fn peer_of(socket: impl AsFd) -> io::Result<Self> {
        let cred = rustix::net::sockopt::socket_peercred(&socket)?;
        let pidfd = match peer_pidfd(socket.as_fd()) {
            Ok(pidfd) => pidfd,
            Err(e) if e.raw_os_error() == Some(libc::ENOPROTOOPT) => {
                rustix::process::pidfd_open(cred.pid, PidfdFlags::empty())?
            }
            Err(e) => return Err(e),
        };
        Ok(Process { pid: cred.pid, pidfd })
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.pid.as_raw_nonzero().get().unsigned_abs()
    }

    /// Whether it still runs (a pidfd polls readable once it has exited).
    pub fn running(&self) -> bool {
        let mut fds = [PollFd::new(&self.pidfd, PollFlags::IN)];
        matches!(poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 })), Ok(0))
    }

    /// Copies `buf.len()` bytes at `addr` of the process into `buf`
    /// (`ESRCH` once it has exited).
    pub fn read(&self, addr: u64, buf: &mut [u8]) -> io::Result<()> {
        self.check_running()?;
        read_memory(self.pid, addr, buf)
    }

    /// Copies `bytes` to `addr` of the process (`ESRCH` once it has exited).
    pub fn write(&self, addr: u64, bytes: &[u8]) -> io::Result<()> {
        self.check_running()?;
        write_memory(self.pid, addr, bytes)
    }

    fn check_running(&self) -> io::Result<()> {
        if self.running() {
            Ok(())
        } else {
            Err(io::Error::from_raw_os_error(libc::ESRCH))
        }
    }
}

/// Copies `buf.len()` bytes at `addr` of process `pid` into `buf`.
pub fn read_memory(pid: Pid, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    copy(pid, libc::SYS_process_vm_readv, buf.as_mut_ptr(), addr, buf.len())
}

/// Copies `bytes` to `addr` of process `pid`.
pub fn write_memory(pid: Pid, addr: u64, bytes: &[u8]) -> io::Result<()> {
    copy(pid, libc::SYS_process_vm_writev, bytes.as_ptr().cast_mut(), addr, bytes.len())
}

/// `process_vm_readv` or `_writev` of one local and one remote buffer:
/// short is `EFAULT`.
fn copy(pid: Pid, syscall: libc::c_long, local: *mut u8, remote: u64, len: usize) -> io::Result<()> {
    let remote = usize::try_from(remote).map_err(|_| io::Error::from_raw_os_error(libc::EFAULT))?;
    let local = libc::iovec { iov_base: local.cast(), iov_len: len };
    let remote = libc::iovec { iov_base: remote as *mut libc::c_void, iov_len: len };
    // SAFETY: both iovecs are live for the call; the kernel checks
    // `remote` against the other process's mappings (EFAULT, never a
    // fault), and `local` is a buffer the caller lends for `len` bytes
    // (written only by process_vm_readv, whose callers lend `&mut`).
    let done = unsafe {
        libc::syscall(
            syscall,
            pid.as_raw_nonzero().get(),
            std::ptr::from_ref(&local),
            1usize,
            std::ptr::from_ref(&remote),
            1usize,
            0usize,
        )
    };
    match usize::try_from(done) {
        Ok(n) if n == len => Ok(()),
        Ok(_) => Err(io::Error::from_raw_os_error(libc::EFAULT)),
        Err(_) => Err(io::Error::last_os_error()),
    }
}

/// `getsockopt(SO_PEERPIDFD)`.
fn peer_pidfd(socket: std::os::fd::BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let mut fd: libc::c_int = -1;
    let mut len = libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).expect("an int's size");
    // SAFETY: `fd` and `len` are live locals of the sizes passed; the
    // kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_PEERPIDFD,
            std::ptr::from_mut(&mut fd).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: on success the kernel installed a new descriptor, ours alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use rustix::net::{AddressFamily, SocketFlags, SocketType};

    use super::*;

    #[test]
    fn the_peer_is_the_process_that_connected_and_its_memory_is_checked() {
        let (a, _b) =
            rustix::net::socketpair(AddressFamily::UNIX, SocketType::SEQPACKET, SocketFlags::CLOEXEC, None).unwrap();
        let peer = Process::peer_of(&a).unwrap();
        assert_eq!(peer.pid(), std::process::id());
        assert!(peer.running());
        let word = Box::new([1u8, 2, 3, 4]);
        let addr = word.as_ptr() as u64;
        let mut back = [0u8; 4];
        peer.read(addr, &mut back).unwrap();
        assert_eq!(back, [1, 2, 3, 4]);
        peer.write(addr, &[9, 9]).unwrap();
        peer.read(addr, &mut back).unwrap();
        assert_eq!(back, [9, 9, 3, 4]);
        assert_eq!(peer.read(8, &mut back).unwrap_err().raw_os_error(), Some(libc::EFAULT), "the null page");
        assert_eq!(peer.read(u64::MAX - 1, &mut back).unwrap_err().raw_os_error(), Some(libc::EFAULT));
    }

    #[test]
    fn an_exited_process_is_never_reached() {
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = Pid::from_raw(i32::try_from(child.id()).unwrap()).unwrap();
        let gone = Process { pid, pidfd: rustix::process::pidfd_open(pid, PidfdFlags::empty()).unwrap() };
        let mut child = child;
        child.wait().unwrap();
        assert!(!gone.running());
        let mut buf = [0u8; 1];
        assert_eq!(gone.read(0x1000, &mut buf).unwrap_err().raw_os_error(), Some(libc::ESRCH));
    }
}
