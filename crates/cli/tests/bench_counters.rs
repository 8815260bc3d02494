//! Backend work counters in `foveate bench -o json`, for Qwen2-0.5B-shaped decode steps (random
//! weights, 2 of the 24 layers, a 32000-token vocabulary: lavapipe binds at most 128 MiB per
//! buffer and the real 151936 x 896 f32 embedding is 519 MiB): on wgpu a warm step is one submit
//! (at the token download), one host wait and no buffer allocation; on the CPU the counters show
//! the launches.

use std::process::Command;

/// The per-step counters of `foveate bench --model qwen2-0.5b --layers 2 --vocab 32000` on `backend`, or the
/// error output when the run failed.
fn decode_counters(backend: &str, env: &[(&str, &str)]) -> Result<serde_json::Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_foveate"))
        .args([
            "bench",
            "--model",
            "qwen2-0.5b",
            "--layers",
            "2",
            "--vocab",
            "32000",
            "--backend",
            backend,
            "--no-image",
        ])
        .args([
            "-p", "4", "-n", "3", "-r", "1", "--warmup", "1", "-o", "json",
        ])
        .envs(env.iter().copied())
        .output()
        .expect("cannot run the foveate binary");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout is not JSON: {e}"))?;
    Ok(v["rows"][0]["metrics"].clone())
}

fn per_step(m: &serde_json::Value, name: &str) -> f64 {
    assert_eq!(m[name]["unit"], "per step", "{name} in {m}");
    m[name]["mean"]
        .as_f64()
        .unwrap_or_else(|| panic!("no {name} in {m}"))
}

#[test]
fn a_warm_wgpu_decode_step_is_one_submit_and_no_allocation() {
    let m = match decode_counters("wgpu", &[]) {
        Ok(m) => m,
        Err(e) if e.contains("backend `wgpu` is unavailable") || e.contains("no Vulkan") => {
            return foveate_testkit::skip_or_fail(
                "a_warm_wgpu_decode_step_is_one_submit_and_no_allocation",
                "FOVEATE_REQUIRE_WGPU",
                e.trim(),
            );
        }
        Err(e) => panic!("foveate bench failed: {e}"),
    };
    assert_eq!(per_step(&m, "decode_submits_per_step"), 1.0, "{m}");
    assert_eq!(per_step(&m, "decode_allocations_per_step"), 0.0, "{m}");
    assert_eq!(per_step(&m, "decode_host_syncs_per_step"), 1.0, "{m}");
    // Per layer: 2 norms, 7 GEMMs, 2 RoPEs, 2 KV appends, 2 attention dispatches, SwiGLU.
    assert!(
        per_step(&m, "decode_launches_per_step") >= 2.0 * 16.0,
        "{m}"
    );
}

#[test]
fn cpu_bench_counts_launches() {
    let m = decode_counters("cpu", &[]).unwrap_or_else(|e| panic!("foveate bench failed: {e}"));
    assert!(
        per_step(&m, "decode_launches_per_step") >= 2.0 * 15.0,
        "{m}"
    );
    assert_eq!(per_step(&m, "decode_submits_per_step"), 0.0, "{m}");
}
