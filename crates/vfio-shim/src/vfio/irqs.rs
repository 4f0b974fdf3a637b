//! The interrupts of a device fd: `VFIO_DEVICE_GET_IRQ_INFO` and
//! `VFIO_DEVICE_SET_IRQS` with the VFIO core's argument checks
//! (`vfio_set_irqs_validate_and_prepare`) and vfio-pci's handlers.
//!
//! INTx (if the function has a pin), ERR and REQ have one vector each; MSI-X
//! has as many as the function's device model has (none for plain-memory
//! devices); there is no MSI. A `NONE`/`BOOL` trigger signals the eventfd
//! (loopback).
//!
//! The device model raises interrupts through [`InterruptSink`]: an MSI-X
//! vector signals its eventfd (QEMU emulates the MSI-X table and its
//! masking itself); INTx is level-triggered with vfio-pci's automask: an
//! asserted line signals the trigger and masks INTx until the VMM unmasks
//! it, and an unmask while the line is still asserted signals again.

use std::sync::Mutex;

use libc::ETIMEDOUT;
use vfio_eeh::backend::errno::{EBADF, EINVAL, EIO, ENOTTY};
use vfio_eeh::uapi::{
    self, VFIO_IRQ_SET_ACTION_MASK, VFIO_IRQ_SET_ACTION_TRIGGER, VFIO_IRQ_SET_ACTION_TYPE_MASK,
    VFIO_IRQ_SET_ACTION_UNMASK, VFIO_IRQ_SET_DATA_BOOL, VFIO_IRQ_SET_DATA_EVENTFD, VFIO_IRQ_SET_DATA_NONE,
    VFIO_IRQ_SET_DATA_TYPE_MASK, VFIO_PCI_ERR_IRQ_INDEX, VFIO_PCI_INTX_IRQ_INDEX, VFIO_PCI_MSIX_IRQ_INDEX,
    VFIO_PCI_NUM_IRQS, VFIO_PCI_REQ_IRQ_INDEX,
};
use vfio_eeh_sim::nvme::InterruptSink;
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

/// The data of a `SET_IRQS`: its first element (`count` says if there is
/// one), and for MSI-X every element.
#[derive(Debug, Clone)]
enum IrqData {
    None,
    Bool(bool),
    Eventfd(i32),
}

/// The MSI-X data elements of a `SET_IRQS`.
#[derive(Debug, Clone)]
enum VectorData {
    None,
    Bools(Vec<bool>),
    Eventfds(Vec<i32>),
}

/// vfio-pci's interrupt state of one device.
#[derive(Debug, Default)]
struct IrqState {
    /// vfio-pci's `irq_type == INTX`: INTx is enabled (with or without a
    /// trigger eventfd).
    intx: bool,
    /// The trigger eventfd per index.
    triggers: [Option<KeptFd>; VFIO_PCI_NUM_IRQS as usize],
    /// vfio-pci's `irq_type == MSIX`: the enabled vectors (`num_ctx`), each
    /// with its trigger eventfd if it has one; empty while MSI-X is off.
    msix: Vec<Option<KeptFd>>,
    /// INTx is masked (vfio-pci's automask, or the VMM's `MASK`).
    intx_masked: bool,
    /// The device asserts its INTx line.
    intx_asserted: bool,
}

impl IrqState {
    /// INTx `TRIGGER` (`vfio_pci_set_intx_trigger`).
    fn intx_trigger(&mut self, count: u32, data: IrqData) -> IoctlResult {
        let msix_on = !self.msix.is_empty();
        let Some(trigger) = self.triggers.get_mut(VFIO_PCI_INTX_IRQ_INDEX as usize) else { return Err(EINVAL) };
        if self.intx && count == 0 && matches!(data, IrqData::None) {
            self.intx = false;
            self.intx_masked = false;
            *trigger = None;
            return Ok(0);
        }
        if count != 1 || (msix_on && !self.intx) {
            return Err(EINVAL);
        }
        match data {
            IrqData::Eventfd(fd) => {
                *trigger = if fd >= 0 { Some(keep_eventfd(fd)?) } else { None };
                if !self.intx {
                    self.intx_masked = false;
                }
                self.intx = true;
                Ok(0)
            }
            _ if !self.intx => Err(EINVAL),
            IrqData::None | IrqData::Bool(true) => fire(trigger).map(|()| 0),
            IrqData::Bool(false) => Ok(0),
        }
    }

    /// INTx `MASK`/`UNMASK` (`vfio_pci_set_intx_mask`/`_unmask`): an
    /// unmask while the device still asserts the line signals the trigger
    /// and masks again.
    fn intx_mask(&mut self, count: u32, data: IrqData, action: u32) -> IoctlResult {
        if !self.intx || count != 1 {
            return Err(EINVAL);
        }
        match (data, action) {
            // vfio_pci_set_intx_mask: "XXX implement me".
            (IrqData::Eventfd(_), VFIO_IRQ_SET_ACTION_MASK) => Err(ETIMEDOUT),
            // An unmask eventfd would be armed (fd >= 0) or disarmed (-1).
            (IrqData::Eventfd(fd), _) if fd >= 0 => keep_eventfd(fd).map(|_| 0),
            (IrqData::Eventfd(_) | IrqData::Bool(false), _) => Ok(0),
            (_, VFIO_IRQ_SET_ACTION_MASK) => {
                self.intx_masked = true;
                Ok(0)
            }
            _ => {
                self.intx_masked = false;
                self.deliver_intx();
                Ok(0)
            }
        }
    }

    /// Signals INTx if the line is asserted and not masked, and masks it.
    fn deliver_intx(&mut self) {
        if self.intx && self.intx_asserted && !self.intx_masked {
            self.intx_masked = true;
            // A full eventfd counter is the only failure; the VMM is behind.
            if let Some(trigger) = self.triggers.get(VFIO_PCI_INTX_IRQ_INDEX as usize) {
                let _ = fire(trigger);
            }
        }
    }

    /// MSI-X `TRIGGER` (`vfio_pci_set_msi_trigger`): count 0 with no data
    /// disables; eventfds enable `start + count` vectors (or set a block of
    /// enabled ones; fd -1 clears a vector); `NONE`/`BOOL` signal.
    fn msix_trigger(&mut self, start: u32, count: u32, data: VectorData) -> IoctlResult {
        let on = !self.msix.is_empty();
        if on && count == 0 && matches!(data, VectorData::None) {
            self.msix.clear();
            return Ok(0);
        }
        if self.intx {
            return Err(EINVAL);
        }
        let first = usize::try_from(start).map_err(|_| EINVAL)?;
        match data {
            VectorData::Eventfds(fds) => {
                let end = first + fds.len();
                if !on {
                    self.msix.resize_with(end, || None);
                } else if end > self.msix.len() {
                    return Err(EINVAL);
                }
                let mut kept = Vec::with_capacity(fds.len());
                for fd in fds {
                    kept.push(if fd >= 0 { Some(keep_eventfd(fd)?) } else { None });
                }
                for (slot, fd) in self.msix.iter_mut().skip(first).zip(kept) {
                    *slot = fd;
                }
                Ok(0)
            }
            _ if !on => Err(EINVAL),
            VectorData::None => {
                let n = usize::try_from(count).map_err(|_| EINVAL)?;
                self.msix.iter().skip(first).take(n).try_for_each(fire).map(|()| 0)
            }
            VectorData::Bools(bools) => {
                let fired = self.msix.iter().skip(first).zip(bools).filter(|(_, on)| *on);
                fired.map(|(slot, _)| slot).try_for_each(fire).map(|()| 0)
            }
        }
    }

    /// ERR and REQ `TRIGGER` (`vfio_pci_set_ctx_trigger_single`).
    fn single_trigger(&mut self, index: u32, count: u32, data: IrqData) -> IoctlResult {
        let Some(slot) = self.triggers.get_mut(index as usize) else { return Err(EINVAL) };
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
    /// Vectors of the function's MSI-X capability (0: none).
    msix_vectors: u16,
    state: Mutex<IrqState>,
}

impl Irqs {
    /// The interrupts of a function with (`has_pin`) or without an INTx
    /// pin, and with `msix_vectors` MSI-X vectors.
    pub(super) fn new(has_pin: bool, msix_vectors: u16) -> Self {
        Irqs { has_pin, msix_vectors, state: Mutex::default() }
    }

    /// Vectors per IRQ index: INTx if the function has a pin; no MSI; the
    /// MSI-X capability's; ERR (PCIe) and REQ.
    fn count(&self, index: u32) -> u32 {
        match index {
            VFIO_PCI_INTX_IRQ_INDEX => u32::from(self.has_pin),
            VFIO_PCI_MSIX_IRQ_INDEX => u32::from(self.msix_vectors),
            VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }

    /// `VFIO_DEVICE_GET_IRQ_INFO`.
    pub(super) fn get_info(&self, arg: UserPtr<'_>) -> IoctlResult {
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
    pub(super) fn set(&self, arg: UserPtr<'_>) -> IoctlResult {
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
        // count <= max <= the MSI-X vectors from here on.
        let data_len = usize::try_from(hdr.count).map_err(|_| EINVAL)? * elem;
        if usize::try_from(hdr.argsz - 20).map_err(|_| EINVAL)? < data_len {
            return Err(EINVAL);
        }
        if hdr.index == VFIO_PCI_MSIX_IRQ_INDEX {
            let mut raw = vec![0u8; 20 + data_len];
            arg.read(&mut raw)?;
            let elements = raw.get(20..).unwrap_or_default();
            let data = match elem {
                0 => VectorData::None,
                1 => VectorData::Bools(elements.iter().map(|&b| b != 0).collect()),
                _ => VectorData::Eventfds(
                    elements.chunks_exact(4).filter_map(|c| c.try_into().ok().map(i32::from_ne_bytes)).collect(),
                ),
            };
            return lock(&self.state).msix_trigger(hdr.start, hdr.count, data);
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
        arg.read(raw.get_mut(..20 + data_len).ok_or(EINVAL)?)?;
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

impl InterruptSink for Irqs {
    fn msix_enabled(&self) -> bool {
        !lock(&self.state).msix.is_empty()
    }

    fn raise_msix(&self, vector: u16) {
        let state = lock(&self.state);
        if let Some(slot) = state.msix.get(usize::from(vector)) {
            // A full eventfd counter is the only failure; the VMM is behind.
            let _ = fire(slot);
        }
    }

    fn set_intx(&self, asserted: bool) {
        let mut state = lock(&self.state);
        state.intx_asserted = asserted;
        state.deliver_intx();
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
            let irqs = Irqs::new(has_pin, 0);
            let mut info = uapi::VfioIrqInfo { argsz: 16, index: VFIO_PCI_INTX_IRQ_INDEX, ..Default::default() };
            assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Ok(0));
            assert_eq!(info.count, intx_count);
            assert_eq!(info.flags & uapi::VFIO_IRQ_INFO_AUTOMASKED, uapi::VFIO_IRQ_INFO_AUTOMASKED);
        }
        let irqs = Irqs::new(false, 0);
        let mut info = uapi::VfioIrqInfo { argsz: 16, index: VFIO_PCI_ERR_IRQ_INDEX, ..Default::default() };
        assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Ok(0));
        assert_eq!((info.count, info.flags), (1, uapi::VFIO_IRQ_INFO_EVENTFD | uapi::VFIO_IRQ_INFO_NORESIZE));
        info.index = VFIO_PCI_NUM_IRQS;
        assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Err(EINVAL));
    }

    #[test]
    fn err_trigger_keeps_an_eventfd_and_loops_back() {
        let irqs = Irqs::new(true, 0);
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

    /// A `struct vfio_irq_set` with three eventfds.
    #[derive(Debug, Clone, Copy, zerocopy::FromBytes, zerocopy::IntoBytes, zerocopy::Immutable)]
    #[repr(C)]
    struct IrqSetWithThree {
        head: uapi::VfioIrqSet,
        data: [i32; 3],
    }

    fn set_block(irqs: &Irqs, start: u32, fds: [i32; 3]) -> IoctlResult {
        let flags = VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER;
        let head = uapi::VfioIrqSet { argsz: 32, flags, index: VFIO_PCI_MSIX_IRQ_INDEX, start, count: 3 };
        irqs.set(UserPtr::of(IrqSetWithThree { head, data: fds }.as_mut_bytes()))
    }

    #[test]
    fn msix_vectors_take_eventfds_in_blocks_and_the_device_raises_them() {
        let irqs = Irqs::new(true, 9);
        let mut info = uapi::VfioIrqInfo { argsz: 16, index: VFIO_PCI_MSIX_IRQ_INDEX, ..Default::default() };
        assert_eq!(irqs.get_info(UserPtr::of(info.as_mut_bytes())), Ok(0));
        assert_eq!((info.count, info.flags), (9, uapi::VFIO_IRQ_INFO_EVENTFD | uapi::VFIO_IRQ_INFO_NORESIZE));
        let fds = [eventfd(), eventfd(), eventfd()];
        assert!(!irqs.msix_enabled());
        assert_eq!(set_block(&irqs, 7, fds), Err(EINVAL), "beyond the table");
        assert_eq!(set_block(&irqs, 0, [fds[0], -1, fds[2]]), Ok(0));
        assert!(irqs.msix_enabled());
        irqs.raise_msix(2);
        irqs.raise_msix(1);
        irqs.raise_msix(8);
        assert!(fired(fds[2]) && !fired(fds[1]), "vector 1 has no eventfd, 8 is not enabled");
        assert_eq!(set_block(&irqs, 1, fds), Err(EINVAL), "beyond the enabled vectors");
        assert_eq!(set_block(&irqs, 0, fds), Ok(0));
        assert_eq!(
            set(&irqs, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 1, 0),
            Ok(0)
        );
        assert!(fired(fds[0]), "loopback");
        let intx = VFIO_PCI_INTX_IRQ_INDEX;
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, fds[1]), Err(EINVAL));
        assert_eq!(
            set(&irqs, VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0),
            Ok(0)
        );
        assert!(!irqs.msix_enabled(), "disabled");
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, fds[1]), Ok(0));
        assert_eq!(set_block(&irqs, 0, fds), Err(EINVAL), "INTx is on");
        fds.into_iter().for_each(sys::close);
    }

    #[test]
    fn intx_is_level_triggered_with_automask() {
        let irqs = Irqs::new(true, 0);
        let intx = VFIO_PCI_INTX_IRQ_INDEX;
        let fd = eventfd();
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, fd), Ok(0));
        irqs.set_intx(true);
        assert!(fired(fd));
        // eventfd counters are not cleared by /proc reads: use a fresh one.
        let again = eventfd();
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, again), Ok(0));
        irqs.set_intx(true);
        assert!(!fired(again), "masked until unmasked");
        let unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Ok(0));
        assert!(fired(again), "still asserted: signalled again at the unmask");
        let third = eventfd();
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, third), Ok(0));
        irqs.set_intx(false);
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Ok(0));
        assert!(!fired(third), "deasserted: nothing at the unmask");
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_MASK, 1, 0), Ok(0));
        irqs.set_intx(true);
        assert!(!fired(third), "masked by the VMM");
        assert!(!irqs.msix_enabled());
        [fd, again, third].into_iter().for_each(sys::close);
    }

    #[test]
    fn intx_masking_needs_intx_enabled() {
        let irqs = Irqs::new(true, 0);
        let intx = VFIO_PCI_INTX_IRQ_INDEX;
        let unmask = VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK;
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Err(EINVAL));
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 1, -1), Ok(0));
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Ok(0));
        let fd = eventfd();
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_MASK, 1, fd), Err(ETIMEDOUT));
        assert_eq!(set(&irqs, intx, VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 0, 0), Ok(0), "disabled");
        assert_eq!(set(&irqs, intx, unmask, 1, 0), Err(EINVAL));
        assert_eq!(set(&Irqs::new(false, 0), intx, unmask, 1, 0), Err(EINVAL), "no pin, no vector");
        sys::close(fd);
    }
}
