//! The device-vs-device matrix on the CPU backend (small size, as CI runs it): flash and
//! block-sparse against the CPU's own naive attention, naive against the oracle, GEMM against
//! the oracle. And a backend whose fast kernels are wrong only past the first tile, which the
//! oracle matrix (q/kv <= 40, GEMMs <= 48) cannot see, fails exactly those cases here.

use foveate_core::registry::attention::NAIVE;
use foveate_core::{Backend, DType, Op, OpKind, Result, Tensor};
use foveate_cpu::CpuBackend;
use foveate_testkit::{
    case_macs, run_matrix, run_naive_matrix, scale_cases, MatrixOptions, MatrixSize, Report,
    ORACLE_MAX_MACS,
};
use std::time::Instant;

fn small() -> MatrixOptions {
    MatrixOptions::new(MatrixSize::Small)
}

#[test]
fn cpu_passes_the_small_naive_matrix() {
    let t0 = Instant::now();
    let report = run_naive_matrix(&CpuBackend::fast(), &CpuBackend::oracle(), &small());
    eprintln!(
        "{} in {:.1} s",
        report.summary_line(),
        t0.elapsed().as_secs_f64()
    );
    eprint!("{}", report.per_op_table());
    assert!(report.all_passed(), "{}", report.table(true));
    let runs = |kind: OpKind, variant: &str, reference: &str| {
        report
            .results
            .iter()
            .filter(|r| r.kind == kind && r.variant == variant && r.reference == reference)
            .count()
    };
    for v in ["flash", "block-sparse"] {
        assert!(
            runs(OpKind::Attention, v, NAIVE) >= 3 * 3,
            "attention `{v}` vs naive: {}",
            runs(OpKind::Attention, v, NAIVE)
        );
    }
    assert!(
        runs(OpKind::Attention, NAIVE, "cpu-oracle") >= 3 * 10,
        "naive vs the oracle"
    );
    assert!(
        runs(OpKind::Gemm, "tiled", "cpu-oracle") >= 3 * 8,
        "gemm vs the oracle"
    );
    // The cases reach past one tile: q and kv > 64, every head dim, GEMM M and N > 128.
    for c in scale_cases(&small()) {
        assert!(
            case_macs(&c) <= 40.0 * ORACLE_MAX_MACS,
            "{} {} is too big for CI",
            c.op.label(),
            c.shape
        );
    }
    for d in [64, 72, 80, 96, 128] {
        let multi_tile = |r: &&foveate_testkit::CaseResult| {
            r.variant == "flash"
                && r.shape.contains(&format!(" d{d}"))
                && ["sq65 ", "sq127 ", "sq200 "]
                    .iter()
                    .any(|q| r.shape.contains(q))
        };
        assert!(
            report.results.iter().any(|r| multi_tile(&r)),
            "no flash run with q_len > 64 at head dim {d}"
        );
    }
}

/// The CPU backend with its non-naive attention variants wrong on query rows >= 64 (a second
/// query tile bug) and its GEMM wrong on output columns >= 128 (a block offset bug).
struct PastFirstTile {
    cpu: CpuBackend,
}

impl Backend for PastFirstTile {
    foveate_testkit::forward_backend!(cpu);
    fn name(&self) -> &str {
        "past-first-tile"
    }
    fn device_name(&self) -> String {
        "cpu with tile-offset bugs".into()
    }
    fn execute(&self, op: &Op, inputs: &[&Tensor], out: &Tensor, variant: &str) -> Result<()> {
        self.cpu.execute(op, inputs, out, variant)?;
        let (row_elems, first_bad) = match op {
            Op::Attention(a) if variant != NAIVE => {
                (a.q_heads * a.head_dim, 64 * a.q_heads * a.head_dim)
            }
            Op::Gemm(_) => (inputs[1].dims()[0], 128),
            _ => return Ok(()),
        };
        let mut h = foveate_testkit::guard::read_front(&self.cpu, out)?;
        let mut v = h.to_f32();
        for (i, x) in v.iter_mut().enumerate() {
            let bad = match op {
                Op::Attention(_) => i % (out.numel() / out.dims()[0]) >= first_bad,
                _ => i % row_elems >= first_bad,
            };
            if bad {
                *x += 0.25;
            }
        }
        h = foveate_core::HostTensor::from_f32(h.dtype(), h.shape().clone(), &v);
        let t = self.cpu.upload(&h)?;
        self.cpu
            .execute(&Op::Cast { to: h.dtype() }, &[&t], out, "")
    }
}

fn failing(report: &Report) -> Vec<String> {
    report
        .failed()
        .iter()
        .map(|r| format!("{} {} {} {}", r.op, r.variant, r.dtype, r.shape))
        .collect()
}

#[test]
fn tile_offset_bugs_fail_exactly_the_cases_past_the_first_tile() {
    let be = PastFirstTile {
        cpu: CpuBackend::fast(),
    };
    let mut opts = small();
    opts.dtypes = vec![DType::F32];
    // The oracle matrix is too small to see either bug.
    let oracle_matrix = run_matrix(&be, &CpuBackend::oracle(), &opts);
    assert!(oracle_matrix.all_passed(), "{:?}", failing(&oracle_matrix));
    let report = run_naive_matrix(&be, &CpuBackend::oracle(), &opts);
    let cases: Vec<_> = scale_cases(&opts);
    let mut hits = 0;
    for r in &report.results {
        let c = cases
            .iter()
            .find(|c| c.op.label() == r.op && c.shape == r.shape)
            .expect("case of the row");
        let affected = match &c.op {
            Op::Attention(a) => r.variant != NAIVE && a.q_len > 64,
            Op::Gemm(_) => c.inputs[1].shape().dims()[0] > 128,
            _ => false,
        };
        assert_eq!(
            !r.pass, affected,
            "{} {} {} vs {}: {:?}",
            r.op, r.variant, r.shape, r.reference, r.error
        );
        hits += affected as usize;
    }
    assert!(
        hits >= 15,
        "only {hits} cases affected: {:?}",
        failing(&report)
    );
}

/// Both cpu backends say they compute on the host, and a double wrapping one through
/// `forward_backend!` still does (else a wrapped cpu would stop narrowing weight formats and
/// refuse a KV cache in another dtype).
#[test]
fn a_wrapped_cpu_is_still_on_the_host() {
    assert!(CpuBackend::fast().on_host() && CpuBackend::oracle().on_host());
    let be = PastFirstTile {
        cpu: CpuBackend::fast(),
    };
    assert!(be.on_host(), "forward_backend! must forward on_host");
}
