//! The RTAS entry point the preload library exports to C VMMs
//! (`vfio_eeh_rtas`, `vfio_eeh_rtas_token`, `include/vfio_eeh.h`): a raw
//! `rtas_args` buffer in the VMM's memory, served as the design's in-kernel
//! RTAS would, through this VM's mappings only ([`crate::vm`]), on the
//! simulated host behind its firmware.
//!
//! The buffer is what PAPR and Linux lay out (`struct rtas_args`,
//! `arch/powerpc/include/asm/rtas-types.h`; QEMU's `spapr_rtas.c` reads the
//! same cells from guest memory): big-endian 32-bit cells `token, nargs,
//! nret, args[nargs], rets[nret]`. Everything is copied in and out with the
//! library's user-memory checks, so a bad pointer is `EFAULT`, never a
//! crash.
//!
//! A call that names guest memory (`ibm,slot-error-detail`'s return buffer,
//! `ibm,errinjct`'s work buffer) reaches it through the guest RAM window the
//! VMM passes (`struct vfio_eeh_guest_ram`): guest real addresses `base ..
//! base + size` at `host` in this process. Without a window, or outside it,
//! those calls answer -3 (parameter error) as for any bad buffer address.

use vfio_eeh::backend::errno::{EFAULT, EINVAL, ENOENT};
use vfio_eeh::rtas::{GuestMemory, MemoryError, HEADER_BYTES, MAX_CELLS};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

use super::container::Firmwared;
use super::Emulator;
use crate::user::{UserMemory, UserPtr};

/// The longest RTAS call name looked up.
const RTAS_NAME_MAX: usize = 64;

/// `struct vfio_eeh_guest_ram` (`include/vfio_eeh.h`).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable)]
#[repr(C)]
struct GuestRamArg {
    /// The window's first byte in this process.
    host: u64,
    /// Its guest real address.
    base: u64,
    /// Its length in bytes.
    size: u64,
}

/// The guest's memory as the VMM's window shows it.
struct GuestRam<'m> {
    window: Option<GuestRamArg>,
    memory: &'m dyn UserMemory,
}

impl GuestRam<'_> {
    /// Where `len` bytes at guest real address `addr` sit in this process.
    fn host_addr(&self, addr: u64, len: usize) -> Result<usize, MemoryError> {
        let error = MemoryError { addr, len };
        let window = self.window.ok_or(error)?;
        let offset = addr.checked_sub(window.base).ok_or(error)?;
        let end = offset.checked_add(u64::try_from(len).map_err(|_| error)?).ok_or(error)?;
        if end > window.size {
            return Err(error);
        }
        let host = window.host.checked_add(offset).ok_or(error)?;
        usize::try_from(host).map_err(|_| error)
    }
}

impl GuestMemory for GuestRam<'_> {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), MemoryError> {
        let host = self.host_addr(addr, buf.len())?;
        UserPtr::new(host, self.memory).read(buf).map_err(|_| MemoryError { addr, len: buf.len() })
    }

    fn write(&mut self, addr: u64, data: &[u8]) -> Result<(), MemoryError> {
        let host = self.host_addr(addr, data.len())?;
        UserPtr::new(host, self.memory).write(data).map_err(|_| MemoryError { addr, len: data.len() })
    }
}

impl Emulator {
    /// `vfio_eeh_rtas(args, ram)`: serves the call in the `rtas_args` buffer
    /// at `args` and writes its return cells there; `ram` is the guest RAM
    /// window (`struct vfio_eeh_guest_ram *`), 0 for none.
    ///
    /// Every call the buffer can carry is answered with a PAPR status in
    /// `rets[0]` (a bad token, wrong `nargs` or `nret`, an address this VM
    /// has not mapped: -3). Only a buffer with no room for a status is
    /// refused: `EINVAL` for `nret` 0 or more than 16 cells, `EFAULT` for a
    /// pointer (to the buffer or the window) that cannot be read or written.
    pub(crate) fn rtas(&self, memory: &dyn UserMemory, args: usize, ram: usize) -> Result<(), i32> {
        let buffer = UserPtr::new(args, memory);
        let mut header = [0u8; HEADER_BYTES];
        buffer.read(&mut header)?;
        let [_, _, _, _, n0, n1, n2, n3, r0, r1, r2, r3] = header;
        let (nargs, nret) = (u32::from_be_bytes([n0, n1, n2, n3]), u32::from_be_bytes([r0, r1, r2, r3]));
        let cells = u64::from(nargs) + u64::from(nret);
        if nret == 0 || cells > MAX_CELLS as u64 {
            return Err(EINVAL);
        }
        let (nargs, cells) = (usize::try_from(nargs).map_err(|_| EINVAL)?, usize::try_from(cells).map_err(|_| EINVAL)?);
        let mut buf = vec![0u8; HEADER_BYTES + 4 * cells];
        buffer.read(&mut buf)?;
        let window = if ram == 0 { None } else { Some(UserPtr::new(ram, memory).read_struct::<GuestRamArg>(24)?) };
        let mut guest = GuestRam { window, memory };
        let backend = Firmwared { host: &*self.host, firmware: self.config.firmware };
        let outcome = self.vm.rtas(&mut buf, &backend, &mut guest)?;
        let rets_at = HEADER_BYTES + 4 * nargs;
        let rets = UserPtr::new(args.checked_add(rets_at).ok_or(EFAULT)?, memory);
        rets.write(buf.get(rets_at..).unwrap_or_default())?;
        tracing::debug!(call = outcome.call.map(|c| c.name()), status = outcome.status, "RTAS call");
        Ok(())
    }

    /// `vfio_eeh_rtas_token(name)`: the token of the RTAS call named by the
    /// NUL-terminated string at `name`; `ENOENT` for a name that is none.
    pub(crate) fn rtas_token(&self, memory: &dyn UserMemory, name: usize) -> Result<u32, i32> {
        let mut buf = [0u8; RTAS_NAME_MAX];
        let name = match UserPtr::new(name, memory).read_cstr(&mut buf) {
            Err(EINVAL) => return Err(ENOENT),
            other => other?,
        };
        let name = std::str::from_utf8(name).map_err(|_| ENOENT)?;
        self.vm.rtas_token(name).ok_or(ENOENT)
    }
}

#[cfg(test)]
mod tests;
