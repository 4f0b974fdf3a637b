//! The real kernel: the only module with `unsafe` code.
//!
//! Every call goes through libc (`open`, `ioctl`, `pread`, `pwrite`,
//! `close`), never raw syscalls, so an `LD_PRELOAD` library that emulates
//! `/dev/vfio` intercepts all of them. Opening, positioned I/O and closing
//! use `std::fs::File`, which is libc underneath; only `ioctl` and adopting
//! the descriptor `VFIO_GROUP_GET_DEVICE_FD` returns need `unsafe`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vfio_eeh::uapi::Encoding;

use crate::fd::{IoctlArg, VfioFd, VfioSystem};

/// The running kernel, through libc.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sys;

/// A file opened by [`Sys`].
#[derive(Debug)]
pub struct SysFd(File);

impl VfioSystem for Sys {
    type Fd = SysFd;

    fn open(&self, path: &Path) -> io::Result<SysFd> {
        OpenOptions::new().read(true).write(true).open(path).map(SysFd)
    }

    fn encoding(&self) -> Encoding {
        Encoding::NATIVE
    }
}

impl VfioFd for SysFd {
    fn raw(&self) -> i32 {
        self.0.as_raw_fd()
    }

    unsafe fn ioctl(&self, request: u32, arg: IoctlArg<'_>) -> io::Result<i32> {
        let fd = self.0.as_raw_fd();
        // `request` is a 32-bit ioctl number; libc takes it as `unsigned long`
        // (glibc) or `int` (musl), both of which hold every such number.
        let request = request as libc::Ioctl;
        let ret = match arg {
            IoctlArg::Value(value) => {
                let value = libc::c_ulong::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                // SAFETY: `fd` is an open descriptor owned by `self`; the
                // caller guarantees (this fn's contract) that `request` takes
                // its argument by value, so the kernel dereferences nothing.
                unsafe { libc::ioctl(fd, request, value) }
            }
            IoctlArg::In(bytes) => {
                // SAFETY: `fd` is an open descriptor owned by `self`; `bytes`
                // is a live shared borrow, and the caller guarantees it covers
                // everything `request` reads; the kernel does not write to it.
                unsafe { libc::ioctl(fd, request, bytes.as_ptr()) }
            }
            IoctlArg::InOut(bytes) => {
                // SAFETY: `fd` is an open descriptor owned by `self`; `bytes`
                // is a live exclusive borrow, and the caller guarantees it
                // covers everything `request` reads and writes back.
                unsafe { libc::ioctl(fd, request, bytes.as_mut_ptr()) }
            }
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    unsafe fn ioctl_fd(&self, request: u32, arg: IoctlArg<'_>) -> io::Result<SysFd> {
        // SAFETY: the caller's guarantees are forwarded unchanged.
        let raw = unsafe { self.ioctl(request, arg) }?;
        // SAFETY: the caller guarantees that a successful `request` returns a
        // new descriptor; nothing else owns it, so the `File` may close it.
        Ok(SysFd(unsafe { File::from_raw_fd(raw) }))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
}
