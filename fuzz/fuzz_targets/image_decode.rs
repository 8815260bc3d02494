//! The image decode path (PNG / JPEG bytes to RGB, bomb guard, mode conversions, JPEG errors
//! unwound out of libjpeg, EXIF orientation), then CLIP
//! preprocessing of what decoded.
#![no_main]

use foveate_models::image::{
    decode_bytes, preprocess, AlphaMode, DecodeOptions, ImageProcessorConfig, ProcessorKind,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // A lower pixel cap than the default keeps each run fast; the guard itself is what is tested.
    let alpha = if data.len() % 2 == 0 {
        AlphaMode::Drop
    } else {
        AlphaMode::CompositeWhite
    };
    let opts = DecodeOptions {
        max_pixels: 1 << 20,
        alpha,
        exif_orientation: data.len() % 3 != 0,
    };
    let Ok(img) = decode_bytes(data, "fuzz.img", &opts) else {
        return;
    };
    assert_eq!(img.data.len(), img.width * img.height * 3);
    assert!((img.width * img.height) as u64 <= opts.max_pixels);
    // Preprocessing must succeed for any decoded image of a sane aspect ratio (an extreme one may
    // be refused by the intermediate-size limit, with an error).
    let (long, short) = (img.width.max(img.height), img.width.min(img.height));
    if img.width * img.height <= 1 << 16 && long <= 100 * short {
        let cfg = ImageProcessorConfig::defaults(ProcessorKind::Clip);
        let (px, h, w) = preprocess(&cfg, &img).expect("a decoded image preprocesses");
        assert_eq!((px.len(), h, w), (3 * 224 * 224, 224, 224));
    }
});
