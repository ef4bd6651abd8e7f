//! Standard collections under load with lifeboat as the global allocator.
//!
//! Every collection is driven through hundreds of thousands of operations
//! and its contents are checked against what was put in, so a corrupted,
//! overlapping or lost allocation shows up as a wrong value.

use std::collections::{BTreeMap, HashMap, VecDeque};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// Iteration multiplier: release builds do more work in the same time.
const SCALE: usize = if cfg!(debug_assertions) { 1 } else { 4 };

mod common;
use common::Rng;

/// The byte at offset `i` of the buffer tagged `tag`.
fn pattern(tag: usize, i: usize) -> u8 {
    (tag.wrapping_mul(31).wrapping_add(i.wrapping_mul(7)) ^ (i >> 8)) as u8
}

#[test]
fn vec_push_pop_extend() {
    let n = 300_000 * SCALE;
    let mut v: Vec<u64> = Vec::new();
    for i in 0..n {
        v.push(i as u64 * 3);
    }
    assert_eq!(v.len(), n);
    for (i, x) in v.iter().enumerate() {
        assert_eq!(*x, i as u64 * 3, "vec element {i} corrupted");
    }
    for _ in 0..n / 2 {
        v.pop();
    }
    v.shrink_to_fit();
    assert!(v.capacity() >= n / 2);
    v.extend((0..n as u64).map(|x| x ^ 0xdead_beef));
    assert_eq!(v.len(), n / 2 + n);
    for (i, x) in v.iter().enumerate() {
        let want = if i < n / 2 {
            i as u64 * 3
        } else {
            (i - n / 2) as u64 ^ 0xdead_beef
        };
        assert_eq!(*x, want, "vec element {i} corrupted after extend");
    }
    v.truncate(10);
    v.shrink_to_fit();
    assert_eq!(v, (0..10u64).map(|i| i * 3).collect::<Vec<_>>());
}

#[test]
fn many_small_vecs() {
    let mut rng = Rng::new(0x1234_5678);
    let mut vecs: Vec<Vec<u32>> = Vec::new();
    let rounds = 200_000 * SCALE;
    for round in 0..rounds {
        match rng.below(4) {
            0 | 1 => {
                let len = rng.below(200);
                vecs.push((0..len as u32).map(|x| x ^ round as u32).collect());
            }
            2 if !vecs.is_empty() => {
                let i = rng.below(vecs.len());
                let v = vecs.swap_remove(i);
                if let Some(&first) = v.first() {
                    let tag = first;
                    for (j, x) in v.iter().enumerate() {
                        assert_eq!(*x, j as u32 ^ tag, "small vec corrupted");
                    }
                }
            }
            _ if !vecs.is_empty() => {
                let i = rng.below(vecs.len());
                let v = &mut vecs[i];
                if let Some(&tag) = v.first() {
                    let len = v.len();
                    v.push(len as u32 ^ tag);
                }
            }
            _ => {}
        }
    }
    for v in &vecs {
        if let Some(&tag) = v.first() {
            for (j, x) in v.iter().enumerate() {
                assert_eq!(*x, j as u32 ^ tag, "small vec corrupted at the end");
            }
        }
    }
}

#[test]
fn strings() {
    let n = 100_000 * SCALE;
    let mut strings: Vec<String> = Vec::with_capacity(n);
    for i in 0..n {
        let mut s = format!("item-{i}-");
        for _ in 0..(i % 17) {
            s.push_str("xy");
        }
        s.push('!');
        strings.push(s);
    }
    for (i, s) in strings.iter().enumerate() {
        let mut want = format!("item-{i}-");
        want.push_str(&"xy".repeat(i % 17));
        want.push('!');
        assert_eq!(*s, want);
    }
    // Grow a single string far past the small classes.
    let mut big = String::new();
    for i in 0..n {
        big.push(char::from(b'a' + (i % 26) as u8));
    }
    assert_eq!(big.len(), n);
    assert!(big
        .bytes()
        .enumerate()
        .all(|(i, b)| b == b'a' + (i % 26) as u8));
    let joined = strings[..1000].join(",");
    assert_eq!(joined.split(',').count(), 1000);
    assert!(joined.starts_with("item-0-!,item-1-xy!"));
}

#[test]
fn hashmap_insert_remove() {
    let n = 200_000 * SCALE;
    let mut map: HashMap<u64, Vec<u8>> = HashMap::new();
    for k in 0..n as u64 {
        let len = (k % 97) as usize;
        map.insert(k, (0..len).map(|i| pattern(k as usize, i)).collect());
    }
    assert_eq!(map.len(), n);
    for k in (1..n as u64).step_by(2) {
        let v = map.remove(&k).expect("key present");
        assert_eq!(v.len(), (k % 97) as usize);
    }
    assert_eq!(map.len(), n.div_ceil(2));
    for (k, v) in &map {
        assert_eq!(k % 2, 0, "odd key {k} survived removal");
        assert_eq!(v.len(), (k % 97) as usize);
        for (i, b) in v.iter().enumerate() {
            assert_eq!(*b, pattern(*k as usize, i), "map value of {k} corrupted");
        }
    }
    // Replace values with larger ones.
    for k in (0..n as u64).step_by(2).take(20_000) {
        let old = map.insert(k, vec![k as u8; 300]);
        assert!(old.is_some());
    }
    for k in (0..n as u64).step_by(2).take(20_000) {
        assert_eq!(map[&k], vec![k as u8; 300]);
    }
    map.clear();
    map.shrink_to_fit();
    assert!(map.is_empty());
}

#[test]
fn btreemap_ranges() {
    let n = 200_000 * SCALE;
    let mut rng = Rng::new(99);
    let mut map: BTreeMap<u64, String> = BTreeMap::new();
    let mut keys = Vec::with_capacity(n);
    for _ in 0..n {
        let k = rng.next() % (n as u64 * 4);
        map.insert(k, k.to_string());
        keys.push(k);
    }
    for k in &keys {
        assert_eq!(map.get(k).map(String::as_str), Some(k.to_string().as_str()));
    }
    let mut prev = None;
    for (k, v) in map.range(1000..(n as u64)) {
        assert!(prev < Some(*k), "btree order broken");
        assert_eq!(*v, k.to_string());
        prev = Some(*k);
    }
    for k in keys.iter().step_by(3) {
        map.remove(k);
    }
    for (i, k) in keys.iter().enumerate() {
        if i % 3 == 0 {
            assert!(!map.contains_key(k), "removed key {k} still present");
        }
    }
    for (k, v) in &map {
        assert_eq!(*v, k.to_string());
    }
}

#[test]
fn vecdeque_against_model() {
    let ops = 300_000 * SCALE;
    let mut rng = Rng::new(7);
    let mut dq: VecDeque<u64> = VecDeque::new();
    // Model: the deque's contents are always the consecutive integers lo..hi
    // (starting high enough that push_front never goes below zero).
    let (mut lo, mut hi): (u64, u64) = (1 << 40, 1 << 40);
    for _ in 0..ops {
        match rng.below(5) {
            0 | 1 => {
                dq.push_back(hi);
                hi += 1;
            }
            2 => {
                lo -= 1;
                dq.push_front(lo);
            }
            3 => {
                if let Some(x) = dq.pop_front() {
                    assert_eq!(x, lo);
                    lo += 1;
                }
            }
            _ => {
                if let Some(x) = dq.pop_back() {
                    hi -= 1;
                    assert_eq!(x, hi);
                }
            }
        }
    }
    assert_eq!(dq.len() as u64, hi - lo);
    for (i, x) in dq.iter().enumerate() {
        assert_eq!(*x, lo + i as u64);
    }
    dq.rotate_left(dq.len() / 3);
    dq.make_contiguous().sort_unstable();
    for (i, x) in dq.iter().enumerate() {
        assert_eq!(*x, lo + i as u64);
    }
}

#[test]
fn boxed_slices_of_many_sizes() {
    let mut rng = Rng::new(0xfeed);
    let rounds = 100_000 * SCALE;
    let mut live: Vec<(usize, Box<[u8]>)> = Vec::new();
    for tag in 0..rounds {
        let size = match rng.below(100) {
            0 => 32 * 1024 + rng.below(100_000),
            1..=9 => rng.below(32 * 1024),
            _ => rng.below(512),
        };
        let b: Box<[u8]> = (0..size).map(|i| pattern(tag, i)).collect();
        live.push((tag, b));
        if live.len() > 2000 || rng.below(3) == 0 {
            let i = rng.below(live.len());
            let (t, b) = live.swap_remove(i);
            for (j, x) in b.iter().enumerate() {
                assert_eq!(*x, pattern(t, j), "boxed slice {t} corrupted at {j}");
            }
        }
    }
    for (t, b) in &live {
        for (j, x) in b.iter().enumerate() {
            assert_eq!(*x, pattern(*t, j), "boxed slice {t} corrupted at {j}");
        }
    }
}

#[test]
fn nested_collections() {
    let n = 20_000 * SCALE;
    let mut outer: HashMap<String, BTreeMap<u32, Vec<String>>> = HashMap::new();
    for i in 0..n {
        let key = format!("bucket{}", i % 97);
        outer
            .entry(key)
            .or_default()
            .entry((i % 13) as u32)
            .or_default()
            .push(format!("v{i}"));
    }
    let mut total = 0;
    for (k, inner) in &outer {
        let b: usize = k["bucket".len()..].parse().expect("bucket number");
        for (m, list) in inner {
            for s in list {
                let i: usize = s[1..].parse().expect("value number");
                assert_eq!(i % 97, b);
                assert_eq!((i % 13) as u32, *m);
                total += 1;
            }
        }
    }
    assert_eq!(total, n);
}
