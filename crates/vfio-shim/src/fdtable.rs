//! Which file descriptors are emulated VFIO files, and what they are.
//!
//! Every emulated file is a real kernel descriptor (an eventfd), so `poll`,
//! `close`, `close_range` and `fork` keep working on it. A byte per
//! descriptor number says whether it is ours and of which kind: the check
//! every intercepted call makes first is one relaxed atomic load, with no
//! lock, so the calls that are not VFIO pay almost nothing. The objects
//! behind our descriptors sit in a map under a read-mostly lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{PoisonError, RwLock};

use vfio_eeh::uapi::FdKind;

/// Descriptor numbers at or above this are never emulated (`EMFILE`).
pub(crate) const MAX_FD: usize = 1 << 16;

const TAG_NONE: u8 = 0;

const fn tag_of(kind: FdKind) -> u8 {
    match kind {
        FdKind::Container => 1,
        FdKind::Group => 2,
        FdKind::Device => 3,
    }
}

const fn kind_of(tag: u8) -> Option<FdKind> {
    match tag {
        1 => Some(FdKind::Container),
        2 => Some(FdKind::Group),
        3 => Some(FdKind::Device),
        _ => None,
    }
}

/// The emulated descriptors of the process and their open files.
#[derive(Debug)]
pub(crate) struct FdTable<F> {
    tags: Box<[AtomicU8]>,
    files: RwLock<HashMap<i32, F>>,
}

impl<F: Clone> FdTable<F> {
    /// An empty table.
    pub(crate) fn new() -> Self {
        FdTable { tags: (0..MAX_FD).map(|_| AtomicU8::new(TAG_NONE)).collect(), files: RwLock::default() }
    }

    /// The tag of descriptor `fd`; `None` past [`MAX_FD`].
    fn tag(&self, fd: i32) -> Option<&AtomicU8> {
        self.tags.get(usize::try_from(fd).ok()?)
    }

    /// The kind of an emulated descriptor; `None` for every other number.
    pub(crate) fn kind(&self, fd: i32) -> Option<FdKind> {
        kind_of(self.tag(fd)?.load(Ordering::Acquire))
    }

    /// The open file behind an emulated descriptor.
    pub(crate) fn get(&self, fd: i32) -> Option<F> {
        self.kind(fd)?;
        self.files.read().unwrap_or_else(PoisonError::into_inner).get(&fd).cloned()
    }

    /// Records `fd` as an emulated file; returns what it replaces (a `dup2`
    /// onto an emulated descriptor). Numbers at or above [`MAX_FD`] are
    /// refused.
    pub(crate) fn insert(&self, fd: i32, kind: FdKind, file: F) -> Result<Option<F>, ()> {
        let tag = self.tag(fd).ok_or(())?;
        let old = self.files.write().unwrap_or_else(PoisonError::into_inner).insert(fd, file);
        tag.store(tag_of(kind), Ordering::Release);
        Ok(old)
    }

    /// Forgets an emulated descriptor (it was closed or replaced).
    pub(crate) fn remove(&self, fd: i32) -> Option<F> {
        if self.tag(fd)?.swap(TAG_NONE, Ordering::AcqRel) == TAG_NONE {
            return None;
        }
        self.files.write().unwrap_or_else(PoisonError::into_inner).remove(&fd)
    }

    /// Forgets every emulated descriptor in `first..=last` (`close_range`),
    /// answering them with their files.
    pub(crate) fn remove_range(&self, first: u32, last: u32) -> Vec<(i32, F)> {
        let mut files = self.files.write().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<i32> = files.keys().copied().filter(|&fd| (first..=last).contains(&fd.unsigned_abs())).collect();
        gone.into_iter()
            .filter_map(|fd| {
                if let Some(tag) = self.tag(fd) {
                    tag.store(TAG_NONE, Ordering::Release);
                }
                files.remove(&fd).map(|file| (fd, file))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracks_kinds_and_replacements() {
        let table = FdTable::new();
        assert_eq!(table.kind(7), None);
        assert_eq!(table.insert(7, FdKind::Group, "g"), Ok(None));
        assert_eq!(table.kind(7), Some(FdKind::Group));
        assert_eq!(table.get(7), Some("g"));
        assert_eq!(table.insert(7, FdKind::Device, "d"), Ok(Some("g")));
        assert_eq!(table.kind(-1), None);
        assert_eq!(table.insert(i32::try_from(MAX_FD).unwrap(), FdKind::Device, "x"), Err(()));
        table.insert(9, FdKind::Container, "c").unwrap();
        assert_eq!(table.remove_range(8, 100), vec![(9, "c")]);
        assert_eq!(table.remove(7), Some("d"));
        assert_eq!(table.remove(7), None);
        assert_eq!(table.get(7), None);
    }
}
