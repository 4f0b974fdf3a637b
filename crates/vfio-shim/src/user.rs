//! The caller's memory, as an ioctl argument reaches it: [`UserPtr`].
//!
//! The kernel copies from and to user memory and answers `EFAULT` for an
//! address it cannot reach. In-process, an emulated ioctl can only refuse the
//! null page; every other address is trusted the way the C caller's own code
//! trusts it.

use vfio_eeh::backend::errno;

/// Addresses below this are refused with `EFAULT` (the null page).
const NULL_PAGE: usize = 4096;

/// A pointer argument of an ioctl.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UserPtr(*mut u8);

impl UserPtr {
    /// Wraps an ioctl's pointer argument.
    ///
    /// # Safety
    ///
    /// `raw` must be below 4096 or point at memory the caller lets the ioctl
    /// read and write: at least as many bytes as the caller's structure
    /// claims (its `argsz`, or the fixed size of the ioctl's argument), and
    /// NUL-terminated for a string argument. This is the contract of the
    /// `ioctl(2)` call the caller made.
    pub(crate) unsafe fn new(raw: usize) -> Self {
        UserPtr(raw as *mut u8)
    }

    /// A pointer to a buffer of this process (tests, the in-process host).
    #[cfg(test)]
    pub(crate) fn of(buf: &mut [u8]) -> Self {
        UserPtr(buf.as_mut_ptr())
    }

    fn check(self) -> Result<*mut u8, i32> {
        if (self.0 as usize) < NULL_PAGE {
            Err(errno::EFAULT)
        } else {
            Ok(self.0)
        }
    }

    /// Copies `buf.len()` bytes in from the caller (`copy_from_user`).
    pub(crate) fn read(self, buf: &mut [u8]) -> Result<(), i32> {
        let ptr = self.check()?;
        // SAFETY: `new`'s contract: the caller's argument covers the bytes
        // this ioctl reads, and every caller reads at most what the ioctl's
        // argument holds (its minimum size, or `argsz` once checked).
        unsafe { std::ptr::copy_nonoverlapping(ptr, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }

    /// Copies `bytes` out to the caller (`copy_to_user`).
    pub(crate) fn write(self, bytes: &[u8]) -> Result<(), i32> {
        let ptr = self.check()?;
        // SAFETY: `new`'s contract: the caller's argument is writable for the
        // bytes this ioctl writes back, never more than its structure holds.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), ptr, bytes.len()) };
        Ok(())
    }

    /// Reads a structure's first `min` bytes (the rest stays zero), the way
    /// the kernel copies `minsz` before it looks at `argsz`.
    pub(crate) fn read_struct<T: zerocopy::FromBytes + zerocopy::IntoBytes>(self, min: usize) -> Result<T, i32> {
        let mut value = T::new_zeroed();
        let bytes = value.as_mut_bytes();
        let n = min.min(bytes.len());
        self.read(&mut bytes[..n])?;
        Ok(value)
    }

    /// Reads a NUL-terminated string of at most `max` bytes into `buf`,
    /// returning its bytes (`strndup_user`): a longer string is `EINVAL`.
    pub(crate) fn read_cstr(self, buf: &mut [u8]) -> Result<&[u8], i32> {
        let ptr = self.check()?;
        for i in 0..buf.len() {
            // SAFETY: `new`'s contract: a string argument is readable up to
            // and including its NUL, and the loop stops at the NUL.
            let byte = unsafe { *ptr.add(i) };
            if byte == 0 {
                return Ok(&buf[..i]);
            }
            buf[i] = byte;
        }
        Err(errno::EINVAL)
    }
}
