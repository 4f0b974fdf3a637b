//! The seam between the VFIO wrappers and the kernel: [`VfioSystem`] opens
//! VFIO files, [`VfioFd`] carries ioctls and positioned reads and writes on
//! them.
//!
//! [`Sys`](crate::sys::Sys) implements both on the real kernel (through libc,
//! so an `LD_PRELOAD` library that emulates `/dev/vfio` sees every call);
//! tests implement them with a recording fake and check the exact request
//! numbers and argument bytes each operation would hand to the kernel.
//!
//! An ioctl reaches the seam as an [`IoctlCall`], which only a typed
//! descriptor ([`sys::Ioctl`](crate::sys::Ioctl)) builds: the request number
//! and its argument always match, so issuing one is safe.

use std::io;
use std::path::Path;

use vfio_eeh::uapi::{Encoding, VfioIoctl};

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

/// One ioctl ready to issue: a request number with an argument of the kind
/// that number takes, covering every byte the kernel touches for it.
#[derive(Debug)]
pub struct IoctlCall<'a> {
    ioctl: VfioIoctl,
    request: u32,
    arg: IoctlArg<'a>,
}

impl<'a> IoctlCall<'a> {
    /// Only the typed descriptors in [`sys`](crate::sys) build calls; their
    /// declarations carry the promise that `arg` suits `ioctl`.
    pub(crate) fn new(ioctl: VfioIoctl, encoding: Encoding, arg: IoctlArg<'a>) -> Self {
        IoctlCall { ioctl, request: ioctl.number(encoding), arg }
    }

    /// The ioctl issued.
    pub fn ioctl(&self) -> VfioIoctl {
        self.ioctl
    }

    /// The request number, in the encoding of the fd's kernel.
    pub fn request(&self) -> u32 {
        self.request
    }

    /// The request number and the argument.
    pub fn into_parts(self) -> (u32, IoctlArg<'a>) {
        (self.request, self.arg)
    }
}

/// An [`IoctlCall`] that answers with a new file descriptor
/// (`VFIO_GROUP_GET_DEVICE_FD`), which the caller then owns.
#[derive(Debug)]
pub struct NewFdCall<'a>(pub(crate) IoctlCall<'a>);

impl<'a> NewFdCall<'a> {
    /// The call itself.
    pub fn into_call(self) -> IoctlCall<'a> {
        self.0
    }
}

/// An open VFIO file: the container, a group or a device.
pub trait VfioFd: Send + Sync + Sized {
    /// The file descriptor number (what `VFIO_GROUP_SET_CONTAINER` passes).
    fn raw(&self) -> i32;

    /// Issues `call` and returns the ioctl's non-negative result.
    fn ioctl(&self, call: IoctlCall<'_>) -> io::Result<i32>;

    /// Issues an ioctl that answers with a new file descriptor and takes
    /// ownership of it.
    fn ioctl_fd(&self, call: NewFdCall<'_>) -> io::Result<Self>;

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
