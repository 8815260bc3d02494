#!/usr/bin/env python3
"""PyTorch baseline for `foveate compare`: the workloads of `foveate bench` through PyTorch,
written in the same result schema (foveate-bench/1, see benches/support/results.rs).

Workloads (random weights from configs, no download; names match foveate's rows):
  * `vit-b16`: CLIP ViT-B/16 at 224 (transformers CLIPVisionModel, all 12 layers) + a LLaVA
    projector (Linear 768->896, GELU, Linear 896->896) on the patch rows: the same computation as
    `foveate bench --model vit-b16`.
  * `qwen2-0.5b pP nN`: Qwen2-0.5B-shaped Qwen2ForCausalLM, prefill of P random tokens (LM head on
    the last position only) then N greedy decode steps with the KV cache, as
    `foveate bench --model qwen2-0.5b -p P -n N`.
  * kernels (`--kernels`): attention through scaled_dot_product_attention swept over sequence
    length, GEMMs through torch.matmul, and a GELU MLP (matmul + F.gelu + matmul), named as the
    rows of `foveate bench --roofline`.

Float32 matmuls run in full fp32 (TF32 off), as foveate's f32 kernels do; `--dtype bf16|f16` runs
the models and kernels in that dtype (rows are tagged with it, so `foveate compare` pairs them with
foveate's rows of the same dtype).

Usage:
  python eval/tools/torch_baseline.py --threads 2 -r 5 -p 256 -n 32 -o benches/results/torch-cpu.json
  python eval/tools/torch_baseline.py --device cuda --kernels -o torch-cuda.json
  python eval/tools/torch_baseline.py --device cuda --dtype bf16 -p 512 -n 128 -o torch-cuda-bf16.json
  (scripts/gpu-check.sh runs the last two on the lent GPU, beside foveate's benches)
"""

import argparse
import datetime
import json
import platform
import resource
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

SCHEMA = "foveate-bench/1"
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
# The compute dtype of this run (--dtype): torch dtype and foveate's name for it.
DT, DT_NAME = torch.float32, "f32"

# Shapes shared with benches/support/shapes.rs.
VIT_B16 = dict(hidden=768, mlp=3072, heads=12, layers=12, image=224, patch=16)
QWEN2_05B = dict(hidden=896, inter=4864, heads=14, kv_heads=2, head_dim=64, layers=24, vocab=151936, theta=1e6)
ATTN_FAMILIES = {
    # family: (q_heads, kv_heads, head_dim, causal)
    "vit-b16 none": (12, 12, 64, False),
    "qwen2-0.5b causal": (14, 2, 64, True),
}
GEMMS = [(197, 768, 768), (197, 3072, 768), (197, 768, 3072), (256, 896, 896), (256, 4864, 896), (1, 896, 4864), (1, 151936, 896)]


def stat(xs, unit):
    return {"mean": statistics.fmean(xs), "sd": statistics.stdev(xs) if len(xs) > 1 else 0.0, "n": len(xs), "unit": unit}


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, dev):
    sync(dev)
    t0 = time.perf_counter()
    out = fn()
    sync(dev)
    return (time.perf_counter() - t0) * 1e3, out


def peak_mib(dev):
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def row(workload, kind, dev, variant, metrics, config, family=None, seq_len=None):
    return {"workload": workload, "kind": kind, "backend": dev.type, "variant": variant, "dtype": DT_NAME,
            "family": family, "seq_len": seq_len, "metrics": metrics, "config": config}


def vit_b16(dev, reps, warmup):
    from transformers import CLIPVisionConfig, CLIPVisionModel
    v = VIT_B16
    cfg = CLIPVisionConfig(hidden_size=v["hidden"], intermediate_size=v["mlp"], num_attention_heads=v["heads"],
                           num_hidden_layers=v["layers"], image_size=v["image"], patch_size=v["patch"],
                           hidden_act="quick_gelu", attn_implementation="sdpa")
    model = CLIPVisionModel(cfg).to(dev, DT).eval()
    proj = torch.nn.Sequential(torch.nn.Linear(768, 896), torch.nn.GELU(), torch.nn.Linear(896, 896)).to(dev, DT).eval()
    px = (torch.rand(1, 3, v["image"], v["image"], device=dev) * 2 - 1).to(DT)

    def run():
        h = model(pixel_values=px).last_hidden_state  # all 12 layers (LLaVA feature layer -1)
        return proj(h[:, 1:])  # strategy `default`: drop CLS

    times = []
    with torch.inference_mode():
        for i in range(warmup + reps):
            ms, _ = timed(run, dev)
            if i >= warmup:
                times.append(ms)
    enc = stat(times, "ms")
    metrics = {"image_encode_ms": enc, "ttft_ms": enc, "peak_memory_mib": {"mean": peak_mib(dev), "sd": 0.0, "n": 1, "unit": "MiB"}}
    return row("vit-b16", "e2e", dev, "sdpa", metrics, {"model": "vit-b16", "reps": reps})


def qwen2(dev, reps, warmup, prompt, steps):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    q = QWEN2_05B
    cfg = Qwen2Config(hidden_size=q["hidden"], intermediate_size=q["inter"], num_attention_heads=q["heads"],
                      num_key_value_heads=q["kv_heads"], num_hidden_layers=q["layers"], vocab_size=q["vocab"],
                      rope_theta=q["theta"], tie_word_embeddings=True, max_position_embeddings=32768,
                      rms_norm_eps=1e-6, attn_implementation="sdpa")
    model = Qwen2ForCausalLM(cfg).to(dev, DT).eval()
    pre, dec = [], []
    with torch.inference_mode():
        for i in range(warmup + reps):
            ids = torch.randint(0, q["vocab"], (1, prompt), device=dev, generator=None)

            def prefill():
                out = model(input_ids=ids, use_cache=True, logits_to_keep=1)
                return out.past_key_values, int(out.logits[0, -1].argmax())

            ms_p, (pkv, tok) = timed(prefill, dev)

            def decode():
                nonlocal pkv, tok
                for _ in range(steps):
                    out = model(input_ids=torch.tensor([[tok]], device=dev), past_key_values=pkv, use_cache=True)
                    pkv = out.past_key_values
                    tok = int(out.logits[0, -1].argmax())
                return tok

            ms_d, _ = timed(decode, dev)
            if i >= warmup:
                pre.append(ms_p)
                dec.append(ms_d)
    metrics = {
        "prefill_ms": stat(pre, "ms"),
        "prefill_tokens_per_s": stat([prompt / (m / 1e3) for m in pre], "tokens/s"),
        "decode_ms": stat(dec, "ms"),
        "decode_tokens_per_s": stat([steps / (m / 1e3) for m in dec], "tokens/s"),
        "ttft_ms": stat(pre, "ms"),
        "peak_memory_mib": {"mean": peak_mib(dev), "sd": 0.0, "n": 1, "unit": "MiB"},
    }
    return row(f"qwen2-0.5b p{prompt} n{steps}", "e2e", dev, "sdpa", metrics,
               {"model": "qwen2-0.5b", "prompt": prompt, "decode": steps, "reps": reps})


MIN_MS = 200.0  # --min-ms


def bench_fn(fn, dev, min_ms=None, reps=5):
    """Mean ± sd ms per call: `reps` samples, each timing enough calls to fill `min_ms`."""
    min_ms = MIN_MS if min_ms is None else min_ms
    with torch.inference_mode():
        fn()
        ms, _ = timed(fn, dev)
        inner = max(1, int(min_ms / max(ms, 1e-3)))
        samples = []
        for _ in range(reps):
            t, _ = timed(lambda: [fn() for _ in range(inner)], dev)
            samples.append(t / inner)
    return samples


def kernels(dev, seqs):
    rows = []
    for fam, (hq, hkv, d, causal) in ATTN_FAMILIES.items():
        for s in seqs:
            q = torch.randn(1, hq, s, d, device=dev, dtype=DT)
            k = torch.randn(1, hkv, s, d, device=dev, dtype=DT)
            v = torch.randn(1, hkv, s, d, device=dev, dtype=DT)
            fn = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal, enable_gqa=hkv != hq)
            ms = bench_fn(fn, dev)
            flops = 4.0 * hq * s * s * d / (2.0 if causal else 1.0)
            rows.append(row(f"attention {fam} s{s}", "kernel", dev, "sdpa",
                            {"ms": stat(ms, "ms"), "gflops": stat([flops / (m / 1e3) / 1e9 for m in ms], "GFLOP/s")},
                            {"q_heads": hq, "kv_heads": hkv, "head_dim": d, "causal": causal},
                            family=f"attention {fam}", seq_len=s))
    for (m, n, k) in GEMMS:
        a = torch.randn(m, k, device=dev, dtype=DT)
        w = torch.randn(n, k, device=dev, dtype=DT)
        ms = bench_fn(lambda: torch.matmul(a, w.t()), dev)
        flops = 2.0 * m * n * k
        rows.append(row(f"gemm {m}x{n}x{k}", "kernel", dev, "matmul",
                        {"ms": stat(ms, "ms"), "gflops": stat([flops / (t / 1e3) / 1e9 for t in ms], "GFLOP/s")},
                        {"m": m, "n": n, "k": k}))
    # GELU MLP of ViT-B/16: 2·M·(D·H + H·O).
    m, dd, h = 197, 768, 3072
    x = torch.randn(m, dd, device=dev, dtype=DT)
    w1, b1 = torch.randn(h, dd, device=dev, dtype=DT) / dd**0.5, torch.randn(h, device=dev, dtype=DT)
    w2, b2 = torch.randn(dd, h, device=dev, dtype=DT) / h**0.5, torch.randn(dd, device=dev, dtype=DT)
    ms = bench_fn(lambda: F.linear(F.gelu(F.linear(x, w1, b1)), w2, b2), dev)
    flops = 2.0 * m * (dd * h + h * dd)
    rows.append(row(f"mlp vit-b16 m{m}", "kernel", dev, "matmul+gelu",
                    {"ms": stat(ms, "ms"), "gflops": stat([flops / (t / 1e3) / 1e9 for t in ms], "GFLOP/s")},
                    {"m": m, "d": dd, "h": h}))
    return rows


def main():
    global DT, DT_NAME, MIN_MS
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("-p", "--prompt", type=int, default=256)
    ap.add_argument("-n", "--decode", type=int, default=32)
    ap.add_argument("--only", choices=["vit-b16", "qwen2-0.5b"], action="append",
                    help="run only these e2e workloads (repeatable)")
    ap.add_argument("--kernels", action="store_true", help="also time attention / GEMM / MLP kernels")
    ap.add_argument("--no-e2e", action="store_true")
    ap.add_argument("--seqs", default="64,128,197,256,512,1024")
    ap.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="compute dtype of models and kernels")
    ap.add_argument("--min-ms", type=float, default=MIN_MS, help="kernel timing: each of the -r samples runs calls for at least this long")
    ap.add_argument("-o", "--out", help="write JSON here (default: stdout)")
    a = ap.parse_args()
    DT, DT_NAME, MIN_MS = DTYPES[a.dtype], a.dtype, a.min_ms
    # Full fp32 matmuls (PyTorch's default for matmul; cuDNN's default allows TF32).
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    dev = torch.device(a.device)
    rows = []
    if not a.no_e2e:
        todo = a.only or ["vit-b16", "qwen2-0.5b"]
        if "vit-b16" in todo:
            rows.append(vit_b16(dev, a.reps, a.warmup))
        if "qwen2-0.5b" in todo:
            rows.append(qwen2(dev, a.reps, a.warmup, a.prompt, a.decode))
    if a.kernels:
        rows += kernels(dev, [int(s) for s in a.seqs.split(",")])
    for r in rows:
        r["config"]["threads"] = a.threads
        r["config"]["tf32"] = False

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
    device = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU ({a.threads} threads) {cpu}"
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    except Exception:
        commit = None
    try:  # only the e2e workloads need transformers
        import transformers
        version = f"torch {torch.__version__}, transformers {transformers.__version__}"
    except ImportError:
        version = f"torch {torch.__version__}"
    out = {
        "schema": SCHEMA, "tool": "pytorch", "version": version,
        "commit": commit, "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": device, "host": {"cpu": cpu, "cores": len(__import__("os").sched_getaffinity(0)), "os": sys.platform},
        "rows": rows,
    }
    text = json.dumps(out, indent=1)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
        for r in rows:
            ms = {k: f"{v['mean']:.2f} {v['unit']}" for k, v in r["metrics"].items()}
            print(r["workload"], ms, file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
