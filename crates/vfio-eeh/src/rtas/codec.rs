//! The RTAS argument buffer exactly as guest memory holds it: big-endian
//! 32-bit cells `token, nargs, nret, args[nargs], rets[nret]`, and the
//! `ibm,errinjct` work buffers. Cells are zerocopy's `big_endian` words, so
//! layouts are declared as structures rather than shuffled byte by byte.
//!
//! Decoding copies the cells into fixed arrays (no allocation); a buffer that
//! is too short for the counts it states, or counts beyond what a Linux
//! `struct rtas_args` can carry (16 cells in all), is refused and nothing is
//! written back.

use zerocopy::byteorder::big_endian;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// Most cells (`nargs + nret`) a call may carry, as Linux's `rtas_args`.
pub const MAX_CELLS: usize = 16;
/// Bytes before the first argument: token, nargs, nret.
pub const HEADER_BYTES: usize = 12;

/// One RTAS cell as guest memory holds it: a big-endian 32-bit word, read
/// and written in place at any alignment.
pub(super) type Cell = big_endian::U32;

/// The three cells that open every RTAS argument buffer.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct Header {
    token: Cell,
    nargs: Cell,
    nret: Cell,
}

const _: () = assert!(std::mem::size_of::<Header>() == HEADER_BYTES);

/// The cells of an `ibm,errinjct` work buffer after the address and mask:
/// the target (config address, BUID hi, BUID lo) and the error function.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct InjectionTarget {
    /// PE config address.
    pub config: Cell,
    /// BUID, high cell.
    pub buid_hi: Cell,
    /// BUID, low cell.
    pub buid_lo: Cell,
    /// The `ibm,errinjct` error function.
    pub func: Cell,
}

/// The `ioa-bus-error` work buffer: 32-bit address and mask.
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct IoaBusError {
    /// Address to inject at.
    pub addr: Cell,
    /// Address mask.
    pub mask: Cell,
    /// Where and what.
    pub target: InjectionTarget,
}

/// The `ioa-bus-error-64` work buffer: 64-bit address and mask, each two
/// cells, high first (which is a big-endian 64-bit word).
#[derive(Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct IoaBusError64 {
    /// Address to inject at.
    pub addr: big_endian::U64,
    /// Address mask.
    pub mask: big_endian::U64,
    /// Where and what.
    pub target: InjectionTarget,
}

const _: () = assert!(std::mem::size_of::<IoaBusError>() == 24 && std::mem::size_of::<IoaBusError64>() == 32);

/// Why a buffer could not be read as an RTAS call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the 12-byte header.
    #[error("RTAS buffer of {0} bytes is shorter than its 12-byte header")]
    NoHeader(usize),
    /// `nargs + nret` above 16.
    #[error("RTAS call has {nargs} arguments and {nret} returns, more than {MAX_CELLS} cells")]
    TooManyCells {
        /// Stated argument count.
        nargs: u32,
        /// Stated return count.
        nret: u32,
    },
    /// The buffer ends before the cells its counts need.
    #[error("RTAS buffer of {len} bytes is too short for {needed} bytes of cells")]
    Truncated {
        /// The buffer's length.
        len: usize,
        /// What the counts need.
        needed: usize,
    },
}

/// A decoded call: token and arguments; `nret` says how many return cells the
/// caller provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtasArgs {
    /// The call's token.
    pub token: u32,
    nargs: usize,
    nret: usize,
    args: [u32; MAX_CELLS],
}

impl RtasArgs {
    /// Builds a call (for callers that build buffers, such as the guest model).
    ///
    /// # Panics
    /// If `args.len() + nret` exceeds [`MAX_CELLS`]: a caller's bug, not input.
    pub fn new(token: u32, args: &[u32], nret: usize) -> Self {
        assert!(args.len() + nret <= MAX_CELLS, "an RTAS call carries at most {MAX_CELLS} cells");
        let mut cells = [0; MAX_CELLS];
        for (cell, &arg) in cells.iter_mut().zip(args) {
            *cell = arg;
        }
        RtasArgs { token, nargs: args.len(), nret, args: cells }
    }

    /// The input cells.
    pub fn args(&self) -> &[u32] {
        self.args.split_at_checked(self.nargs).map_or(self.args.as_slice(), |(args, _)| args)
    }

    /// How many return cells the caller provided.
    pub fn nret(&self) -> usize {
        self.nret
    }

    /// Bytes the whole buffer takes.
    pub fn buffer_len(&self) -> usize {
        HEADER_BYTES + 4 * (self.nargs + self.nret)
    }

    /// Reads a buffer.
    pub fn decode(buf: &[u8]) -> Result<Self, DecodeError> {
        let (header, cells) = Header::ref_from_prefix(buf).map_err(|_| DecodeError::NoHeader(buf.len()))?;
        let (token, nargs, nret) = (header.token.get(), header.nargs.get(), header.nret.get());
        let count = u64::from(nargs) + u64::from(nret);
        if count > MAX_CELLS as u64 {
            return Err(DecodeError::TooManyCells { nargs, nret });
        }
        // Both counts are at most 16 here.
        let (nargs, nret) = (usize::try_from(nargs).expect("<= 16"), usize::try_from(nret).expect("<= 16"));
        let needed = HEADER_BYTES + 4 * (nargs + nret);
        let (cells, _) = <[Cell]>::ref_from_prefix_with_elems(cells, nargs + nret)
            .map_err(|_| DecodeError::Truncated { len: buf.len(), needed })?;
        let mut args = [0; MAX_CELLS];
        for (arg, cell) in args.iter_mut().zip(cells.iter().take(nargs)) {
            *arg = cell.get();
        }
        Ok(RtasArgs { token, nargs, nret, args })
    }

    /// Writes the call (header and arguments, returns zeroed) into a new buffer.
    pub fn encode(&self) -> Vec<u8> {
        // Both counts are at most MAX_CELLS (16).
        let count = |n: usize| Cell::new(u32::try_from(n).expect("<= 16"));
        let header = Header { token: Cell::new(self.token), nargs: count(self.nargs), nret: count(self.nret) };
        let mut buf = Vec::with_capacity(self.buffer_len());
        buf.extend_from_slice(header.as_bytes());
        for &arg in self.args() {
            buf.extend_from_slice(Cell::new(arg).as_bytes());
        }
        buf.resize(self.buffer_len(), 0);
        buf
    }

    /// Writes return cells into `buf` (which holds this call): as many of
    /// `rets` as the caller provided room for.
    pub fn write_rets(&self, buf: &mut [u8], rets: &[u32]) {
        let start = HEADER_BYTES + 4 * self.nargs;
        let (cells, _) = buf
            .get_mut(start..)
            .and_then(|rest| <[Cell]>::mut_from_prefix_with_elems(rest, self.nret).ok())
            .expect("the buffer holds this call");
        for (cell, &ret) in cells.iter_mut().zip(rets) {
            cell.set(ret);
        }
    }

    /// Reads the return cells back from a buffer holding this call.
    pub fn read_rets(&self, buf: &[u8]) -> Vec<u32> {
        let start = HEADER_BYTES + 4 * self.nargs;
        let (cells, _) = buf
            .get(start..)
            .and_then(|rest| <[Cell]>::ref_from_prefix_with_elems(rest, self.nret).ok())
            .expect("the buffer holds this call");
        cells.iter().map(|cell| cell.get()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn decodes_big_endian_cells() {
        let buf =
            [0, 0, 0x20, 0x01, 0, 0, 0, 2, 0, 0, 0, 1, 0x12, 0x34, 0x56, 0x78, 0, 0, 0, 9, 0xff, 0xff, 0xff, 0xff];
        let call = RtasArgs::decode(&buf).unwrap();
        assert_eq!(call.token, 0x2001);
        assert_eq!(call.args(), &[0x1234_5678, 9]);
        assert_eq!(call.nret(), 1);
        let mut out = buf;
        call.write_rets(&mut out, &[(-3i32).cast_unsigned(), 77]);
        assert_eq!(&out[20..24], &[0xff, 0xff, 0xff, 0xfd]);
        assert_eq!(call.read_rets(&out), vec![(-3i32).cast_unsigned()]);
    }

    #[test]
    fn refuses_short_and_oversized_buffers() {
        assert_eq!(RtasArgs::decode(&[0; 11]), Err(DecodeError::NoHeader(11)));
        let mut buf = RtasArgs::new(1, &[1, 2, 3], 4).encode();
        assert_eq!(buf.len(), 40);
        assert_eq!(RtasArgs::decode(&buf[..39]), Err(DecodeError::Truncated { len: 39, needed: 40 }));
        buf[4..8].copy_from_slice(&13u32.to_be_bytes());
        assert_eq!(RtasArgs::decode(&buf), Err(DecodeError::TooManyCells { nargs: 13, nret: 4 }));
        buf[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(matches!(RtasArgs::decode(&buf), Err(DecodeError::TooManyCells { .. })));
    }

    proptest! {
        #[test]
        fn round_trips(token: u32, args in proptest::collection::vec(any::<u32>(), 0..8), nret in 0usize..8) {
            let call = RtasArgs::new(token, &args, nret);
            prop_assert_eq!(RtasArgs::decode(&call.encode()).unwrap(), call);
        }

        #[test]
        fn never_panics_on_random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..96)) {
            if let Ok(call) = RtasArgs::decode(&buf) {
                prop_assert!(call.buffer_len() <= buf.len());
            }
        }
    }
}
