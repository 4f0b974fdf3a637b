//! The interrupts of a device fd: `VFIO_DEVICE_GET_IRQ_INFO` and
//! `VFIO_DEVICE_SET_IRQS` with the VFIO core's argument checks
//! (`vfio_set_irqs_validate_and_prepare`) and vfio-pci's handlers.
//!
//! Every index has at most one vector here (INTx if the function has a pin,
//! ERR, REQ; no MSI or MSI-X), so each keeps at most one trigger eventfd. A
//! `NONE`/`BOOL` trigger signals that eventfd (loopback).

use std::sync::Mutex;

use libc::ETIMEDOUT;
use vfio_eeh::backend::errno::{EBADF, EINVAL, EIO, ENOTTY};
use vfio_eeh::uapi::{
    self, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_NUM_IRQS,
    VFIO_PCI_REQ_IRQ_INDEX,
};
use zerocopy::IntoBytes;

use super::{lock, IoctlResult};
use crate::sys;
use crate::user::UserPtr;

/// An owned eventfd of the caller's, kept for an IRQ.
#[derive(Debug)]
struct KeptFd(i32);

impl Drop for KeptFd {
    fn drop(&mut self) {
        sys::close(self.0);
    }
}

/// A caller's eventfd kept as an IRQ trigger: `EBADF` if `fd` is not open,
/// `EINVAL` if it is not an eventfd (`eventfd_ctx_fdget`).
fn keep_eventfd(fd: i32) -> Result<KeptFd, i32> {
    if !sys::is_open(fd) {
        return Err(EBADF);
    }
    if !sys::is_eventfd(fd) {
        return Err(EINVAL);
    }
    sys::dup_private(fd).map(KeptFd).map_err(|_| EBADF)
}

fn fire(trigger: &Option<KeptFd>) -> Result<(), i32> {
    trigger.as_ref().map_or(Ok(()), |kept| sys::signal(kept.0).map_err(|_| EIO))
}

/// The data of a `SET_IRQS` (its first element; `count` says if there is one).
#[derive(Debug, Clone, Copy)]
enum IrqData {
    None,
    Bool(bool),
    Eventfd(i32),
}

/// vfio-pci's interrupt state of one device.
#[derive(Debug, Default)]
struct IrqState {
    /// vfio-pci's `irq_type == INTX`: INTx is enabled (with or without a
    /// trigger eventfd).
    intx: bool,
    /// The trigger eventfd per index.
    triggers: [Option<KeptFd>; VFIO_PCI_NUM_IRQS as usize],
}

impl IrqState {
    /// INTx `TRIGGER` (`vfio_pci_set_intx_trigger`).
    fn intx_trigger(&mut self, count: u32, data: IrqData) -> IoctlResult {
        let intx = VFIO_PCI_INTX_IRQ_INDEX as usize;
        if self.intx && count == 0 && matches!(data, IrqData::None) {
            self.intx = false;
            self.triggers[intx] = None;
            return Ok(0);
        }
        if count != 1 {
            return Err(EINVAL);
        }
        match data {
            IrqData::Eventfd(fd) => {
                self.triggers[intx] = if fd >= 0 { Some(keep_eventfd(fd)?) } else { None };
                self.intx = true;
                Ok(0)
            }
            _ if !self.intx => Err(EINVAL),
            IrqData::None | IrqData::Bool(true) => fire(&self.triggers[intx]).map(|()| 0),
            IrqData::Bool(false) => Ok(0),
        }
    }

    /// INTx `MASK`/`UNMASK`: the simulator raises no INTx, so there is
    /// nothing to gate; the answers are vfio-pci's.
    fn intx_mask(&self, count: u32, data: IrqData, action: u32) -> IoctlResult {
        if !self.intx || count != 1 {
            return Err(EINVAL);
        }
        match (data, action) {
            // vfio_pci_set_intx_mask: "XXX implement me".
            (IrqData::Eventfd(_), VFIO_IRQ_SET_ACTION_MASK) => Err(ETIMEDOUT),
            // An unmask eventfd would be armed (fd >= 0) or disarmed (-1).
            (IrqData::Eventfd(fd), _) if fd >= 0 => keep_eventfd(fd).map(|_| 0),
            _ => Ok(0),
        }
    }

    /// ERR and REQ `TRIGGER` (`vfio_pci_set_ctx_trigger_single`).
    fn single_trigger(&mut self, index: u32, count: u32, data: IrqData) -> IoctlResult {
        let slot = &mut self.triggers[index as usize];
        match data {
            IrqData::None if slot.is_some() => {
                if count > 0 {
                    fire(slot)?;
                } else {
                    *slot = None;
                }
                Ok(0)
            }
            IrqData::None => Err(EINVAL),
            _ if count == 0 => Err(EINVAL),
            IrqData::Bool(on) => {
                if on {
                    fire(slot)?;
                }
                Ok(0)
            }
            IrqData::Eventfd(-1) => {
                *slot = None;
                Ok(0)
            }
            IrqData::Eventfd(fd) if fd >= 0 => {
                *slot = Some(keep_eventfd(fd)?);
                Ok(0)
            }
            IrqData::Eventfd(_) => Err(EINVAL),
        }
    }
}

/// The interrupts of one PCI function.
#[derive(Debug)]
pub(super) struct Irqs {
    /// The function has an interrupt pin, so INTx has a vector.
    has_pin: bool,
    state: Mutex<IrqState>,
}

impl Irqs {
    /// The interrupts of a function with (`has_pin`) or without an INTx pin.
    pub(super) fn new(has_pin: bool) -> Self {
        Irqs { has_pin, state: Mutex::default() }
    }

    /// Vectors per IRQ index: INTx if the function has a pin; no MSI or
    /// MSI-X capability; ERR (PCIe) and REQ.
    fn count(&self, index: u32) -> u32 {
        match index {
            VFIO_PCI_INTX_IRQ_INDEX => u32::from(self.has_pin),
            VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub(super) fn get_info(&self, arg: UserPtr) -> IoctlResult {
        let mut info: uapi::VfioIrqInfo = arg.read_struct(16)?;
        if info.argsz < 16 || info.index >= VFIO_PCI_NUM_IRQS {
            return Err(EINVAL);
        }
        info.count = self.count(info.index);
        info.flags = uapi::VFIO_IRQ_INFO_EVENTFD
            | if info.index == VFIO_PCI_INTX_IRQ_INDEX {
                uapi::VFIO_IRQ_INFO_MASKABLE | uapi::VFIO_IRQ_INFO_AUTOMASKED
            } else {
                uapi::VFIO_IRQ_INFO_NORESIZE
            };
        arg.write(info.as_bytes()).map(|()| 0)
    }

    /// `VFIO_DEVICE_SET_IRQS`: `vfio_set_irqs_validate_and_prepare`, then
    /// vfio-pci's handlers.
    pub(super) fn set(&self, arg: UserPtr) -> IoctlResult {
        let hdr: uapi::VfioIrqSet = arg.read_struct(20)?;
        if hdr.argsz < 20
            || hdr.index >= VFIO_PCI_NUM_IRQS
            || hdr.count >= u32::MAX - hdr.start
            || hdr.flags & !(VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK) != 0
        {
            return Err(EINVAL);
        }
        let max = self.count(hdr.index);
        if hdr.start >= max || hdr.start + hdr.count > max {
            return Err(EINVAL);
        }
        let elem = match hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => 0,
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return Err(EINVAL),
        };
        // count <= max <= 1 from here on.
        let data_len = usize::try_from(hdr.count).map_err(|_| EINVAL)? * elem;
        if usize::try_from(hdr.argsz - 20).map_err(|_| EINVAL)? < data_len {
            return Err(EINVAL);
        }
        let action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let handled = match hdr.index {
            VFIO_PCI_INTX_IRQ_INDEX => {
                matches!(action, VFIO_IRQ_SET_ACTION_MASK | VFIO_IRQ_SET_ACTION_UNMASK | VFIO_IRQ_SET_ACTION_TRIGGER)
            }
            _ => action == VFIO_IRQ_SET_ACTION_TRIGGER,
        };
        if !handled {
            return Err(ENOTTY);
        }
        let mut raw = [0u8; 24];
        arg.read(&mut raw[..20 + data_len])?;
        let data = match elem {
            0 => IrqData::None,
            1 => IrqData::Bool(raw[20] != 0),
            _ => IrqData::Eventfd(i32::from_ne_bytes([raw[20], raw[21], raw[22], raw[23]])),
        };
        let mut state = lock(&self.state);
        match (hdr.index, action) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => state.intx_trigger(hdr.count, data),
            (VFIO_PCI_INTX_IRQ_INDEX, _) => state.intx_mask(hdr.count, data, action),
            (index, _) => state.single_trigger(index, hdr.count, data),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `struct vfio_irq_set` with one 4-byte data element.
    #[derive(Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
    #[repr(C)]
    struct IrqSetWithData {
        head: uapi::VfioIrqSet,
        data: i32,
    }

    fn set(irqs: &Irqs, index: u32, flags: u32, count: u32, data: i32) -> IoctlResult {
        let head = uapi::VfioIrqSet { argsz: 24, flags, index, start: 0, count };
        let mut arg = IrqSetWithData { head, data };
        irqs.set(UserPtr::of(arg.as_mut_bytes()))
    }

    fn eventfd() -> i32 {
        sys::eventfd(true).unwrap()
    }

    /// Whether an eventfd was signalled: its counter, from
    /// `/proc/self/fdinfo` (in hex there).
    fn fired(fd: i32) -> bool {
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).unwrap();
        let count = info.lines().find_map(|line| line.strip_prefix("eventfd-count:")).unwrap();
        u64::from_str_radix(count.trim(), 16).unwrap() > 0
    }

    #[test]
    fn counts_and_info_follow_the_pin() {
        for (has_pin, intx_count) in [(true, 1), (false, 0)] {
            let irqs = Irqs::new(has_pin);
            let mut info = uapi::VfioIrqInfo { argsz: 16, index: VFIO_PCI_INTX_IRQ_INDEX, ..Default::default() };
            assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Ok(0));
            assert_eq!(info.count, intx_count);
            assert_eq!(info.flags & uapi::VFIO_IRQ_INFO_AUTOMASKED, uapi::VFIO_IRQ_INFO_AUTOMASKED);
        }
        let irqs = Irqs::new(false);
        let mut info = uapi::VfioIrqInfo { argsz: 16, index: VFIO_PCI_ERR_IRQ_INDEX, ..Default::default() };
        assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Ok(0));
        assert_eq!((info.count, info.flags), (1, uapi::VFIO_IRQ_INFO_EVENTFD | uapi::VFIO_IRQ_INFO_NORESIZE));
        info.index = VFIO_PCI_NUM_IRQS;
        assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Err(EINVAL));
    }

    #[test]
    fn err_trigger_keeps_an_eventfd_and_loops_back() {
        let irqs = Irqs::new(true);
        let trigger = VFIO_IRQ_SET_ACTION_TRIGGER;
        let err = VFIO_PCI_ERR_IRQ_INDEX;
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_NONE | trigger, 1, 0), Err(EINVAL), "no trigger yet");
        let fd = eventfd();
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_EVENTFD | trigger, 1, fd), Ok(0));
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_BOOL | trigger, 1, 1), Ok(0));
        assert!(fired(fd), "BOOL true signalled the kept eventfd");
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_EVENTFD | trigger, 1, -1), Ok(0));
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_NONE | trigger, 1, 0), Err(EINVAL), "released");
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 1, fd), Err(ENOTTY));
        assert_eq!(set(&irqs, err, VFIO_IRQ_SET_DATA_EVENTFD | trigger, 1, 999_999), Err(EBADF));
        sys::close(fd);
    }

    #[test]
    fn intx_masking_needs_intx_enabled() {
        let irqs = Irqs::new(true);
        let intx = VFIO_PCI_INTX_IRQ_INDEX;
        let unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Err(EINVAL));
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, -1), Ok(0));
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Ok(0));
        let fd = eventfd();
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 1, fd), Err(ETIMEDOUT));
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0), Ok(0), "disabled");
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Err(EINVAL));
        assert_eq!(set(&Irqs::new(false), intx, unmask, 1, 0), Err(EINVAL), "no pin, no vector");
        sys::close(fd);
    }
}
