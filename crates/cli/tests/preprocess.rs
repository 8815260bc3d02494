//! `foveate preprocess` against the HF golden pixel_values of every fixture (a JPEG photo and a PNG
//! page; Qwen2-VL: the patch rows of the smart-resized image, bit-identical too), and its one-line
//! errors for a bad image or model directory (docs/ROBUSTNESS.md).

use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::repo;

fn scratch(name: &str) -> PathBuf {
    common::scratch("preprocess", name, true)
}

fn preprocess(model: &Path, image: &Path, out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args(["preprocess", "--model"])
        .arg(model)
        .arg("--image")
        .arg(image)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

/// `(shape, values)` of an F32 tensor in a safetensors file.
fn f32_tensor(path: &Path, name: &str) -> (Vec<usize>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = st
        .tensor(name)
        .unwrap_or_else(|e| panic!("{}: {name}: {e}", path.display()));
    assert_eq!(t.dtype(), Dtype::F32, "{}: {name}", path.display());
    let v = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    (t.shape().to_vec(), v)
}

#[test]
fn writes_the_goldens_pixel_values_for_every_fixture() {
    let dir = scratch("goldens");
    let mut checked = 0;
    for fx in [
        "clip-llama-gqa",
        "siglip-qwen2",
        "clip-mistral-window",
        "qwen2-vl",
        "qwen2_5-vl",
    ] {
        let root = repo().join("eval/fixtures").join(fx);
        for k in 0..2 {
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(root.join(format!("golden_{k}.json"))).unwrap(),
            )
            .unwrap();
            let image = repo().join(meta["image"].as_str().unwrap());
            let out = dir.join(format!("{fx}_{k}.safetensors"));
            let o = preprocess(&root.join("model"), &image, &out);
            let stdout = String::from_utf8_lossy(&o.stdout);
            assert!(
                o.status.success(),
                "{fx}/{k}: {}\n{stdout}",
                String::from_utf8_lossy(&o.stderr)
            );
            let (want_shape, want) = f32_tensor(
                &root.join(format!("golden_{k}.safetensors")),
                "pixel_values",
            );
            let (shape, got) = f32_tensor(&out, "pixel_values");
            assert_eq!(shape, want_shape, "{fx}/{k}: shape");
            let differ = got
                .iter()
                .zip(&want)
                .filter(|(a, b)| a.to_bits() != b.to_bits())
                .count();
            let max = got
                .iter()
                .zip(&want)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            println!("{fx}/golden_{k} ({}): {shape:?}, {differ} values not bit-identical, max abs err {max:e}", meta["image"]);
            assert_eq!(
                differ, 0,
                "{fx}/{k}: pixel_values differ from transformers' (max abs err {max:e})"
            );
            // What it prints: the shape and the processor's settings.
            let class = meta["processor_backend"]
                .as_str()
                .unwrap()
                .trim_end_matches("Pil")
                .trim_end_matches("ImageProcessor");
            for must in [
                format!("pixel_values {shape:?} f32"),
                format!("{class}ImageProcessor"),
                "resample".into(),
                "normalize".into(),
            ] {
                assert!(
                    stdout.contains(&must),
                    "{fx}/{k}: `{must}` not printed:\n{stdout}"
                );
            }
            checked += 1;
        }
    }
    assert_eq!(checked, 10);
    std::fs::remove_dir_all(&dir).ok();
}

/// Runs a failing preprocess; asserts exit 1, one `error:` line containing every `must`, nothing on
/// stdout and no output file.
fn fails(model: &Path, image: &Path, must: &[&str]) {
    let out = scratch("fail").join("px.safetensors");
    let o = preprocess(model, image, &out);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        o.stdout.is_empty(),
        "stdout on error: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: ") && !err.contains("internal error"),
        "{err}"
    );
    for m in must {
        assert!(err.contains(m), "`{m}` not in: {err}");
    }
    assert!(
        !out.exists() && !out.with_extension("safetensors.tmp").exists(),
        "output left behind"
    );
    println!("MESSAGE {}", err.trim_end());
}

#[test]
fn bad_image_or_model_dir_gives_one_line() {
    let model = repo().join("eval/fixtures/clip-llama-gqa/model");
    let jpg =
        std::fs::read(repo().join("eval/fixtures/images/COCO_val2014_000000393225_reduced2.jpg"))
            .unwrap();
    let d = scratch("bad");
    let cut = d.join("cut.jpg");
    std::fs::write(&cut, &jpg[..jpg.len() / 2]).unwrap();
    fails(&model, &cut, &["cut.jpg: image: truncated JPEG"]);
    let mut bad = jpg.clone();
    let dht = bad.windows(2).position(|w| w == [0xFF, 0xC4]).unwrap();
    bad[dht + 5..dht + 21].fill(0xFF);
    let broken = d.join("broken.jpg");
    std::fs::write(&broken, &bad).unwrap();
    fails(&model, &broken, &["broken.jpg: image: corrupt or unsupported JPEG (libjpeg: Bogus Huffman table definition)"]);
    fails(&model, &d.join("absent.png"), &["absent.png"]);
    let image = repo().join("eval/fixtures/images/nkbl0226_1_reduced3.png");
    fails(
        &d.join("no-such-model"),
        &image,
        &["no-such-model: --model: not a directory"],
    );
    fails(
        &d,
        &image,
        &["preprocessor_config.json", "no image processor config"],
    );
    std::fs::remove_dir_all(&d).ok();
}
