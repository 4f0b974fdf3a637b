//! The library's own descriptor operations, as raw system calls: they never
//! pass through the interposed libc entry points, so the library cannot
//! recurse into itself.

use std::io;

/// Descriptors the library keeps for itself (IRQ eventfds, the control
/// socket) are moved at or above this number, so that the numbers a program
/// gets from `open` stay what they would be without the library.
pub(crate) const PRIVATE_FD_BASE: i32 = 1000;

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
    // SAFETY: close takes an integer; callers pass descriptors they own, so
    // nothing else is using the number.
    unsafe { libc::syscall(libc::SYS_close, fd) };
}

/// Duplicates `fd` to a close-on-exec descriptor at or above
/// [`PRIVATE_FD_BASE`].
pub(crate) fn dup_private(fd: i32) -> io::Result<i32> {
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) takes integers and touches no memory.
    check(unsafe { libc::syscall(libc::SYS_fcntl, fd, libc::F_DUPFD_CLOEXEC, PRIVATE_FD_BASE) })
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
