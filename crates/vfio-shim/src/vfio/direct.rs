//! The fast data path under eehd (docs/shared-host.md): a function's memory
//! BARs are files eehd shares, mapped here, and its PE's word in eehd's
//! state file says whether they may be accessed directly. While it does, a
//! `pread`/`pwrite` of a BAR is a few atomic loads or stores and no round
//! trip; otherwise (frozen, in reset, an injection armed, a request that may
//! stop the PE in progress) the access goes to eehd, which decides.
//!
//! A read checks the word before and after copying: if eehd changed it
//! meanwhile (a freeze), the read is served by eehd instead, so no read
//! returns data once the freeze was published.

use std::sync::atomic::{fence, Ordering};
use std::sync::Arc;

use eehd_protocol::shm::{Mapping, PeWord};

use super::device::{chunk, put, Access};

/// A function's shared BARs and its PE's word.
#[derive(Debug)]
pub(crate) struct DirectBars {
    states: Arc<Mapping>,
    slot: u32,
    bars: [Option<Mapping>; 6],
}

impl DirectBars {
    /// The BARs in `bars` (by index), governed by word `slot` of `states`.
    pub(crate) fn new(states: Arc<Mapping>, slot: u32, bars: [Option<Mapping>; 6]) -> Self {
        DirectBars { states, slot, bars }
    }

    fn word(&self) -> Option<PeWord> {
        self.states.word(self.slot).map(|w| PeWord(w.load(Ordering::Acquire)))
    }

    /// Carries out `access` of `n` bytes at `pos` of BAR `bar` directly;
    /// `false` if it must go to eehd instead (nothing was written then).
    pub(crate) fn try_access(&self, bar: u8, pos: u64, n: usize, access: &mut Access<'_>) -> bool {
        let Some(memory) = self.bars.get(usize::from(bar)).and_then(Option::as_ref) else { return false };
        let Some(before) = self.word().filter(|w| w.direct()) else { return false };
        let mut done = 0;
        while done < n {
            let at = pos + done as u64;
            let width = chunk(at, n - done, 8);
            let w = usize::from(width);
            let copied = match access {
                Access::Read(buf) => {
                    memory.load(at, width).is_some_and(|v| put(buf, done, &v.to_le_bytes(), w).is_ok())
                }
                Access::Write(buf) => {
                    let mut bytes = [0u8; 8];
                    put(&mut bytes, 0, buf.get(done..).unwrap_or_default(), w).is_ok()
                        && memory.store(at, width, u64::from_le_bytes(bytes)).is_some()
                }
            };
            if !copied {
                return false;
            }
            done += w;
        }
        match access {
            Access::Read(_) => {
                // The copy happened before the second look at the word.
                fence(Ordering::Acquire);
                self.word() == Some(before)
            }
            Access::Write(_) => true,
        }
    }
}
