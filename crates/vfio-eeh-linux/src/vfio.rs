//! Safe wrappers over the VFIO container, group and device files.
//!
//! ```no_run
//! use std::path::Path;
//! use vfio_eeh::addr::PeId;
//! use vfio_eeh_linux::sys::Sys;
//! use vfio_eeh_linux::vfio::{Container, Group};
//!
//! let dev = Path::new("/dev/vfio");
//! let container = Container::open(&Sys, dev)?;
//! let group = Group::open(&Sys, dev, PeId(3))?;
//! group.attach(&container)?;
//! container.set_iommu(container.best_iommu()?)?;
//! let device = group.device("0000:01:00.0".parse()?)?;
//! let vendor = device.config_read_u16(0)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::PeOpReply;
use vfio_eeh::ops::{EehOp, PeState};
use vfio_eeh::uapi::{self, Encoding, VfioIoctl};

use crate::fd::{VfioFd, VfioSystem};
use crate::sys::{self, ArgKind, Ioctl};

/// Why a VFIO operation failed. Each names the file it was about.
#[derive(Debug, thiserror::Error)]
pub enum VfioError {
    /// A config-space access of the wrong size or outside the region.
    #[error("Config access of {len} bytes at {offset:#x} is outside the {size}-byte config region of {path}")]
    ConfigRange {
        /// The device.
        path: String,
        /// Offset in config space.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// Size of the region.
        size: u64,
    },
    /// A read or write on a device region failed or was short.
    #[error("Cannot {what} {len} bytes at {offset:#x} of {path}")]
    Access {
        /// "read" or "write".
        what: &'static str,
        /// The device.
        path: String,
        /// File offset.
        offset: u64,
        /// Bytes asked for.
        len: usize,
        /// The OS error, or `UnexpectedEof` / `WriteZero` for a short access.
        #[source]
        source: io::Error,
    },
    /// The container speaks another VFIO API version.
    #[error("{path} speaks VFIO API version {found}, not {}", uapi::VFIO_API_VERSION)]
    ApiVersion {
        /// The container file.
        path: PathBuf,
        /// The version it answered.
        found: i32,
    },
    /// A VFIO ioctl failed.
    #[error("{ioctl} on {path} failed")]
    Ioctl {
        /// The ioctl's name.
        ioctl: &'static str,
        /// The file (and device) it was issued on.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The container offers none of the IOMMU types this crate can use.
    #[error("{path} offers no IOMMU type this host can use (sPAPR TCE v2/v1, type1 v2/v1)")]
    NoIommu {
        /// The container file.
        path: PathBuf,
    },
    /// The container does not offer `VFIO_EEH`: no EEH on this host.
    #[error("{path} does not offer the VFIO_EEH extension: the host has no EEH (only POWER hosts do)")]
    NoEeh {
        /// The container file.
        path: PathBuf,
    },
    /// A VFIO file does not exist.
    #[error("{path} does not exist: {hint}")]
    NotFound {
        /// The missing file.
        path: PathBuf,
        /// What that means.
        hint: &'static str,
    },
    /// The group has devices not bound to vfio-pci.
    #[error("IOMMU group {group} is not viable: not every device of it is bound to vfio-pci")]
    NotViable {
        /// The group.
        group: PeId,
    },
    /// Opening a VFIO file failed.
    #[error("Cannot open {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// The OS error (`EACCES` without permission).
        #[source]
        source: io::Error,
    },
}

impl VfioError {
    /// The errno behind the error, where the kernel gave one.
    pub fn errno(&self) -> Option<i32> {
        match self {
            VfioError::Access { source, .. } | VfioError::Ioctl { source, .. } | VfioError::Open { source, .. } => {
                source.raw_os_error()
            }
            VfioError::NotFound { .. } => Some(libc::ENOENT),
            _ => None,
        }
    }
}

/// Opens a VFIO file, telling a missing file apart from other failures.
fn open<S: VfioSystem>(sys: &S, path: PathBuf, hint: &'static str) -> Result<S::Fd, VfioError> {
    sys.open(&path).map_err(|source| match source.kind() {
        io::ErrorKind::NotFound => VfioError::NotFound { path, hint },
        _ => VfioError::Open { path, source },
    })
}

/// An open VFIO file with what its errors name and the encoding it speaks.
#[derive(Debug)]
struct File<F> {
    fd: F,
    path: String,
    encoding: Encoding,
}

impl<F: VfioFd> File<F> {
    fn error(&self, ioctl: VfioIoctl) -> impl FnOnce(io::Error) -> VfioError + '_ {
        move |source| VfioError::Ioctl { ioctl: ioctl.name, path: self.path.clone(), source }
    }

    /// Issues `ioctl` with `arg`.
    fn ioctl<A: ArgKind>(&self, ioctl: Ioctl<A>, arg: A::Arg<'_>) -> Result<i32, VfioError> {
        ioctl.call(self.encoding, arg).and_then(|call| self.fd.ioctl(call)).map_err(self.error(ioctl.vfio()))
    }
}

/// The IOMMU model a container is set to (`VFIO_SET_IOMMU`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IommuType {
    /// `VFIO_SPAPR_TCE_v2_IOMMU`: POWER8 and later; the one EEH hosts use.
    SpaprTceV2,
    /// `VFIO_SPAPR_TCE_IOMMU`: POWER7.
    SpaprTce,
    /// `VFIO_TYPE1v2_IOMMU`: x86 and arm64.
    Type1V2,
    /// `VFIO_TYPE1_IOMMU`.
    Type1,
}

impl IommuType {
    /// In order of preference.
    pub const ALL: [IommuType; 4] = [IommuType::SpaprTceV2, IommuType::SpaprTce, IommuType::Type1V2, IommuType::Type1];

    /// The extension number.
    pub const fn raw(self) -> u32 {
        match self {
            IommuType::SpaprTceV2 => uapi::VFIO_SPAPR_TCE_V2_IOMMU,
            IommuType::SpaprTce => uapi::VFIO_SPAPR_TCE_IOMMU,
            IommuType::Type1V2 => uapi::VFIO_TYPE1V2_IOMMU,
            IommuType::Type1 => uapi::VFIO_TYPE1_IOMMU,
        }
    }
}

/// The VFIO container, `/dev/vfio/vfio`.
#[derive(Debug)]
pub struct Container<F> {
    file: File<F>,
    path: PathBuf,
}

impl<F: VfioFd> Container<F> {
    /// Opens `dev_dir/vfio` and checks the API version.
    pub fn open<S: VfioSystem<Fd = F>>(sys: &S, dev_dir: &Path) -> Result<Self, VfioError> {
        let path = dev_dir.join("vfio");
        let hint = "the vfio module is not loaded, or this host has no VFIO";
        let fd = open(sys, path.clone(), hint)?;
        let container =
            Container { file: File { fd, path: path.display().to_string(), encoding: sys.encoding() }, path };
        let found = container.api_version()?;
        if found != uapi::VFIO_API_VERSION {
            return Err(VfioError::ApiVersion { path: container.path, found });
        }
        Ok(container)
    }

    /// `VFIO_GET_API_VERSION`.
    pub fn api_version(&self) -> Result<i32, VfioError> {
        self.file.ioctl(sys::GET_API_VERSION, ())
    }

    /// `VFIO_CHECK_EXTENSION`: whether the container offers `extension`.
    pub fn check_extension(&self, extension: u32) -> Result<bool, VfioError> {
        Ok(self.file.ioctl(sys::CHECK_EXTENSION, extension)? > 0)
    }

    /// The first of [`IommuType::ALL`] the container offers.
    pub fn best_iommu(&self) -> Result<IommuType, VfioError> {
        for iommu in IommuType::ALL {
            if self.check_extension(iommu.raw())? {
                return Ok(iommu);
            }
        }
        Err(VfioError::NoIommu { path: self.path.clone() })
    }

    /// `VFIO_SET_IOMMU`; needs a group attached first.
    pub fn set_iommu(&self, iommu: IommuType) -> Result<(), VfioError> {
        self.file.ioctl(sys::SET_IOMMU, iommu.raw()).map(drop)
    }

    /// Fails with [`VfioError::NoEeh`] unless the container offers `VFIO_EEH`.
    pub fn require_eeh(&self) -> Result<(), VfioError> {
        if self.check_extension(uapi::VFIO_EEH)? {
            Ok(())
        } else {
            Err(VfioError::NoEeh { path: self.path.clone() })
        }
    }

    /// `VFIO_EEH_PE_OP` on the PE of the container's (single) group.
    pub fn eeh_pe_op(&self, op: EehOp) -> Result<PeOpReply, VfioError> {
        let arg = uapi::VfioEehPeOp::from(op);
        let ret = self.file.ioctl(sys::EEH_PE_OP, &arg)?;
        if op != EehOp::GetState {
            return Ok(PeOpReply::Done);
        }
        u32::try_from(ret).ok().and_then(PeState::from_raw).map(PeOpReply::State).ok_or_else(|| VfioError::Ioctl {
            ioctl: uapi::EEH_PE_OP.name,
            path: self.file.path.clone(),
            source: io::Error::new(io::ErrorKind::InvalidData, format!("Unknown PE state {ret}")),
        })
    }
}

/// What `VFIO_GROUP_GET_STATUS` says about a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupStatus {
    /// Every device of the group is bound to vfio-pci (or no driver).
    pub viable: bool,
    /// The group is attached to a container.
    pub container_set: bool,
}

/// An IOMMU group, `/dev/vfio/<group>`.
#[derive(Debug)]
pub struct Group<F> {
    file: File<F>,
    group: PeId,
}

impl<F: VfioFd> Group<F> {
    /// Opens `dev_dir/<group>`.
    pub fn open<S: VfioSystem<Fd = F>>(sys: &S, dev_dir: &Path, group: PeId) -> Result<Self, VfioError> {
        let path = dev_dir.join(group.0.to_string());
        let hint = "no device of this IOMMU group is bound to vfio-pci";
        let fd = open(sys, path.clone(), hint)?;
        Ok(Group { file: File { fd, path: path.display().to_string(), encoding: sys.encoding() }, group })
    }

    /// The group number.
    pub fn number(&self) -> PeId {
        self.group
    }

    /// `VFIO_GROUP_GET_STATUS`.
    pub fn status(&self) -> Result<GroupStatus, VfioError> {
        let mut status = uapi::VfioGroupStatus { argsz: 8, flags: 0 };
        self.file.ioctl(sys::GROUP_GET_STATUS, &mut status)?;
        Ok(GroupStatus {
            viable: status.flags & uapi::VFIO_GROUP_FLAGS_VIABLE != 0,
            container_set: status.flags & uapi::VFIO_GROUP_FLAGS_CONTAINER_SET != 0,
        })
    }

    /// Checks that the group is viable, then attaches it to `container`
    /// (`VFIO_GROUP_SET_CONTAINER`).
    pub fn attach(&self, container: &Container<F>) -> Result<(), VfioError> {
        if !self.status()?.viable {
            return Err(VfioError::NotViable { group: self.group });
        }
        let container_fd: i32 = container.file.fd.raw();
        self.file.ioctl(sys::GROUP_SET_CONTAINER, &container_fd).map(drop)
    }

    /// `VFIO_GROUP_UNSET_CONTAINER`.
    pub fn detach(&self) -> Result<(), VfioError> {
        self.file.ioctl(sys::GROUP_UNSET_CONTAINER, ()).map(drop)
    }

    /// `VFIO_GROUP_GET_DEVICE_FD`: opens a device of the group, and reads
    /// where its config space is.
    pub fn device(&self, addr: PciAddr) -> Result<Device<F>, VfioError> {
        let name = CString::new(addr.to_string()).expect("a PCI address has no NUL byte");
        let call = sys::GROUP_GET_DEVICE_FD.call(self.file.encoding, &name);
        let fd = self.file.fd.ioctl_fd(call).map_err(self.file.error(uapi::GROUP_GET_DEVICE_FD))?;
        let path = format!("{} device {addr}", self.file.path);
        let mut device = Device {
            file: File { fd, path, encoding: self.file.encoding },
            addr,
            config: uapi::VfioRegionInfo::default(),
        };
        device.config = device.region_info(uapi::VFIO_PCI_CONFIG_REGION_INDEX)?;
        Ok(device)
    }
}

/// A device of a group, from `VFIO_GROUP_GET_DEVICE_FD`.
#[derive(Debug)]
pub struct Device<F> {
    file: File<F>,
    addr: PciAddr,
    config: uapi::VfioRegionInfo,
}

impl<F: VfioFd> Device<F> {
    /// The device's host address.
    pub fn addr(&self) -> PciAddr {
        self.addr
    }

    /// The device file's descriptor number (what `VFIO_GROUP_GET_DEVICE_FD`
    /// returned).
    pub fn raw_fd(&self) -> i32 {
        self.file.fd.raw()
    }

    /// `VFIO_DEVICE_GET_INFO`.
    pub fn info(&self) -> Result<uapi::VfioDeviceInfo, VfioError> {
        let mut info = uapi::VfioDeviceInfo { argsz: 20, ..Default::default() };
        self.file.ioctl(sys::DEVICE_GET_INFO, &mut info)?;
        Ok(info)
    }

    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
    pub fn region_info(&self, index: u32) -> Result<uapi::VfioRegionInfo, VfioError> {
        let mut info = uapi::VfioRegionInfo { argsz: 32, index, ..Default::default() };
        self.file.ioctl(sys::DEVICE_GET_REGION_INFO, &mut info)?;
        Ok(info)
    }

    /// `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<(), VfioError> {
        self.file.ioctl(sys::DEVICE_RESET, ()).map(drop)
    }

    /// The file offset of `len` bytes at config `offset`, checked against the
    /// config region.
    fn config_offset(&self, offset: u64, len: usize) -> Result<u64, VfioError> {
        let size = self.config.size;
        let end = u64::try_from(len).ok().and_then(|len| offset.checked_add(len));
        match end {
            Some(end) if end <= size => Ok(self.config.offset + offset),
            _ => Err(VfioError::ConfigRange { path: self.file.path.clone(), offset, len, size }),
        }
    }

    fn access_error(&self, what: &'static str, offset: u64, len: usize) -> impl FnOnce(io::Error) -> VfioError + '_ {
        move |source| VfioError::Access { what, path: self.file.path.clone(), offset, len, source }
    }

    /// Reads config space at `offset` into `buf`, through the config region.
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfioError> {
        let at = self.config_offset(offset, buf.len())?;
        let len = buf.len();
        match self.file.fd.read_at(buf, at) {
            Ok(n) if n == len => Ok(()),
            Ok(_) => Err(io::ErrorKind::UnexpectedEof.into()),
            Err(e) => Err(e),
        }
        .map_err(self.access_error("read", at, len))
    }

    /// Writes `buf` to config space at `offset`, through the config region.
    pub fn config_write(&self, offset: u64, buf: &[u8]) -> Result<(), VfioError> {
        let at = self.config_offset(offset, buf.len())?;
        match self.file.fd.write_at(buf, at) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(_) => Err(io::ErrorKind::WriteZero.into()),
            Err(e) => Err(e),
        }
        .map_err(self.access_error("write", at, buf.len()))
    }

    /// Reads a little-endian config word (PCI config space is little-endian).
    pub fn config_read_u16(&self, offset: u64) -> Result<u16, VfioError> {
        let mut bytes = [0; 2];
        self.config_read(offset, &mut bytes)?;
        Ok(u16::from_le_bytes(bytes))
    }

    /// Reads a little-endian config dword.
    pub fn config_read_u32(&self, offset: u64) -> Result<u32, VfioError> {
        let mut bytes = [0; 4];
        self.config_read(offset, &mut bytes)?;
        Ok(u32::from_le_bytes(bytes))
    }
}
