//! [`VfioHost`]: the [`EehBackend`] of a real Linux host, over
//! `VFIO_EEH_PE_OP`.
//!
//! A PE is an IOMMU group. The first operation on a PE takes it over the way
//! a VMM does: it opens a container and the group, attaches the group
//! (EEH needs exactly one group per container), sets the IOMMU, checks the
//! `VFIO_EEH` extension and opens every device of the group (which makes the
//! kernel treat the PE as passed through). Later operations reuse them; the
//! files close when the host is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use vfio_eeh::addr::{PciAddr, PeId};
use vfio_eeh::backend::{BackendError, EehBackend, Errno, PeOpReply};
use vfio_eeh::ops::EehOp;
use vfio_eeh::topology::Topology;

use crate::fd::VfioSystem;
use crate::sys::Sys;
use crate::sysfs::{Sysfs, SysfsError};
use crate::vfio::{Container, Device, Group, VfioError};

/// A PE taken over by the host. Fields drop in order: devices, group,
/// container.
#[derive(Debug)]
struct Owned<F> {
    devices: Vec<Device<F>>,
    group: Group<F>,
    container: Container<F>,
}

/// The Linux host: topology from sysfs, EEH through VFIO.
#[derive(Debug)]
pub struct VfioHost<S: VfioSystem = Sys> {
    sys: S,
    sysfs: Sysfs,
    dev_dir: PathBuf,
    owned: Mutex<BTreeMap<PeId, Arc<Owned<S::Fd>>>>,
}

impl VfioHost<Sys> {
    /// The running kernel, with its sysfs at `sysfs` and VFIO files in
    /// `dev_dir` (`/dev/vfio`).
    pub fn new(sysfs: Sysfs, dev_dir: impl Into<PathBuf>) -> Self {
        VfioHost::with_system(Sys, sysfs, dev_dir)
    }
}

impl<S: VfioSystem> VfioHost<S> {
    /// A host whose VFIO files `sys` opens.
    pub fn with_system(sys: S, sysfs: Sysfs, dev_dir: impl Into<PathBuf>) -> Self {
        VfioHost { sys, sysfs, dev_dir: dev_dir.into(), owned: Mutex::default() }
    }

    /// The sysfs tree.
    pub fn sysfs(&self) -> &Sysfs {
        &self.sysfs
    }

    /// The VFIO device directory.
    pub fn dev_dir(&self) -> &Path {
        &self.dev_dir
    }

    /// The host's topology, from sysfs.
    pub fn topology(&self) -> Result<Topology, SysfsError> {
        self.sysfs.topology()
    }

    /// Whether the host offers EEH through VFIO, and if not, why: no VFIO
    /// (no `/dev/vfio/vfio`), no permission, or no `VFIO_EEH` extension (any
    /// host but POWER).
    pub fn eeh_support(&self) -> Result<(), VfioError> {
        Container::open(&self.sys, &self.dev_dir)?.require_eeh()
    }

    /// Whether a group can be taken over: its VFIO file opens and the kernel
    /// calls it viable.
    pub fn group_support(&self, pe: PeId) -> Result<(), VfioError> {
        let group = Group::open(&self.sys, &self.dev_dir, pe)?;
        match group.status()?.viable {
            true => Ok(()),
            false => Err(VfioError::NotViable { group: pe }),
        }
    }

    /// The PE's files, taking the PE over on first use.
    fn owned(&self, pe: PeId) -> Result<Arc<Owned<S::Fd>>, BackendError> {
        let mut owned = self.owned.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(files) = owned.get(&pe) {
            return Ok(Arc::clone(files));
        }
        let addrs = self.devices_of(pe)?;
        let container = Container::open(&self.sys, &self.dev_dir).map_err(backend_error)?;
        let group = Group::open(&self.sys, &self.dev_dir, pe).map_err(backend_error)?;
        group.attach(&container).map_err(backend_error)?;
        container.best_iommu().and_then(|iommu| container.set_iommu(iommu)).map_err(backend_error)?;
        container.require_eeh().map_err(backend_error)?;
        let devices =
            addrs.into_iter().map(|addr| group.device(addr)).collect::<Result<_, _>>().map_err(backend_error)?;
        tracing::debug!(%pe, dev_dir = %self.dev_dir.display(), "took the PE over");
        let files = Arc::new(Owned { devices, group, container });
        owned.insert(pe, Arc::clone(&files));
        Ok(files)
    }
}

impl<S: VfioSystem> VfioHost<S> {
    /// Reads `buf.len()` bytes of `device`'s config space at `offset`
    /// through VFIO, taking its PE over on first use (as [`EehBackend::pe_op`]
    /// does): with a frozen PE the kernel answers all ones.
    pub fn config_read(&self, device: PciAddr, offset: u64, buf: &mut [u8]) -> Result<(), BackendError> {
        let pe = self.pe_of(device)?;
        let files = self.owned(pe)?;
        let file = files.devices.iter().find(|d| d.addr() == device).ok_or(BackendError::NoDevice(device))?;
        file.config_read(offset, buf).map_err(backend_error)
    }
}

/// Maps a VFIO failure to the backend error a front end answers with; an OS
/// error keeps its errno as the typed source.
fn backend_error(error: VfioError) -> BackendError {
    match error {
        VfioError::NoEeh { .. } | VfioError::NoIommu { .. } | VfioError::ApiVersion { .. } => {
            BackendError::NotSupported(vfio_eeh::error_chain(&error))
        }
        VfioError::NotViable { .. } => BackendError::PermissionDenied(vfio_eeh::error_chain(&error)),
        VfioError::ConfigRange { .. } => BackendError::InvalidArgument(vfio_eeh::error_chain(&error)),
        _ => match error.errno() {
            Some(errno) => BackendError::Os { what: error.to_string(), source: Errno(errno) },
            None => BackendError::Io(vfio_eeh::error_chain(&error)),
        },
    }
}

impl<S: VfioSystem> EehBackend for VfioHost<S> {
    fn pe_of(&self, device: PciAddr) -> Result<PeId, BackendError> {
        self.sysfs.iommu_group(device).map_err(|e| match e {
            SysfsError::NoDevice { addr, .. } => BackendError::NoDevice(addr),
            SysfsError::NoGroup { .. } => BackendError::NotSupported(vfio_eeh::error_chain(&e)),
            _ => BackendError::Io(vfio_eeh::error_chain(&e)),
        })
    }

    fn devices_of(&self, pe: PeId) -> Result<Vec<PciAddr>, BackendError> {
        self.sysfs.group_devices(pe).map_err(|e| match &e {
            SysfsError::List { source, .. } if source.kind() == std::io::ErrorKind::NotFound => BackendError::NoPe(pe),
            _ => BackendError::Io(vfio_eeh::error_chain(&e)),
        })
    }

    fn pe_op(&self, pe: PeId, op: EehOp) -> Result<PeOpReply, BackendError> {
        let files = self.owned(pe)?;
        tracing::debug!(%pe, op = op.name(), devices = files.devices.len(), group = %files.group.number(), "VFIO_EEH_PE_OP");
        files.container.eeh_pe_op(op).map_err(backend_error)
    }
}
