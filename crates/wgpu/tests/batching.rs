//! Batching on the wgpu backend: a chain of ops is one submit at the download, a warm repeat
//! allocates nothing, buffers recycled inside a pending batch never let an upload overwrite what
//! a recorded dispatch is still to read, and an op that fails on the host is named and leaves
//! the batch usable.

mod common;
use foveate_core::{Backend, Counters, DType, GemmSpec, HostTensor, Op, Tensor, TensorDesc};
use foveate_wgpu::WgpuBackend;

/// A backend of the test's own: counters are per backend and the tests run in parallel.
fn backend(test: &str) -> Option<&'static WgpuBackend> {
    common::backend(test)?;
    Some(Box::leak(Box::new(
        WgpuBackend::new().expect("a second device on the same adapter"),
    )))
}

fn f32s(be: &dyn Backend, v: &[f32]) -> Tensor {
    be.upload(&HostTensor::from_f32(DType::F32, vec![v.len()], v))
        .unwrap()
}

fn since(be: &dyn Backend, before: Counters) -> Counters {
    be.counters().expect("wgpu counts").since(&before)
}

/// x -> ((x + x) * x + x) ... `n` ops, each into a fresh output; returns the last.
fn chain(be: &dyn Backend, x: &Tensor, n: usize) -> Tensor {
    let mut cur = x.clone();
    for i in 0..n {
        let out = be.alloc(x.desc()).unwrap();
        let op = if i % 2 == 0 { Op::Add } else { Op::Mul };
        be.execute(&op, &[&cur, x], &out, "").unwrap();
        cur = out;
    }
    cur
}

fn host_chain(x: &[f32], n: usize) -> Vec<f32> {
    let mut cur = x.to_vec();
    for i in 0..n {
        for (c, &xi) in cur.iter_mut().zip(x) {
            *c = if i % 2 == 0 { *c + xi } else { *c * xi };
        }
    }
    cur
}

#[test]
fn a_chain_of_ops_is_one_submit_and_a_warm_repeat_allocates_nothing() {
    let Some(be) = backend("a_chain_of_ops_is_one_submit_and_a_warm_repeat_allocates_nothing")
    else {
        return;
    };
    let v: Vec<f32> = (0..1000).map(|i| 0.5 + (i % 7) as f32 * 0.125).collect();
    let x = f32s(be, &v);
    be.synchronize().unwrap();
    for round in 0..3 {
        let before = be.counters().unwrap();
        let y = chain(be, &x, 12);
        let mid = since(be, before);
        assert_eq!(
            (mid.submits, mid.host_syncs, mid.launches),
            (0, 0, 12),
            "round {round}: recording submits nothing"
        );
        let got = be.download(&y).unwrap().to_f32();
        let c = since(be, before);
        assert_eq!(
            (c.submits, c.host_syncs),
            (1, 1),
            "round {round}: one submit and one wait at the download"
        );
        if round > 0 {
            assert_eq!(
                c.allocations, 0,
                "round {round}: outputs and staging come from parked buffers"
            );
        }
        assert_eq!(got, host_chain(&v, 12), "round {round}");
    }
    // With nothing pending, synchronize neither submits nor waits.
    let before = be.counters().unwrap();
    be.synchronize().unwrap();
    assert_eq!(since(be, before), Counters::default());
}

#[test]
fn an_upload_never_reuses_a_buffer_a_pending_dispatch_reads() {
    let Some(be) = backend("an_upload_never_reuses_a_buffer_a_pending_dispatch_reads") else {
        return;
    };
    let n = 4096;
    let a: Vec<f32> = (0..n).map(|i| i as f32).collect();
    let out = be.alloc(&TensorDesc::new(DType::F32, vec![n])).unwrap();
    be.synchronize().unwrap();
    let x = f32s(be, &a);
    be.execute(&Op::Add, &[&x, &x], &out, "").unwrap();
    // x's buffer is parked while the add is still only recorded; an upload of the same size
    // lands before the add runs, so it must get another buffer.
    drop(x);
    let y = f32s(be, &vec![-1.0; n]);
    // A dispatch output may take a retiring buffer at once (dispatches run in order).
    let z = be.alloc(&TensorDesc::new(DType::F32, vec![n])).unwrap();
    be.execute(&Op::Add, &[&y, &y], &z, "").unwrap();
    let got = be.download(&out).unwrap().to_f32();
    let wrong = got.iter().zip(&a).position(|(g, v)| *g != 2.0 * v);
    assert!(
        wrong.is_none(),
        "the upload overwrote the add's input: element {wrong:?} is {}",
        got[wrong.unwrap_or(0)]
    );
    assert_eq!(be.download(&z).unwrap().to_f32(), vec![-2.0; n]);
}

#[test]
fn scratch_reused_inside_a_batch_keeps_every_op_right() {
    // Many flash-decode attentions (two dispatches and two scratch buffers each) and GEMMs in one
    // batch, every output checked: scratch parked by one op is the next op's scratch.
    let Some(be) = backend("scratch_reused_inside_a_batch_keeps_every_op_right") else {
        return;
    };
    let oracle = foveate_cpu::CpuBackend::oracle();
    let mut r = common::Rand::new(7);
    let mut cases = Vec::new();
    for i in 0..6 {
        let kv = 40 + 17 * i;
        let spec = foveate_core::AttentionSpec::new(1, 4, 2, 1, kv, 64, foveate_core::Mask::Causal);
        let op = Op::Attention(spec);
        let ins = vec![
            r.u(DType::F32, &[1, 1, 4, 64]),
            r.u(DType::F32, &[1, kv, 2, 64]),
            r.u(DType::F32, &[1, kv, 2, 64]),
        ];
        cases.push((op, ins));
        let ins = vec![r.u(DType::F32, &[3, 48]), r.u(DType::F32, &[40 + i, 48])];
        cases.push((Op::Gemm(GemmSpec::plain()), ins));
    }
    be.synchronize().unwrap();
    let before = be.counters().unwrap();
    let outs: Vec<Tensor> = cases
        .iter()
        .map(|(op, ins)| {
            let ts: Vec<Tensor> = ins.iter().map(|h| be.upload(h).unwrap()).collect();
            let refs: Vec<&Tensor> = ts.iter().collect();
            foveate_core::run(be, op, &refs, "").unwrap()
        })
        .collect();
    assert_eq!(since(be, before).submits, 0);
    for ((op, ins), out) in cases.iter().zip(&outs) {
        let got = be.download(out).unwrap();
        let ts: Vec<Tensor> = ins.iter().map(|h| oracle.upload(h).unwrap()).collect();
        let refs: Vec<&Tensor> = ts.iter().collect();
        let want = oracle
            .download(&foveate_core::run(&oracle, op, &refs, "").unwrap())
            .unwrap();
        let (rel, _) = common::errors(&got, &want);
        assert!(rel < 2e-5, "{}: rel err {rel:.2e}", op.label());
    }
}

#[test]
fn a_refused_op_is_named_and_the_batch_goes_on() {
    let Some(be) = backend("a_refused_op_is_named_and_the_batch_goes_on") else {
        return;
    };
    let x = f32s(be, &[1.0, 2.0, 3.0]);
    let y = be.alloc(x.desc()).unwrap();
    be.execute(&Op::Add, &[&x, &x], &y, "").unwrap();
    let bad = be.alloc(&TensorDesc::new(DType::F32, vec![2])).unwrap();
    let e = be
        .execute(&Op::Mul, &[&x, &x], &bad, "")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("mul: output is f32[2], expected f32[3]"),
        "{e}"
    );
    assert_eq!(be.download(&y).unwrap().to_f32(), vec![2.0, 4.0, 6.0]);
}
