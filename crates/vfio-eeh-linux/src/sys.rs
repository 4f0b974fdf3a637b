//! The real kernel: the only module with `unsafe` code.
//!
//! # The ioctl table
//!
//! Every VFIO ioctl this crate issues is declared here once, as an [`Ioctl`]
//! whose type parameter says how the kernel takes its third argument. The
//! numbers come from [`vfio_eeh::uapi`], in either encoding
//! ([`Encoding::GENERIC`], [`Encoding::POWERPC`]):
//!
//! | kind | the argument | ioctls |
//! |---|---|---|
//! | [`NoArg`] | none (0, ignored) | [`GET_API_VERSION`], [`GROUP_UNSET_CONTAINER`], [`DEVICE_RESET`] |
//! | [`ByValue`] | an integer by value | [`CHECK_EXTENSION`], [`SET_IOMMU`] |
//! | [`InInt`] | a pointer to an `int`, read | [`GROUP_SET_CONTAINER`] |
//! | [`In<T>`] | a pointer to an `argsz` structure, read | [`EEH_PE_OP`] |
//! | [`InOut<T>`] | a pointer to an `argsz` structure, read and written back | [`GROUP_GET_STATUS`], [`DEVICE_GET_INFO`], [`DEVICE_GET_REGION_INFO`] |
//! | [`DeviceName`] | a pointer to a NUL-terminated name, read; answers a new fd | [`GROUP_GET_DEVICE_FD`] |
//!
//! Declaring a descriptor is the `unsafe` promise that the kernel takes the
//! number's argument that way; building an [`IoctlCall`] from a descriptor is
//! safe, and checks what the promise needs (an `argsz` within the structure).
//! Callers, and the [`VfioFd`] seam, need no `unsafe`.
//!
//! # The syscalls
//!
//! Every call goes through libc (`open`, `ioctl`, `pread`, `pwrite`,
//! `close`), never raw syscalls, so an `LD_PRELOAD` library that emulates
//! `/dev/vfio` intercepts all of them. Opening, positioned I/O and closing
//! use `std::fs::File`, which is libc underneath; only `ioctl` and adopting
//! the descriptor `VFIO_GROUP_GET_DEVICE_FD` returns need `unsafe`.

use std::ffi::CStr;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::marker::PhantomData;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::FileExt;
use std::path::Path;

use vfio_eeh::uapi::{self, Encoding, VfioIoctl};
use zerocopy::{FromBytes, Immutable, IntoBytes};

use crate::fd::{IoctlArg, IoctlCall, NewFdCall, VfioFd, VfioSystem};

/// A VFIO ioctl number with the way the kernel takes its argument, `A`: one
/// of [`NoArg`], [`ByValue`], [`InInt`], [`In`], [`InOut`], [`DeviceName`].
pub struct Ioctl<A> {
    vfio: VfioIoctl,
    kind: PhantomData<fn() -> A>,
}

impl<A> Ioctl<A> {
    /// # Safety
    ///
    /// The kernel must take the third argument of `vfio` as `A` describes:
    /// it reads (and writes back) no byte outside what `A`'s argument covers,
    /// and a by-value argument is never dereferenced.
    const unsafe fn declare(vfio: VfioIoctl) -> Self {
        Ioctl { vfio, kind: PhantomData }
    }

    /// The ioctl: its name, fd kind and number.
    pub const fn vfio(self) -> VfioIoctl {
        self.vfio
    }
}

impl<A> Clone for Ioctl<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A> Copy for Ioctl<A> {}

impl<A> fmt::Debug for Ioctl<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Ioctl").field(&self.vfio.name).finish()
    }
}

/// How an ioctl takes its argument, and what the caller passes for it.
pub trait ArgKind {
    /// The caller's argument.
    type Arg<'a>
    where
        Self: 'a;

    /// The argument as `ioctl(2)` receives it, refused when it would not
    /// cover every byte the kernel may touch.
    fn lower<'a>(arg: Self::Arg<'a>) -> io::Result<IoctlArg<'a>>;
}

/// No argument: the kernel ignores it (0 is passed).
#[derive(Debug)]
pub enum NoArg {}

/// An integer passed by value.
#[derive(Debug)]
pub enum ByValue {}

/// A pointer to an `int` the kernel reads.
#[derive(Debug)]
pub enum InInt {}

/// A pointer to a VFIO structure that starts with its `argsz`; the kernel
/// reads at most `argsz` bytes of it.
#[derive(Debug)]
pub struct In<T>(PhantomData<T>);

/// A pointer to a VFIO structure that starts with its `argsz`; the kernel
/// reads and writes back at most `argsz` bytes of it.
#[derive(Debug)]
pub struct InOut<T>(PhantomData<T>);

/// A pointer to a NUL-terminated device name the kernel reads; the ioctl
/// answers with a new file descriptor.
#[derive(Debug)]
pub enum DeviceName {}

impl ArgKind for NoArg {
    type Arg<'a> = ();

    fn lower<'a>((): ()) -> io::Result<IoctlArg<'a>> {
        Ok(IoctlArg::Value(0))
    }
}

impl ArgKind for ByValue {
    type Arg<'a> = u32;

    fn lower<'a>(value: u32) -> io::Result<IoctlArg<'a>> {
        Ok(IoctlArg::Value(value.into()))
    }
}

impl ArgKind for InInt {
    type Arg<'a> = &'a i32;

    fn lower<'a>(value: Self::Arg<'a>) -> io::Result<IoctlArg<'a>> {
        Ok(IoctlArg::In(value.as_bytes()))
    }
}

impl<T: IntoBytes + Immutable> ArgKind for In<T> {
    type Arg<'a>
        = &'a T
    where
        T: 'a;

    fn lower<'a>(arg: Self::Arg<'a>) -> io::Result<IoctlArg<'a>> {
        let bytes = arg.as_bytes();
        check_argsz(bytes)?;
        Ok(IoctlArg::In(bytes))
    }
}

impl<T: IntoBytes + FromBytes + Immutable> ArgKind for InOut<T> {
    type Arg<'a>
        = &'a mut T
    where
        T: 'a;

    fn lower<'a>(arg: Self::Arg<'a>) -> io::Result<IoctlArg<'a>> {
        check_argsz(arg.as_bytes())?;
        Ok(IoctlArg::InOut(arg.as_mut_bytes()))
    }
}

/// Refuses a structure whose leading `argsz` claims more bytes than it has:
/// the kernel would read or write past it.
fn check_argsz(bytes: &[u8]) -> io::Result<()> {
    match u32::read_from_prefix(bytes) {
        Ok((argsz, _)) if usize::try_from(argsz).is_ok_and(|argsz| argsz <= bytes.len()) => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("argsz exceeds the {}-byte ioctl argument", bytes.len()),
        )),
    }
}

impl<A: ArgKind> Ioctl<A> {
    /// The call with `arg`, numbered for `encoding`.
    pub fn call<'a>(self, encoding: Encoding, arg: A::Arg<'a>) -> io::Result<IoctlCall<'a>> {
        Ok(IoctlCall::new(self.vfio, encoding, A::lower(arg)?))
    }
}

impl Ioctl<DeviceName> {
    /// The call opening device `name`, numbered for `encoding`.
    pub fn call<'a>(self, encoding: Encoding, name: &'a CStr) -> NewFdCall<'a> {
        NewFdCall(IoctlCall::new(self.vfio, encoding, IoctlArg::In(name.to_bytes_with_nul())))
    }
}

// SAFETY (every declaration below): the argument kinds follow the kernel's
// handlers in drivers/vfio/container.c, group.c and pci/vfio_pci_core.c, and
// drivers/vfio/vfio_iommu_spapr_tce.c for EEH_PE_OP; the `argsz` structures
// are the `uapi` mirrors, whose sizes are pinned against the headers.

/// `VFIO_GET_API_VERSION` on the container; answers the version.
// SAFETY: the container ignores the argument.
pub const GET_API_VERSION: Ioctl<NoArg> = unsafe { Ioctl::declare(uapi::GET_API_VERSION) };

/// `VFIO_CHECK_EXTENSION` on the container; answers 1 if offered.
// SAFETY: the container reads the extension number as an integer.
pub const CHECK_EXTENSION: Ioctl<ByValue> = unsafe { Ioctl::declare(uapi::CHECK_EXTENSION) };

/// `VFIO_SET_IOMMU` on the container.
// SAFETY: the container reads the IOMMU type as an integer.
pub const SET_IOMMU: Ioctl<ByValue> = unsafe { Ioctl::declare(uapi::SET_IOMMU) };

/// `VFIO_GROUP_GET_STATUS` on a group.
// SAFETY: the group copies `minsz` = 8 bytes of `struct vfio_group_status`
// in and back out, after checking `argsz` >= 8.
pub const GROUP_GET_STATUS: Ioctl<InOut<uapi::VfioGroupStatus>> = unsafe { Ioctl::declare(uapi::GROUP_GET_STATUS) };

/// `VFIO_GROUP_SET_CONTAINER` on a group.
// SAFETY: the group reads one `int`, the container fd.
pub const GROUP_SET_CONTAINER: Ioctl<InInt> = unsafe { Ioctl::declare(uapi::GROUP_SET_CONTAINER) };

/// `VFIO_GROUP_UNSET_CONTAINER` on a group.
// SAFETY: the group ignores the argument.
pub const GROUP_UNSET_CONTAINER: Ioctl<NoArg> = unsafe { Ioctl::declare(uapi::GROUP_UNSET_CONTAINER) };

/// `VFIO_GROUP_GET_DEVICE_FD` on a group; answers a new device fd.
// SAFETY: the group reads the name up to its NUL (strndup_user) and, on
// success, returns a descriptor it has just installed for the caller.
pub const GROUP_GET_DEVICE_FD: Ioctl<DeviceName> = unsafe { Ioctl::declare(uapi::GROUP_GET_DEVICE_FD) };

/// `VFIO_DEVICE_GET_INFO` on a device.
// SAFETY: the device copies `minsz` bytes in, checks `argsz` >= `minsz`, and
// writes back at most `argsz` bytes (capabilities only when they fit).
pub const DEVICE_GET_INFO: Ioctl<InOut<uapi::VfioDeviceInfo>> = unsafe { Ioctl::declare(uapi::DEVICE_GET_INFO) };

/// `VFIO_DEVICE_GET_REGION_INFO` on a device.
// SAFETY: as DEVICE_GET_INFO: at most `argsz` bytes in and out.
pub const DEVICE_GET_REGION_INFO: Ioctl<InOut<uapi::VfioRegionInfo>> =
    unsafe { Ioctl::declare(uapi::DEVICE_GET_REGION_INFO) };

/// `VFIO_DEVICE_RESET` on a device.
// SAFETY: the device ignores the argument.
pub const DEVICE_RESET: Ioctl<NoArg> = unsafe { Ioctl::declare(uapi::DEVICE_RESET) };

/// `VFIO_EEH_PE_OP` on the container; `GET_STATE` answers the state.
// SAFETY: the container reads `offsetofend(op)` = 12 bytes of
// `struct vfio_eeh_pe_op` after checking `argsz`, and `offsetofend(err.mask)`
// = 40 for INJECT_ERR after checking `argsz` >= 40; it writes nothing back.
pub const EEH_PE_OP: Ioctl<In<uapi::VfioEehPeOp>> = unsafe { Ioctl::declare(uapi::EEH_PE_OP) };

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

    fn ioctl(&self, call: IoctlCall<'_>) -> io::Result<i32> {
        let fd = self.0.as_raw_fd();
        let (request, arg) = call.into_parts();
        // `request` is a 32-bit ioctl number; libc takes it as `unsigned long`
        // (glibc) or `int` (musl), both of which hold every such number.
        let request = request as libc::Ioctl;
        let ret = match arg {
            IoctlArg::Value(value) => {
                let value = libc::c_ulong::try_from(value).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
                // SAFETY: `fd` is an open descriptor owned by `self`; a value
                // argument comes from a descriptor declared `NoArg` or
                // `ByValue`, for an ioctl that dereferences nothing.
                unsafe { libc::ioctl(fd, request, value) }
            }
            IoctlArg::In(bytes) => {
                // SAFETY: `fd` is an open descriptor owned by `self`; `bytes`
                // is a live shared borrow from a descriptor declared `InInt`,
                // `In` or `DeviceName`, which covers everything the ioctl
                // reads (`argsz` checked); the kernel does not write to it.
                unsafe { libc::ioctl(fd, request, bytes.as_ptr()) }
            }
            IoctlArg::InOut(bytes) => {
                // SAFETY: `fd` is an open descriptor owned by `self`; `bytes`
                // is a live exclusive borrow from a descriptor declared
                // `InOut`, which covers everything the ioctl reads and writes
                // back (`argsz` checked).
                unsafe { libc::ioctl(fd, request, bytes.as_mut_ptr()) }
            }
        };
        if ret < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(ret)
        }
    }

    fn ioctl_fd(&self, call: NewFdCall<'_>) -> io::Result<SysFd> {
        let raw = self.ioctl(call.into_call())?;
        // SAFETY: only a `DeviceName` descriptor builds a `NewFdCall`, and it
        // is declared for an ioctl whose success value is a new descriptor
        // that nothing else owns, so the `File` may close it.
        Ok(SysFd(unsafe { File::from_raw_fd(raw) }))
    }

    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<usize> {
        self.0.read_at(buf, offset)
    }

    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_argsz_beyond_the_structure_is_refused() {
        let mut status = uapi::VfioGroupStatus { argsz: 9, flags: 0 };
        let err = GROUP_GET_STATUS.call(Encoding::GENERIC, &mut status).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        status.argsz = 8;
        let call = GROUP_GET_STATUS.call(Encoding::POWERPC, &mut status).unwrap();
        assert_eq!(call.request(), 0x2000_3b67);
        let op = uapi::VfioEehPeOp { argsz: 41, ..uapi::VfioEehPeOp::default() };
        assert!(EEH_PE_OP.call(Encoding::GENERIC, &op).is_err());
    }

    #[test]
    fn by_value_and_pointer_kinds_lower_to_their_argument() {
        let call = CHECK_EXTENSION.call(Encoding::GENERIC, uapi::VFIO_EEH).unwrap();
        assert_eq!((call.request(), format!("{:?}", call.into_parts().1)), (0x3b65, "Value(5)".into()));
        let fd = 3;
        let (_, arg) = GROUP_SET_CONTAINER.call(Encoding::GENERIC, &fd).unwrap().into_parts();
        assert!(matches!(arg, IoctlArg::In(&[3, 0, 0, 0]) | IoctlArg::In(&[0, 0, 0, 3])));
        let (request, arg) = GROUP_GET_DEVICE_FD.call(Encoding::POWERPC, c"0000:01:00.0").into_call().into_parts();
        assert_eq!(request, 0x2000_3b6a);
        assert!(matches!(arg, IoctlArg::In(b"0000:01:00.0\0")));
    }
}
