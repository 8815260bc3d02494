//! Full CLIP / SigLIP / LLaVA preprocessing against transformers' pixel_values (PIL backend).

mod image_support;

use foveate_models::image::{preprocess, ImageProcessorConfig, ProcessorKind, SizeSpec};
use image_support::{fixtures, load, manifest};

/// transformers' pixel_values for one case, rebuilt from the lossless codebook + index PNG.
fn golden(case: &serde_json::Value) -> (Vec<f32>, usize, usize) {
    let shape: Vec<usize> = case["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(shape[0], 3);
    let (h, w) = (shape[1], shape[2]);
    let book_path = fixtures()
        .join("pixel_values")
        .join(case["codebook"].as_str().unwrap());
    let raw = std::fs::read(&book_path).unwrap();
    let bits: Vec<u32> = raw
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let lens: Vec<usize> = case["codebook_len"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(lens.iter().sum::<usize>(), bits.len());
    let mut books = Vec::new();
    let mut at = 0;
    for l in &lens {
        books.push(
            bits[at..at + l]
                .iter()
                .map(|&b| f32::from_bits(b))
                .collect::<Vec<f32>>(),
        );
        at += l;
    }
    let idx = load(&format!(
        "pixel_values/{}",
        case["index_png"].as_str().unwrap()
    ));
    assert_eq!((idx.height, idx.width), (h, w));
    let mut out = vec![0f32; 3 * h * w];
    for (i, px) in idx.data.chunks_exact(3).enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = books[c][px[c] as usize];
        }
    }
    (out, h, w)
}

#[test]
fn pixel_values_match_transformers() {
    let m = manifest();
    let cases = m["pixel_values"].as_array().unwrap();
    assert!(cases.len() >= 6);
    let mut worst = 0f32;
    let mut failures = Vec::new();
    for case in cases {
        let name = case["case"].as_str().unwrap();
        let cfg = ImageProcessorConfig::from_model_dir(
            fixtures().join(case["config_dir"].as_str().unwrap()),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let img = load(&format!("inputs/{}", case["rust_input"].as_str().unwrap()));
        let (want, wh, ww) = golden(case);
        let (got, h, w) = preprocess(&cfg, &img).unwrap();
        if (h, w) != (wh, ww) {
            failures.push(format!("{name}: shape {h}x{w}, transformers {wh}x{ww}"));
            continue;
        }
        let mut max_abs = 0f32;
        let mut not_identical = 0;
        for (a, b) in got.iter().zip(&want) {
            max_abs = max_abs.max((a - b).abs());
            not_identical += (a.to_bits() != b.to_bits()) as usize;
        }
        worst = worst.max(max_abs);
        println!(
            "{name} ({:?}, {} -> 3x{h}x{w}): max abs err {max_abs:e}, {not_identical} of {} values not bit-identical",
            cfg.kind,
            case["class"].as_str().unwrap(),
            got.len()
        );
        if max_abs > 1e-5 {
            failures.push(format!(
                "{name}: max abs err {max_abs:e} ({not_identical} values differ)"
            ));
        }
    }
    println!("worst max abs err over all cases: {worst:e}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn configs_as_transformers_writes_them() {
    let dir = fixtures().join("configs");
    let clip = ImageProcessorConfig::from_model_dir(dir.join("clip224_doc")).unwrap();
    assert_eq!(clip.kind, ProcessorKind::Clip);
    assert_eq!(
        clip.size,
        SizeSpec::ShortestEdge {
            shortest: 224,
            longest: None
        }
    );
    assert_eq!(clip.crop_size, Some((224, 224)));
    assert!(clip.do_center_crop && !clip.do_pad_to_square);
    let sig = ImageProcessorConfig::from_model_dir(dir.join("siglip224_bilinear_doc")).unwrap();
    assert_eq!(sig.kind, ProcessorKind::Siglip);
    assert_eq!(
        sig.size,
        SizeSpec::Exact {
            height: 224,
            width: 224
        }
    );
    assert_eq!(sig.resample, foveate_models::image::Filter::Bilinear);
    assert!(!sig.do_center_crop);
    assert_eq!(sig.image_mean, [0.5; 3]);
    let llava = ImageProcessorConfig::from_model_dir(dir.join("llava_pad112_photo")).unwrap();
    assert_eq!(llava.kind, ProcessorKind::Llava);
    assert!(llava.do_pad_to_square);
    // processor_config.json with the image processor nested under "image_processor"
    let nested = ImageProcessorConfig::from_model_dir(dir.join("nested_processor")).unwrap();
    assert_eq!(
        nested.size,
        SizeSpec::ShortestEdge {
            shortest: 336,
            longest: None
        }
    );
    assert_eq!(nested.crop_size, Some((336, 336)));
    assert!(
        nested.source.contains("processor_config.json"),
        "{}",
        nested.source
    );
    // a directory with neither file names the directory
    let e = ImageProcessorConfig::from_model_dir(dir.join("does-not-exist"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("does-not-exist") && e.contains("preprocessor_config.json"),
        "{e}"
    );
}
