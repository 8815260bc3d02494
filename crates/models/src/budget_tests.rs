//! Tests of the load-memory estimate on a toy decoder.

use super::*;

fn entry(part: Part, name: &str, shape: &[usize], role: Role) -> (Entry, Stored) {
    let e = Entry {
        part,
        name: name.into(),
        shape: shape.to_vec(),
        role,
    };
    (e, Stored::Random)
}

/// A two-layer decoder of width 64 (MLP 128, vocab 1000, tied embeddings) and no vision tower.
fn plan() -> LoadPlan {
    let mut entries = vec![entry(
        Part::Text,
        "embed_tokens.weight",
        &[1000, 64],
        Role::Embedding,
    )];
    for l in 0..2 {
        for (n, s) in [
            ("self_attn.q_proj", [64, 64]),
            ("self_attn.k_proj", [32, 64]),
            ("self_attn.v_proj", [32, 64]),
            ("self_attn.o_proj", [64, 64]),
            ("mlp.gate_proj", [128, 64]),
            ("mlp.up_proj", [128, 64]),
            ("mlp.down_proj", [64, 128]),
        ] {
            entries.push(entry(
                Part::Text,
                &format!("layers.{l}.{n}.weight"),
                &s,
                Role::Weight,
            ));
        }
        entries.push(entry(
            Part::Text,
            &format!("layers.{l}.input_layernorm.weight"),
            &[64],
            Role::Norm,
        ));
    }
    entries.push(entry(
        Part::Text,
        "embed_tokens.weight",
        &[1000, 64],
        Role::Head,
    ));
    LoadPlan {
        model: "toy".into(),
        entries,
        zeros: vec![vec![64]],
        dims: Dims {
            text: Some(TextDims {
                layers: 2,
                heads: 2,
                kv_heads: 1,
                head_dim: 32,
                width: 64,
                vocab: 1000,
                context: 100,
            }),
            vision_rows: 0,
            image_tokens: 0,
        },
        fixed_weights: None,
        fused: vec![],
    }
}

/// A stacked group (a layer's q, k, v) counts, on a host backend only, the stacked copy beside
/// its parts and the largest part read back, in the load's format; a recorded builder notes the
/// decoder's groups.
#[test]
fn stacked_groups_count_on_the_host() {
    let stored = |name: &str, rows: usize| {
        let (e, _) = entry(Part::Text, name, &[rows, 64], Role::Weight);
        (e, Stored::File(StoredDType::F32))
    };
    let p = LoadPlan {
        model: "qkv".into(),
        entries: vec![stored("q", 64), stored("k", 32), stored("v", 32)],
        zeros: vec![],
        dims: Dims::default(),
        fixed_weights: None,
        fused: vec![vec![0, 1, 2]],
    };
    let f32s = Formats::uniform(DType::F32);
    let est = |on_host| p.estimate(f32s, on_host, AttentionKind::Flash, &ONE);
    assert_eq!(
        est(false).temporary,
        64 * 64 * 4,
        "apart on a GPU: the largest part"
    );
    let host = est(true);
    assert_eq!(host.temporary, (128 + 64) * 64 * 4, "{}", host.temporary_of);
    assert!(
        host.temporary_of
            .contains("language_model.q and 2 more stacked"),
        "{}",
        host.temporary_of
    );
    // int4 stacks count int4 bytes (quants and scales): a quantised checkpoint's parts, loaded as
    // stored (no conversion chunks).
    let mut p = p;
    p.entries.iter_mut().for_each(|e| e.1 = Stored::AsIs);
    let q4 = p.estimate(
        Formats::new(DType::F32, DType::Int4),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    let b = |rows: usize| quant::bytes_for(DType::Int4, rows * 64);
    assert_eq!(q4.temporary, b(128) + b(64));
    // The decoder's builder asks for one group per layer (q, k, v).
    let mut rec = recorder();
    let cfg = crate::synth::config_json(&crate::synth::SynthSpec::default());
    let llava = crate::config::LlavaConfig::from_json(&cfg, "config.json").unwrap();
    crate::arch::llama::Llama::load(&mut rec, &llava.text).unwrap();
    assert_eq!(rec.fused.len(), llava.text.num_layers);
    for g in &rec.fused {
        let names: Vec<&str> = g.iter().map(|&i| rec.entries[i].name.as_str()).collect();
        assert!(
            names[0].ends_with("q_proj.weight") && names[2].ends_with("v_proj.weight"),
            "{names:?}"
        );
    }
}

const ONE: Workload = Workload {
    sequences: 1,
    text_tokens: 10,
    new_tokens: 10,
    images_per_sequence: 0,
    images_at_once: 0,
};

#[test]
fn temporaries_follow_the_conversion() {
    // Stored as loaded: the host copy only.
    assert_eq!(
        temporary(Stored::File(StoredDType::BF16), DType::BF16, 10, 20),
        20
    );
    assert_eq!(temporary(Stored::AsIs, DType::Int4, 64, 36), 36);
    // Converted: the bytes plus the f32 chunks in flight (the whole tensor when smaller than a chunk).
    assert_eq!(
        temporary(Stored::File(StoredDType::BF16), DType::F32, 10, 40),
        80
    );
    assert_eq!(
        temporary(Stored::File(StoredDType::F32), DType::BF16, 10, 20),
        60
    );
    assert_eq!(temporary(Stored::Random, DType::Int8, 64, 68), 256 + 68);
    let big = 1 << 20;
    assert_eq!(
        temporary(Stored::Random, DType::Int4, big, big / 2 + big / 16),
        big / 2 + big / 16 + HostTensor::load_temporary(big)
    );
    // A chunk per thread converting: at least one, never the whole tensor's f32.
    assert!((4 * HostTensor::LOAD_CHUNK..4 * big).contains(&HostTensor::load_temporary(big)));
    assert_eq!(
        layer_of("encoder.layers.3.mlp.fc1.weight"),
        Some("encoder.layers.3")
    );
    assert_eq!(layer_of("blocks.12.attn.qkv.weight"), Some("blocks.12"));
    assert_eq!(layer_of("linear_1.weight"), None);
}

#[test]
fn estimate_counts_weights_temporaries_cache_and_activations() {
    let p = plan();
    let e = p.estimate(
        Formats::uniform(DType::F32),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    // Tied head in the table's format: not counted twice.
    let linears = 2 * (64 * 64 * 2 + 32 * 64 * 2 + 128 * 64 * 3);
    let want = 4 * (1000 * 64 + linears + 2 * 64 + 64);
    assert_eq!(e.weights.total(), want);
    // The embedding table, random f32: its f32 values and the host tensor.
    assert_eq!(e.temporary, 8 * 1000 * 64);
    assert!(
        e.temporary_of.contains("embed_tokens.weight [1000, 64]"),
        "{}",
        e.temporary_of
    );
    // 20 tokens -> 64 rows; 2 layers x K,V x 64 rows x 32 x 4 bytes.
    assert_eq!((e.kv_tokens, e.kv_cache), (64, 2 * 2 * 64 * 32 * 4));
    assert!(
        e.activations > 4 * 20 * 64 && e.activations < 1 << 20,
        "{}",
        e.activations
    );
    assert_eq!(e.host_bytes(), e.total());
    // int4: the linears quantised, the tied head int8 as its own tensor.
    let q = p.estimate(
        Formats::new(DType::F32, DType::Int4),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    let kinds: Vec<DType> = q.weights.0.iter().map(|(d, _)| *d).collect();
    assert_eq!(kinds, vec![DType::F32, DType::Int4, DType::Int8]);
    assert_eq!(q.weights.0[2].1, quant::bytes_for(DType::Int8, 64_000));
    // On a GPU the host holds the temporaries only.
    let g = p.estimate(
        Formats::uniform(DType::F32),
        false,
        AttentionKind::Flash,
        &ONE,
    );
    assert_eq!(g.host_bytes(), g.temporary as u64);
    // Longer contexts, more sequences, naive attention: more memory; the context caps it.
    let big = Workload {
        sequences: 4,
        text_tokens: 1000,
        ..ONE
    };
    let b = p.estimate(
        Formats::uniform(DType::F32),
        true,
        AttentionKind::Naive,
        &big,
    );
    assert_eq!((b.kv_tokens, b.kv_cache), (128, 4 * e.kv_cache * 2));
    assert!(b.activations > 4 * e.activations);
    // A 16-bit KV cache (`--kv-dtype f16`): half the cache, the weights unchanged, and the f32
    // copy prefill attention reads counted with the activations.
    let h = p.estimate(
        Formats::uniform(DType::F32).with_kv(Some(DType::F16)),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    assert_eq!((h.kv_tokens, h.kv_cache), (64, e.kv_cache / 2));
    assert_eq!(h.weights, e.weights);
    assert!(
        h.activations > e.activations,
        "{} vs {}",
        h.activations,
        e.activations
    );
}

#[test]
fn over_budget_names_need_budget_and_a_fitting_format() {
    let p = plan();
    let e = p.estimate(
        Formats::uniform(DType::F32),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    let need = e.host_bytes();
    let fits = Budget {
        flag: Some(need),
        available: None,
    };
    p.check(&e, &fits).expect("a need equal to the budget fits");
    let tight = Budget {
        flag: Some(need - 1),
        available: Some(1 << 40),
    };
    let err = p.check(&e, &tight).unwrap_err();
    assert!(
        matches!(err, Error::OverBudget { need: n, budget: b, .. } if n == need && b == need - 1)
    );
    let m = err.to_string();
    for want in [
        "toy: the load needs about ".to_string(),
        format!("{need} bytes"),
        format!("more than the budget of {} bytes", need - 1),
        "set by --max-memory (MemAvailable in /proc/meminfo is 1.00 TiB); the need: ".into(),
        "weights f32 ".into(),
        "load temporaries".into(),
        "KV cache".into(),
        "nothing was allocated".into(),
    ] {
        assert!(m.contains(&want), "`{want}` not in: {m}");
    }
    // The int8 estimate fits a budget just below the f32 one... when the weights dominate.
    let q8 = p.estimate(
        Formats::new(DType::F32, DType::Int8),
        true,
        AttentionKind::Flash,
        &ONE,
    );
    let b = Budget {
        flag: Some(q8.host_bytes()),
        available: None,
    };
    let m = p.check(&e, &b).unwrap_err().to_string();
    assert!(m.contains("--weights int8 would need about"), "{m}");
    // Nothing smaller fits, the flag binds: raise it.
    let b = Budget {
        flag: Some(1024),
        available: Some(1 << 40),
    };
    let m = p.check(&e, &b).unwrap_err().to_string();
    let at = format!("Raise --max-memory to at least {}M", need.div_ceil(1 << 20));
    assert!(m.contains(&at), "{m}");
    // MemAvailable binds: no --max-memory advice.
    let b = Budget {
        flag: None,
        available: Some(1024),
    };
    let m = p.check(&e, &b).unwrap_err().to_string();
    assert!(
        m.contains("budget of 1024 bytes (1.00 KiB) set by MemAvailable")
            && m.contains("Free memory"),
        "{m}"
    );
    // A quantised checkpoint loads in its own format only: no --weights advice.
    let fixed = LoadPlan {
        fixed_weights: Some(DType::Int4),
        ..plan()
    };
    let b = Budget {
        flag: Some(q8.host_bytes()),
        available: None,
    };
    let m = fixed.check(&e, &b).unwrap_err().to_string();
    assert!(!m.contains("--weights int8 would"), "{m}");
    // No budget known: nothing to check.
    p.check(&e, &Budget::default()).expect("no limit");
}
