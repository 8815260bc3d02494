//! `config.json`: parsing, and everything the loader derives from a config it accepted (the
//! tensor manifest, image-token count, vision layers to run).
#![no_main]

use foveate_models::{manifest, LlavaConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(cfg) = LlavaConfig::from_json(&v, "config.json") else {
        return;
    };
    let (first, rows) = cfg.feature_rows();
    assert!(rows >= 1 && first + rows <= cfg.vision.num_positions());
    assert_eq!(cfg.image_tokens_per_image(), rows);
    assert!(cfg.vision_layers_to_run() <= cfg.vision.num_layers);
    assert_eq!(cfg.text.layers.len(), cfg.text.num_layers);
    for e in manifest::all(&cfg) {
        assert!(e.shape.iter().all(|&d| d > 0), "{}: {:?}", e.name, e.shape);
        // Every tensor's byte size fits in memory arithmetic (no overflow for a loader to hit).
        assert!(
            e.shape
                .iter()
                .try_fold(4usize, |a, &d| a.checked_mul(d))
                .is_some(),
            "{}",
            e.name
        );
    }
});
