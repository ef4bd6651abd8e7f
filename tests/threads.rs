//! Many threads churning allocations of random sizes, with boxes sent
//! between threads so that most frees of some objects are cross-thread.

use std::cell::RefCell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

const SCALE: usize = if cfg!(debug_assertions) { 1 } else { 4 };
const THREADS: usize = 8;

mod common;
use common::Rng;

/// A heap buffer whose contents are a function of its tag.
struct Tagged {
    tag: u64,
    data: Box<[u8]>,
}

fn byte(tag: u64, i: usize) -> u8 {
    (tag as usize ^ i.wrapping_mul(0x9d) ^ (i >> 9)) as u8
}

impl Tagged {
    fn new(tag: u64, size: usize) -> Self {
        Tagged {
            tag,
            data: (0..size).map(|i| byte(tag, i)).collect(),
        }
    }
    fn check(&self, who: &str) {
        for (i, b) in self.data.iter().enumerate() {
            assert_eq!(
                *b,
                byte(self.tag, i),
                "{who}: object tag {:#x} len {} corrupted at byte {i}",
                self.tag,
                self.data.len()
            );
        }
    }
}

fn random_size(rng: &mut Rng) -> usize {
    match rng.below(100) {
        0 => 32 * 1024 + rng.below(200 * 1024),
        1..=5 => rng.below(32 * 1024 + 1),
        6..=30 => rng.below(2048),
        _ => rng.below(256),
    }
}

#[test]
fn churn_with_cross_thread_frees() {
    let ops = 20_000 * SCALE;
    let mut senders = Vec::new();
    let mut receivers = Vec::new();
    for _ in 0..THREADS {
        let (tx, rx) = mpsc::channel::<Tagged>();
        senders.push(tx);
        receivers.push(rx);
    }
    // Thread i sends to thread i + 1.
    senders.rotate_left(1);
    let received = Arc::new(AtomicUsize::new(0));
    let sent = Arc::new(AtomicUsize::new(0));
    let barrier = Arc::new(Barrier::new(THREADS));
    let mut handles = Vec::new();
    for (t, (tx, rx)) in senders.into_iter().zip(receivers).enumerate() {
        let received = Arc::clone(&received);
        let sent = Arc::clone(&sent);
        let barrier = Arc::clone(&barrier);
        handles.push(thread::spawn(move || {
            let mut rng = Rng::new(t as u64 + 1);
            let mut live: Vec<Tagged> = Vec::new();
            barrier.wait();
            for op in 0..ops {
                let tag = ((t as u64) << 40) | op as u64;
                match rng.below(8) {
                    0..=3 => live.push(Tagged::new(tag, random_size(&mut rng))),
                    4 | 5 if !live.is_empty() => {
                        let i = rng.below(live.len());
                        let obj = live.swap_remove(i);
                        obj.check("local free");
                    }
                    6 if !live.is_empty() => {
                        let i = rng.below(live.len());
                        let obj = live.swap_remove(i);
                        obj.check("before send");
                        tx.send(obj).expect("receiver alive");
                        sent.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        while let Ok(obj) = rx.try_recv() {
                            obj.check("received");
                            received.fetch_add(1, Ordering::Relaxed);
                            // Keep some received objects for a while, free
                            // the rest now: both are frees of foreign objects.
                            if rng.below(2) == 0 {
                                live.push(obj);
                            }
                        }
                    }
                }
                if live.len() > 4000 {
                    let obj = live.swap_remove(rng.below(live.len()));
                    obj.check("trim");
                }
            }
            drop(tx);
            for obj in rx.iter() {
                obj.check("drain");
                received.fetch_add(1, Ordering::Relaxed);
            }
            for obj in &live {
                obj.check("final");
            }
            live.len()
        }));
    }
    for h in handles {
        h.join().expect("worker thread panicked");
    }
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 0, "no object was sent between threads");
    assert_eq!(received.load(Ordering::Relaxed), sent);
}

#[test]
fn producer_consumer_all_frees_remote() {
    // One thread allocates everything, another frees everything.
    let n = 100_000 * SCALE;
    let (tx, rx) = mpsc::sync_channel::<Tagged>(1024);
    let producer = thread::spawn(move || {
        let mut rng = Rng::new(42);
        for i in 0..n {
            let size = random_size(&mut rng) % 4096;
            tx.send(Tagged::new(i as u64, size))
                .expect("consumer alive");
        }
    });
    let consumer = thread::spawn(move || {
        let mut count = 0;
        for obj in rx.iter() {
            obj.check("consumer");
            count += 1;
        }
        count
    });
    producer.join().expect("producer panicked");
    assert_eq!(consumer.join().expect("consumer panicked"), n);
}

#[test]
fn objects_outlive_their_threads() {
    // Threads allocate and exit; their objects are freed later by others.
    let rounds = 50 * SCALE;
    let mut keep: Vec<Tagged> = Vec::new();
    for r in 0..rounds {
        let hs: Vec<_> = (0..4)
            .map(|t| {
                thread::spawn(move || {
                    let mut rng = Rng::new((r * 4 + t) as u64 + 7);
                    (0..300)
                        .map(|i| {
                            Tagged::new(((r * 4 + t) * 1000 + i) as u64, random_size(&mut rng))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        for h in hs {
            let objs = h.join().expect("thread panicked");
            for (i, o) in objs.into_iter().enumerate() {
                if i % 3 == 0 {
                    keep.push(o);
                } else {
                    o.check("after owner exit");
                }
            }
        }
        if keep.len() > 3000 {
            // Free the kept ones on yet another thread.
            let batch: Vec<Tagged> = std::mem::take(&mut keep);
            thread::spawn(move || {
                for o in batch {
                    o.check("third thread");
                }
            })
            .join()
            .expect("freeing thread panicked");
        }
    }
    for o in &keep {
        o.check("end");
    }
}

struct AllocatesOnDrop(Vec<u8>);

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        // A TLS destructor that allocates, possibly after the allocator's
        // own per-thread state is gone.
        let v: Vec<u64> = (0..1000).collect();
        let s = format!("{}{}", v.len(), self.0.len());
        assert_eq!(s, "10004096");
        DROPPED.fetch_add(1, Ordering::SeqCst);
    }
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static LATE: RefCell<Option<AllocatesOnDrop>> = const { RefCell::new(None) };
}

#[test]
fn tls_destructors_may_allocate() {
    let n = 32;
    let hs: Vec<_> = (0..n)
        .map(|_| {
            thread::spawn(|| {
                LATE.with(|l| *l.borrow_mut() = Some(AllocatesOnDrop(vec![1; 4096])));
                // Also touch a few classes so the thread cache is populated.
                let v: Vec<Box<[u8]>> = (1..200).map(|i| vec![0u8; i * 13].into()).collect();
                v.len()
            })
        })
        .collect();
    for h in hs {
        assert_eq!(h.join().expect("thread panicked"), 199);
    }
    assert_eq!(DROPPED.load(Ordering::SeqCst), n);
}
