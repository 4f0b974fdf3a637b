//! The namespace's media: 512-byte blocks kept in memory (sparse 4 KiB
//! pages, unwritten blocks read as zero) or in a file. Media outlives every
//! controller reset; only dropping the host drops in-memory media.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Bytes per logical block (LBA format 0).
pub const BLOCK_BYTES: u64 = 512;
const PAGE_BYTES: usize = 4096;
const PAGE: u64 = PAGE_BYTES as u64;

/// The namespace's backing file could not be opened or used.
#[derive(Debug, thiserror::Error)]
#[error("NVMe namespace file {path}")]
pub struct MediaError {
    /// The file.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// Where the blocks live.
#[derive(Debug)]
enum Backing {
    Memory(HashMap<u64, Box<[u8; PAGE_BYTES]>>),
    File {
        file: File,
        path: PathBuf,
    },
    /// The file could not be opened: every access fails.
    Unusable {
        path: PathBuf,
    },
}

/// A namespace of `bytes` bytes.
#[derive(Debug)]
pub struct Media {
    bytes: u64,
    backing: Backing,
}

impl Media {
    /// Media in memory.
    pub fn memory(bytes: u64) -> Self {
        Media { bytes, backing: Backing::Memory(HashMap::new()) }
    }

    /// Media in `path`, created if missing and grown to `bytes` if shorter;
    /// what the file holds is kept.
    pub fn file(path: &Path, bytes: u64) -> Result<Self, MediaError> {
        let fail = |source| MediaError { path: path.to_owned(), source };
        let file = File::options().read(true).write(true).create(true).truncate(false).open(path).map_err(fail)?;
        if file.metadata().map_err(fail)?.len() < bytes {
            file.set_len(bytes).map_err(fail)?;
        }
        Ok(Media { bytes, backing: Backing::File { file, path: path.to_owned() } })
    }

    /// Media in `path` if it can be opened, else media whose every access
    /// fails (the controller answers Internal Error).
    pub fn file_or_unusable(path: &Path, bytes: u64) -> Self {
        Self::file(path, bytes)
            .unwrap_or_else(|_| Media { bytes, backing: Backing::Unusable { path: path.to_owned() } })
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Reads `buf.len()` bytes at byte `offset` (the caller checked the
    /// range).
    pub fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), MediaError> {
        match &self.backing {
            Backing::Memory(pages) => {
                for_pages(offset, buf.len(), |page, at, range| match pages.get(&page) {
                    Some(p) => buf[range.clone()].copy_from_slice(&p[at..at + range.len()]),
                    None => buf[range].fill(0),
                });
                Ok(())
            }
            Backing::File { file, path } => {
                file.read_exact_at(buf, offset).map_err(|source| MediaError { path: path.clone(), source })
            }
            Backing::Unusable { path } => Err(unusable(path)),
        }
    }

    /// Writes `bytes` at byte `offset` (the caller checked the range).
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), MediaError> {
        match &mut self.backing {
            Backing::Memory(pages) => {
                for_pages(offset, bytes.len(), |page, at, range| {
                    let p = pages.entry(page).or_insert_with(|| Box::new([0; PAGE_BYTES]));
                    p[at..at + range.len()].copy_from_slice(&bytes[range]);
                });
                Ok(())
            }
            Backing::File { file, path } => {
                file.write_all_at(bytes, offset).map_err(|source| MediaError { path: path.clone(), source })
            }
            Backing::Unusable { path } => Err(unusable(path)),
        }
    }

    /// Makes written data durable (Flush): `fdatasync` for a file.
    pub fn flush(&self) -> Result<(), MediaError> {
        match &self.backing {
            Backing::Memory(_) => Ok(()),
            Backing::File { file, path } => {
                file.sync_data().map_err(|source| MediaError { path: path.clone(), source })
            }
            Backing::Unusable { path } => Err(unusable(path)),
        }
    }
}

fn unusable(path: &Path) -> MediaError {
    MediaError { path: path.to_owned(), source: std::io::Error::other("the file could not be opened") }
}

/// Calls `each(page, offset in page, range in the buffer)` for the pages
/// that `len` bytes at `offset` touch.
fn for_pages(offset: u64, len: usize, mut each: impl FnMut(u64, usize, std::ops::Range<usize>)) {
    let mut done = 0;
    while done < len {
        let at = offset + done as u64;
        let in_page = usize::try_from(at % PAGE).expect("Page offsets fit");
        let n = (PAGE_BYTES - in_page).min(len - done);
        each(at / PAGE, in_page, done..done + n);
        done += n;
    }
}
