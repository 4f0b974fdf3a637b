//! The error log a frozen PE keeps: a PHB diag blob naming the cause, the
//! function and address of the access that froze it, and the time. The host
//! latches the first error and hands the log out once (`read error log`).
//!
//! Wire form (36 bytes, big-endian like OPAL's PHB diag data):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | magic `PHBD` |
//! | 4 | 2 | version, 1 |
//! | 6 | 2 | cause: 0..=19 injected function, 0x100 unsupported request, 0x200 manual, 0x300 DMA fault (IOMMU) |
//! | 8 | 4 | PE (IOMMU group) |
//! | 12 | 4 | domain |
//! | 16 | 1 | 1 if a function is named, else 0 |
//! | 17 | 1 | bus |
//! | 18 | 1 | devfn |
//! | 19 | 1 | 0 |
//! | 20 | 8 | address |
//! | 28 | 8 | time, ns |

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{Devfn, PciAddr, PeId};
use vfio_eeh::ops::ErrFunc;

use crate::event::FreezeCause;

const MAGIC: &[u8; 4] = b"PHBD";
const VERSION: u16 = 1;
/// Length of the blob.
pub const DIAG_LEN: usize = 36;
const CAUSE_UR: u16 = 0x100;
const CAUSE_MANUAL: u16 = 0x200;
const CAUSE_DMA_FAULT: u16 = 0x300;

/// A decoded PHB diag blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhbDiag {
    /// The PE.
    pub pe: PeId,
    /// Why it froze.
    pub cause: FreezeCause,
    /// The function whose access froze it.
    pub device: Option<PciAddr>,
    /// The address of that access.
    pub addr: u64,
    /// When, in ns of the host clock.
    pub at_ns: u64,
}

/// Why bytes are not a diag blob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiagError {
    /// Wrong length.
    #[error("A PHB diag blob is {DIAG_LEN} bytes, not {0}")]
    Length(usize),
    /// Wrong magic or version.
    #[error("Not a version-1 PHB diag blob")]
    Header,
    /// Unknown cause code.
    #[error("Unknown cause code {0:#x}")]
    Cause(u16),
}

impl PhbDiag {
    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let cause: u16 = match self.cause {
            FreezeCause::Injected(f) => u16::try_from(f.raw()).expect("Function codes are below 20"),
            FreezeCause::UnsupportedRequest => CAUSE_UR,
            FreezeCause::Manual => CAUSE_MANUAL,
            FreezeCause::DmaFault => CAUSE_DMA_FAULT,
        };
        let mut out = Vec::with_capacity(DIAG_LEN);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.extend_from_slice(&cause.to_be_bytes());
        out.extend_from_slice(&self.pe.0.to_be_bytes());
        let (valid, domain, bus, devfn) = match self.device {
            Some(d) => (1, d.domain(), d.bus(), d.devfn().raw()),
            None => (0, 0, 0, 0),
        };
        out.extend_from_slice(&domain.to_be_bytes());
        out.extend_from_slice(&[valid, bus, devfn, 0]);
        out.extend_from_slice(&self.addr.to_be_bytes());
        out.extend_from_slice(&self.at_ns.to_be_bytes());
        out
    }

    /// Reads the wire form.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DiagError> {
        let b: &[u8; DIAG_LEN] = bytes.try_into().map_err(|_| DiagError::Length(bytes.len()))?;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes(b[i..i + 4].try_into().expect("Four bytes"));
        let u64_at = |i: usize| u64::from_be_bytes(b[i..i + 8].try_into().expect("Eight bytes"));
        if &b[..4] != MAGIC || u16_at(4) != VERSION {
            return Err(DiagError::Header);
        }
        let code = u16_at(6);
        let cause = match code {
            CAUSE_UR => FreezeCause::UnsupportedRequest,
            CAUSE_MANUAL => FreezeCause::Manual,
            CAUSE_DMA_FAULT => FreezeCause::DmaFault,
            _ => FreezeCause::Injected(ErrFunc::from_raw(u32::from(code)).ok_or(DiagError::Cause(code))?),
        };
        let devfn = Devfn::from_raw(b[18]);
        let device = (b[16] == 1)
            .then(|| PciAddr::new(u32_at(12), b[17], devfn.slot(), devfn.func()).expect("A devfn byte is valid"));
        Ok(PhbDiag { pe: PeId(u32_at(8)), cause, device, addr: u64_at(20), at_ns: u64_at(28) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blobs_round_trip_and_bad_ones_are_refused() {
        for (cause, device) in [
            (FreezeCause::Injected(ErrFunc::DmaWriteTarget), Some("0001:02:1f.7".parse().unwrap())),
            (FreezeCause::UnsupportedRequest, None),
            (FreezeCause::Manual, None),
            (FreezeCause::DmaFault, Some("0000:01:00.0".parse().unwrap())),
        ] {
            let diag = PhbDiag { pe: PeId(9), cause, device, addr: 0x6_0000_0000_1000, at_ns: 42 };
            let bytes = diag.to_bytes();
            assert_eq!(bytes.len(), DIAG_LEN);
            assert_eq!(&bytes[..4], b"PHBD");
            assert_eq!(PhbDiag::from_bytes(&bytes), Ok(diag));
        }
        let mut bytes = PhbDiag { pe: PeId(1), cause: FreezeCause::Manual, device: None, addr: 0, at_ns: 0 }.to_bytes();
        assert_eq!(PhbDiag::from_bytes(&bytes[1..]), Err(DiagError::Length(35)));
        bytes[6..8].copy_from_slice(&20u16.to_be_bytes());
        assert_eq!(PhbDiag::from_bytes(&bytes), Err(DiagError::Cause(20)));
        bytes[0] = b'X';
        assert_eq!(PhbDiag::from_bytes(&bytes), Err(DiagError::Header));
    }
}
