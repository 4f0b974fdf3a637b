//! The caller's memory, as an ioctl argument reaches it: [`UserPtr`] into
//! a [`UserMemory`].
//!
//! The kernel copies from and to user memory and answers `EFAULT` for an
//! address it cannot reach. [`ProcessMemory`] does the same in-process: it
//! copies with `process_vm_readv`/`process_vm_writev` on the process itself,
//! which the kernel checks, so a bad pointer in an ioctl argument is
//! `EFAULT`, never `SIGSEGV`. Other memories (the fuzzing entry point's
//! sandbox) hold the caller's bytes themselves.

use vfio_eeh::backend::errno;

use crate::sys;

/// Addresses below this are refused with `EFAULT` (the null page).
const NULL_PAGE: usize = 4096;

/// Memory that ioctl arguments point into.
pub(crate) trait UserMemory {
    /// Copies `buf.len()` bytes at `addr` into `buf`; `EFAULT` if any of
    /// them cannot be read.
    fn read(&self, addr: usize, buf: &mut [u8]) -> Result<(), i32>;
    /// Copies `bytes` to `addr`; `EFAULT` if any of them cannot be written.
    fn write(&self, addr: usize, bytes: &[u8]) -> Result<(), i32>;
}

/// The memory of this process, as the program that made the call sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ProcessMemory;

impl UserMemory for ProcessMemory {
    fn read(&self, addr: usize, buf: &mut [u8]) -> Result<(), i32> {
        sys::read_own_memory(addr, buf).map_err(|_| errno::EFAULT)
    }

    fn write(&self, addr: usize, bytes: &[u8]) -> Result<(), i32> {
        sys::write_own_memory(addr, bytes).map_err(|_| errno::EFAULT)
    }
}

/// A pointer argument of an ioctl.
#[derive(Clone, Copy)]
pub(crate) struct UserPtr<'m> {
    addr: usize,
    memory: &'m dyn UserMemory,
}

impl std::fmt::Debug for UserPtr<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "UserPtr({:#x})", self.addr)
    }
}

impl<'m> UserPtr<'m> {
    /// An ioctl's pointer argument `addr` into `memory`.
    pub(crate) fn new(addr: usize, memory: &'m dyn UserMemory) -> Self {
        UserPtr { addr, memory }
    }

    /// A pointer to a buffer of this process (tests).
    #[cfg(test)]
    pub(crate) fn of(buf: &mut [u8]) -> UserPtr<'static> {
        UserPtr { addr: buf.as_mut_ptr().addr(), memory: &ProcessMemory }
    }

    fn check(self, offset: usize) -> Result<usize, i32> {
        let addr = self.addr.checked_add(offset).ok_or(errno::EFAULT)?;
        if self.addr < NULL_PAGE {
            Err(errno::EFAULT)
        } else {
            Ok(addr)
        }
    }

    /// Copies `buf.len()` bytes in from the caller (`copy_from_user`).
    pub(crate) fn read(self, buf: &mut [u8]) -> Result<(), i32> {
        if buf.is_empty() {
            return Ok(());
        }
        self.memory.read(self.check(0)?, buf)
    }

    /// Copies `bytes` out to the caller (`copy_to_user`).
    pub(crate) fn write(self, bytes: &[u8]) -> Result<(), i32> {
        if bytes.is_empty() {
            return Ok(());
        }
        self.memory.write(self.check(0)?, bytes)
    }

    /// Copies the first `n` of `bytes` out to the caller (all of them if
    /// there are fewer): a structure's fields up to an older `argsz`.
    pub(crate) fn write_prefix(self, bytes: &[u8], n: usize) -> Result<(), i32> {
        self.write(bytes.get(..n).unwrap_or(bytes))
    }

    /// Reads a structure's first `min` bytes (the rest stays zero), the way
    /// the kernel copies `minsz` before it looks at `argsz`.
    pub(crate) fn read_struct<T: zerocopy::FromBytes + zerocopy::IntoBytes>(self, min: usize) -> Result<T, i32> {
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        let n = min.min(bytes.len());
        self.read(bytes.get_mut(..n).unwrap_or_default())?;
        Ok(value)
    }

    /// Reads a NUL-terminated string of at most `buf.len()` bytes into
    /// `buf`, returning its bytes (`strndup_user`): a longer string is
    /// `EINVAL`.
    pub(crate) fn read_cstr(self, buf: &mut [u8]) -> Result<&[u8], i32> {
        for i in 0..buf.len() {
            let mut byte = [0u8];
            self.memory.read(self.check(i)?, &mut byte)?;
            if byte[0] == 0 {
                return Ok(buf.get(..i).unwrap_or_default());
            }
            if let Some(slot) = buf.get_mut(i) {
                *slot = byte[0];
            }
        }
        Err(errno::EINVAL)
    }
}
