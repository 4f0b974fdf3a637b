//! The state file: claims, virtual PHBs, mappings and PE records, replaced
//! atomically on every acknowledged change.
//!
//! Why a file and not a database: the state is small (a few KiB for a host
//! of PEs and VMs), every change rewrites all of it in well under a
//! millisecond, and one atomically replaced file gives exactly the needed
//! guarantee (the old state or the new, never a mixture) with std alone;
//! readers (people, `jq`) can inspect it. An embedded store (`redb`) would
//! pay off with large states or partial updates, which eehd does not have.
//!
//! Layout: one header line `{"schema_version":N,"crc32":C,"len":L}`, then
//! exactly `L` bytes of JSON body whose CRC-32 is `C`. A commit writes
//! `state.json.tmp`, fsyncs it, renames it over `state.json` and fsyncs the
//! directory; only then is the change acknowledged.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vfio_eeh::addr::{Buid, GuestAddr, PciAddr, PeId};

use crate::host::PeRecord;

/// The schema this build writes and the newest it reads.
pub const SCHEMA_VERSION: u32 = 1;

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "state.json";

/// Everything that survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// `sim` or `linux`: a state is only loaded into the same kind of host.
    pub host: String,
    /// The VMs, by id.
    pub vms: Vec<SavedVm>,
    /// The PEs' states (simulator only).
    pub pes: Vec<PeRecord>,
}

/// One VM's part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedVm {
    /// Its name.
    pub name: String,
    /// Its id in the address maps.
    pub id: u32,
    /// Its virtual PHBs.
    pub phbs: Vec<Buid>,
    /// Its groups.
    pub claims: Vec<PeId>,
    /// Its mappings.
    pub mappings: Vec<(PciAddr, GuestAddr)>,
}

/// Why the state could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Reading, writing or syncing failed.
    #[error("Cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is damaged.
    #[error("State file {path} is corrupt ({why}); eehd will not guess. Move it aside (mv {path} {path}.bad) to start empty, or restore a good copy")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The file was written by a newer eehd.
    #[error("State file {path} has schema version {found}, newer than this eehd's {SCHEMA_VERSION}; run the newer eehd, or move it aside (mv {path} {path}.new) to start empty")]
    Newer {
        /// The file.
        path: PathBuf,
        /// Its version.
        found: u32,
    },
}

/// The header line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    schema_version: u32,
    crc32: u32,
    len: usize,
}

/// The state directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

impl Store {
    /// The store in `dir`, created (mode 0700) if missing.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io("create state directory", dir))?;
        Ok(Store { dir: dir.to_owned() })
    }

    /// The state file's path.
    pub fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// The saved state; `None` if there is no file yet.
    pub fn load(&self) -> Result<Option<Saved>, StoreError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(io("read state file", &path)(error)),
        };
        decode(&bytes, &path).map(Some)
    }

    /// Replaces the state durably: tmp file, fsync, rename, fsync directory.
    pub fn commit(&self, saved: &Saved) -> Result<(), StoreError> {
        let path = self.path();
        let tmp = self.dir.join(format!("{STATE_FILE}.tmp"));
        let bytes = encode(saved);
        let mut file =
            OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("sync", &tmp))?;
        drop(file);
        fs::rename(&tmp, &path).map_err(io("replace", &path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io("sync directory", &self.dir))
    }
}

/// A maker of [`StoreError::Io`] for `what` on `path`.
fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_owned();
    move |source| StoreError::Io { what, path, source }
}

/// The file's bytes for a state.
pub fn encode(saved: &Saved) -> Vec<u8> {
    let body = serde_json::to_vec(saved).expect("the state serializes");
    let header = Header { schema_version: SCHEMA_VERSION, crc32: crc32fast::hash(&body), len: body.len() };
    let mut bytes = serde_json::to_vec(&header).expect("the header serializes");
    bytes.push(b'\n');
    bytes.extend_from_slice(&body);
    bytes
}

/// A state from the file's bytes; `path` names it in errors.
pub fn decode(bytes: &[u8], path: &Path) -> Result<Saved, StoreError> {
    let corrupt = |why: String| StoreError::Corrupt { path: path.to_owned(), why };
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or_else(|| corrupt("no header line".into()))?;
    let header: Header = serde_json::from_slice(&bytes[..newline]).map_err(|e| corrupt(format!("bad header: {e}")))?;
    if header.schema_version > SCHEMA_VERSION {
        return Err(StoreError::Newer { path: path.to_owned(), found: header.schema_version });
    }
    let body = &bytes[newline + 1..];
    if body.len() != header.len {
        return Err(corrupt(format!("{} bytes of state, the header says {}", body.len(), header.len)));
    }
    if crc32fast::hash(body) != header.crc32 {
        return Err(corrupt("checksum mismatch".into()));
    }
    serde_json::from_slice(body).map_err(|e| corrupt(format!("bad state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::SavedCondition;

    fn sample() -> Saved {
        Saved {
            host: "sim".into(),
            vms: vec![SavedVm {
                name: "a".into(),
                id: 1,
                phbs: vec![Buid::SPAPR_BASE],
                claims: vec![PeId(3)],
                mappings: vec![("0000:01:00.0".parse().unwrap(), "0x800000020000000:00:01.0".parse().unwrap())],
            }],
            pes: vec![PeRecord { pe: PeId(3), enabled: true, freezes: 2, condition: SavedCondition::Stopped }],
        }
    }

    #[test]
    fn commits_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None);
        store.commit(&sample()).unwrap();
        assert_eq!(store.load().unwrap(), Some(sample()));
        assert!(!dir.path().join("state.json.tmp").exists());
    }

    #[test]
    fn any_damage_is_refused_with_how_to_move_it_aside() {
        let path = Path::new("/var/lib/eehd/state.json");
        let good = encode(&sample());
        for cut in [0, 5, good.len() / 2, good.len() - 1] {
            let error = decode(&good[..cut], path).unwrap_err().to_string();
            assert!(error.contains("corrupt") && error.contains("mv /var/lib/eehd/state.json"), "{error}");
        }
        let mut flipped = good.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x01;
        assert!(matches!(decode(&flipped, path), Err(StoreError::Corrupt { .. })));
        let newer = String::from_utf8(good).unwrap().replacen("\"schema_version\":1", "\"schema_version\":2", 1);
        let error = decode(newer.as_bytes(), path).unwrap_err();
        assert!(matches!(error, StoreError::Newer { found: 2, .. }), "{error}");
    }
}
