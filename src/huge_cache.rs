//! A few freed direct mappings (requests above 4 MiB), kept mapped for
//! reuse, so a program that repeatedly allocates big buffers does not pay
//! `mmap`, `munmap` and a page fault per page every time.
//!
//! Invariants (all under the heap lock):
//!
//! * cached mappings hold no live data and are *not* charged to the budget
//!   (they are free memory that happens to stay mapped);
//! * their total size is at most `limit` (1/16 of the budget, at most
//!   64 MiB), so the RSS they keep is bounded;
//! * a reuse takes a mapping of at least the requested length and at most a
//!   quarter more, so no request keeps much beyond what it asked for;
//! * reclaim rounds and purges drop them all.

use crate::sync::{AtomicUsize, Ordering, RacyCell};

pub(crate) const SLOTS: usize = 4;

pub(crate) struct HugeCache {
    slots: [RacyCell<(usize, usize)>; SLOTS],
    limit: usize,
    bytes: AtomicUsize,
}

impl HugeCache {
    pub(crate) fn new(budget_bytes: usize) -> Self {
        Self {
            slots: core::array::from_fn(|_| RacyCell::new((0, 0))),
            limit: (budget_bytes / 16).min(64 << 20),
            bytes: AtomicUsize::new(0),
        }
    }

    /// Bytes held now.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Takes a cached mapping for `len` bytes at `align`; returns its
    /// address and real length.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn take(&self, len: usize, align: usize) -> Option<(usize, usize)> {
        for s in &self.slots {
            // SAFETY: under the heap lock.
            let (addr, l) = unsafe { s.get() };
            if addr != 0 && l >= len && l - len <= len / 4 && addr % align == 0 {
                // SAFETY: under the heap lock.
                unsafe { s.set((0, 0)) };
                self.bytes.fetch_sub(l, Ordering::Relaxed);
                return Some((addr, l));
            }
        }
        None
    }

    /// Keeps a freed mapping, evicting the largest cached ones until it
    /// fits. Writes the mappings the caller must unmap (evicted ones, or
    /// the given one if it cannot be kept) to `out`; returns their number.
    ///
    /// # Safety
    /// The caller holds the heap lock; the mapping is unused.
    pub(crate) unsafe fn keep(
        &self,
        addr: usize,
        len: usize,
        out: &mut [(usize, usize); SLOTS + 1],
    ) -> usize {
        if len > self.limit {
            out[0] = (addr, len);
            return 1;
        }
        let mut n = 0;
        loop {
            // SAFETY: under the heap lock.
            let free_slot = self.slots.iter().find(|s| unsafe { s.get() }.0 == 0);
            match free_slot {
                Some(slot) if self.bytes() + len <= self.limit => {
                    // SAFETY: under the heap lock.
                    unsafe { slot.set((addr, len)) };
                    self.bytes.fetch_add(len, Ordering::Relaxed);
                    return n;
                }
                _ => {
                    // SAFETY: under the heap lock.
                    let victim = self.slots.iter().max_by_key(|s| unsafe { s.get() }.1);
                    let Some(victim) = victim else { break };
                    // SAFETY: under the heap lock.
                    let v = unsafe { victim.get() };
                    if v.0 == 0 {
                        break;
                    }
                    // SAFETY: under the heap lock.
                    unsafe { victim.set((0, 0)) };
                    self.bytes.fetch_sub(v.1, Ordering::Relaxed);
                    out[n] = v;
                    n += 1;
                }
            }
        }
        out[n] = (addr, len);
        n + 1
    }

    /// Empties the cache into `out`; returns how many mappings to unmap.
    ///
    /// # Safety
    /// The caller holds the heap lock.
    pub(crate) unsafe fn drain(&self, out: &mut [(usize, usize); SLOTS]) -> usize {
        let mut n = 0;
        for s in &self.slots {
            // SAFETY: under the heap lock.
            let v = unsafe { s.get() };
            if v.0 != 0 {
                // SAFETY: under the heap lock.
                unsafe { s.set((0, 0)) };
                self.bytes.fetch_sub(v.1, Ordering::Relaxed);
                out[n] = v;
                n += 1;
            }
        }
        n
    }
}
