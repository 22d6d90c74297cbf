//! Memory-mapped model files, and what happens when one changes under a run.
//!
//! Models are read-only while in use. Replacing a model by writing a new file and renaming it over
//! the old one is safe (the run keeps the old inode). Truncating or rewriting the file in place
//! (`cp new.safetensors model.safetensors`, a download over the old file) makes the kernel send
//! SIGBUS to the next read of a page that no longer exists. Without a handler the process dies
//! without a word; with the one installed here it writes one line naming the file and exits with
//! status 2, the status of every other kpg error.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize, Ordering};
use std::sync::Once;

/// Mapped files tracked at once; a run maps a handful (model shards), a test process more.
const SLOTS: usize = 256;

/// One mapped range and the message for a fault inside it. Read by the signal handler, so every
/// field is an atomic and the message a leaked-until-unregistered byte buffer.
struct Slot {
    used: AtomicBool,
    start: AtomicUsize,
    len: AtomicUsize,
    message: AtomicPtr<u8>,
    message_len: AtomicUsize,
}

#[allow(clippy::declare_interior_mutable_const)]
const EMPTY: Slot = Slot {
    used: AtomicBool::new(false),
    start: AtomicUsize::new(0),
    len: AtomicUsize::new(0),
    message: AtomicPtr::new(std::ptr::null_mut()),
    message_len: AtomicUsize::new(0),
};

static SLOTS_TABLE: [Slot; SLOTS] = [EMPTY; SLOTS];
static INSTALL: Once = Once::new();

/// Keeps `bytes` (a mapping of `path`) registered until dropped: a SIGBUS inside it names `path`.
pub struct MappedRange {
    slot: Option<usize>,
}

impl MappedRange {
    pub fn register(bytes: &[u8], path: &Path) -> MappedRange {
        install_handler();
        let message = format!(
            "kpg: error: {}: the model file was truncated or rewritten while this run had it \
             mapped; models are read-only while in use (write a new file and rename it over the \
             old one)\n",
            path.display()
        )
        .into_bytes()
        .into_boxed_slice();
        let slot = SLOTS_TABLE.iter().position(|s| {
            s.used
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        });
        // With every slot taken the mapping is simply not named on a fault.
        if let Some(i) = slot {
            let s = &SLOTS_TABLE[i];
            let len = message.len();
            s.message
                .store(Box::into_raw(message).cast::<u8>(), Ordering::Release);
            s.message_len.store(len, Ordering::Release);
            s.start.store(bytes.as_ptr() as usize, Ordering::Release);
            s.len.store(bytes.len(), Ordering::Release);
        }
        MappedRange { slot }
    }
}

impl Drop for MappedRange {
    fn drop(&mut self) {
        let Some(i) = self.slot else { return };
        let s = &SLOTS_TABLE[i];
        s.len.store(0, Ordering::Release);
        s.start.store(0, Ordering::Release);
        let len = s.message_len.swap(0, Ordering::AcqRel);
        let ptr = s.message.swap(std::ptr::null_mut(), Ordering::AcqRel);
        if !ptr.is_null() {
            // SAFETY: `ptr` and `len` are the boxed slice leaked in `register`, taken back once.
            drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
        }
        s.used.store(false, Ordering::Release);
    }
}

#[cfg(unix)]
fn install_handler() {
    INSTALL.call_once(|| {
        // SAFETY: a plain sigaction with a handler that only uses async-signal-safe calls
        // (write, _exit, signal) and atomics.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_sigbus as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(libc::SIGBUS, &action, std::ptr::null_mut());
        }
    });
}

#[cfg(not(unix))]
fn install_handler() {}

#[cfg(unix)]
extern "C" fn on_sigbus(
    _signal: libc::c_int,
    info: *mut libc::siginfo_t,
    _context: *mut libc::c_void,
) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers.
    let addr = unsafe { fault_address(info) };
    for s in &SLOTS_TABLE {
        let start = s.start.load(Ordering::Acquire);
        let len = s.len.load(Ordering::Acquire);
        if len == 0 || addr < start || addr - start >= len {
            continue;
        }
        let ptr = s.message.load(Ordering::Acquire);
        let n = s.message_len.load(Ordering::Acquire);
        // SAFETY: write(2) and _exit(2) are async-signal-safe; the message lives while registered.
        unsafe {
            if !ptr.is_null() {
                libc::write(2, ptr.cast(), n);
            }
            libc::_exit(2);
        }
    }
    // Not a model mapping: fall back to the default action, which the retried access then takes.
    // SAFETY: signal(2) is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
}

#[cfg(target_os = "linux")]
unsafe fn fault_address(info: *mut libc::siginfo_t) -> usize {
    unsafe { (*info).si_addr() as usize }
}

#[cfg(all(unix, not(target_os = "linux")))]
unsafe fn fault_address(info: *mut libc::siginfo_t) -> usize {
    unsafe { (*info).si_addr as usize }
}
