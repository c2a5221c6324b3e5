//! Ctrl-C (SIGINT) and SIGTERM during a long run: the first asks the run to stop at the end of
//! the current round (it then writes a checkpoint and an `interrupted` report); the second ends
//! the process at once, with exit code 130.

use std::sync::atomic::{AtomicU32, Ordering};

static REQUESTS: AtomicU32 = AtomicU32::new(0);

const FIRST: &[u8] = b"\ninterrupted: finishing this round, then writing a checkpoint (again to stop at once)\n";

extern "C" fn on_signal(_: libc::c_int) {
    // Only async-signal-safe calls here: an atomic add, write(2), _exit(2).
    if REQUESTS.fetch_add(1, Ordering::SeqCst) >= 1 {
        // SAFETY: _exit is async-signal-safe and takes no pointers.
        unsafe { libc::_exit(130) };
    }
    // SAFETY: write(2) is async-signal-safe; the buffer is a static byte string.
    unsafe { libc::write(libc::STDERR_FILENO, FIRST.as_ptr().cast(), FIRST.len()) };
}

/// Installs the handler for SIGINT and SIGTERM.
pub fn install() {
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only makes async-signal-safe calls (see `on_signal`).
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
}

/// Whether a stop was asked for.
pub fn requested() -> bool {
    REQUESTS.load(Ordering::SeqCst) > 0
}
