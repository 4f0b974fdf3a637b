//! The host's PCI topology from sysfs: devices (`bus/pci/devices`), their
//! ids, driver and IOMMU group, the groups' members
//! (`kernel/iommu_groups/<n>/devices`) and, on POWER, each device's EEH PE
//! (`eeh_pe_config_addr`).
//!
//! The sysfs root is a parameter, so tests read fixture trees. A scan never
//! stops at a bad entry: what cannot be read becomes one of
//! [`Topology::problems`], naming the path, and the rest is still listed.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::topology::{Device, Group, Phb, Topology};

/// Why something could not be read from sysfs.
#[derive(Debug, thiserror::Error)]
pub enum SysfsError {
    /// A symbolic link points at nothing.
    #[error("Dangling link {path} -> {}", target.display())]
    Dangling {
        /// The link.
        path: PathBuf,
        /// Where it points.
        target: PathBuf,
    },
    /// A directory could not be listed.
    #[error("Cannot list {path}")]
    List {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A file or link holds something unexpected.
    #[error("Malformed {path}: {text:?} is not {expected}")]
    Malformed {
        /// The file or link.
        path: PathBuf,
        /// What it holds.
        text: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A device's IOMMU group disagrees with its EEH PEs.
    #[error("IOMMU group {group} spans several EEH PEs: {pes}")]
    MixedPes {
        /// The group.
        group: PeId,
        /// Each device with its PE config address.
        pes: String,
    },
    /// The device is not in sysfs.
    #[error("No PCI device {addr} in {path}")]
    NoDevice {
        /// The device.
        addr: PciAddr,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The device is in no IOMMU group.
    #[error("PCI device {addr} is in no IOMMU group ({path} does not exist)")]
    NoGroup {
        /// The device.
        addr: PciAddr,
        /// The missing link.
        path: PathBuf,
    },
    /// An attribute is not a regular file (a FIFO or a device planted in a
    /// fake tree): it is not read, so it can neither block nor stream.
    #[error("Cannot read {path}: not a regular file")]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// An attribute holds more than a page, which no sysfs attribute does.
    #[error("Cannot read {path}: larger than {ATTRIBUTE_MAX} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// A file or link could not be read.
    #[error("Cannot read {path}")]
    Read {
        /// The file or link.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// What sysfs says about one PCI function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    /// Ids and driver, as the topology lists them.
    pub device: Device,
    /// The IOMMU group (the `iommu_group` link), if any.
    pub iommu_group: Option<PeId>,
    /// The EEH PE config address (`eeh_pe_config_addr`), where the platform
    /// exposes it (POWER hosts with EEH).
    pub eeh_pe: Option<u32>,
}

/// A device's EEH attributes, each `None` where the kernel has no such file
/// (any host but POWER with EEH).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EehAttributes {
    /// `eeh_pe_state`: the PE's state as `EEH_STATE_*` bits (the first
    /// word) and the kernel's `EEH_PE_*` flags (the second).
    pub pe_state: Option<(u32, u32)>,
    /// `eeh_mode`: the device's `EEH_DEV_*` flags.
    pub mode: Option<u32>,
}

/// A sysfs tree, `/sys` on a running host.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    /// The running host's `/sys`.
    fn default() -> Self {
        Sysfs::new("/sys")
    }
}

/// Which of a device's id files, with its width.
const ID_FILES: [(&str, u32); 3] = [("vendor", 0xffff), ("device", 0xffff), ("class", 0xff_ffff)];

impl Sysfs {
    /// A sysfs tree rooted at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Sysfs { root: root.into() }
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `bus/pci/devices`.
    pub fn devices_dir(&self) -> PathBuf {
        self.root.join("bus/pci/devices")
    }

    fn device_dir(&self, addr: PciAddr) -> PathBuf {
        self.devices_dir().join(addr.to_string())
    }

    /// Every PCI function in `bus/pci/devices`, by address, with the entries
    /// that are not PCI addresses as problems. Fails only when the directory
    /// itself cannot be listed.
    pub fn addresses(&self) -> Result<(Vec<PciAddr>, Vec<SysfsError>), SysfsError> {
        let dir = self.devices_dir();
        let mut problems = Vec::new();
        let mut addrs = Vec::new();
        for name in list(&dir)? {
            match name.parse::<PciAddr>() {
                Ok(addr) => addrs.push(addr),
                Err(_) => problems.push(SysfsError::Malformed {
                    path: dir.join(&name),
                    text: name,
                    expected: "a PCI address",
                }),
            }
        }
        addrs.sort();
        Ok((addrs, problems))
    }

    /// Reads one device. Fails when the device is absent; ids that cannot be
    /// read are all-ones (as PCI reads an absent function), and a driver or
    /// group link that cannot be followed is left out, each with a problem.
    pub fn device(&self, addr: PciAddr) -> Result<(PciDevice, Vec<SysfsError>), SysfsError> {
        let dir = self.device_dir(addr);
        if let Err(source) = fs::metadata(&dir) {
            return Err(match fs::read_link(&dir) {
                Ok(target) => SysfsError::Dangling { path: dir, target },
                Err(_) if source.kind() == io::ErrorKind::NotFound => {
                    SysfsError::NoDevice { addr, path: self.devices_dir() }
                }
                Err(_) => SysfsError::Read { path: dir, source },
            });
        }
        let mut problems = Vec::new();
        let [vendor, device, class] = ID_FILES.map(|(name, all_ones)| {
            let path = dir.join(name);
            read_hex(&path)
                .and_then(|value| match value <= all_ones {
                    true => Ok(value),
                    false => {
                        Err(SysfsError::Malformed { path, text: format!("{value:#x}"), expected: "an id of its width" })
                    }
                })
                .unwrap_or_else(|e| {
                    problems.push(e);
                    all_ones
                })
        });
        let driver = link_name(&dir.join("driver")).unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        let iommu_group = self.group_link(&dir).unwrap_or_else(|e| {
            problems.push(e);
            None
        });
        let eeh_pe = match read_hex(&dir.join("eeh_pe_config_addr")) {
            Ok(pe) => Some(pe),
            Err(SysfsError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            Err(e) => {
                problems.push(e);
                None
            }
        };
        let (vendor, device) = (narrow(vendor), narrow(device));
        let device = Device { addr, vendor, device, class, driver };
        Ok((PciDevice { device, iommu_group, eeh_pe }, problems))
    }

    /// The device's `eeh_pe_state` and `eeh_mode`, where they exist.
    pub fn eeh_attributes(&self, addr: PciAddr) -> Result<EehAttributes, SysfsError> {
        let dir = self.device_dir(addr);
        let optional = |result: Result<String, SysfsError>| match result {
            Ok(text) => Ok(Some(text)),
            Err(SysfsError::Read { source, .. }) if source.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        };
        let hex = |path: &Path, word: &str| {
            let digits = word.strip_prefix("0x").unwrap_or(word);
            u32::from_str_radix(digits, 16).map_err(|_| SysfsError::Malformed {
                path: path.to_owned(),
                text: word.to_owned(),
                expected: "hex numbers",
            })
        };
        let state_path = dir.join("eeh_pe_state");
        let pe_state = match optional(read_attribute(&state_path))? {
            Some(text) => {
                let mut words = text.split_whitespace();
                let state = hex(&state_path, words.next().unwrap_or_default())?;
                let flags = hex(&state_path, words.next().unwrap_or("0"))?;
                Some((state, flags))
            }
            None => None,
        };
        let mode_path = dir.join("eeh_mode");
        let mode = optional(read_attribute(&mode_path))?.map(|text| hex(&mode_path, text.trim())).transpose()?;
        Ok(EehAttributes { pe_state, mode })
    }

    /// The group number of the `iommu_group` link in `dir`, if there is one.
    fn group_link(&self, dir: &Path) -> Result<Option<PeId>, SysfsError> {
        let path = dir.join("iommu_group");
        let Some(name) = link_name(&path)? else { return Ok(None) };
        name.parse().map(|n| Some(PeId(n))).map_err(|_| SysfsError::Malformed {
            path,
            text: name,
            expected: "a link to an IOMMU group number",
        })
    }

    /// The IOMMU group (PE) of a device.
    pub fn iommu_group(&self, addr: PciAddr) -> Result<PeId, SysfsError> {
        let dir = self.device_dir(addr);
        if fs::symlink_metadata(&dir).is_err() {
            return Err(SysfsError::NoDevice { addr, path: self.devices_dir() });
        }
        self.group_link(&dir)?.ok_or_else(|| SysfsError::NoGroup { addr, path: dir.join("iommu_group") })
    }

    /// `kernel/iommu_groups/<group>/devices`.
    pub fn group_dir(&self, group: PeId) -> PathBuf {
        self.root.join("kernel/iommu_groups").join(group.0.to_string()).join("devices")
    }

    /// The PCI functions of an IOMMU group, by address (members that are not
    /// PCI functions are left out).
    pub fn group_devices(&self, group: PeId) -> Result<Vec<PciAddr>, SysfsError> {
        let mut addrs: Vec<PciAddr> =
            list(&self.group_dir(group))?.iter().filter_map(|name| name.parse().ok()).collect();
        addrs.sort();
        Ok(addrs)
    }

    /// The whole topology: PHBs (PCI domains) → IOMMU groups → devices, plus
    /// the ungrouped devices and every problem met on the way. Fails only
    /// when `bus/pci/devices` cannot be listed.
    pub fn topology(&self) -> Result<Topology, SysfsError> {
        let (addrs, mut problems) = self.addresses()?;
        let mut groups: BTreeMap<PeId, Vec<PciDevice>> = BTreeMap::new();
        let mut ungrouped = Vec::new();
        for addr in addrs {
            match self.device(addr) {
                Ok((device, device_problems)) => {
                    problems.extend(device_problems);
                    match device.iommu_group {
                        Some(group) => groups.entry(group).or_default().push(device),
                        None => ungrouped.push(device.device),
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        let mut phbs: BTreeMap<u32, Vec<Group>> = BTreeMap::new();
        for (pe, members) in groups {
            problems.extend(mixed_pes(pe, &members));
            // A group sits under the domain of its first device (devices are
            // in address order); PowerNV groups never span PHBs.
            let domain = members[0].device.addr.domain();
            let devices = members.into_iter().map(|d| d.device).collect();
            phbs.entry(domain).or_default().push(Group { pe, devices });
        }
        for device in &ungrouped {
            phbs.entry(device.addr.domain()).or_default();
        }
        Ok(Topology {
            phbs: phbs.into_iter().map(|(domain, groups)| Phb { domain, groups }).collect(),
            ungrouped,
            problems: problems.iter().map(|e| vfio_eeh::error_chain(e)).collect(),
        })
    }
}

/// A problem when the devices of one IOMMU group report different EEH PEs
/// (a group is one PE on POWER).
fn mixed_pes(group: PeId, members: &[PciDevice]) -> Option<SysfsError> {
    let first = members.iter().find_map(|d| d.eeh_pe)?;
    if members.iter().filter_map(|d| d.eeh_pe).all(|pe| pe == first) {
        return None;
    }
    let pes = members
        .iter()
        .map(|d| match d.eeh_pe {
            Some(pe) => format!("{} in PE {pe:#x}", d.device.addr),
            None => format!("{} in no PE", d.device.addr),
        })
        .collect::<Vec<_>>()
        .join(", ");
    Some(SysfsError::MixedPes { group, pes })
}

/// A 16-bit id that [`Sysfs::device`] has checked against its width.
fn narrow(id: u32) -> u16 {
    u16::try_from(id).unwrap_or(u16::MAX)
}

/// The names in a directory, sorted.
fn list(dir: &Path) -> Result<Vec<String>, SysfsError> {
    let error = |source| SysfsError::List { path: dir.to_owned(), source };
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).map_err(error)? {
        names.push(entry.map_err(error)?.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// The most bytes a sysfs attribute holds: one page (`sysfs_emit` writes
/// into a `PAGE_SIZE` buffer; 4 KiB is the smallest page of the hosts we
/// serve, and every attribute read here is a few bytes).
pub const ATTRIBUTE_MAX: u64 = 4096;

/// Reads a sysfs attribute as text, safely against a hostile tree: only a
/// regular file is opened (checked before `open`, so a device file is never
/// opened, and again on the open file, so a swap in between is caught),
/// the open does not block (`O_NONBLOCK`, for a FIFO swapped in), and at
/// most [`ATTRIBUTE_MAX`] bytes are read.
pub fn read_attribute(path: &Path) -> Result<String, SysfsError> {
    let read_error = |source| SysfsError::Read { path: path.to_owned(), source };
    let not_regular = || SysfsError::NotRegular { path: path.to_owned() };
    if !fs::metadata(path).map_err(read_error)?.is_file() {
        return Err(not_regular());
    }
    let file =
        OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path).map_err(read_error)?;
    if !file.metadata().map_err(read_error)?.is_file() {
        return Err(not_regular());
    }
    let mut text = String::new();
    file.take(ATTRIBUTE_MAX + 1).read_to_string(&mut text).map_err(read_error)?;
    if text.len() as u64 > ATTRIBUTE_MAX {
        return Err(SysfsError::TooLarge { path: path.to_owned() });
    }
    Ok(text)
}

/// Reads a sysfs hex attribute such as `0x8086\n`.
fn read_hex(path: &Path) -> Result<u32, SysfsError> {
    let text = read_attribute(path)?;
    let trimmed = text.trim();
    let digits = trimmed.strip_prefix("0x").unwrap_or(trimmed);
    u32::from_str_radix(digits, 16).map_err(|_| SysfsError::Malformed {
        path: path.to_owned(),
        text: trimmed.to_owned(),
        expected: "a hex number",
    })
}

/// The last component of a link's target (a driver or group name); `None`
/// when there is no link.
fn link_name(path: &Path) -> Result<Option<String>, SysfsError> {
    let target = match fs::read_link(path) {
        Ok(target) => target,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(SysfsError::Read { path: path.to_owned(), source }),
    };
    if let Err(e) = fs::metadata(path) {
        return Err(match e.kind() {
            io::ErrorKind::NotFound => SysfsError::Dangling { path: path.to_owned(), target },
            _ => SysfsError::Read { path: path.to_owned(), source: e },
        });
    }
    match target.file_name().and_then(|name| name.to_str()) {
        Some(name) => Ok(Some(name.to_owned())),
        None => Err(SysfsError::Malformed {
            path: path.to_owned(),
            text: target.display().to_string(),
            expected: "a link to a named directory",
        }),
    }
}
