//! The seam between the VFIO wrappers and the kernel: [`VfioSystem`] opens
//! VFIO files, [`VfioFd`] carries ioctls and positioned reads and writes on
//! them.
//!
//! [`Sys`](crate::sys::Sys) implements both on the real kernel (through libc,
//! so an `LD_PRELOAD` library that emulates `/dev/vfio` sees every call);
//! tests implement them with a recording fake and check the exact request
//! numbers and argument bytes each operation would hand to the kernel.

use std::io;
use std::path::Path;

use vfio_eeh::uapi::Encoding;

/// The third argument of one `ioctl(2)` call.
#[derive(Debug)]
pub enum IoctlArg<'a> {
    /// An integer passed by value (`CHECK_EXTENSION`, `SET_IOMMU`), or 0 for
    /// ioctls that take no argument.
    Value(u64),
    /// A pointer to bytes the kernel only reads.
    In(&'a [u8]),
    /// A pointer to bytes the kernel reads and writes back.
    InOut(&'a mut [u8]),
}

/// An open VFIO file: the container, a group or a device.
pub trait VfioFd: Send + Sync + Sized {
    /// The file descriptor number (what `VFIO_GROUP_SET_CONTAINER` passes).
    fn raw(&self) -> i32;

    /// Issues `ioctl(fd, request, arg)` and returns its non-negative result.
    ///
    /// # Safety
    ///
    /// `arg` must be what `request` expects on this kind of fd: a pointer
    /// argument must cover every byte the kernel reads or writes for that
    /// request (VFIO structures sized by their `argsz`, strings
    /// NUL-terminated), and a value argument must not be taken as a pointer.
    unsafe fn ioctl(&self, request: u32, arg: IoctlArg<'_>) -> io::Result<i32>;

    /// Issues an ioctl that answers with a new file descriptor
    /// (`VFIO_GROUP_GET_DEVICE_FD`) and takes ownership of it.
    ///
    /// # Safety
    ///
    /// As for [`ioctl`](VfioFd::ioctl); moreover a successful result must be
    /// a new descriptor that nothing else owns.
    unsafe fn ioctl_fd(&self, request: u32, arg: IoctlArg<'_>) -> io::Result<Self>;

    /// Reads at `offset` (`pread`), returning the bytes read.
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize>;

    /// Writes at `offset` (`pwrite`), returning the bytes written.
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize>;
}

/// Opens VFIO files and tells which ioctl encoding its fds speak.
pub trait VfioSystem: Send + Sync {
    /// The fds it opens.
    type Fd: VfioFd;

    /// Opens `path` read-write.
    fn open(&self, path: &Path) -> io::Result<Self::Fd>;

    /// The ioctl number layout of the kernel behind the fds.
    fn encoding(&self) -> Encoding;
}
