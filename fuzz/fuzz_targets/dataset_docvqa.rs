//! The DocVQA loader on arbitrary JSON.
#![no_main]

use foveate_eval::data::docvqa;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(recs) = docvqa::from_value(
        &v,
        Path::new("docvqa.json"),
        Some(Path::new("/nonexistent-fuzz-root")),
    ) {
        let mut ids: Vec<_> = recs.iter().map(|r| r.id.key()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), recs.len(), "duplicate ids accepted");
    }
});
