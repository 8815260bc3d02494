//! The VQAv2 loader (annotations and questions files) on arbitrary JSON.
#![no_main]

use foveate_eval::data::vqav2;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let root = Path::new("/nonexistent-fuzz-root");
    let ann = Path::new("annotations.json");
    let _ = vqav2::from_value(&v, ann, None, Some(root));
    if let Ok(q) = vqav2::questions_from_value(&v, Path::new("questions.json")) {
        if let Ok(recs) =
            vqav2::from_value(&v, ann, Some((Path::new("questions.json"), &q)), Some(root))
        {
            assert!(recs.iter().all(|r| q.contains_key(&match r.id {
                foveate_eval::QuestionId::Int(i) => i,
                _ => unreachable!("VQAv2 ids are integers"),
            })));
        }
    }
});
