//! `Stats` snapshots: the `Display` table names the watermarks and has one
//! line per buddy order; per-class counters follow live objects.

use std::alloc::Layout;

use lifeboat::{AllocFlags, Config, Heap, Stats, MAX_ORDER, PAGE_SIZE};

#[global_allocator]
static GLOBAL: lifeboat::Lifeboat = lifeboat::Lifeboat::new();

/// Lower-case alphanumeric tokens of a line.
fn tokens(line: &str) -> Vec<String> {
    line.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// Checks the words and the per-order lines of a printed snapshot.
fn check_table(st: &Stats) {
    let text = st.to_string();
    let lines: Vec<Vec<String>> = text.lines().map(tokens).collect();
    for word in ["budget", "free", "min", "low", "high"] {
        assert!(
            lines.iter().any(|l| l.iter().any(|t| t == word)),
            "stats table lacks {word:?}:\n{text}"
        );
    }
    // The first line naming a watermark carries its value.
    for (word, value) in [
        ("budget", st.budget_pages),
        ("min", st.min_pages),
        ("low", st.low_pages),
        ("high", st.high_pages),
    ] {
        let line = lines
            .iter()
            .find(|l| l.first().map(String::as_str) == Some(word))
            .or_else(|| lines.iter().find(|l| l.iter().any(|t| t == word)))
            .expect("line present");
        assert!(
            line.contains(&value.to_string()),
            "the {word} line does not show {value}:\n{text}"
        );
    }
    // One line per order: a line whose token after "order" is the order.
    let order_of = |l: &Vec<String>| -> Option<usize> {
        let i = l.iter().position(|t| t == "order")?;
        l.get(i + 1)?.parse().ok()
    };
    for o in 0..=MAX_ORDER {
        let n = lines.iter().filter(|l| order_of(l) == Some(o)).count();
        assert_eq!(n, 1, "order {o} has {n} lines in the table:\n{text}");
    }
    let all = lines.iter().filter(|l| order_of(l).is_some()).count();
    assert_eq!(all, MAX_ORDER + 1, "unexpected order lines:\n{text}");
}

#[test]
fn global_stats_table() {
    // Make sure the global heap is in use.
    let v: Vec<Box<[u8]>> = (0..1000).map(|i| vec![1u8; i * 7].into()).collect();
    let st = lifeboat::stats();
    assert!(st.budget_pages > 0, "global budget is zero:\n{st}");
    assert!(st.free_pages <= st.budget_pages);
    assert!(st.min_pages <= st.low_pages && st.low_pages <= st.high_pages);
    assert!(st.high_pages < st.budget_pages);
    assert!(st.mapped_bytes > 0);
    check_table(&st);
    drop(v);
}

#[test]
#[cfg_attr(
    feature = "debug",
    ignore = "counts objects per class; `debug` adds red zones, which change classes"
)]
fn private_heap_table_and_class_counters() {
    let heap = Heap::new(Config::new().budget(16 << 20)).expect("heap");
    let st0 = heap.stats();
    assert_eq!(st0.budget_pages, (16 << 20) / PAGE_SIZE);
    assert_eq!(st0.free_pages, st0.budget_pages);
    check_table(&st0);

    let l = Layout::from_size_align(64, 8).expect("valid layout");
    let ptrs: Vec<_> = (0..1000)
        .map(|_| heap.alloc(l, AllocFlags::NORMAL).expect("alloc 64"))
        .collect();
    let st = heap.stats();
    check_table(&st);
    let class = st
        .classes
        .iter()
        .find(|c| c.size == 64)
        .unwrap_or_else(|| panic!("no 64-byte class:\n{st}"));
    assert!(
        class.live_objects >= 1000,
        "64-byte class reports {} live objects after 1000 allocations:\n{st}",
        class.live_objects
    );
    assert!(class.slabs >= 1, "64-byte class has no slab:\n{st}");
    assert!(st.free_pages < st0.free_pages, "allocations took no pages");
    // The class appears in the table with its live count.
    let text = st.to_string();
    assert!(
        text.lines().any(|line| {
            let t = tokens(line);
            t.first().map(String::as_str) == Some("64")
                && t.contains(&class.live_objects.to_string())
        }),
        "the 64-byte class is not listed with its live objects:\n{text}"
    );
    // Other classes are untouched.
    for c in st.classes.iter().filter(|c| c.size != 64) {
        assert_eq!(
            c.live_objects, 0,
            "class {} has live objects:\n{st}",
            c.size
        );
    }
    // Class sizes are increasing and reach the small limit.
    assert!(st.classes.windows(2).all(|w| w[0].size < w[1].size));
    assert_eq!(
        st.classes.last().map(|c| c.size),
        Some(lifeboat::MAX_SMALL_SIZE)
    );

    for p in ptrs {
        // SAFETY: allocated from `heap` with `l`, freed once.
        unsafe { heap.dealloc(p, l) };
    }
    let st2 = heap.stats();
    let class = st2
        .classes
        .iter()
        .find(|c| c.size == 64)
        .expect("64-byte class");
    assert!(
        class.live_objects < 1000,
        "64-byte class still reports {} live objects after all were freed:\n{st2}",
        class.live_objects
    );
}

#[test]
fn free_blocks_match_free_pages() {
    // Pages in free buddy blocks never exceed the free pages.
    let heap = Heap::new(Config::new().budget(8 << 20)).expect("heap");
    let l = Layout::from_size_align(100 * 1024, 8).expect("valid layout");
    let ptrs: Vec<_> = (0..10)
        .map(|_| heap.alloc(l, AllocFlags::NORMAL).expect("alloc"))
        .collect();
    let st = heap.stats();
    let in_blocks: usize = st.free_blocks.iter().enumerate().map(|(o, n)| n << o).sum();
    assert!(
        in_blocks <= st.free_pages,
        "{in_blocks} pages in free blocks but only {} free:\n{st}",
        st.free_pages
    );
    assert!(
        st.free_pages + 10 * 25 <= st.budget_pages,
        "10 x 100 KiB took too few pages:\n{st}"
    );
    for p in ptrs {
        // SAFETY: allocated from `heap` with `l`, freed once.
        unsafe { heap.dealloc(p, l) };
    }
}
