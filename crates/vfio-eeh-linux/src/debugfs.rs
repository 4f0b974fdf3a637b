//! PowerNV's EEH files in debugfs (`/sys/kernel/debug/powerpc`): the
//! per-PHB error injection `PCIxxxx/err_injct` and the global
//! `eeh_max_freezes`, with the debugfs root a parameter.
//!
//! ```
//! use vfio_eeh_linux::debugfs::PowerpcDebugfs;
//!
//! let err = PowerpcDebugfs::new("/nonexistent").max_freezes().unwrap_err();
//! assert!(err.to_string().starts_with("/nonexistent/powerpc does not exist"));
//! ```

use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use vfio_eeh::ops::ErrInjection;

use crate::sysfs::{read_attribute, SysfsError};

/// Why a debugfs file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DebugfsError {
    /// `<root>/powerpc` is missing.
    #[error("{path} does not exist: debugfs is not mounted there (mount -t debugfs none /sys/kernel/debug), or this is not a powerpc host")]
    NotMounted {
        /// The missing directory.
        path: PathBuf,
    },
    /// A file the kernel creates on some hosts only is missing.
    #[error("{path} does not exist: {hint}")]
    Missing {
        /// The missing file.
        path: PathBuf,
        /// What that means.
        hint: &'static str,
    },
    /// The file could not be read.
    #[error(transparent)]
    Read(#[from] SysfsError),
    /// The file holds something unexpected.
    #[error("Malformed {path}: {text:?} is not a number")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What it holds.
        text: String,
    },
    /// The kernel refused a write.
    #[error("Cannot write {text:?} to {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What was written.
        text: String,
        /// The OS error (`EIO` when the firmware refuses an injection).
        #[source]
        source: io::Error,
    },
}

/// `<debugfs>/powerpc`.
#[derive(Debug, Clone)]
pub struct PowerpcDebugfs {
    root: PathBuf,
}

impl Default for PowerpcDebugfs {
    /// `/sys/kernel/debug`.
    fn default() -> Self {
        PowerpcDebugfs::new("/sys/kernel/debug")
    }
}

impl PowerpcDebugfs {
    /// The debugfs mounted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        PowerpcDebugfs { root: root.into() }
    }

    /// `<root>/powerpc`, or why it is not there.
    fn powerpc(&self) -> Result<PathBuf, DebugfsError> {
        let dir = self.root.join("powerpc");
        if dir.is_dir() {
            Ok(dir)
        } else {
            Err(DebugfsError::NotMounted { path: dir })
        }
    }

    /// The file `name` under `powerpc`, which must exist.
    fn file(&self, name: &str, hint: &'static str) -> Result<PathBuf, DebugfsError> {
        let path = self.powerpc()?.join(name);
        match path.exists() {
            true => Ok(path),
            false => Err(DebugfsError::Missing { path, hint }),
        }
    }

    fn max_freezes_path(&self) -> Result<PathBuf, DebugfsError> {
        self.file("eeh_max_freezes", "the kernel has no EEH (CONFIG_EEH) on this host")
    }

    /// `eeh_max_freezes`: how many freezes in an hour a PE may have before
    /// the kernel disables it for good.
    pub fn max_freezes(&self) -> Result<u32, DebugfsError> {
        let path = self.max_freezes_path()?;
        let text = read_attribute(&path)?;
        let trimmed = text.trim();
        let parsed = match trimmed.strip_prefix("0x") {
            Some(hex) => u32::from_str_radix(hex, 16).ok(),
            None => trimmed.parse().ok(),
        };
        parsed.ok_or(DebugfsError::Malformed { path, text: trimmed.to_owned() })
    }

    /// Sets `eeh_max_freezes`.
    pub fn set_max_freezes(&self, max: u32) -> Result<(), DebugfsError> {
        write(&self.max_freezes_path()?, &max.to_string())
    }

    /// `PCIxxxx/err_injct` of the PHB of PCI domain `domain`.
    pub fn err_injct_path(&self, domain: u32) -> Result<PathBuf, DebugfsError> {
        self.file(
            &format!("PCI{domain:04x}/err_injct"),
            "no PowerNV PHB with this domain (err_injct exists on PowerNV hosts only)",
        )
    }

    /// Writes `pe:type:func:addr:mask` (hex) to the PHB's `err_injct`: the
    /// firmware arms the error in PE `pe` of PHB `domain`.
    pub fn inject(&self, domain: u32, pe: u32, injection: &ErrInjection) -> Result<(), DebugfsError> {
        write(&self.err_injct_path(domain)?, &err_injct_line(pe, injection))
    }
}

/// The line `err_injct` parses (`%x:%x:%x:%lx:%lx`).
pub fn err_injct_line(pe: u32, injection: &ErrInjection) -> String {
    format!("{pe:x}:{:x}:{:x}:{:x}:{:x}", injection.kind.raw(), injection.func.raw(), injection.addr, injection.mask)
}

/// One write of `text` to an existing debugfs file.
fn write(path: &Path, text: &str) -> Result<(), DebugfsError> {
    let error = |source| DebugfsError::Write { path: path.to_owned(), text: text.to_owned(), source };
    let mut file = OpenOptions::new().write(true).open(path).map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)
}

#[cfg(test)]
mod tests {
    use std::fs;

    use vfio_eeh::ops::{ErrFunc, ErrType};

    use super::*;

    fn tree() -> (tempfile::TempDir, PowerpcDebugfs) {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("powerpc/PCI0001")).unwrap();
        fs::write(dir.path().join("powerpc/eeh_max_freezes"), "5\n").unwrap();
        fs::write(dir.path().join("powerpc/PCI0001/err_injct"), "").unwrap();
        let debugfs = PowerpcDebugfs::new(dir.path());
        (dir, debugfs)
    }

    #[test]
    fn max_freezes_reads_and_writes() {
        let (dir, debugfs) = tree();
        assert_eq!(debugfs.max_freezes().unwrap(), 5);
        debugfs.set_max_freezes(2).unwrap();
        // One write at offset 0, as the kernel takes it (no truncation).
        assert_eq!(debugfs.max_freezes().unwrap(), 2);
        fs::write(dir.path().join("powerpc/eeh_max_freezes"), "many\n").unwrap();
        assert!(debugfs.max_freezes().unwrap_err().to_string().ends_with("\"many\" is not a number"));
    }

    #[test]
    fn injection_writes_the_kernel_format_to_the_phb_file() {
        let (dir, debugfs) = tree();
        let injection = ErrInjection { kind: ErrType::Bus64, func: ErrFunc::LoadConfigAddr, addr: 0x1000, mask: 0xfff };
        debugfs.inject(1, 0xfe, &injection).unwrap();
        assert_eq!(fs::read_to_string(dir.path().join("powerpc/PCI0001/err_injct")).unwrap(), "fe:1:4:1000:fff");
        let err = debugfs.inject(2, 0, &injection).unwrap_err().to_string();
        assert!(err.contains("PCI0002/err_injct does not exist: no PowerNV PHB"), "{err}");
    }

    #[test]
    fn missing_files_say_why() {
        let dir = tempfile::tempdir().unwrap();
        let err = PowerpcDebugfs::new(dir.path()).max_freezes().unwrap_err().to_string();
        assert!(err.contains("debugfs is not mounted there"), "{err}");
        fs::create_dir(dir.path().join("powerpc")).unwrap();
        let err = PowerpcDebugfs::new(dir.path()).max_freezes().unwrap_err().to_string();
        assert!(
            err.ends_with("eeh_max_freezes does not exist: the kernel has no EEH (CONFIG_EEH) on this host"),
            "{err}"
        );
    }
}
