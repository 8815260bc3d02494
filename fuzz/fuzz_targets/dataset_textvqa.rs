//! The TextVQA loader on arbitrary JSON.
#![no_main]

use foveate_eval::data::textvqa;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    if let Ok(recs) = textvqa::from_value(
        &v,
        Path::new("textvqa.json"),
        Some(Path::new("/nonexistent-fuzz-root")),
    ) {
        let mut ids: Vec<_> = recs.iter().map(|r| r.id.key()).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), recs.len(), "duplicate ids accepted");
    }
});
