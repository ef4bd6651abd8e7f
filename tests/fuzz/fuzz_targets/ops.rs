//! Fuzz target: operation sequences decoded from the fuzzer's bytes
//! (`lifeboat::model::ops::run_bytes`) on a fresh private heap, checked
//! against the model, `Heap::verify`, and the free-page count after
//! freeing everything. Run with `ci/fuzz.sh [SECONDS]`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(e) = lifeboat::model::ops::run_bytes(data) {
        panic!("{e}");
    }
});
