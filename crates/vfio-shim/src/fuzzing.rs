//! The fuzzing entry point (feature `fuzzing`, for `fuzz/`): the emulated
//! VFIO server's whole ioctl surface driven in-process, without
//! `LD_PRELOAD`, with ioctl arguments in a sandbox memory.
//!
//! [`ioctl_surface`]'s input: a flags byte (bit 0: type1v2 IOMMU, else
//! sPAPR TCE v2; bit 1: the PowerNV address-mapping hook; bit 2: firmware
//! that accepts every injection; bit 3: injections on access), then records
//! chosen by their first byte's top two bits, its low six bits `low`:
//!
//! * `00`: open `/dev/vfio/vfio` (`low` 0), group `low - 1`, or a name that
//!   is none of them;
//! * `01`: close open descriptor `low` (modulo how many are open);
//! * `10`: ioctl on open descriptor `low` (a number past them is a
//!   descriptor that is not emulated), then `nr` (the request is
//!   `_IO(';', nr)`, `0xff` a foreign one), then `len`: `0xff` and 8 bytes
//!   are the argument as a number, else `len` bytes are the argument
//!   structure at [`ARG_ADDR`] (everything else in the sandbox faults), in
//!   which each aligned little-endian word `FD_MARKER | n` stands for open
//!   descriptor `n` (what `GROUP_SET_CONTAINER` and `SET_IRQS` name);
//! * `11`: pread/pwrite on open descriptor `low`, then a byte (bit 7:
//!   write; low 3 bits: the region), a 2-byte offset in the region, a
//!   length byte (and that many bytes to write).

use std::cell::RefCell;
use std::sync::{Arc, OnceLock};

use vfio_eeh::uapi::{self, Encoding};
use vfio_eeh_sim::clock::VirtualClock;
use vfio_eeh_sim::config::{InjectionMode, SimConfig};
use vfio_eeh_sim::spec::TopologySpec;
use vfio_eeh_sim::SimHost;

use crate::config::{Firmware, Injection, IommuMode, Platform, ShimConfig};
use crate::sys;
use crate::user::UserMemory;
use crate::vfio::{Access, Emulator, VFIO_DIR};

/// Where an ioctl's argument structure is, in the sandbox.
pub const ARG_ADDR: usize = 0x10_0000;
/// A word `FD_MARKER | n` in an argument is open descriptor `n`'s number.
pub const FD_MARKER: u32 = 0xfdfd_0000;
/// The region index's shift in a device fd's offsets (vfio-pci).
const REGION_SHIFT: u32 = 40;

/// The caller's memory of one ioctl: its argument bytes at [`ARG_ADDR`].
struct Sandbox(RefCell<Vec<u8>>);

impl Sandbox {
    fn range(&self, addr: usize, len: usize) -> Result<std::ops::Range<usize>, i32> {
        let start = addr.checked_sub(ARG_ADDR).ok_or(libc::EFAULT)?;
        let end = start.checked_add(len).ok_or(libc::EFAULT)?;
        if end <= self.0.borrow().len() {
            Ok(start..end)
        } else {
            Err(libc::EFAULT)
        }
    }
}

impl UserMemory for Sandbox {
    fn read(&self, addr: usize, buf: &mut [u8]) -> Result<(), i32> {
        let range = self.range(addr, buf.len())?;
        buf.copy_from_slice(self.0.borrow().get(range).ok_or(libc::EFAULT)?);
        Ok(())
    }

    fn write(&self, addr: usize, bytes: &[u8]) -> Result<(), i32> {
        let range = self.range(addr, bytes.len())?;
        self.0.borrow_mut().get_mut(range).ok_or(libc::EFAULT)?.copy_from_slice(bytes);
        Ok(())
    }
}

/// Device DMA under the fuzzer: its inputs name process addresses in
/// `MAP_DMA`, so no DMA may reach this process's memory. Each one that the
/// IOMMU translates is `EFAULT` (the PE freezes, as for memory a VMM lost).
struct NoDmaMemory;

impl UserMemory for NoDmaMemory {
    fn read(&self, _addr: usize, _buf: &mut [u8]) -> Result<(), i32> {
        Err(libc::EFAULT)
    }

    fn write(&self, _addr: usize, _bytes: &[u8]) -> Result<(), i32> {
        Err(libc::EFAULT)
    }
}

fn take<'a>(rest: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
    let (head, tail) = rest.split_at_checked(n)?;
    *rest = tail;
    Some(head)
}

fn byte(rest: &mut &[u8]) -> Option<u8> {
    take(rest, 1).and_then(|b| b.first().copied())
}

/// `bytes` with every aligned word `FD_MARKER | n` replaced by `open[n]`.
fn with_descriptors(bytes: &[u8], open: &[i32]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    for word in out.chunks_exact_mut(4) {
        let Ok(value) = <[u8; 4]>::try_from(&*word).map(u32::from_le_bytes) else { continue };
        if value & 0xffff_0000 == FD_MARKER {
            if let Some(fd) = usize::try_from(value & 0xffff).ok().and_then(|n| open.get(n)) {
                word.copy_from_slice(&fd.to_le_bytes());
            }
        }
    }
    out
}

fn config(flags: u8) -> ShimConfig {
    ShimConfig {
        iommu: if flags & 1 != 0 { IommuMode::Type1V2 } else { IommuMode::SpaprTceV2 },
        platform: if flags & 2 != 0 { Platform::Powernv } else { Platform::None },
        firmware: if flags & 4 != 0 { Firmware::Any } else { Firmware::Phb4 },
        injection: if flags & 8 != 0 { Injection::OnAccess } else { Injection::Immediate },
        ..ShimConfig::default()
    }
}

/// Checks what an emulated call answered: a value, or a positive errno.
fn check<T>(result: Option<Result<T, i32>>, what: &str) -> Option<T> {
    match result.unwrap_or_else(|| panic!("{what}: an emulated call was not served")) {
        Ok(value) => Some(value),
        Err(errno) => {
            assert!(errno > 0, "{what}: errno {errno}");
            None
        }
    }
}

/// Runs one input (see the module docs) on a fresh emulator of the
/// built-in host; every descriptor it opened is closed at the end.
pub fn ioctl_surface(data: &[u8]) {
    static SPEC: OnceLock<TopologySpec> = OnceLock::new();
    let Some((&flags, rest)) = data.split_first() else { return };
    let config = config(flags);
    let injection = match config.injection {
        Injection::Immediate => InjectionMode::Immediate,
        Injection::OnAccess => InjectionMode::OnAccess,
    };
    let sim = SimConfig { injection, ..SimConfig::default() };
    let host = SimHost::new(SPEC.get_or_init(TopologySpec::builtin), sim, Arc::new(VirtualClock::new()));
    let groups: Vec<u32> = host.pe_ids().map(|pe| pe.0).collect();
    let emu = Emulator::new(Arc::new(host), config).with_dma_memory(Arc::new(NoDmaMemory));
    let mut open: Vec<i32> = Vec::new();
    run(&emu, &groups, &mut open, rest);
    for fd in open {
        emu.forget(fd);
        sys::close(fd);
    }
}

/// Runs the records of `rest`, keeping in `open` every descriptor opened
/// and not closed (even when the input ends in the middle of a record).
fn run(emu: &Emulator, groups: &[u32], open: &mut Vec<i32>, mut rest: &[u8]) {
    while let Some(op) = byte(&mut rest) {
        let low = usize::from(op & 0x3f);
        let chosen = |open: &Vec<i32>| open.get(low).or_else(|| open.get(low % open.len().max(1))).copied();
        match op >> 6 {
            0 => {
                let name = match low {
                    0 => "vfio".to_owned(),
                    n => groups.get(n - 1).map_or_else(|| format!("x{n}"), u32::to_string),
                };
                let path = [VFIO_DIR, name.as_bytes()].concat();
                open.extend(check(emu.open(&path, libc::O_CLOEXEC), "open"));
            }
            1 => {
                if let Some(fd) = chosen(open) {
                    open.retain(|&o| o != fd);
                    emu.forget(fd);
                    sys::close(fd);
                }
            }
            2 => {
                let fd = open.get(low).copied().unwrap_or(i32::MAX - 1);
                let (Some(nr), Some(len)) = (byte(&mut rest), byte(&mut rest)) else { return };
                let request = if nr == 0xff { 0x5401 } else { u64::from(Encoding::NATIVE.io(uapi::VFIO_TYPE, nr)) };
                let (arg, memory) = if len == 0xff {
                    let Some(value) = take(&mut rest, 8) else { return };
                    let value = u64::from_le_bytes(value.try_into().unwrap_or_default());
                    (usize::try_from(value).unwrap_or(usize::MAX), Vec::new())
                } else {
                    let Some(bytes) = take(&mut rest, usize::from(len)) else { return };
                    (ARG_ADDR, with_descriptors(bytes, open))
                };
                let sandbox = Sandbox(RefCell::new(memory));
                let result = emu.ioctl_in(&sandbox, fd, request, arg);
                if !open.contains(&fd) {
                    assert!(result.is_none(), "a descriptor that is not emulated was served");
                    continue;
                }
                let value = check(result, "ioctl");
                let new_fd = uapi::GROUP_GET_DEVICE_FD.native();
                if let (Some(value), true) = (value, u64::from(new_fd) == request) {
                    open.push(i32::try_from(value).expect("a device fd is a descriptor"));
                }
            }
            _ => {
                let (Some(how), Some(&[offset_lo, offset_hi])) = (byte(&mut rest), take(&mut rest, 2)) else { return };
                let Some(len) = byte(&mut rest) else { return };
                let Some(fd) = chosen(open) else { continue };
                let region = u64::from(how & 7) << REGION_SHIFT;
                let offset = region | u64::from(u16::from_le_bytes([offset_lo, offset_hi]));
                let mut buf = vec![0u8; usize::from(len)];
                let access = if how & 0x80 != 0 {
                    let Some(bytes) = take(&mut rest, usize::from(len)) else { return };
                    buf.copy_from_slice(bytes);
                    Access::Write(&buf)
                } else {
                    Access::Read(&mut buf)
                };
                if let Some(done) = check(emu.region_access(fd, offset, access), "region access") {
                    assert!(done <= usize::from(len), "{done} bytes for {len}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_descriptors() -> usize {
        std::fs::read_dir("/proc/self/fd").unwrap().count()
    }

    #[test]
    fn the_seeds_leave_no_descriptor_behind() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/vfio_ioctls");
        for seed in std::fs::read_dir(seeds).unwrap() {
            let data = std::fs::read(seed.unwrap().path()).unwrap();
            ioctl_surface(&data);
            let before = open_descriptors();
            // Whole, and cut anywhere (in the middle of a record).
            for end in 0..=data.len() {
                ioctl_surface(&data[..end]);
            }
            assert_eq!(open_descriptors(), before);
        }
    }
}
