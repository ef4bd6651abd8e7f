//! Thread-local allocation rights: the kernel's task flags.
//!
//! * memalloc (`PF_MEMALLOC`): the thread frees memory, so it may use the
//!   reserve below `min`;
//! * nomemalloc (`__GFP_NOMEMALLOC`): never use the reserve; wins;
//! * OOM victim (`TIF_MEMDIE`): the thread is dying to free memory and may
//!   use half of `min`.
//!
//! Scopes nest. A guard restores exactly the bits it set (like
//! `memalloc_flags_save`/`restore`): a guard whose bit was already set
//! restores nothing, so inner scopes never clear an outer scope's right.
//! Guards carry their nesting depth; one dropped out of order is reported
//! (rate-limited) and still restores only its own bits.

use crate::arena::watermark::Tier;
use crate::flags::AllocFlags;
use core::cell::Cell;

const OOM_VICTIM: u32 = 1 << 8;
/// The thread is running reclaim: it never enters reclaim again.
pub(crate) const IN_RECLAIM: u32 = 1 << 9;
/// The thread is in a recursive (allocation-free) round: it never nests.
pub(crate) const IN_RECURSIVE: u32 = 1 << 10;

std::thread_local! {
    static RIGHTS: Cell<u32> = const { Cell::new(0) };
    static DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// The thread's rights as flag bits.
#[inline]
pub(crate) fn thread_bits() -> u32 {
    crate::sync::check_thread_local_allowed();
    RIGHTS.with(|r| r.get())
}

/// Whether a memalloc scope (not only an explicit flag) is active.
pub(crate) fn in_memalloc_scope() -> bool {
    thread_bits() & AllocFlags::MEMALLOC.0 != 0
}

/// What one allocation may do, from its flags and the thread's rights.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rights {
    /// The tier for ordinary (non-reserve) memory.
    pub(crate) tier: Tier,
    /// May use the reserve.
    pub(crate) memalloc: bool,
    pub(crate) flags: AllocFlags,
}

/// Combines explicit flags with the thread's scopes.
pub(crate) fn resolve(flags: AllocFlags) -> Rights {
    let bits = flags.0 | thread_bits();
    let f = AllocFlags(bits);
    let memalloc = f.contains(AllocFlags::MEMALLOC) && !f.contains(AllocFlags::NOMEMALLOC);
    let tier = if f.contains(AllocFlags::ATOMIC) {
        Tier::Atomic
    } else if bits & OOM_VICTIM != 0 && !f.contains(AllocFlags::NOMEMALLOC) {
        Tier::OomVictim
    } else if f.contains(AllocFlags::HIGH) {
        Tier::High
    } else {
        Tier::Normal
    };
    Rights {
        tier,
        memalloc,
        flags: AllocFlags(bits & 0xff),
    }
}

/// A scope that set some rights; dropping it clears exactly those.
#[must_use = "the right lasts only while the guard lives"]
pub struct ScopeGuard {
    set: u32,
    depth: u32,
    _not_send: core::marker::PhantomData<*const ()>,
}

/// Sets `bits` on this thread until the guard drops (internal scopes of
/// reclaim; they restore exactly what they set, like the public ones).
pub(crate) fn enter_bits(bits: u32) -> ScopeGuard {
    enter(bits)
}

fn enter(bits: u32) -> ScopeGuard {
    crate::sync::check_thread_local_allowed();
    let set = RIGHTS.with(|r| {
        let old = r.get();
        r.set(old | bits);
        bits & !old
    });
    let depth = DEPTH.with(|d| {
        let v = d.get() + 1;
        d.set(v);
        v
    });
    ScopeGuard {
        set,
        depth,
        _not_send: core::marker::PhantomData,
    }
}

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let in_order = DEPTH.with(|d| {
            let cur = d.get();
            d.set(cur.saturating_sub(1));
            cur == self.depth
        });
        if !in_order && crate::diag::warn_allowed(crate::diag::Warn::GuardOrder) {
            crate::diag::write_stderr(b"lifeboat: warning: allocation-rights guard dropped out of order; restoring only its own bits\n");
        }
        RIGHTS.with(|r| r.set(r.get() & !self.set));
        if self.set & AllocFlags::MEMALLOC.0 != 0 {
            // The outermost memalloc scope ended: give up the reserve place.
            crate::throttle::release_held();
        }
    }
}

/// Grants this thread reserve access (below `min`) until the guard drops.
///
/// Use it around code that frees memory: flushing, evicting, shutting down.
/// A [`nomemalloc_scope`] anywhere on the thread wins over it.
pub fn memalloc_scope() -> ScopeGuard {
    enter(AllocFlags::MEMALLOC.0)
}

/// Runs `f` with reserve access.
pub fn memalloc<R>(f: impl FnOnce() -> R) -> R {
    let _g = memalloc_scope();
    f()
}

/// Forbids reserve access on this thread until the guard drops, even inside
/// a memalloc scope.
pub fn nomemalloc_scope() -> ScopeGuard {
    enter(AllocFlags::NOMEMALLOC.0)
}

/// Marks this thread as an OOM victim for the rest of its life: it may use
/// half of `min` so it can exit.
pub fn mark_oom_victim() {
    RIGHTS.with(|r| r.set(r.get() | OOM_VICTIM));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_scopes_restore_only_their_bits() {
        assert!(!resolve(AllocFlags::NORMAL).memalloc);
        {
            let _a = memalloc_scope();
            assert!(resolve(AllocFlags::NORMAL).memalloc);
            {
                let _b = memalloc_scope();
                assert!(resolve(AllocFlags::NORMAL).memalloc);
            }
            assert!(
                resolve(AllocFlags::NORMAL).memalloc,
                "inner guard must not clear outer right"
            );
            {
                let _n = nomemalloc_scope();
                assert!(!resolve(AllocFlags::NORMAL).memalloc, "nomemalloc wins");
                assert!(!resolve(AllocFlags::MEMALLOC).memalloc);
            }
            assert!(resolve(AllocFlags::NORMAL).memalloc);
        }
        assert!(!resolve(AllocFlags::NORMAL).memalloc);
    }

    #[test]
    fn out_of_order_drop_still_restores() {
        let a = memalloc_scope();
        let b = nomemalloc_scope();
        drop(a);
        assert!(!resolve(AllocFlags::MEMALLOC).memalloc);
        drop(b);
        assert!(resolve(AllocFlags::MEMALLOC).memalloc);
        assert!(!resolve(AllocFlags::NORMAL).memalloc);
    }

    #[test]
    fn tiers_from_flags() {
        assert_eq!(resolve(AllocFlags::NORMAL).tier, Tier::Normal);
        assert_eq!(resolve(AllocFlags::HIGH).tier, Tier::High);
        assert_eq!(
            resolve(AllocFlags::ATOMIC | AllocFlags::HIGH).tier,
            Tier::Atomic
        );
        std::thread::spawn(|| {
            mark_oom_victim();
            assert_eq!(resolve(AllocFlags::NORMAL).tier, Tier::OomVictim);
        })
        .join()
        .unwrap();
        assert_eq!(resolve(AllocFlags::NORMAL).tier, Tier::Normal);
    }
}
