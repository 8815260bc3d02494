//! Shared pieces of the foveate benchmarks, used by the criterion benches in this directory and by
//! `foveate bench` / `foveate compare`:
//!
//! * [`shapes`]: the model shapes benchmarked (ViT-B/16, ViT-L/14-336, SigLIP-so400m, Qwen2-0.5B,
//!   Llama-7B) and the builtin model names made of them.
//! * [`flops`]: the FLOP and byte formulas every throughput figure is computed from.
//! * [`devices`]: the backends available here (cpu always, wgpu when an adapter opens), each
//!   skipped one with a printed reason.
//! * [`values`]: deterministic random inputs and weights (no RNG dependency).
//! * [`e2e`]: a LLaVA-shaped model on the graph executor (random weights of a builtin shape, or a
//!   checkpoint directory) with timed image encode, prefill and decode.
//! * [`roofline`]: the measured peak GEMM FLOP/s and copy GB/s, and every kernel family as a
//!   fraction of them (`foveate bench --roofline`).
//! * [`criterion`]: criterion's estimates of these benches as result-file rows
//!   (`foveate-bench-collect`).
//! * [`stats`], [`results`]: mean ± sd and the result-file schema shared with the PyTorch baseline.

#[path = "support/criterion.rs"]
pub mod criterion;
#[path = "support/devices.rs"]
pub mod devices;
#[path = "support/e2e.rs"]
pub mod e2e;
#[path = "support/flops.rs"]
pub mod flops;
#[path = "support/results.rs"]
pub mod results;
#[path = "support/roofline.rs"]
pub mod roofline;
#[path = "support/shapes.rs"]
pub mod shapes;
#[path = "support/stats.rs"]
pub mod stats;
#[path = "support/values.rs"]
pub mod values;

/// `FOVEATE_BENCH_QUICK=1`: shorter criterion timings and fewer shapes.
pub fn quick() -> bool {
    std::env::var("FOVEATE_BENCH_QUICK")
        .map(|v| !v.is_empty() && v != "0")
        .unwrap_or(false)
}
