//! Fork safety. The library's control threads make every program
//! multithreaded, so `fork` can copy a lock some other thread holds, and a
//! child that then touches an emulated descriptor would wait for it
//! forever. Every entry into the emulation holds [`enter`]'s shared gate;
//! `pthread_atfork` handlers take the gate exclusively before the fork (so
//! no thread is inside the emulation, holding none of its locks) together
//! with the library's stderr lock, and release both in the parent and the
//! child.

use std::cell::RefCell;
use std::io::StderrLock;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static GATE: RwLock<()> = RwLock::new(());

thread_local! {
    /// What the forking thread holds between the handlers.
    static HELD: RefCell<Option<(RwLockWriteGuard<'static, ()>, StderrLock<'static>)>> = const { RefCell::new(None) };
}

/// Holds off `fork` while the guard lives. Taken once per entry into the
/// emulation (never again on the same thread before the guard drops: a
/// waiting fork would deadlock it).
pub(crate) fn enter() -> RwLockReadGuard<'static, ()> {
    GATE.read().unwrap_or_else(PoisonError::into_inner)
}

extern "C" fn before_fork() {
    let gate = GATE.write().unwrap_or_else(PoisonError::into_inner);
    let stderr = std::io::stderr().lock();
    HELD.with(|held| *held.borrow_mut() = Some((gate, stderr)));
}

extern "C" fn after_fork() {
    HELD.with(|held| held.borrow_mut().take());
}

/// Registers the handlers; called once, when the emulation starts.
pub(crate) fn register() {
    // SAFETY: pthread_atfork takes plain `extern "C" fn()`s that stay valid:
    // the library is never unloaded while the process runs.
    unsafe { libc::pthread_atfork(Some(before_fork), Some(after_fork), Some(after_fork)) };
}
