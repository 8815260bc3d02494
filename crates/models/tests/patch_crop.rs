//! Image sizes that are not a multiple of the patch (SigLIP so400m: 384 px, patch 14): like
//! PyTorch's Conv2d with stride = kernel = patch and no padding, the patch embedding sees only the
//! top-left floor(size/patch)·patch pixels. Checked on the CPU against a direct strided
//! convolution over the uncropped image, and against the same weights at the cropped size; and on
//! wgpu against the CPU (skipped with the reason when there is no adapter, failing with
//! FOVEATE_REQUIRE_WGPU=1).

use foveate_core::DType;
use foveate_cpu::CpuBackend;
use foveate_graph::AttentionKind;
use foveate_models::synth::{self, SynthSpec};
use foveate_models::{LlavaConfig, Model, ModelOptions, PixelValues};
use safetensors::SafeTensors;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-graph-crop-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Rewrites `vision_config.image_size` of the checkpoint in `dir` (weights unchanged: the number
/// of patches, and so every tensor shape, stays the same as long as floor(size/patch) does).
fn set_image_size(dir: &Path, size: usize) {
    let p = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    c["vision_config"]["image_size"] = size.into();
    std::fs::write(&p, serde_json::to_string_pretty(&c).unwrap()).unwrap();
}

fn load(dir: &Path) -> Model {
    Model::load(
        dir,
        Arc::new(CpuBackend::fast()),
        ModelOptions {
            dtype: DType::F32,
            attention: AttentionKind::Naive,
            weights: None,
            kv: None,
        },
    )
    .unwrap()
}

fn tensor(st: &SafeTensors, name: &str) -> Vec<f32> {
    let t = st
        .tensor(&format!("vision_tower.{name}"))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    t.data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

/// Pixels `[3, size, size]` in [-1, 1), a different value almost everywhere.
fn pixels(size: usize, seed: u32) -> PixelValues {
    let data = (0..3 * size * size)
        .map(|i| (((i as u32).wrapping_mul(2654435761u32) ^ seed) % 2003) as f32 / 1001.5 - 1.0)
        .collect();
    PixelValues {
        data,
        height: size,
        width: size,
    }
}

/// PyTorch's `Conv2d(C, E, kernel_size=P, stride=P)` (no padding) over the whole image, flattened
/// row-major over the output grid, with the CLS row first when given and the positions added; in f64.
fn direct(
    px: &PixelValues,
    w: &[f32],
    bias: Option<&[f32]>,
    cls: Option<&[f32]>,
    pos: &[f32],
    e: usize,
    p: usize,
) -> Vec<f32> {
    let (h, wd) = (px.height, px.width);
    let (gh, gw) = ((h - p) / p + 1, (wd - p) / p + 1); // PyTorch's output size: floor((H - P) / P) + 1
    let mut rows: Vec<Vec<f64>> = Vec::new();
    if let Some(c) = cls {
        rows.push(c.iter().map(|&x| x as f64).collect());
    }
    for gy in 0..gh {
        for gx in 0..gw {
            let mut r = vec![0f64; e];
            for (o, acc) in r.iter_mut().enumerate() {
                *acc = bias.map(|b| b[o] as f64).unwrap_or(0.0);
                for c in 0..3 {
                    for ky in 0..p {
                        for kx in 0..p {
                            let x = px.data[(c * h + gy * p + ky) * wd + gx * p + kx] as f64;
                            *acc += x * w[((o * 3 + c) * p + ky) * p + kx] as f64;
                        }
                    }
                }
            }
            rows.push(r);
        }
    }
    rows.iter()
        .enumerate()
        .flat_map(|(t, r)| {
            r.iter()
                .enumerate()
                .map(move |(i, &x)| (x + pos[t * e + i] as f64) as f32)
        })
        .collect()
}

fn max_rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs()));
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

#[test]
fn patch_embed_crops_like_a_strided_conv() {
    // CLIP (CLS, no bias) and SigLIP (bias, no CLS); patch 7, the synth model's 28 px grid (4x4).
    for (name, spec) in [
        ("clip", SynthSpec::default()),
        (
            "siglip",
            SynthSpec {
                vision: "siglip_vision_model",
                text: "qwen2",
                ..SynthSpec::default()
            },
        ),
    ] {
        let d = tmp(name);
        synth::write_checkpoint(&d, &spec).unwrap();
        let at28 = load(&d);
        let (e, p) = (
            at28.checkpoint
                .config_as::<LlavaConfig>()
                .unwrap()
                .vision
                .hidden_size,
            at28.checkpoint
                .config_as::<LlavaConfig>()
                .unwrap()
                .vision
                .patch_size,
        );
        let bytes = std::fs::read(d.join("model.safetensors")).unwrap();
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w = tensor(&st, "embeddings.patch_embedding.weight");
        let bias = (name == "siglip").then(|| tensor(&st, "embeddings.patch_embedding.bias"));
        let cls = (name == "clip").then(|| tensor(&st, "embeddings.class_embedding"));
        let pos = tensor(&st, "embeddings.position_embedding.weight");
        // 34 = 4 * 7 + 6: six extra rows and columns the conv never reaches.
        set_image_size(&d, 34);
        let at34 = load(&d);
        assert_eq!(
            at34.checkpoint
                .config_as::<LlavaConfig>()
                .unwrap()
                .vision
                .num_patches(),
            16
        );
        let px = pixels(34, 1);
        let got = at34.patch_embeddings(&px).unwrap();
        assert_eq!(got.shape().dims(), &[16 + cls.is_some() as usize, e]);
        let want = direct(&px, &w, bias.as_deref(), cls.as_deref(), &pos, e, p);
        let err = max_rel(&got.to_f32(), &want);
        eprintln!("{name}: 34 px, patch 7: patch embeddings vs a direct strided conv: max rel err {err:.2e}");
        assert!(
            err < 1e-5,
            "{name}: patch embeddings vs direct conv: rel err {err:.2e}"
        );
        // The cropped-off pixels do not matter at all; the kept ones do.
        let mut changed = px.clone();
        for c in 0..3 {
            for y in 0..34 {
                for x in 0..34 {
                    if y >= 28 || x >= 28 {
                        changed.data[(c * 34 + y) * 34 + x] = 7.0;
                    }
                }
            }
        }
        let feats = at34.image_features(&px).unwrap().to_f32();
        assert_eq!(
            at34.image_features(&changed).unwrap().to_f32(),
            feats,
            "{name}: pixels past the crop changed the features"
        );
        changed.data[27 * 34 + 27] += 0.5;
        assert_ne!(
            at34.image_features(&changed).unwrap().to_f32(),
            feats,
            "{name}: a kept pixel had no effect"
        );
        // The same weights at 28 px given the top-left 28x28 of the image: the same features.
        let crop: Vec<f32> = (0..3)
            .flat_map(|c| (0..28).flat_map(move |y| (0..28).map(move |x| (c, y, x))))
            .map(|(c, y, x)| px.data[(c * 34 + y) * 34 + x])
            .collect();
        let at28_feats = at28
            .image_features(&PixelValues {
                data: crop,
                height: 28,
                width: 28,
            })
            .unwrap()
            .to_f32();
        assert_eq!(
            feats, at28_feats,
            "{name}: 34 px features differ from the 28 px crop's"
        );
        // Image tokens: the prompt expands `<image>` to the cropped grid's 16 features (CLS dropped for CLIP).
        let ids = at34.tokenize("<image> what is it", false, true).unwrap();
        assert_eq!(
            ids.iter().filter(|&&i| i == synth::IMAGE_TOKEN).count(),
            at34.image_features(&px).unwrap().shape().dims()[0]
        );
        let _ = std::fs::remove_dir_all(&d);
    }
}

/// The crop (two Slice ops on the pixel tensor) and the patch embedding on wgpu give the CPU's values.
#[test]
fn patch_embed_crop_on_wgpu() {
    let test = "patch_embed_crop_on_wgpu";
    let be = match foveate_wgpu::WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            return foveate_testkit::skip_or_fail(
                test,
                "FOVEATE_REQUIRE_WGPU",
                &format!("no wgpu backend: {e}"),
            )
        }
    };
    let d = tmp("wgpu");
    synth::write_checkpoint(
        &d,
        &SynthSpec {
            vision: "siglip_vision_model",
            text: "qwen2",
            ..SynthSpec::default()
        },
    )
    .unwrap();
    set_image_size(&d, 33);
    let cpu = load(&d);
    let gpu = Model::load(
        &d,
        Arc::new(be),
        ModelOptions {
            dtype: DType::F32,
            attention: AttentionKind::Naive,
            weights: None,
            kv: None,
        },
    )
    .unwrap();
    let px = pixels(33, 4);
    let (want, got) = (
        cpu.patch_embeddings(&px).unwrap().to_f32(),
        gpu.patch_embeddings(&px).unwrap().to_f32(),
    );
    let (wf, gf) = (
        cpu.image_features(&px).unwrap().to_f32(),
        gpu.image_features(&px).unwrap().to_f32(),
    );
    let (e1, e2) = (max_rel(&got, &want), max_rel(&gf, &wf));
    eprintln!("wgpu vs cpu at 33 px, patch 7: patch embeddings rel err {e1:.2e}, image features rel err {e2:.2e}");
    assert!(
        e1 < 1e-5 && e2 < 1e-4,
        "wgpu vs cpu: patch embeddings {e1:.2e}, features {e2:.2e}"
    );
    let _ = std::fs::remove_dir_all(&d);
}
