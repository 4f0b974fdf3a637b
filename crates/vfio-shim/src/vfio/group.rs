//! IOMMU groups (`/dev/vfio/<group>`, one per PE of the host): the VFIO
//! core's group ioctls, attaching to a container and opening device fds.
//!
//! A group file holds the container it is attached to, so a closed
//! container fd leaves the container alive; closing the last group file
//! detaches it and gives the group back to the host ([`Host::detach`]).

use std::sync::{Arc, Mutex};

use libc::EBADFD;
use vfio_eeh::addr::PeId;
use vfio_eeh::backend::errno::{EBADF, EBUSY, EINVAL, ENODEV, ENOTTY};
use vfio_eeh::uapi::{self, VfioIoctl};
use zerocopy::IntoBytes;

use super::container::Container;
use super::device::{Device, DeviceFile};
use super::host::Host;
use super::{lock, Emulator, IoctlResult, OpenFile};
use crate::sys;
use crate::user::UserPtr;
use crate::vm::ThisVm;

/// `strndup_user(arg, PAGE_SIZE)` in `GET_DEVICE_FD`.
const DEVICE_NAME_MAX: usize = 4096;

/// One IOMMU group of the host (one PE), as lent to this process.
#[derive(Debug)]
pub(crate) struct Group {
    number: u32,
    pe: PeId,
    devices: Vec<Arc<Device>>,
    state: Mutex<GroupState>,
}

#[derive(Debug, Default)]
struct GroupState {
    open: bool,
    container: Option<Arc<Container>>,
    device_fds: usize,
}

impl Group {
    /// The group of `pe` (numbered like it) with its functions.
    pub(super) fn new(pe: PeId, devices: Vec<Arc<Device>>) -> Self {
        Group { number: pe.0, pe, devices, state: Mutex::default() }
    }

    /// The group's number, its name below `/dev/vfio/`.
    pub(super) fn number(&self) -> u32 {
        self.number
    }

    /// The PE the group is.
    pub(super) fn pe(&self) -> PeId {
        self.pe
    }

    /// Whether a file of the group is open.
    pub(super) fn is_open(&self) -> bool {
        lock(&self.state).open
    }

    /// Opens the group's file for `vm`, which owns the PE while the file
    /// is open: `EBUSY` while it is open (VFIO groups have one opener).
    /// Its last close gives the group back to `host`.
    pub(super) fn open(self: &Arc<Self>, host: Arc<dyn Host>, vm: &Arc<ThisVm>) -> Result<GroupFile, i32> {
        let mut state = lock(&self.state);
        if state.open {
            return Err(EBUSY);
        }
        state.open = true;
        vm.claim(self.pe);
        Ok(GroupFile { group: Arc::clone(self), host, vm: Arc::clone(vm) })
    }

    /// The container the group is attached to.
    pub(super) fn container(&self) -> Option<Arc<Container>> {
        lock(&self.state).container.clone()
    }

    /// A device fd of this group is closed.
    pub(super) fn device_closed(&self) {
        lock(&self.state).device_fds -= 1;
    }
}

/// An open group file; dropping the last reference closes it and gives
/// the PE, with its devices' mappings, back.
#[derive(Debug)]
pub(crate) struct GroupFile {
    group: Arc<Group>,
    host: Arc<dyn Host>,
    vm: Arc<ThisVm>,
}

impl Drop for GroupFile {
    fn drop(&mut self) {
        let mut state = lock(&self.group.state);
        if let Some(container) = state.container.take() {
            container.detach(&self.group);
        }
        self.vm.release(self.group.pe);
        self.host.detach(self.group.pe);
        state.open = false;
    }
}

impl GroupFile {
    /// The group.
    pub(super) fn group(&self) -> &Arc<Group> {
        &self.group
    }
}

impl Emulator {
    /// A group ioctl: `ioctl` is the table's entry, `None` for a VFIO number
    /// the table has not on groups.
    pub(super) fn group_ioctl(&self, file: &Arc<GroupFile>, ioctl: Option<VfioIoctl>, arg: UserPtr<'_>) -> IoctlResult {
        let group = &file.group;
        match ioctl {
            Some(uapi::GROUP_GET_STATUS) => {
                let mut status: uapi::VfioGroupStatus = arg.read_struct(8)?;
                if status.argsz < 8 {
                    return Err(EINVAL);
                }
                let attached = lock(&group.state).container.is_some();
                status.flags =
                    uapi::VFIO_GROUP_FLAGS_VIABLE | if attached { uapi::VFIO_GROUP_FLAGS_CONTAINER_SET } else { 0 };
                arg.write(status.as_bytes()).map(|()| 0)
            }
            Some(uapi::GROUP_SET_CONTAINER) => {
                let mut fd = [0u8; 4];
                arg.read(&mut fd)?;
                self.set_container(group, i32::from_ne_bytes(fd))
            }
            Some(uapi::GROUP_UNSET_CONTAINER) => {
                let mut state = lock(&group.state);
                let container = state.container.as_ref().ok_or(EINVAL)?;
                if state.device_fds > 0 {
                    return Err(EBUSY);
                }
                container.detach(group);
                state.container = None;
                Ok(0)
            }
            Some(uapi::GROUP_GET_DEVICE_FD) => {
                let mut buf = [0u8; DEVICE_NAME_MAX];
                let name = arg.read_cstr(&mut buf)?;
                let device = group.devices.iter().find(|d| d.name().as_bytes() == name).ok_or(ENODEV)?;
                self.open_device(file, device)
            }
            _ => Err(ENOTTY),
        }
    }

    fn set_container(&self, group: &Arc<Group>, fd: i32) -> IoctlResult {
        let container = match self.fds.get(fd) {
            Some(OpenFile::Container(c)) => c,
            Some(_) => return Err(EBADFD),
            None if fd >= 0 && sys::is_open(fd) => return Err(EBADFD),
            None => return Err(EBADF),
        };
        let mut state = lock(&group.state);
        if state.container.is_some() {
            return Err(EINVAL);
        }
        container.attach(group);
        state.container = Some(container);
        Ok(0)
    }

    fn open_device(&self, file: &Arc<GroupFile>, device: &Arc<Device>) -> IoctlResult {
        {
            let mut state = lock(&file.group.state);
            if !state.container.as_ref().is_some_and(|c| c.has_iommu()) {
                return Err(EINVAL);
            }
            state.device_fds += 1;
        }
        let file = DeviceFile::open(Arc::clone(device), Arc::clone(file), &self.host, &self.dma_memory);
        self.install(OpenFile::Device(Arc::new(file)), true).map(i64::from)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{Fixture, Vmm};
    use super::*;
    use crate::config::ShimConfig;

    fn status(fx: &Fixture, group: i32) -> u32 {
        let mut status = uapi::VfioGroupStatus { argsz: 8, flags: 0 };
        assert_eq!(fx.call(group, uapi::GROUP_GET_STATUS, &mut status), Ok(0));
        status.flags
    }

    #[test]
    fn one_opener_and_the_container_follows_the_group_file() {
        let fx = Fixture::new(ShimConfig::default());
        let group = fx.open("0");
        assert_eq!(fx.emu.open(b"/dev/vfio/0", 0), Some(Err(EBUSY)));
        assert_eq!(status(&fx, group), uapi::VFIO_GROUP_FLAGS_VIABLE);
        let container = fx.open("vfio");
        fx.attach(group, container);
        assert_eq!(status(&fx, group), uapi::VFIO_GROUP_FLAGS_VIABLE | uapi::VFIO_GROUP_FLAGS_CONTAINER_SET);
        let mut again = container;
        assert_eq!(fx.call(group, uapi::GROUP_SET_CONTAINER, &mut again), Err(EINVAL), "attached once");
        let mut not_a_container = group;
        let other = fx.open("1");
        assert_eq!(fx.call(other, uapi::GROUP_SET_CONTAINER, &mut not_a_container), Err(EBADFD));
        let mut closed = 999_999;
        assert_eq!(fx.call(other, uapi::GROUP_SET_CONTAINER, &mut closed), Err(EBADF));

        // Closing the group file releases the group and detaches it.
        fx.close(group);
        let group = fx.open("0");
        assert_eq!(status(&fx, group), uapi::VFIO_GROUP_FLAGS_VIABLE);

        // Issue 13 item 4: opens name their group, SET_CONTAINER the container fd.
        let log = fx.emu.log().dump();
        let opens: Vec<(u64, Vec<u32>)> =
            log.records.iter().filter(|r| r.op == "open").map(|r| (r.arg, r.groups.clone())).collect();
        assert_eq!(opens, [(0, vec![0]), (0, vec![0]), (0, vec![]), (1, vec![1]), (0, vec![0])], "the second is EBUSY");
        let set = log.records.iter().find(|r| r.op == "VFIO_GROUP_SET_CONTAINER").unwrap();
        assert_eq!((set.arg, set.groups.clone()), (u64::try_from(container).unwrap(), vec![0]));
    }

    #[test]
    fn device_fds_need_an_iommu_and_keep_the_group_attached() {
        let fx = Fixture::new(ShimConfig::default());
        let (container, group) = (fx.open("vfio"), fx.open("0"));
        fx.attach(group, container);
        let mut name = *b"0000:01:00.0\0";
        assert_eq!(fx.call(group, uapi::GROUP_GET_DEVICE_FD, &mut name), Err(EINVAL), "no IOMMU");
        fx.set_iommu(container);
        let device = fx.call(group, uapi::GROUP_GET_DEVICE_FD, &mut name).unwrap();
        let mut unknown = *b"0000:02:00.0\0";
        assert_eq!(fx.call(group, uapi::GROUP_GET_DEVICE_FD, &mut unknown), Err(ENODEV), "another group's");
        let mut nothing = [0u8; 8];
        assert_eq!(fx.call(group, uapi::GROUP_UNSET_CONTAINER, &mut nothing), Err(EBUSY), "a device is open");
        fx.close(i32::try_from(device).unwrap());
        assert_eq!(fx.call(group, uapi::GROUP_UNSET_CONTAINER, &mut nothing), Ok(0));
        assert_eq!(fx.call(group, uapi::GROUP_UNSET_CONTAINER, &mut nothing), Err(EINVAL));
    }
}
