//! The interposed libc entry points (built with the `preload` feature).
//!
//! Each one checks first whether the call is about an emulated VFIO file: a
//! path below `/dev/vfio/`, or a descriptor the [`Emulator`] owns (one atomic
//! load). Everything else goes to the next definition, libc's, found with
//! `dlsym(RTLD_NEXT, ...)`, untouched. Emulated calls run under
//! `catch_unwind`: a panic becomes `EIO`, never an unwind into C. A
//! thread-local guard sends the library's own calls straight to libc.
//!
//! Variadic entry points (`open`, `openat`, `ioctl`, `fcntl`) are defined
//! with their first variadic argument as a fixed one: on the Linux ABIs this
//! library targets (x86_64 SysV, ppc64le ELFv2, aarch64 AAPCS64) the caller
//! passes it in the same register either way, and it is read only when the
//! call's other arguments say it is there.

use std::cell::Cell;
use std::ffi::{c_char, c_int, c_uint, c_ulong, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use libc::{mode_t, off64_t, off_t, size_t, ssize_t};

use crate::sys;
use crate::user::ProcessMemory;
use crate::vfio::{Access, Emulator, VFIO_DIR};

/// Exported only by the preload build, so tools can tell it from a build
/// without the `preload` feature (which intercepts nothing); its name is
/// [`crate::PRELOAD_MARKER`].
#[no_mangle]
pub static VFIO_EEH_SHIM_PRELOAD: u32 = 1;

thread_local! {
    /// Set while this thread runs the library's own code.
    static BUSY: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` as the library's own code; `None` when the thread is already
/// inside the library (the call is then the library's own, for libc). A
/// panic becomes `EIO`.
fn guarded<T>(f: impl FnOnce() -> Result<T, i32>) -> Option<Result<T, i32>> {
    if BUSY.with(Cell::get) {
        return None;
    }
    BUSY.with(|b| b.set(true));
    let gate = crate::fork::enter();
    let result = catch_unwind(AssertUnwindSafe(f));
    drop(gate);
    BUSY.with(|b| b.set(false));
    Some(result.unwrap_or_else(|_| {
        tracing::error!("Panic in the VFIO emulation; answering EIO");
        Err(libc::EIO)
    }))
}

fn set_errno(e: i32) {
    // SAFETY: __errno_location returns this thread's errno, always valid.
    unsafe { *libc::__errno_location() = e };
}

/// The emulator, if this process has opened an emulated file yet.
fn emulator() -> Option<&'static Emulator> {
    crate::global::get()
}

/// Whether `fd` is emulated, without any lock.
fn ours(fd: c_int) -> Option<&'static Emulator> {
    emulator().filter(|e| e.kind(fd).is_some())
}

/// Turns an emulated call's result into the C convention.
fn finish<T: From<i8>>(result: Result<T, i32>) -> T {
    result.unwrap_or_else(|e| {
        set_errno(e);
        T::from(-1)
    })
}

/// libc's definition of a symbol: `dlsym(RTLD_NEXT, name)`, cached.
macro_rules! real {
    ($name:literal: $ty:ty) => {{
        static ADDR: AtomicUsize = AtomicUsize::new(0);
        let mut addr = ADDR.load(Ordering::Relaxed);
        if addr == 0 {
            // SAFETY: dlsym with RTLD_NEXT and a NUL-terminated name has no
            // preconditions.
            addr = unsafe { libc::dlsym(libc::RTLD_NEXT, concat!($name, "\0").as_ptr().cast()) } as usize;
            if addr == 0 {
                // No definition after ours: nothing to call. abort() is the
                // only answer that cannot unwind into C.
                std::process::abort();
            }
            ADDR.store(addr, Ordering::Relaxed);
        }
        // SAFETY: `addr` is libc's definition of the symbol, whose C type is
        // `$ty`.
        unsafe { std::mem::transmute::<usize, $ty>(addr) }
    }};
}

/// Serves an open of `path` if it is below `/dev/vfio/`.
///
/// # Safety
///
/// `path` is null or a NUL-terminated string.
unsafe fn open_emulated(path: *const c_char, flags: c_int) -> Option<c_int> {
    if path.is_null() {
        return None;
    }
    // SAFETY: the caller passes open's NUL-terminated path.
    let bytes = unsafe { CStr::from_ptr(path) }.to_bytes();
    if !bytes.starts_with(VFIO_DIR) {
        return None;
    }
    let result = guarded(|| match crate::global::init() {
        Some(emu) => emu.open(bytes, flags).ok_or(libc::ENOENT).and_then(|r| r),
        None => Err(libc::ENOENT),
    })?;
    Some(finish(result))
}

macro_rules! define_open {
    ($($name:ident => $real:literal),*) => {$(
        /// Interposed `open` variant.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
            // SAFETY: open's contract.
            if let Some(fd) = unsafe { open_emulated(path, flags) } {
                return fd;
            }
            let f = real!($real: unsafe extern "C" fn(*const c_char, c_int, ...) -> c_int);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(path, flags, c_uint::from(mode)) }
        }
    )*};
}
define_open!(open => "open", open64 => "open64");

macro_rules! define_open_2 {
    ($($name:ident => $real:literal),*) => {$(
        /// Interposed fortified `open` variant.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(path: *const c_char, flags: c_int) -> c_int {
            // SAFETY: open's contract.
            if let Some(fd) = unsafe { open_emulated(path, flags) } {
                return fd;
            }
            let f = real!($real: unsafe extern "C" fn(*const c_char, c_int) -> c_int);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(path, flags) }
        }
    )*};
}
define_open_2!(__open_2 => "__open_2", __open64_2 => "__open64_2");

macro_rules! define_openat {
    ($($name:ident => $real:literal),*) => {$(
        /// Interposed `openat` variant (absolute paths are claimed).
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: *const c_char, flags: c_int, mode: mode_t) -> c_int {
            // SAFETY: openat's contract.
            if let Some(fd) = unsafe { open_emulated(path, flags) } {
                return fd;
            }
            let f = real!($real: unsafe extern "C" fn(c_int, *const c_char, c_int, ...) -> c_int);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(dirfd, path, flags, c_uint::from(mode)) }
        }
    )*};
}
define_openat!(openat => "openat", openat64 => "openat64");

macro_rules! define_openat_2 {
    ($($name:ident => $real:literal),*) => {$(
        /// Interposed fortified `openat` variant.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(dirfd: c_int, path: *const c_char, flags: c_int) -> c_int {
            // SAFETY: openat's contract.
            if let Some(fd) = unsafe { open_emulated(path, flags) } {
                return fd;
            }
            let f = real!($real: unsafe extern "C" fn(c_int, *const c_char, c_int) -> c_int);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(dirfd, path, flags) }
        }
    )*};
}
define_openat_2!(__openat_2 => "__openat_2", __openat64_2 => "__openat64_2");

/// Runs `change` (a real descriptor call and the emulator's record of it)
/// as one step ([`Emulator::changing_fds`]), inside the library: the fork
/// gate is held unless this thread is already inside (a reentrant call,
/// which still records the change).
fn fd_change<T>(emu: &Emulator, change: impl FnOnce() -> T) -> T {
    if BUSY.with(Cell::get) {
        return emu.changing_fds(change);
    }
    BUSY.with(|b| b.set(true));
    let gate = crate::fork::enter();
    let result = emu.changing_fds(change);
    drop(gate);
    BUSY.with(|b| b.set(false));
    result
}

/// Interposed `close`.
///
/// # Safety
///
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn close(fd: c_int) -> c_int {
    // The library's own descriptors stay open: Linux would close them, but
    // a program closing every number (a daemon) would then break the
    // emulation and its control socket. The program sees a successful close.
    if sys::is_private(fd) {
        return 0;
    }
    let f = real!("close": unsafe extern "C" fn(c_int) -> c_int);
    match ours(fd) {
        Some(emu) => fd_change(emu, || {
            emu.forget(fd);
            // SAFETY: forwarding the caller's argument unchanged.
            unsafe { f(fd) }
        }),
        // SAFETY: forwarding the caller's argument unchanged.
        None => unsafe { f(fd) },
    }
}

/// `close_range` of `first..=last` without the library's own descriptors
/// (see [`close`]); `first <= last`.
fn close_range_but_private(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    let f = real!("close_range": unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int);
    let mut from = first;
    loop {
        let private = sys::next_private(from, last);
        let end = private.map_or(Some(last), |p| p.checked_sub(1));
        if let Some(end) = end.filter(|&end| end >= from) {
            // SAFETY: close_range takes integers; the caller's flags unchanged.
            let ret = unsafe { f(from, end, flags) };
            if ret != 0 {
                return ret;
            }
        }
        match private.and_then(|p| p.checked_add(1)) {
            Some(next) if next <= last => from = next,
            _ => return 0,
        }
    }
}

/// Interposed `close_range`.
///
/// # Safety
///
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn close_range(first: c_uint, last: c_uint, flags: c_int) -> c_int {
    if first > last {
        let f = real!("close_range": unsafe extern "C" fn(c_uint, c_uint, c_int) -> c_int);
        // SAFETY: forwarding the caller's arguments unchanged (EINVAL).
        return unsafe { f(first, last, flags) };
    }
    let cloexec_only = flags & libc::CLOSE_RANGE_CLOEXEC as c_int != 0;
    match emulator() {
        Some(emu) if !cloexec_only => fd_change(emu, || {
            let taken = emu.take_range(first, last);
            let ret = close_range_but_private(first, last, flags);
            if ret != 0 {
                emu.restore(taken);
            }
            ret
        }),
        _ => close_range_but_private(first, last, flags),
    }
}

/// A duplication of `old` made by `real` (returning the new descriptor or
/// -1), recorded as one step with it; `onto` is the number it replaces, if
/// the caller chose one (`dup2`, `dup3`).
fn duplicate(old: c_int, onto: Option<c_int>, real: impl FnOnce() -> c_int) -> c_int {
    let Some(emu) = emulator() else { return real() };
    let replaces_emulated = onto.is_some_and(|new| new != old && emu.kind(new).is_some());
    if emu.kind(old).is_none() && !replaces_emulated {
        return real();
    }
    fd_change(emu, || {
        let taken = onto.filter(|&new| new != old).and_then(|new| emu.take(new));
        let new = real();
        if new >= 0 {
            emu.duplicated(old, new);
        } else {
            emu.restore(taken);
        }
        new
    })
}

/// Interposed `dup`.
///
/// # Safety
///
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn dup(fd: c_int) -> c_int {
    let f = real!("dup": unsafe extern "C" fn(c_int) -> c_int);
    // SAFETY: forwarding the caller's argument unchanged.
    duplicate(fd, None, || unsafe { f(fd) })
}

/// Interposed `dup2`.
///
/// # Safety
///
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn dup2(old: c_int, new: c_int) -> c_int {
    let f = real!("dup2": unsafe extern "C" fn(c_int, c_int) -> c_int);
    // SAFETY: forwarding the caller's arguments unchanged.
    duplicate(old, Some(new), || unsafe { f(old, new) })
}

/// Interposed `dup3`.
///
/// # Safety
///
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn dup3(old: c_int, new: c_int, flags: c_int) -> c_int {
    let f = real!("dup3": unsafe extern "C" fn(c_int, c_int, c_int) -> c_int);
    // SAFETY: forwarding the caller's arguments unchanged.
    duplicate(old, Some(new), || unsafe { f(old, new, flags) })
}

macro_rules! define_fcntl {
    ($($name:ident => $real:literal),*) => {$(
        /// Interposed `fcntl` variant (`F_DUPFD*` of emulated files is
        /// tracked).
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, cmd: c_int, arg: c_ulong) -> c_int {
            let f = real!($real: unsafe extern "C" fn(c_int, c_int, ...) -> c_int);
            // SAFETY: forwarding the caller's arguments unchanged.
            let call = || unsafe { f(fd, cmd, arg) };
            match cmd {
                libc::F_DUPFD | libc::F_DUPFD_CLOEXEC => duplicate(fd, None, call),
                _ => call(),
            }
        }
    )*};
}
define_fcntl!(fcntl => "fcntl", fcntl64 => "fcntl64");

/// Interposed `ioctl`.
///
/// # Safety
///
/// As the libc function.
#[no_mangle]
pub unsafe extern "C" fn ioctl(fd: c_int, request: c_ulong, arg: usize) -> c_int {
    if let Some(emu) = ours(fd) {
        if let Some(result) = guarded(|| {
            #[allow(clippy::useless_conversion)] // `c_ulong` is 32-bit on 32-bit targets.
            let request = u64::from(request);
            let r = emu.ioctl(fd, request, arg).unwrap_or(Err(libc::EBADF))?;
            c_int::try_from(r).map_err(|_| libc::EOVERFLOW)
        }) {
            return finish(result);
        }
    }
    let f = real!("ioctl": unsafe extern "C" fn(c_int, c_ulong, ...) -> c_int);
    // SAFETY: forwarding the caller's arguments unchanged.
    unsafe { f(fd, request, arg) }
}

/// A region read on an emulated descriptor, if `fd` is one.
///
/// # Safety
///
/// `buf` is valid for writes of `n` bytes.
unsafe fn pread_emulated(fd: c_int, buf: *mut c_void, n: size_t, off: off64_t) -> Option<ssize_t> {
    let emu = ours(fd)?;
    let result = guarded(|| {
        let off = u64::try_from(off).map_err(|_| libc::EINVAL)?;
        if buf.is_null() && n > 0 {
            return Err(libc::EFAULT);
        }
        let slice = if n == 0 {
            &mut [][..]
        } else {
            // SAFETY: pread's contract: `buf` is writable for `n` bytes.
            unsafe { std::slice::from_raw_parts_mut(buf.cast::<u8>(), n) }
        };
        let done = emu.region_access(fd, off, Access::Read(slice)).unwrap_or(Err(libc::EBADF))?;
        ssize_t::try_from(done).map_err(|_| libc::EOVERFLOW)
    })?;
    Some(finish(result))
}

/// A region write on an emulated descriptor, if `fd` is one.
///
/// # Safety
///
/// `buf` is valid for reads of `n` bytes.
unsafe fn pwrite_emulated(fd: c_int, buf: *const c_void, n: size_t, off: off64_t) -> Option<ssize_t> {
    let emu = ours(fd)?;
    let result = guarded(|| {
        let off = u64::try_from(off).map_err(|_| libc::EINVAL)?;
        if buf.is_null() && n > 0 {
            return Err(libc::EFAULT);
        }
        let slice = if n == 0 {
            &[][..]
        } else {
            // SAFETY: pwrite's contract: `buf` is readable for `n` bytes.
            unsafe { std::slice::from_raw_parts(buf.cast::<u8>(), n) }
        };
        let done = emu.region_access(fd, off, Access::Write(slice)).unwrap_or(Err(libc::EBADF))?;
        ssize_t::try_from(done).map_err(|_| libc::EOVERFLOW)
    })?;
    Some(finish(result))
}

macro_rules! define_pread {
    ($($name:ident => $real:literal, $off:ty),*) => {$(
        /// Interposed `pread` variant.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut c_void, n: size_t, off: $off) -> ssize_t {
            // SAFETY: pread's contract.
            if let Some(r) = unsafe { pread_emulated(fd, buf, n, off64_t::from(off)) } {
                return r;
            }
            let f = real!($real: unsafe extern "C" fn(c_int, *mut c_void, size_t, $off) -> ssize_t);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(fd, buf, n, off) }
        }
    )*};
}
define_pread!(pread => "pread", off_t, pread64 => "pread64", off64_t);

macro_rules! define_pread_chk {
    ($($name:ident => $real:literal, $off:ty),*) => {$(
        /// Interposed fortified `pread` variant.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *mut c_void, n: size_t, off: $off, buflen: size_t) -> ssize_t {
            if n <= buflen {
                // SAFETY: pread's contract, and `n` fits the buffer.
                if let Some(r) = unsafe { pread_emulated(fd, buf, n, off64_t::from(off)) } {
                    return r;
                }
            }
            let f = real!($real: unsafe extern "C" fn(c_int, *mut c_void, size_t, $off, size_t) -> ssize_t);
            // SAFETY: forwarding the caller's arguments unchanged (libc
            // reports the overflow).
            unsafe { f(fd, buf, n, off, buflen) }
        }
    )*};
}
define_pread_chk!(__pread_chk => "__pread_chk", off_t, __pread64_chk => "__pread64_chk", off64_t);

macro_rules! define_pwrite {
    ($($name:ident => $real:literal, $off:ty),*) => {$(
        /// Interposed `pwrite` variant.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(fd: c_int, buf: *const c_void, n: size_t, off: $off) -> ssize_t {
            // SAFETY: pwrite's contract.
            if let Some(r) = unsafe { pwrite_emulated(fd, buf, n, off64_t::from(off)) } {
                return r;
            }
            let f = real!($real: unsafe extern "C" fn(c_int, *const c_void, size_t, $off) -> ssize_t);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(fd, buf, n, off) }
        }
    )*};
}
define_pwrite!(pwrite => "pwrite", off_t, pwrite64 => "pwrite64", off64_t);

macro_rules! define_mmap {
    ($($name:ident => $real:literal, $off:ty),*) => {$(
        /// Interposed `mmap` variant: emulated regions are not mappable
        /// (their region info has no mmap flag), so mapping one is `EINVAL`.
        ///
        /// # Safety
        ///
        /// As the libc function.
        #[no_mangle]
        pub unsafe extern "C" fn $name(
            addr: *mut c_void, len: size_t, prot: c_int, flags: c_int, fd: c_int, off: $off,
        ) -> *mut c_void {
            if ours(fd).is_some() {
                set_errno(libc::EINVAL);
                return libc::MAP_FAILED;
            }
            let f = real!($real: unsafe extern "C" fn(*mut c_void, size_t, c_int, c_int, c_int, $off) -> *mut c_void);
            // SAFETY: forwarding the caller's arguments unchanged.
            unsafe { f(addr, len, prot, flags, fd, off) }
        }
    )*};
}
define_mmap!(mmap => "mmap", off_t, mmap64 => "mmap64", off64_t);

/// Writes the op log at exit (`atexit`).
extern "C" fn write_oplog_at_exit() {
    guarded(|| {
        crate::global::write_oplog();
        Ok(())
    });
}

/// Runs an entry point of the library's own API (not an interposed libc
/// call) on the emulator, started from the environment if no emulated file
/// was opened yet: the value, or the negative errno C callers get
/// (`ENODEV` when the emulation cannot start).
fn api_call(f: impl FnOnce(&Emulator) -> Result<c_int, i32>) -> c_int {
    let result = guarded(|| crate::global::init().ok_or(libc::ENODEV).and_then(f));
    // Only the library's own code is refused entry, and it never calls here.
    match result.unwrap_or(Err(libc::EDEADLK)) {
        Ok(value) => value,
        Err(errno) => -errno,
    }
}

/// `int vfio_eeh_rtas(void *args, const struct vfio_eeh_guest_ram *ram)`
/// (`include/vfio_eeh.h`): serves the RTAS call in the `rtas_args` buffer at
/// `args` through this VM's mappings and writes its return cells there;
/// `ram` (may be null) is the guest RAM window for calls that name guest
/// buffers. 0 when served (the PAPR status is in `rets[0]`), else a negative
/// errno: `-EINVAL` for a buffer with no room for a status (`nret` 0, more
/// than 16 cells), `-EFAULT` for a bad pointer. The pointers are only
/// copied through (`process_vm_readv`/`_writev`), never dereferenced.
#[no_mangle]
pub extern "C" fn vfio_eeh_rtas(args: *mut c_void, ram: *const c_void) -> c_int {
    api_call(|emu| emu.rtas(&ProcessMemory, args.addr(), ram.addr()).map(|()| 0))
}

/// `int vfio_eeh_rtas_token(const char *name)` (`include/vfio_eeh.h`): the
/// token of the RTAS call `name` (`"ibm,set-eeh-option"`, ...) to put in
/// `rtas_args.token`; `-ENOENT` for a name that is none, `-EFAULT` for a bad
/// pointer.
#[no_mangle]
pub extern "C" fn vfio_eeh_rtas_token(name: *const c_char) -> c_int {
    api_call(|emu| {
        let token = emu.rtas_token(&ProcessMemory, name.addr())?;
        c_int::try_from(token).map_err(|_| libc::ERANGE)
    })
}

/// Registers [`write_oplog_at_exit`]; called once, after initialisation.
pub(crate) fn register_exit_hook() {
    // SAFETY: atexit takes a plain `extern "C" fn()` that stays valid: the
    // library is never unloaded while the process runs.
    unsafe { libc::atexit(write_oplog_at_exit) };
}
