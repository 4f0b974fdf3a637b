//! Memory eehd shares with its VMMs (docs/shared-host.md): files mapped
//! `MAP_SHARED` by both, BAR memory accessed with naturally aligned atomic
//! loads and stores of 1, 2, 4 or 8 bytes, and one [`PeWord`] per PE that
//! says whether a VMM may access its BARs directly.

use std::io;
use std::os::fd::AsFd;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering};

use rustix::mm::{mmap, munmap, MapFlags, ProtFlags};

/// A file mapped shared, read-write or read-only.
#[derive(Debug)]
pub struct Mapping {
    base: NonNull<u8>,
    len: usize,
    writable: bool,
}

// SAFETY: the mapping is plain shared memory, only ever accessed through
// atomics, so any thread may use it.
unsafe impl Send for Mapping {}
// SAFETY: as above: every access is atomic.
unsafe impl Sync for Mapping {}

impl Mapping {
    /// Maps the first `len` bytes of `fd` (a file at least that long,
    /// open read-write).
    pub fn new(fd: impl AsFd, len: u64) -> io::Result<Self> {
        Mapping::map(fd, len, true)
    }

    /// Maps the first `len` bytes of `fd` read-only: [`Mapping::store`]
    /// refuses, loads and [`Mapping::word`] loads work.
    pub fn read_only(fd: impl AsFd, len: u64) -> io::Result<Self> {
        Mapping::map(fd, len, false)
    }

    fn map(fd: impl AsFd, len: u64, writable: bool) -> io::Result<Self> {
        let prot = if writable { ProtFlags::READ | ProtFlags::WRITE } else { ProtFlags::READ };
        let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        if len == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty mapping"));
        }
        // SAFETY: a fresh mapping chosen by the kernel overlaps nothing of
        // this process; `NORESERVE` because BARs are sparse.
        let base = unsafe { mmap(std::ptr::null_mut(), len, prot, MapFlags::SHARED | MapFlags::NORESERVE, fd, 0)? };
        let base = NonNull::new(base.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { base, len, writable })
    }

    /// Its length in bytes.
    pub fn len(&self) -> u64 {
        self.len as u64
    }

    /// Whether it is empty (never: [`Mapping::new`] refuses that).
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The address of `width` bytes at `offset`, if they are a naturally
    /// aligned access of 1, 2, 4 or 8 bytes inside the mapping.
    fn at(&self, offset: u64, width: u8) -> Option<*mut u8> {
        let width_bytes = u64::from(width);
        let aligned = matches!(width, 1 | 2 | 4 | 8) && offset.is_multiple_of(width_bytes);
        let inside = offset.checked_add(width_bytes).is_some_and(|end| end <= self.len());
        // The base is page-aligned, so an aligned offset is an aligned address.
        (aligned && inside).then(|| self.base.as_ptr().wrapping_add(usize::try_from(offset).unwrap_or(usize::MAX)))
    }

    /// Loads `width` bytes at `offset` (little-endian); `None` for an
    /// access that is not naturally aligned or not inside.
    pub fn load(&self, offset: u64, width: u8) -> Option<u64> {
        let at = self.at(offset, width)?;
        // SAFETY: `at` is inside the live mapping and aligned to `width`;
        // the memory is only ever accessed atomically.
        let value = unsafe {
            match width {
                1 => u64::from(AtomicU8::from_ptr(at).load(Ordering::Relaxed)),
                2 => u64::from(u16::from_le(AtomicU16::from_ptr(at.cast()).load(Ordering::Relaxed))),
                4 => u64::from(u32::from_le(AtomicU32::from_ptr(at.cast()).load(Ordering::Relaxed))),
                _ => u64::from_le(AtomicU64::from_ptr(at.cast()).load(Ordering::Relaxed)),
            }
        };
        Some(value)
    }

    /// Stores the low `width` bytes of `value` at `offset`; `None` (and no
    /// store) for an access that is not naturally aligned or not inside, or
    /// a read-only mapping.
    #[allow(clippy::cast_possible_truncation)] // Keeping the low bytes is the point.
    pub fn store(&self, offset: u64, width: u8, value: u64) -> Option<()> {
        let at = self.at(offset, width).filter(|_| self.writable)?;
        // SAFETY: as in `load`.
        unsafe {
            match width {
                1 => AtomicU8::from_ptr(at).store(value as u8, Ordering::Relaxed),
                2 => AtomicU16::from_ptr(at.cast()).store((value as u16).to_le(), Ordering::Relaxed),
                4 => AtomicU32::from_ptr(at.cast()).store((value as u32).to_le(), Ordering::Relaxed),
                _ => AtomicU64::from_ptr(at.cast()).store(value.to_le(), Ordering::Relaxed),
            }
        }
        Some(())
    }

    /// The `index`th 8-byte word, if inside (only to load from, in a
    /// read-only mapping).
    pub fn word(&self, index: u32) -> Option<&AtomicU64> {
        let at = self.at(u64::from(index) * 8, 8)?;
        // SAFETY: inside the mapping, 8-aligned, alive as long as `self`,
        // and only ever accessed atomically.
        Some(unsafe { AtomicU64::from_ptr(at.cast()) })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping is this object's; no reference into it
        // outlives it (`word` borrows `self`). Unmapping a range this
        // object mapped cannot fail in a way worth reporting.
        let _ = unsafe { munmap(self.base.as_ptr().cast(), self.len) };
    }
}

/// A PE's state word in the state file: bit 0 says whether a VMM may access
/// the PE's shared BAR memory directly ([`PeWord::DIRECT`]); the bits above
/// count eehd's publications, so a reader can tell the word changed under
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeWord(pub u64);

impl PeWord {
    /// Direct access allowed: the PE is usable, no injection is armed,
    /// every function is ready and decodes memory, and no request that may
    /// change that is in progress.
    pub const DIRECT: u64 = 1;
    /// One publication.
    pub const GENERATION: u64 = 2;

    /// Whether direct access is allowed.
    pub const fn direct(self) -> bool {
        self.0 & Self::DIRECT != 0
    }

    /// The next publication, with direct access as `direct` says.
    #[must_use]
    pub const fn next(self, direct: bool) -> Self {
        PeWord((self.0 & !Self::DIRECT).wrapping_add(Self::GENERATION) | if direct { Self::DIRECT } else { 0 })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_mappings_of_a_file_see_each_others_stores() {
        let file = tempfile::tempfile().unwrap();
        file.set_len(1 << 20).unwrap();
        let (a, b) = (Mapping::new(&file, 1 << 20).unwrap(), Mapping::new(&file, 1 << 20).unwrap());
        assert_eq!(a.load(4096, 8), Some(0), "a hole reads zero");
        a.store(4096, 8, 0x0102_0304_0506_0708).unwrap();
        assert_eq!(b.load(4096, 4), Some(0x0506_0708), "little-endian");
        assert_eq!(b.load(4102, 2), Some(0x0102));
        assert_eq!(b.load(4097, 2), None, "misaligned");
        assert_eq!(b.load((1 << 20) - 4, 8), None, "beyond the end");
        assert_eq!(b.store(3, 4, 0), None);
        a.word(1).unwrap().store(PeWord(0).next(true).0, Ordering::Release);
        let word = PeWord(b.word(1).unwrap().load(Ordering::Acquire));
        assert!(word.direct());
        assert!(!word.next(false).direct());
        assert_ne!(word.next(true), word, "each publication is new");

        let reader = Mapping::read_only(&file, 1 << 20).unwrap();
        assert_eq!(reader.load(4096, 8), Some(0x0102_0304_0506_0708));
        assert_eq!(reader.store(0, 8, 1), None, "read-only");
        assert!(PeWord(reader.word(1).unwrap().load(Ordering::Acquire)).direct());
    }
}
