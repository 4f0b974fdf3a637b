//! The library's own descriptor operations, as raw system calls: they never
//! pass through the interposed libc entry points, so the library cannot
//! recurse into itself.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

/// Descriptors the library keeps for itself (IRQ eventfds, the control
/// socket) are moved at or above this number, so that the numbers a program
/// gets from `open` stay what they would be without the library.
pub(crate) const PRIVATE_FD_BASE: i32 = 1000;

/// Descriptor numbers below this can be marked private.
const PRIVATE_LIMIT: usize = 1 << 16;

/// One bit per descriptor number: whether the library keeps it for itself.
static PRIVATE: [AtomicU64; PRIVATE_LIMIT / 64] = [const { AtomicU64::new(0) }; PRIVATE_LIMIT / 64];

fn private_bit(fd: i32) -> Option<(&'static AtomicU64, u64)> {
    let i = usize::try_from(fd).ok().filter(|&i| i < PRIVATE_LIMIT)?;
    Some((PRIVATE.get(i / 64)?, 1 << (i % 64)))
}

fn set_private(fd: i32, private: bool) {
    if let Some((word, bit)) = private_bit(fd) {
        if private {
            word.fetch_or(bit, Ordering::AcqRel);
        } else {
            word.fetch_and(!bit, Ordering::AcqRel);
        }
    }
}

/// Whether `fd` is one of the library's own descriptors (an IRQ eventfd it
/// keeps, the control socket or one of its connections): one atomic load.
pub(crate) fn is_private(fd: i32) -> bool {
    private_bit(fd).is_some_and(|(word, bit)| word.load(Ordering::Acquire) & bit != 0)
}

/// The lowest private descriptor in `first..=last`, if any.
pub(crate) fn next_private(first: u32, last: u32) -> Option<u32> {
    let last = last.min(u32::try_from(PRIVATE_LIMIT - 1).unwrap_or(u32::MAX));
    (first..=last).find(|&fd| i32::try_from(fd).is_ok_and(is_private))
}

fn check(ret: libc::c_long) -> io::Result<i32> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        i32::try_from(ret).map_err(|_| io::Error::from_raw_os_error(libc::EOVERFLOW))
    }
}

/// A new eventfd: the kernel object behind an emulated VFIO file.
pub(crate) fn eventfd(cloexec: bool) -> io::Result<i32> {
    let flags = if cloexec { libc::EFD_CLOEXEC } else { 0 };
    // SAFETY: eventfd2 takes two integers and touches no memory.
    check(unsafe { libc::syscall(libc::SYS_eventfd2, 0, flags) })
}

/// Closes a descriptor the library owns.
pub(crate) fn close(fd: i32) {
    set_private(fd, false);
    // SAFETY: close takes an integer; callers pass descriptors they own, so
    // nothing else is using the number.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Duplicates `fd` to a close-on-exec descriptor at or above
/// [`PRIVATE_FD_BASE`], marked private ([`is_private`]) until [`close`]d.
pub(crate) fn dup_private(fd: i32) -> io::Result<i32> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers and touches no memory.
    let new = check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, PRIVATE_FD_BASE) })?;
    set_private(new, true);
    Ok(new)
}

/// Moves a descriptor the library just created above [`PRIVATE_FD_BASE`].
pub(crate) fn move_private(fd: i32) -> io::Result<i32> {
    let high = dup_private(fd);
    close(fd);
    high
}

/// Whether `fd` is an open descriptor.
pub(crate) fn is_open(fd: i32) -> bool {
    // SAFETY: fcntl(F_GETFD) takes integers and touches no memory.
    unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_GETFD) >= 0 }
}

/// Whether `fd` is an eventfd (`/proc/self/fd/<fd>` names its inode).
pub(crate) fn is_eventfd(fd: i32) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{fd}")).is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

/// Signals an eventfd (adds 1 to its counter).
pub(crate) fn signal(fd: i32) -> io::Result<()> {
    let one: u64 = 1;
    // SAFETY: `one` is a live u64 and the kernel reads exactly its 8 bytes.
    check(unsafe { libc::syscall(libc::SYS_write, fd, std::ptr::from_ref(&one), 8usize) }).map(drop)
}

/// A descriptor the library keeps for itself (a control socket or
/// connection): moved above [`PRIVATE_FD_BASE`], marked private, closed with
/// a raw system call when dropped.
#[derive(Debug)]
pub(crate) struct PrivateFd(i32);

impl PrivateFd {
    /// Moves a descriptor the library just created out of the program's way.
    pub(crate) fn adopt(fd: OwnedFd) -> io::Result<PrivateFd> {
        move_private(fd.into_raw_fd()).map(PrivateFd)
    }

    /// Its number.
    pub(crate) fn raw(&self) -> i32 {
        self.0
    }

    /// Lets go of the number without closing it: the program replaced the
    /// descriptor (`dup2` onto it), so the number is the program's now.
    pub(crate) fn abandon(self) {
        set_private(self.0, false);
        std::mem::forget(self);
    }
}

impl AsFd for PrivateFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor stays open while `self` lives (it is closed
        // only by `drop`; `abandon` consumes `self`).
        unsafe { BorrowedFd::borrow_raw(self.0) }
    }
}

impl Drop for PrivateFd {
    fn drop(&mut self) {
        close(self.0);
    }
}

impl Read for &PrivateFd {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::io::read(self, buf)?)
    }
}

/// Writes to a socket without `SIGPIPE`: a client that went away must not
/// kill the program (C programs keep the default action).
impl Write for &PrivateFd {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(rustix::net::send(self, buf, rustix::net::SendFlags::NOSIGNAL)?)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Copies `buf.len()` bytes at address `addr` of this process into `buf`,
/// checked by the kernel: an unreadable address is an error, not a fault.
pub(crate) fn read_own_memory(addr: usize, buf: &mut [u8]) -> io::Result<()> {
    eehd_protocol::process::read_memory(rustix::process::getpid(), addr as u64, buf)
}

/// Copies `bytes` to address `addr` of this process, checked by the kernel:
/// an unwritable address is an error, not a fault.
pub(crate) fn write_own_memory(addr: usize, bytes: &[u8]) -> io::Result<()> {
    eehd_protocol::process::write_memory(rustix::process::getpid(), addr as u64, bytes)
}
