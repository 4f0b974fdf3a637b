//! The memory eehd shares with its VMMs (docs/shared-host.md): each memory
//! BAR of the simulated host in a sparse file, and each PE's [`PeWord`] in
//! a file of its own (a VMM gets its PEs' words, read-only), all below
//! `<state dir>/shared/` so they outlive a restart of eehd (a VMM's
//! mappings stay valid, and device memory is kept).
//!
//! A VMM reads and writes a BAR directly while its PE's word allows it
//! ([`PeWord::DIRECT`]) and otherwise asks eehd. eehd closes a PE's word
//! ([`SharedMemory::begin`]) before it serves a request that may stop the
//! PE, and opens it again ([`SharedMemory::end`]) only when no such
//! request is in progress and the host says a BAR access would be plain
//! memory ([`vfio_eeh_sim::SimHost::plain_memory_access`]).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};

use eehd_protocol::shm::{Mapping, PeWord};
use rustix::fs::{fallocate, FallocateFlags};
use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh_sim::spec::{BarKind, DeviceInfo, DeviceModel, TopologySpec};
use vfio_eeh_sim::{BarMemory, SparsePages};

/// Why the shared memory could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("Cannot set up shared memory file {path}")]
pub struct SharedError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// One shared BAR: its file and eehd's mapping of it.
#[derive(Debug)]
struct SharedBar {
    file: Arc<File>,
    map: Mapping,
}

impl SharedBar {
    /// Forgets the BAR's bytes (they read as zero), keeping its size.
    fn clear(&self) {
        let punched = fallocate(&*self.file, FallocateFlags::PUNCH_HOLE | FallocateFlags::KEEP_SIZE, 0, self.map.len());
        if let Err(error) = punched {
            // Without hole punching, zero the BAR by hand.
            tracing::debug!("cannot punch a hole ({error}); zeroing the BAR");
            for at in (0..self.map.len()).step_by(8) {
                // Every 8-aligned word below the length is inside.
                let _ = self.map.store(at, 8, 0);
            }
        }
    }
}

/// One PE's state word: its file, a read-only descriptor of it for VMMs,
/// eehd's mapping, and the requests in progress that may stop the PE.
#[derive(Debug)]
struct PeState {
    for_vmms: Arc<File>,
    map: Mapping,
}

/// The shared memory of one simulated host.
#[derive(Debug)]
pub struct SharedMemory {
    states: HashMap<PeId, PeState>,
    /// Requests in progress that may stop each PE.
    pending: Mutex<HashMap<PeId, u32>>,
    bars: HashMap<(PciAddr, u8), Arc<SharedBar>>,
}

fn open_sized(path: &Path, len: u64) -> Result<(Arc<File>, Mapping), SharedError> {
    let fail = |source| SharedError { path: path.to_owned(), source };
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path).map_err(fail)?;
    file.set_len(len).map_err(fail)?;
    let map = Mapping::new(&file, len).map_err(fail)?;
    Ok((Arc::new(file), map))
}

/// A BAR's file name: the function's address and the BAR index.
fn bar_file_name(device: PciAddr, index: u8) -> String {
    format!("{device}.bar{index}")
}

impl SharedMemory {
    /// The shared memory of the host `spec` describes, in `dir` (created if
    /// missing). Files left by an earlier run are kept (their bytes are
    /// the device memory); every PE's word starts closed.
    pub fn open(dir: &Path, spec: &TopologySpec) -> Result<Arc<Self>, SharedError> {
        std::fs::create_dir_all(dir).map_err(|source| SharedError { path: dir.to_owned(), source })?;
        let mut states = HashMap::new();
        let mut bars = HashMap::new();
        for pe in spec.phbs().iter().flat_map(|phb| &phb.pes) {
            // A file per PE: a VMM is handed its own PEs' words, read-only.
            let path = dir.join(format!("pe-{}.state", pe.pe.0));
            let (_, map) = open_sized(&path, 8)?;
            let for_vmms = File::open(&path).map_err(|source| SharedError { path: path.clone(), source })?;
            states.insert(pe.pe, PeState { for_vmms: Arc::new(for_vmms), map });
            // A device model's BARs are its registers, not memory: every
            // access must reach the model, so they are never shared.
            for device in pe.devices.iter().filter(|d| d.model == DeviceModel::Memory) {
                for bar in device.bars.iter().filter(|b| b.kind != BarKind::Io) {
                    let (file, map) = open_sized(&dir.join(bar_file_name(device.addr, bar.index)), bar.size)?;
                    bars.insert((device.addr, bar.index), Arc::new(SharedBar { file, map }));
                }
            }
        }
        let pending = Mutex::new(states.keys().map(|&pe| (pe, 0)).collect());
        let shared = SharedMemory { states, pending, bars };
        for &pe in shared.states.keys() {
            shared.publish(pe, false);
        }
        Ok(Arc::new(shared))
    }

    /// The BAR memory of `device` for the simulated host: its memory BARs
    /// shared, the rest (I/O BARs) private.
    pub fn bar_memory(&self, device: &DeviceInfo) -> Box<dyn BarMemory> {
        let mut shared: [Option<Arc<SharedBar>>; 6] = Default::default();
        for (index, slot) in (0u8..).zip(shared.iter_mut()) {
            *slot = self.bars.get(&(device.addr, index)).cloned();
        }
        Box::new(FunctionMemory { shared, private: SparsePages::default() })
    }

    /// A read-only descriptor of a PE's state file (its word is word 0).
    pub fn state_file(&self, pe: PeId) -> Option<&Arc<File>> {
        self.states.get(&pe).map(|state| &state.for_vmms)
    }

    /// A shared BAR's file.
    pub fn bar_file(&self, device: PciAddr, index: u8) -> Option<&Arc<File>> {
        self.bars.get(&(device, index)).map(|bar| &bar.file)
    }

    fn publish(&self, pe: PeId, direct: bool) {
        let Some(word) = self.states.get(&pe).and_then(|state| state.map.word(0)) else { return };
        let now = PeWord(word.load(Ordering::Acquire));
        if now.direct() != direct {
            word.store(now.next(direct).0, Ordering::Release);
        }
    }

    /// A request that may stop `pes` begins: their words close now, before
    /// anything changes.
    pub fn begin(&self, pes: &[PeId]) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for pe in pes {
            if let Some(count) = pending.get_mut(pe) {
                *count += 1;
                self.publish(*pe, false);
            }
        }
    }

    /// A request that began with `pes` ended (an empty list: none did, the
    /// host may have changed by itself): each PE with no request in
    /// progress that the request may have stopped, or whose word is
    /// closed, gets the word `plain` says. An open word of another PE stays
    /// open: only requests that begin with a PE can stop it.
    pub fn end(&self, pes: &[PeId], plain: impl Fn(PeId) -> bool) {
        let mut pending = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
        for pe in pes {
            if let Some(count) = pending.get_mut(pe) {
                *count = count.saturating_sub(1);
            }
        }
        for (&pe, &count) in pending.iter() {
            if count == 0 && (pes.contains(&pe) || !self.direct(pe)) {
                self.publish(pe, plain(pe));
            }
        }
    }

    /// Whether a PE's word allows direct access now.
    pub fn direct(&self, pe: PeId) -> bool {
        let word = self.states.get(&pe).and_then(|state| state.map.word(0));
        word.is_some_and(|w| PeWord(w.load(Ordering::Acquire)).direct())
    }
}

/// One function's BAR memory: shared memory BARs, private I/O BARs.
#[derive(Debug)]
struct FunctionMemory {
    shared: [Option<Arc<SharedBar>>; 6],
    private: SparsePages,
}

impl FunctionMemory {
    fn shared(&self, bar: u8) -> Option<&SharedBar> {
        self.shared.get(usize::from(bar)).and_then(Option::as_deref)
    }
}

impl BarMemory for FunctionMemory {
    fn read(&self, bar: u8, offset: u64, width: u8) -> u64 {
        match self.shared(bar) {
            Some(shared) => shared.map.load(offset, width).unwrap_or(0),
            None => self.private.read(bar, offset, width),
        }
    }

    fn write(&mut self, bar: u8, offset: u64, width: u8, value: u64) {
        match self.shared(bar) {
            Some(shared) => {
                // The host checked the access; there is nothing to refuse.
                let _ = shared.map.store(offset, width, value);
            }
            None => self.private.write(bar, offset, width, value),
        }
    }

    fn clear(&mut self) {
        self.shared.iter().flatten().for_each(|bar| bar.clear());
        self.private.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use vfio_eeh_sim::clock::VirtualClock;
    use vfio_eeh_sim::config::SimConfig;
    use vfio_eeh_sim::SimHost;

    use super::*;

    #[test]
    fn the_host_keeps_bar_memory_in_the_shared_files_and_words_follow_requests() {
        let dir = tempfile::tempdir().unwrap();
        let spec = TopologySpec::builtin();
        let shared = SharedMemory::open(dir.path(), &spec).unwrap();
        let clock = Arc::new(VirtualClock::new());
        let host = SimHost::with_bar_memory(&spec, SimConfig::default(), clock, |d| shared.bar_memory(d));
        let nvme: PciAddr = "0000:01:00.0".parse().unwrap();
        assert!(shared.bar_file(nvme, 0).is_none(), "a device model's registers are not shared");
        let device: PciAddr = "0000:02:00.0".parse().unwrap();
        host.bar_write(device, 0, 8, 4, 0xfeed).unwrap();
        let file = shared.bar_file(device, 0).unwrap();
        let theirs = Mapping::new(&**file, 16 << 10).unwrap();
        assert_eq!(theirs.load(8, 4), Some(0xfeed), "a VMM's mapping sees the host's write");
        theirs.store(16, 2, 0xbeef).unwrap();
        assert_eq!(host.bar_read(device, 0, 16, 2).unwrap(), 0xbeef, "and the host the VMM's");

        let pe = PeId(1);
        assert!(!shared.direct(pe), "closed at the start");
        let plain = |pe| host.plain_memory_access(pe).unwrap();
        shared.end(&[], plain);
        assert!(shared.direct(pe));
        shared.begin(&[pe]);
        shared.begin(&[pe]);
        assert!(!shared.direct(pe), "closed while a request is in progress");
        host.freeze(pe, vfio_eeh::pe::FreezeScope::All).unwrap();
        shared.end(&[pe], plain);
        assert!(!shared.direct(pe), "one request still in progress");
        shared.end(&[pe], plain);
        assert!(!shared.direct(pe), "frozen");

        host.function_reset(device).unwrap();
        assert_eq!(theirs.load(8, 4), Some(0), "a reset clears the shared memory");
        drop(host);
        let handed = shared.state_file(pe).unwrap();
        assert_eq!(Mapping::new(&**handed, 8).unwrap_err().kind(), io::ErrorKind::PermissionDenied, "read-only");
        let again = SharedMemory::open(dir.path(), &spec).unwrap();
        assert!(!again.direct(pe), "a restart closes every word");
    }
}
