//! Parity with transformers on the golden fixtures of `eval/fixtures/<name>/` (made by
//! `eval/tools/make_fixtures.py`): prompt ids, pixel values, image features, prefill logits and
//! greedy tokens, in f32 on the CPU backend and on the wgpu backend; and the three attention
//! variants give the same tokens on each.
//!
//! With no fixtures present the tests print why they skip, unless the fixture tool exists (then
//! the fixtures should too) or FOVEATE_REQUIRE_FIXTURES=1, in which case they fail. Without a
//! wgpu adapter the wgpu test prints why it skips, and fails with FOVEATE_REQUIRE_WGPU=1.

use foveate_core::{Backend, DType};
use foveate_cpu::CpuBackend;
use foveate_graph::{AttentionKind, GenerateParams, SamplingParams};
use foveate_models::image::{decode_file, DecodeOptions, RgbImage};
use foveate_models::{Model, ModelOptions, PixelValues, Request};
use foveate_testkit::{require_env, skip_or_fail};
use safetensors::{Dtype, SafeTensors};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `(fixture dir, [golden index])` for every fixture with a model.
fn fixtures() -> Vec<(PathBuf, Vec<String>)> {
    let root = repo().join("eval/fixtures");
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(&root) else {
        return out;
    };
    let mut dirs: Vec<PathBuf> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("model/config.json").exists())
        .collect();
    dirs.sort();
    for d in dirs {
        let mut ks: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                n.strip_prefix("golden_")
                    .and_then(|s| s.strip_suffix(".safetensors"))
                    .map(String::from)
            })
            .collect();
        ks.sort();
        out.push((d, ks));
    }
    out
}

struct Golden {
    bytes: Vec<u8>,
}

impl Golden {
    fn st(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.bytes).unwrap()
    }
    fn f32(&self, name: &str) -> (Vec<f32>, Vec<usize>) {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden tensor {name}: {e}"));
        assert_eq!(t.dtype(), Dtype::F32, "{name}");
        (
            t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            t.shape().to_vec(),
        )
    }
    fn i64(&self, name: &str) -> Vec<i64> {
        let st = self.st();
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden tensor {name}: {e}"));
        assert_eq!(t.dtype(), Dtype::I64, "{name}");
        t.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect()
    }
    fn u8(&self, name: &str) -> Option<(Vec<u8>, Vec<usize>)> {
        let st = self.st();
        let t = st.tensor(name).ok()?;
        Some((t.data().to_vec(), t.shape().to_vec()))
    }
}

fn rel(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    let scale = b.iter().fold(0f32, |m, x| m.max(x.abs())).max(1e-12);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn max_abs(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length");
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

fn greedy(m: &Model, ids: &[u32], px: &PixelValues, n: usize) -> Vec<u32> {
    let p = GenerateParams {
        max_new_tokens: n,
        sampling: SamplingParams::default(),
        stop_tokens: vec![],
        prompt_logits: false,
    };
    m.generate_one(
        &Request {
            input_ids: ids.to_vec(),
            pixels: Some(px.clone()),
        },
        &p,
    )
    .unwrap()
    .tokens
}

/// The fixtures, or None after saying why the test skips (panics when they should exist).
fn fixtures_or_skip(test: &str) -> Option<Vec<(PathBuf, Vec<String>)>> {
    let fx = fixtures();
    if fx.is_empty() {
        let tool = repo().join("eval/tools/make_fixtures.py");
        if tool.exists() || require_env("FOVEATE_REQUIRE_FIXTURES") {
            panic!("{test}: no fixtures with a model under eval/fixtures/ (run eval/tools/make_fixtures.py)");
        }
        eprintln!("SKIPPED {test}: eval/fixtures/ has no fixtures yet and eval/tools/make_fixtures.py is absent");
        return None;
    }
    Some(fx)
}

#[test]
fn hf_golden_parity() {
    let Some(fx) = fixtures_or_skip("hf_golden_parity") else {
        return;
    };
    let failures = parity(fx, Arc::new(CpuBackend::fast()), "cpu");
    assert!(
        failures.is_empty(),
        "{} parity failures on cpu:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The same checks and bounds on the wgpu backend (lavapipe on a machine without a GPU).
#[test]
fn hf_golden_parity_wgpu() {
    let test = "hf_golden_parity_wgpu";
    let Some(fx) = fixtures_or_skip(test) else {
        return;
    };
    let backend = match foveate_wgpu::WgpuBackend::new() {
        Ok(b) => b,
        Err(e) => {
            return skip_or_fail(
                test,
                "FOVEATE_REQUIRE_WGPU",
                &format!("no wgpu backend: {e}"),
            )
        }
    };
    eprintln!("{test}: device {}", backend.device_name());
    let failures = parity(fx, Arc::new(backend), "wgpu");
    assert!(
        failures.is_empty(),
        "{} parity failures on wgpu:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Runs every check on `backend`; returns the failures.
fn parity(fx: Vec<(PathBuf, Vec<String>)>, backend: Arc<dyn Backend>, be: &str) -> Vec<String> {
    let t_all = Instant::now();
    let mut failures = Vec::new();
    for (dir, ks) in fx {
        let name = format!("{be}:{}", dir.file_name().unwrap().to_string_lossy());
        assert!(!ks.is_empty(), "{name}: no golden_<k>.safetensors");
        let models: Vec<(AttentionKind, Model)> = [
            AttentionKind::Naive,
            AttentionKind::Flash,
            AttentionKind::BlockSparse,
        ]
        .into_iter()
        .map(|a| {
            (
                a,
                Model::load(
                    dir.join("model"),
                    backend.clone(),
                    ModelOptions {
                        dtype: DType::F32,
                        attention: a,
                        weights: None,
                        kv: None,
                    },
                )
                .unwrap(),
            )
        })
        .collect();
        let m = &models[0].1;
        let mut batch: Vec<(String, Request, Vec<u32>)> = Vec::new();
        for k in ks {
            let tag = format!("{name}/golden_{k}");
            let g = Golden {
                bytes: std::fs::read(dir.join(format!("golden_{k}.safetensors"))).unwrap(),
            };
            let meta: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(dir.join(format!("golden_{k}.json"))).unwrap(),
            )
            .unwrap();
            let prompt = meta["prompt"].as_str().expect("prompt");
            let chat = meta.get("chat").and_then(|c| c.as_bool()).unwrap_or(false);
            // Our decode and preprocessing of the image file (the prompt's image token count may depend on it).
            let image = repo().join(meta["image"].as_str().expect("image"));
            let ours = m.load_image(&image).unwrap();
            // Prompt ids.
            let want_ids: Vec<u32> = g.i64("input_ids").iter().map(|&x| x as u32).collect();
            let ids = m.prompt_ids(prompt, chat, Some(&ours)).unwrap();
            if ids != want_ids {
                failures.push(format!(
                    "{tag}: prompt ids differ: ours {} tokens, HF {}",
                    ids.len(),
                    want_ids.len()
                ));
            }
            // The chat template renders the fixture's user message into the same prompt.
            let text_item = meta
                .pointer("/messages/0/content")
                .and_then(|c| c.as_array())
                .and_then(|items| {
                    items
                        .iter()
                        .find(|i| i["type"] == "text")
                        .and_then(|i| i["text"].as_str())
                });
            if let Some(user_text) = text_item {
                let rendered = m
                    .checkpoint
                    .prompt
                    .apply_chat_template(user_text, true)
                    .unwrap();
                if rendered != prompt {
                    failures.push(format!(
                        "{tag}: chat template renders {rendered:?}, HF {prompt:?}"
                    ));
                }
                if m.prompt_ids(user_text, true, Some(&ours)).unwrap() != want_ids {
                    failures.push(format!("{tag}: --chat prompt ids differ from HF"));
                }
            }
            // Pixel values, from our decode of the image file.
            let (want_px, px_shape) = g.f32("pixel_values");
            // CHW `[1, 3, H, W]`, or patch rows `[N, C·T·P·P]` of a `pixel_hw` image (Qwen2-VL), whose
            // bound is the 1e-6.
            let (px_h, px_w, px_bound) = match meta.get("pixel_hw").and_then(|v| v.as_array()) {
                Some(hw) => (
                    hw[0].as_u64().unwrap() as usize,
                    hw[1].as_u64().unwrap() as usize,
                    1e-6,
                ),
                None => (px_shape[2], px_shape[3], 1e-5),
            };
            // JPEG and PNG alike: the JPEG decoder is Pillow's (libjpeg-turbo), so the same bounds hold.
            let is_png = image
                .extension()
                .map(|e| e.eq_ignore_ascii_case("png"))
                .unwrap_or(false);
            let err = max_abs(&ours.data, &want_px);
            eprintln!(
                "{tag}: pixel_values {px_shape:?} max abs err {err:.2e} ({})",
                if is_png { "png" } else { "jpeg" }
            );
            if let Some((rgb, s)) = g.u8("decoded_rgb") {
                let img = decode_file(&image, &DecodeOptions::default()).unwrap();
                let diff = if (img.height, img.width) == (s[0], s[1]) {
                    img.data.iter().zip(&rgb).filter(|(a, b)| a != b).count()
                } else {
                    failures.push(format!(
                        "{tag}: decoded size {}x{}, Pillow {}x{}",
                        img.height, img.width, s[0], s[1]
                    ));
                    usize::MAX
                };
                let from_pillow = m
                    .preprocess(&RgbImage::new(s[1], s[0], rgb).unwrap())
                    .unwrap();
                let e2 = max_abs(&from_pillow.data, &want_px);
                eprintln!("{tag}: decoded bytes differing from Pillow: {diff}; pixel_values from Pillow's decode: max abs err {e2:.2e}");
                if diff != 0 && diff != usize::MAX {
                    failures.push(format!("{tag}: {diff} decoded bytes differ from Pillow's"));
                }
                if e2 > 1e-5 {
                    failures.push(format!("{tag}: pixel values from Pillow's decoded RGB: max abs err {e2:.2e} > 1e-5"));
                }
            }
            if (ours.height, ours.width) != (px_h, px_w) || err > px_bound {
                failures.push(format!(
                    "{tag}: pixel values of a {}x{} image, HF {px_h}x{px_w}: max abs err {err:.2e} (bound {px_bound:.0e})",
                    ours.height, ours.width
                ));
            }
            // Image features and logits from the golden inputs (isolates each stage).
            let golden_px = PixelValues {
                data: want_px.clone(),
                height: px_h,
                width: px_w,
            };
            let (want_f, _) = g.f32("image_features");
            let f = m.image_features(&golden_px).unwrap().to_f32();
            let ef = rel(&f, &want_f);
            let (want_l, _) = g.f32("logits");
            let mut p = m.default_params(0);
            p.prompt_logits = true;
            let l = m
                .generate_one(
                    &Request {
                        input_ids: want_ids.clone(),
                        pixels: Some(golden_px.clone()),
                    },
                    &p,
                )
                .unwrap();
            let el = rel(&l.prompt_logits.unwrap().to_f32(), &want_l);
            eprintln!("{tag}: image_features rel err {ef:.2e}, logits rel err {el:.2e}");
            if ef > 1e-4 {
                failures.push(format!("{tag}: image features rel err {ef:.2e} > 1e-4"));
            }
            if el > 1e-4 {
                failures.push(format!("{tag}: logits rel err {el:.2e} > 1e-4"));
            }
            // Greedy tokens, up to and including an eos HF stopped on.
            let want_t: Vec<u32> = g.i64("greedy_tokens").iter().map(|&x| x as u32).collect();
            let stop = m.checkpoint.eos_token_ids.clone();
            let n = want_t
                .iter()
                .position(|t| stop.contains(t))
                .map(|i| i + 1)
                .unwrap_or(want_t.len());
            for (a, mm) in &models {
                let t = greedy(mm, &want_ids, &golden_px, n);
                if t != want_t[..n] {
                    failures.push(format!(
                        "{tag}: greedy tokens with {a:?} attention {t:?} != HF {:?}",
                        &want_t[..n]
                    ));
                }
            }
            // End to end from the image file (our decode and preprocessing), PNG and JPEG alike: the
            // logits stay within 1e-5 of HF's and the greedy tokens are HF's.
            let l2 = m
                .generate_one(
                    &Request {
                        input_ids: want_ids.clone(),
                        pixels: Some(ours.clone()),
                    },
                    &p,
                )
                .unwrap();
            let el2 = rel(&l2.prompt_logits.unwrap().to_f32(), &want_l);
            let t2 = greedy(m, &want_ids, &ours, n);
            eprintln!(
                "{tag}: from the {} file: logits rel err {el2:.2e}, greedy tokens {}",
                if is_png { "png" } else { "jpeg" },
                if t2 == want_t[..n] {
                    "identical"
                } else {
                    "DIFFER"
                }
            );
            if el2 > 1e-5 {
                failures.push(format!(
                    "{tag}: logits from our decode of the image file: rel err {el2:.2e} > 1e-5"
                ));
            }
            if t2 != want_t[..n] {
                failures.push(format!(
                    "{tag}: greedy tokens from our decode of the image file {t2:?} != HF {:?}",
                    &want_t[..n]
                ));
            }
            batch.push((
                tag,
                Request {
                    input_ids: want_ids.clone(),
                    pixels: Some(golden_px),
                },
                want_t[..n].to_vec(),
            ));
        }
        // Batched: every golden of the fixture at once (images through the tower as one batch,
        // prompts through one prefill, decode together) gives HF's greedy tokens too.
        for (a, mm) in &models {
            let mut queue: Vec<(Request, GenerateParams)> = batch
                .iter()
                .map(|(_, r, want)| {
                    (
                        r.clone(),
                        GenerateParams {
                            max_new_tokens: want.len(),
                            sampling: SamplingParams::default(),
                            stop_tokens: vec![],
                            prompt_logits: false,
                        },
                    )
                })
                .collect();
            let mut got: Vec<Option<Vec<u32>>> = vec![None; batch.len()];
            mm.generate_batched(
                batch.len(),
                &mut |free| Ok(queue.drain(..free.min(queue.len())).collect()),
                &mut |i, g| {
                    got[i] = Some(g.tokens);
                    Ok(())
                },
            )
            .unwrap();
            for ((tag, _, want), g) in batch.iter().zip(got) {
                if g.as_ref() != Some(want) {
                    failures.push(format!(
                        "{tag}: batched greedy tokens with {a:?} attention {g:?} != HF {want:?}"
                    ));
                }
            }
        }
    }
    eprintln!(
        "{be}: parity checks took {:.1} s",
        t_all.elapsed().as_secs_f64()
    );
    failures
}
