//! Messages from inside the allocator: fixed buffers, `write(2)`, abort.
//!
//! Nothing here allocates or panics. A message is assembled in a stack
//! buffer ([`MsgBuf`]) from static strings and numbers and written to stderr
//! in one `write(2)`. Fatal errors (heap corruption, invalid frees) abort
//! with a fixed message; warnings are rate-limited to one per 10 seconds per
//! kind, like the kernel's `warn_alloc`.

use core::sync::atomic::{AtomicU64, Ordering};

/// A fixed-size message buffer; text beyond its capacity is dropped.
pub(crate) struct MsgBuf {
    buf: [u8; 512],
    len: usize,
}

impl MsgBuf {
    pub(crate) const fn new() -> Self {
        Self {
            buf: [0; 512],
            len: 0,
        }
    }

    pub(crate) fn str(&mut self, s: &str) -> &mut Self {
        for &b in s.as_bytes() {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    pub(crate) fn dec(&mut self, mut v: usize) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        for &b in &tmp[i..] {
            if self.len < self.buf.len() {
                self.buf[self.len] = b;
                self.len += 1;
            }
        }
        self
    }

    pub(crate) fn hex(&mut self, v: usize) -> &mut Self {
        self.str("0x");
        let mut started = false;
        for shift in (0..16).rev() {
            let nib = (v >> (shift * 4)) & 0xf;
            if nib != 0 || started || shift == 0 {
                started = true;
                let c = b"0123456789abcdef"[nib];
                if self.len < self.buf.len() {
                    self.buf[self.len] = c;
                    self.len += 1;
                }
            }
        }
        self
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Writes the buffer to stderr.
    pub(crate) fn emit(&self) {
        write_stderr(self.as_bytes());
    }
}

pub(crate) fn write_stderr(bytes: &[u8]) {
    let mut off = 0;
    while off < bytes.len() {
        // SAFETY: the pointer and length describe a live slice.
        let n = unsafe {
            libc::write(
                2,
                bytes[off..].as_ptr().cast::<libc::c_void>(),
                bytes.len() - off,
            )
        };
        if n <= 0 {
            break;
        }
        off += n as usize;
    }
}

/// Reports misuse or corruption at `addr` and aborts the process.
///
/// The message is fixed: `lifeboat: fatal: <what> at <addr>`.
#[cold]
#[inline(never)]
pub(crate) fn fatal(what: &str, addr: usize) -> ! {
    let mut m = MsgBuf::new();
    m.str("lifeboat: fatal: ")
        .str(what)
        .str(" at ")
        .hex(addr)
        .str("\n");
    m.emit();
    abort()
}

/// Aborts without unwinding.
#[cold]
pub(crate) fn abort() -> ! {
    // SAFETY: abort(3) has no preconditions and does not return.
    unsafe { libc::abort() }
}

/// The kinds of rate-limited warnings.
#[derive(Clone, Copy)]
pub(crate) enum Warn {
    AllocFailure = 0,
    GuardOrder = 1,
    ReserveDepleted = 2,
    OomReport = 3,
}

static LAST_WARN: [AtomicU64; 4] = [
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
    AtomicU64::new(0),
];

/// Seconds between two warnings of one kind.
pub(crate) const WARN_INTERVAL_SECS: u64 = 10;

/// True at most once per [`WARN_INTERVAL_SECS`] per kind.
pub(crate) fn warn_allowed(kind: Warn) -> bool {
    let now = monotonic_secs() + WARN_INTERVAL_SECS; // never 0, so the first passes
    let slot = &LAST_WARN[kind as usize];
    let last = slot.load(Ordering::Relaxed);
    if last != 0 && now < last + WARN_INTERVAL_SECS {
        return false;
    }
    slot.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
        .is_ok()
}

pub(crate) fn monotonic_secs() -> u64 {
    monotonic_millis() / 1000
}

pub(crate) fn monotonic_millis() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the valid timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_numbers_without_allocating() {
        let mut m = MsgBuf::new();
        m.str("a=")
            .dec(0)
            .str(" b=")
            .dec(12345)
            .str(" c=")
            .hex(0xdead_beef);
        assert_eq!(m.as_bytes(), b"a=0 b=12345 c=0xdeadbeef");
    }

    #[test]
    fn truncates_instead_of_overflowing() {
        let mut m = MsgBuf::new();
        for _ in 0..100 {
            m.str("0123456789");
        }
        assert_eq!(m.as_bytes().len(), 512);
    }
}
