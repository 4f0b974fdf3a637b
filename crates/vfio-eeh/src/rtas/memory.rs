//! Guest memory as the RTAS calls that take buffer addresses see it
//! (`ibm,slot-error-detail` writes a log, `ibm,errinjct` reads a work buffer).

/// An access outside guest memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Guest memory access of {len} bytes at {addr:#x} is out of bounds")]
pub struct MemoryError {
    /// Guest real address.
    pub addr: u64,
    /// Bytes asked for.
    pub len: usize,
}

/// Guest real memory.
pub trait GuestMemory {
    /// Reads `buf.len()` bytes at `addr`.
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError>;
    /// Writes `data` at `addr`.
    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError>;
}

/// One contiguous range of guest memory backed by a byte vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlatMemory {
    base: u64,
    bytes: Vec<u8>,
}

impl FlatMemory {
    /// `len` zeroed bytes at guest address `base`.
    pub fn new(base: u64, len: usize) -> Self {
        FlatMemory { base, bytes: vec![0; len] }
    }

    fn range(&self, addr: u64, len: usize) -> Result<std::ops::Range<usize>, MemoryError> {
        let error = MemoryError { addr, len };
        let start = usize::try_from(addr.checked_sub(self.base).ok_or(error)?).map_err(|_| error)?;
        let end = start.checked_add(len).ok_or(error)?;
        Ok(start..end)
    }
}

impl GuestMemory for FlatMemory {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let error = MemoryError { addr, len: buf.len() };
        let bytes = self.bytes.get(self.range(addr, buf.len())?).ok_or(error)?;
        buf.copy_from_slice(bytes);
        Ok(())
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let error = MemoryError { addr, len: data.len() };
        let range = self.range(addr, data.len())?;
        self.bytes.get_mut(range).ok_or(error)?.copy_from_slice(data);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_checked_without_overflow() {
        let mut mem = FlatMemory::new(0x1000, 16);
        mem.write(0x1008, &[1, 2, 3, 4]).unwrap();
        let mut buf = [0; 4];
        mem.read(0x1008, &mut buf).unwrap();
        assert_eq!(buf, [1, 2, 3, 4]);
        assert!(mem.read(0x0fff, &mut buf).is_err());
        assert!(mem.read(0x100d, &mut buf).is_err());
        assert!(mem.write(u64::MAX, &[1]).is_err());
        mem.read(0x1010, &mut []).unwrap();
    }
}
