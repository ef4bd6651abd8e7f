//! A reserve-backed object freed by another thread than the one that
//! allocated it, while that thread lives on: the emptied reserve slab
//! returns its pages to the reserve at once. (The allocating thread does
//! not keep its reserve slab owned between reserve allocations; an owned
//! slab emptied by others' frees would wait for its owner.)
//!
//! Its own binary: it drives the process heap (a 32 MiB budget) to its
//! `min` watermark, which would disturb any other test.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::mpsc;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat =
    lifeboat::Lifeboat::with_config(lifeboat::Config::new().budget(32 << 20).min_free(512 << 10));

/// The object: 5000 bytes, a class of its own in this binary.
type Object = [u8; 5000];

#[test]
fn an_emptied_reserve_slab_returns_its_pages_when_another_thread_frees_it() {
    // A failure must report, not hang or recurse: the default hook's
    // backtrace needs memory, and the heap is full for most of the test.
    std::panic::set_hook(Box::new(|info| eprintln!("{info}")));
    let block = Layout::from_size_align(8192, 8192).unwrap();
    let (to_main, from_t) = mpsc::sync_channel::<usize>(4);
    let (to_t, from_main) = mpsc::sync_channel::<u8>(4);
    let t = std::thread::spawn(move || {
        to_main.send(0).unwrap(); // everything this thread needs is set up
        assert_eq!(from_main.recv().unwrap(), 1);
        {
            let _right = lifeboat::memalloc_scope();
            let b = Box::new([7u8; 5000] as Object);
            let reserve = lifeboat::is_reserve_backed(&*b as *const Object as *const u8);
            to_main
                .send(Box::into_raw(b) as usize | reserve as usize)
                .unwrap();
        }
        // Alive, idle, without the right, until the main thread is done.
        assert_eq!(from_main.recv().unwrap(), 2);
    });
    assert_eq!(from_t.recv().unwrap(), 0);
    // Down to `min`: ordinary requests are refused from here on.
    let mut hog: Vec<usize> = Vec::with_capacity(8192);
    loop {
        // SAFETY: a non-zero size.
        let p = unsafe { GLOBAL.alloc(block) };
        if p.is_null() || hog.len() == hog.capacity() {
            break;
        }
        hog.push(p as usize);
    }
    to_t.send(1).unwrap();
    let v = from_t.recv().unwrap();
    let (p, reserve) = (v & !1, v & 1 == 1);
    let before = lifeboat::stats();
    // SAFETY: the box the other thread leaked, freed once, here.
    drop(unsafe { Box::from_raw(p as *mut Object) });
    let after = lifeboat::stats();
    for &p in &hog {
        // SAFETY: allocated above with `block`, freed once.
        unsafe { GLOBAL.dealloc(p as *mut u8, block) };
    }
    to_t.send(2).unwrap();
    t.join().unwrap();
    assert!(
        reserve,
        "the object was not reserve-backed: the case was not reached"
    );
    assert_eq!(before.reserve_slabs, 1);
    assert!(before.reserve_pages > 0);
    assert_eq!(
        (after.reserve_slabs, after.reserve_pages),
        (0, 0),
        "the emptied reserve slab kept its reserve pages"
    );
}
