//! The matrix must catch wrong backends: wrappers around the oracle with one deliberate bug each.
//! Each test asserts that exactly the cases the bug can affect fail, and every other case passes.

use foveate_core::{Backend, DType, HostTensor, Mask, Op, OpKind, Result, RopeFreqs, RopeSpec, Tensor, TensorDesc};
use foveate_cpu::CpuBackend;
use foveate_testkit::guard::read_front;
use foveate_testkit::{cases, run_matrix, Case, MatrixOptions, MatrixSize, Report};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Clone, Copy, PartialEq)]
enum Fault {
    /// Softmax as exp(x) / sum(exp(x)) in f32, without subtracting the row max.
    SoftmaxWithoutMax,
    /// Attention ignores the mask on one query row (the last, or the first).
    UnmaskedRow { last: bool },
    /// Every op leaves one output element as it found it.
    LeavesOneElement,
    /// Every op computes its output right, then writes one element just past its end (a last
    /// tile storing a padding row).
    WritesPastEnd,
    /// Multi-axis RoPE reads every pair's position from axis 0.
    RopeAxisZero,
    /// Multi-axis RoPE with per-section frequencies uses the global pair index instead.
    RopeGlobalFreqs,
    /// Int4 weights decoded with the nibble order swapped (element i + 16 read from the low
    /// nibble, element i from the high one).
    Int4NibblesSwapped,
    /// Not a bug: refuses weights stored in another format than the activations, as wgpu and
    /// cuda do (`refuse_mixed_weights`).
    RefusesMixedWeights,
}

struct Faulty {
    inner: CpuBackend,
    fault: Fault,
    /// Outputs that arrived without poison (they should all be NaN-filled, KvAppend excepted).
    unpoisoned: Mutex<Vec<String>>,
    /// Outputs whose buffer ends where the tensor does (no guard tail to write into).
    unguarded: Mutex<Vec<String>>,
}

impl Faulty {
    fn new(fault: Fault) -> Self {
        Faulty { inner: CpuBackend::oracle(), fault, unpoisoned: Mutex::new(Vec::new()), unguarded: Mutex::new(Vec::new()) }
    }

    /// Writes `host` into `out` (a same-dtype cast is an exact copy on the oracle).
    fn write(&self, host: &HostTensor, out: &Tensor) -> Result<()> {
        let t = self.inner.upload(host)?;
        self.inner.execute(&Op::Cast { to: host.dtype() }, &[&t], out, "")
    }

    fn unmasked_row(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, last: bool) -> Result<()> {
        let Op::Attention(spec) = op else { unreachable!() };
        self.inner.execute(op, inputs, out, "")?;
        let mut plain = spec.clone();
        plain.mask = Mask::None;
        let unmasked = foveate_core::run(&self.inner, &Op::Attention(plain), inputs, "")?;
        let (mut got, free) = (read_front(&self.inner, out)?, self.inner.download(&unmasked)?);
        let row = if last { spec.q_len - 1 } else { 0 };
        let esz = got.dtype().size();
        let row_bytes = spec.q_heads * spec.head_dim * esz;
        for b in 0..spec.batch {
            let at = (b * spec.q_len + row) * row_bytes;
            got.bytes[at..at + row_bytes].copy_from_slice(&free.bytes[at..at + row_bytes]);
        }
        self.write(&got, out)
    }

    /// Runs `op`, then overwrites the element just past the end of `out` with a copy of its last one.
    fn write_past_end(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        self.inner.execute(op, inputs, out, variant)?;
        let esz = out.dtype().size();
        let (have, need) = (out.storage().size_bytes(), out.desc().size_bytes());
        if need == 0 {
            return Ok(());
        }
        if have < need + esz {
            self.unguarded.lock().unwrap().push(op.label());
            return Ok(());
        }
        let whole = Tensor::new(out.storage().clone(), TensorDesc::new(out.dtype(), vec![have / esz]));
        let mut all = self.inner.download(&whole)?;
        let last = all.bytes[need - esz..need].to_vec();
        all.bytes[need..need + esz].copy_from_slice(&last);
        self.write(&all, &whole)
    }
}

impl Backend for Faulty {
    foveate_testkit::forward_backend!(inner);
    fn name(&self) -> &str {
        "faulty"
    }
    fn device_name(&self) -> String {
        "oracle with a deliberate bug".into()
    }
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        match (self.fault, op) {
            (Fault::SoftmaxWithoutMax, Op::Softmax) => {
                let x = self.inner.download(inputs[0])?;
                let d = x.shape().last();
                let mut v = x.to_f32();
                for row in v.chunks_mut(d) {
                    let sum: f32 = row.iter().map(|x| x.exp()).sum();
                    row.iter_mut().for_each(|x| *x = x.exp() / sum);
                }
                self.write(&HostTensor::from_f32(x.dtype(), x.shape().clone(), &v), out)
            }
            (Fault::UnmaskedRow { last }, Op::Attention(_)) => self.unmasked_row(op, inputs, out, last),
            (Fault::WritesPastEnd, _) => self.write_past_end(op, inputs, out, variant),
            (Fault::RopeAxisZero, Op::Rope(s)) => {
                let pos = self.inner.download(inputs[1])?;
                let v = pos.to_u32();
                let flat = v[..v.len() / s.axes()].repeat(s.axes());
                let same = self.inner.upload(&HostTensor::from_u32(pos.shape().clone(), &flat))?;
                self.inner.execute(op, &[inputs[0], &same], out, variant)
            }
            (Fault::Int4NibblesSwapped, Op::Gemm(_) | Op::GeluMlp(_)) => {
                let mut swapped = Vec::new();
                for t in inputs {
                    let mut h = self.inner.download(t)?;
                    if h.dtype() == DType::Int4 {
                        let qb = foveate_core::quant::quant_bytes(DType::Int4, h.numel());
                        h.bytes[..qb].iter_mut().for_each(|b| *b = b.rotate_left(4));
                    }
                    swapped.push(self.inner.upload(&h)?);
                }
                let refs: Vec<&Tensor> = swapped.iter().collect();
                self.inner.execute(op, &refs, out, variant)
            }
            (Fault::RefusesMixedWeights, _) => {
                foveate_core::refuse_mixed_weights("faulty", op, inputs)?;
                self.inner.execute(op, inputs, out, variant)
            }
            (Fault::RopeGlobalFreqs, Op::Rope(s)) => {
                let global = Op::Rope(RopeSpec { freqs: RopeFreqs::Global, ..*s });
                self.inner.execute(&global, inputs, out, variant)
            }
            (Fault::LeavesOneElement, _) => {
                let before = read_front(&self.inner, out)?;
                let poisoned = match before.dtype() {
                    DType::U32 => before.to_u32().iter().all(|&x| x == u32::MAX),
                    _ => before.to_f32().iter().all(|x| x.is_nan()),
                };
                if !poisoned && !matches!(op, Op::KvAppend(_)) {
                    self.unpoisoned.lock().unwrap().push(op.label());
                }
                self.inner.execute(op, inputs, out, variant)?;
                let mut after = read_front(&self.inner, out)?;
                // The element left alone: the first of the appended rows for KvAppend (rows
                // outside them are legitimately untouched), the last element otherwise.
                let idx = match op {
                    Op::KvAppend(s) => s.pos * out.dims()[2] * out.dims()[3],
                    _ => out.numel() - 1,
                };
                let e = after.dtype().size();
                after.bytes[idx * e..(idx + 1) * e].copy_from_slice(&before.bytes[idx * e..(idx + 1) * e]);
                self.write(&after, out)
            }
            _ => self.inner.execute(op, inputs, out, variant),
        }
    }
}

fn key(op: &str, shape: &str, dt: DType) -> String {
    format!("{op} | {shape} | {dt}")
}

/// Runs the matrix on the faulty backend and returns (report, cases by key).
fn run(fault: Fault, ops: Option<Vec<OpKind>>, size: MatrixSize) -> (Report, HashMap<String, Case>, Faulty) {
    let faulty = Faulty::new(fault);
    let mut opts = MatrixOptions::new(size);
    opts.ops = ops;
    let report = run_matrix(&faulty, &CpuBackend::oracle(), &opts);
    let mut by_key = HashMap::new();
    for c in cases(&opts) {
        let k = key(&c.op.label(), &c.shape, c.dtype);
        assert!(by_key.insert(k.clone(), c).is_none(), "case key {k} is not unique");
    }
    assert_eq!(report.results.len(), by_key.len(), "the oracle has one variant, so one run per case");
    (report, by_key, faulty)
}

/// Asserts that exactly the cases `affected` says fail.
fn assert_fails_exactly(report: &Report, cases: &HashMap<String, Case>, affected: impl Fn(&Case) -> bool) -> usize {
    let mut n = 0;
    for r in &report.results {
        let c = &cases[&key(&r.op, &r.shape, r.dtype)];
        let hit = affected(c);
        assert_eq!(!r.pass, hit, "{} {} {}: pass = {} ({:?})", r.op, r.shape, r.dtype, r.pass, r.error);
        n += hit as usize;
    }
    n
}

#[test]
fn softmax_without_max_subtraction_is_caught() {
    let (report, cases, _) = run(Fault::SoftmaxWithoutMax, None, MatrixSize::Small);
    let n = assert_fails_exactly(&report, &cases, |c| c.op.kind() == OpKind::Softmax);
    assert!(n >= 6, "only {n} softmax cases failed");
    let (report, cases, _) = run(Fault::SoftmaxWithoutMax, Some(vec![OpKind::Softmax]), MatrixSize::Full);
    assert_eq!(assert_fails_exactly(&report, &cases, |_| true), report.results.len());
}

/// Does the mask hide any key from query row `row`?
fn row_is_masked(c: &Case, last: bool) -> bool {
    let Op::Attention(a) = &c.op else { return false };
    let row = if last { a.q_len - 1 } else { 0 };
    (0..a.kv_len).any(|j| !a.mask.allows(row, j, a.q_len, a.kv_len))
}

#[test]
fn attention_ignoring_the_mask_on_the_last_row_is_caught() {
    // With bottom-right alignment the last row of a causal mask sees every key, so only sliding
    // windows shorter than the sequence and block-sparse layouts are affected.
    for size in [MatrixSize::Small, MatrixSize::Full] {
        let (report, cases, _) = run(Fault::UnmaskedRow { last: true }, Some(vec![OpKind::Attention, OpKind::Softmax]), size);
        let n = assert_fails_exactly(&report, &cases, |c| row_is_masked(c, true));
        assert!(n >= 9, "{size:?}: only {n} cases affected");
        assert!(report.failed().iter().all(|r| !r.op.contains("causal")));
    }
}

#[test]
fn attention_ignoring_the_mask_on_the_first_row_is_caught() {
    // The first row of a causal prefill (q_len > 1) sees only part of the keys.
    let (report, cases, _) = run(Fault::UnmaskedRow { last: false }, Some(vec![OpKind::Attention]), MatrixSize::Full);
    let n = assert_fails_exactly(&report, &cases, |c| row_is_masked(c, false));
    assert!(report.failed().iter().any(|r| r.op == "attention[causal]"), "no causal case failed");
    assert!(n >= 20, "only {n} cases affected");
}

#[test]
fn an_unwritten_output_element_is_caught() {
    let (report, cases, faulty) = run(Fault::LeavesOneElement, None, MatrixSize::Small);
    let n = assert_fails_exactly(&report, &cases, |_| true);
    assert_eq!(n, report.results.len());
    let unpoisoned = faulty.unpoisoned.lock().unwrap();
    assert!(unpoisoned.is_empty(), "outputs arrived without NaN poison: {unpoisoned:?}");
    // KvAppend's cache arrives with random contents and is compared whole.
    assert!(report.results.iter().any(|r| r.kind == OpKind::KvAppend && !r.pass));
}

#[test]
fn a_write_past_the_end_of_the_output_is_caught() {
    let (report, cases, faulty) = run(Fault::WritesPastEnd, None, MatrixSize::Small);
    let n = assert_fails_exactly(&report, &cases, |_| true);
    assert_eq!(n, report.results.len());
    assert!(faulty.unguarded.lock().unwrap().is_empty(), "outputs without a guard tail: {:?}", faulty.unguarded.lock().unwrap());
    for r in &report.results {
        let e = r.error.as_deref().unwrap_or("");
        assert!(e.starts_with("wrote past the end of its output") && e.contains("(guard element 0)"), "{} {}: {e}", r.op, r.shape);
    }
    eprintln!("e.g. {}", report.results[0].error.as_deref().unwrap_or(""));
}

/// The number of position axes of a rope case (0 for other ops).
fn rope_axes(c: &Case) -> usize {
    match &c.op {
        Op::Rope(s) => s.axes(),
        _ => 0,
    }
}

#[test]
fn rope_reading_axis_zero_for_every_section_is_caught() {
    for size in [MatrixSize::Small, MatrixSize::Full] {
        let (report, cases, _) = run(Fault::RopeAxisZero, Some(vec![OpKind::Rope]), size);
        let n = assert_fails_exactly(&report, &cases, |c| rope_axes(c) > 1);
        assert!(n >= 6, "only {n} multi-axis rope cases failed");
    }
}

#[test]
fn rope_vision_with_global_frequencies_is_caught() {
    let (report, cases, _) = run(Fault::RopeGlobalFreqs, Some(vec![OpKind::Rope]), MatrixSize::Small);
    let per_section = |c: &Case| matches!(&c.op, Op::Rope(s) if s.freqs == RopeFreqs::PerSection);
    let n = assert_fails_exactly(&report, &cases, per_section);
    assert!(n >= 2, "only {n} vision rope cases failed");
}

/// Does the case store a weight as int4?
fn has_int4(c: &Case) -> bool {
    c.inputs.iter().any(|t| t.dtype() == DType::Int4)
}

#[test]
fn int4_weights_with_swapped_nibbles_are_caught() {
    for size in [MatrixSize::Small, MatrixSize::Full] {
        let (report, cases, _) = run(Fault::Int4NibblesSwapped, Some(vec![OpKind::Gemm, OpKind::GeluMlp]), size);
        let n = assert_fails_exactly(&report, &cases, has_int4);
        let gemm = report.failed().iter().filter(|r| r.kind == OpKind::Gemm).count();
        assert!(n >= 8 && gemm >= 4 && gemm < n, "{size:?}: {n} int4 cases failed, {gemm} of them gemm");
    }
}

#[test]
fn a_backend_refusing_mixed_weights_gets_skips_not_failures() {
    let faulty = Faulty::new(Fault::RefusesMixedWeights);
    let mut opts = MatrixOptions::new(MatrixSize::Small);
    opts.ops = Some(vec![OpKind::Gemm, OpKind::GeluMlp]);
    let report = run_matrix(&faulty, &CpuBackend::oracle(), &opts);
    assert!(report.all_passed(), "{}", report.table(true));
    let mixed = |c: &Case| c.inputs.iter().skip(1).any(|t| t.dtype() != c.inputs[0].dtype() && t.shape().dims().len() == 2);
    let all = cases(&opts);
    let want = all.iter().filter(|c| mixed(c)).count();
    assert!(want >= 20, "only {want} mixed-weight cases");
    assert_eq!(report.skipped.len(), want, "{}", report.skipped_table());
    assert_eq!(report.results.len(), all.len() - want);
    for s in &report.skipped {
        assert!(s.shape.contains("w:") || s.shape.contains("w1:"), "{} {}", s.op, s.shape);
        assert!(s.reason.contains("stored as") && s.reason.contains("faulty"), "{}", s.reason);
    }
    eprint!("{}", report.skipped_table());
}
