//! Runs a real workload on lifeboat as the global allocator and prints the
//! heap's statistics: a word-frequency count over generated text, a
//! sorted index, and cross-thread message passing.

use std::collections::{BTreeMap, HashMap};
use std::sync::mpsc;
use std::thread;

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

#[path = "common/rng.rs"]
mod rng;
use rng::Rng;

fn word(rng: &mut Rng) -> String {
    let len = 2 + (rng.next() % 10) as usize;
    (0..len)
        .map(|_| (b'a' + (rng.next() % 6) as u8) as char)
        .collect()
}

fn main() {
    let threads = 4;
    let words_per_thread = 200_000;
    let (tx, rx) = mpsc::channel::<Vec<String>>();
    let producers: Vec<_> = (0..threads)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut rng = Rng(0x9E37_79B9 + t as u64);
                let mut batch = Vec::new();
                for _ in 0..words_per_thread {
                    batch.push(word(&mut rng));
                    if batch.len() == 1000 {
                        tx.send(std::mem::take(&mut batch)).unwrap();
                    }
                }
                tx.send(batch).unwrap();
            })
        })
        .collect();
    drop(tx);

    // The consumer frees every string another thread allocated.
    let mut freq: HashMap<String, usize> = HashMap::new();
    for batch in rx {
        for w in batch {
            *freq.entry(w).or_default() += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    let mut by_count: BTreeMap<usize, Vec<&str>> = BTreeMap::new();
    for (w, c) in &freq {
        by_count.entry(*c).or_default().push(w);
    }
    let total: usize = freq.values().sum();
    assert_eq!(total, threads * words_per_thread);
    let top: Vec<_> = by_count.iter().rev().take(3).collect();
    println!(
        "{} words, {} distinct; most frequent: {:?}",
        total,
        freq.len(),
        top.first().map(|(c, w)| (c, w.len()))
    );
    println!(
        "\nlifeboat::stats() while the index is alive:\n{}",
        lifeboat::stats()
    );
    drop(by_count);
    drop(freq);
    println!("after freeing it:\n{}", lifeboat::stats());
}
