//! `preprocessor_config.json`: parsing, then the preprocessing pipeline on small images of a
//! few shapes with the accepted config.
#![no_main]

use foveate_models::image::{preprocess, ImageProcessorConfig, RgbImage, SizeSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(cfg) = ImageProcessorConfig::from_json(&v, "preprocessor_config.json") else {
        return;
    };
    // Keep each run fast: big outputs are legal but only cost time here.
    let big = match cfg.size {
        SizeSpec::ShortestEdge { shortest, longest } => {
            shortest > 512 || longest.unwrap_or(0) > 512
        }
        SizeSpec::Exact { height, width } => height > 512 || width > 512,
    };
    if big || cfg.crop_size.is_some_and(|(h, w)| h > 512 || w > 512) {
        return;
    }
    for (w, h) in [(7, 5), (1, 9), (16, 16), (3, 1)] {
        let img =
            RgbImage::new(w, h, (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect()).unwrap();
        if let Ok((px, oh, ow)) = preprocess(&cfg, &img) {
            assert_eq!(px.len(), 3 * oh * ow);
        }
    }
});
