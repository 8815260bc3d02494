//! The load-memory estimate of a checkpoint ([`foveate_models::budget`]) against the load itself:
//! its weights per format are exactly the bytes the load uploads, for every shipped checkpoint
//! (easy-VQA's tiny model and the HF parity fixtures: LLaVA with CLIP / SigLIP, Llama / Mistral /
//! Qwen2, Qwen2-VL, Qwen2.5-VL) and weight format; a load over budget is refused before the
//! backend allocates anything, one within budget loads.

use foveate_core::{Backend, DType, Error};
use foveate_cpu::CpuBackend;
use foveate_graph::AttentionKind;
use foveate_models::budget::{Budget, LoadPlan, Workload};
use foveate_models::model::{formats_for, resolve_formats};
use foveate_models::{Checkpoint, Model, ModelOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

const ONE: Workload = Workload {
    sequences: 1,
    text_tokens: 32,
    new_tokens: 8,
    images_per_sequence: 1,
    images_at_once: 1,
};

/// easy-VQA's tiny model (always shipped) and every fixture model present.
fn checkpoints() -> Vec<PathBuf> {
    let tiny = repo().join("eval/models/easyvqa-tiny");
    assert!(
        tiny.join("config.json").exists(),
        "{} is shipped with the repository",
        tiny.display()
    );
    let mut out = vec![tiny];
    if let Ok(rd) = std::fs::read_dir(repo().join("eval/fixtures")) {
        let mut f: Vec<PathBuf> = rd
            .filter_map(|e| e.ok().map(|e| e.path().join("model")))
            .filter(|p| p.join("config.json").exists())
            .collect();
        f.sort();
        out.extend(f);
    }
    out
}

fn opts(weights: Option<DType>) -> ModelOptions {
    ModelOptions {
        dtype: DType::F32,
        attention: AttentionKind::Flash,
        weights,
        kv: None,
    }
}

#[test]
fn estimated_weights_are_what_the_load_uploads() {
    let dirs = checkpoints();
    eprintln!("{} checkpoints: {dirs:?}", dirs.len());
    for dir in dirs {
        let ck = Checkpoint::open(&dir).unwrap();
        let plan = LoadPlan::checkpoint(&ck).unwrap();
        for w in [
            None,
            Some(DType::BF16),
            Some(DType::Int8),
            Some(DType::Int4),
        ] {
            // As the load resolves them on the cpu (f16 vision linears under int8/int4).
            let formats = formats_for(
                &CpuBackend::fast(),
                resolve_formats(&ck, DType::F32, w).unwrap(),
            );
            let est = plan.estimate(formats, true, AttentionKind::Flash, &ONE);
            let m = Model::load(&dir, Arc::new(CpuBackend::fast()), opts(w)).unwrap();
            let sorted = |mut v: Vec<(DType, usize)>| {
                v.sort_by_key(|(d, _)| d.name());
                v
            };
            assert_eq!(
                sorted(est.weights.0.clone()),
                sorted(m.weights_by_format.0.clone()),
                "{} --weights {w:?}",
                dir.display()
            );
            // The largest temporary is at least the largest tensor's bytes.
            assert!(
                est.temporary > 0 && est.kv_cache > 0 && est.activations > 0,
                "{est:?}"
            );
            assert!(est.host_bytes() > m.weights_bytes as u64, "{est:?}");
        }
    }
}

#[test]
fn load_over_budget_is_refused_before_the_backend_allocates() {
    let dir = repo().join("eval/models/easyvqa-tiny");
    let cpu = Arc::new(CpuBackend::fast());
    let budget = Budget {
        flag: Some(1024),
        available: None,
    };
    let err = Model::load_within(&dir, cpu.clone(), opts(None), Some((&budget, &ONE)))
        .err()
        .expect("over budget");
    let m = err.to_string();
    assert!(matches!(err, Error::OverBudget { budget: 1024, .. }), "{m}");
    assert!(
        m.starts_with("easyvqa-tiny: the load needs about ")
            && m.contains("more than the budget of 1024 bytes (1.00 KiB) set by --max-memory;"),
        "{m}"
    );
    assert_eq!(
        cpu.counters().unwrap().allocations,
        0,
        "allocated before refusing"
    );
    // At the estimate exactly: it loads (and the backend's counter sees its uploads).
    let ck = Checkpoint::open(&dir).unwrap();
    let est = LoadPlan::checkpoint(&ck).unwrap().estimate(
        resolve_formats(&ck, DType::F32, None).unwrap(),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    let budget = Budget {
        flag: Some(est.host_bytes()),
        available: None,
    };
    Model::load_within(&dir, cpu.clone(), opts(None), Some((&budget, &ONE))).expect("fits");
    assert!(cpu.counters().unwrap().allocations > 0);
}
