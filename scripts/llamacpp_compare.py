#!/usr/bin/env python3
"""Helpers of scripts/llamacpp-compare.sh (docs/BENCHMARKS-llamacpp.md).

  gguf CONFIG OUT.gguf --type f32|f16|bf16 [--seed N]
      A GGUF file of random weights of the decoder in CONFIG (the HF config.json that
      `foveate bench --model NAME --print-config` writes: a Qwen2 or Llama decoder, tied
      embeddings or not) and a minimal byte-level BPE tokenizer padded to the vocabulary, enough
      for llama.cpp to load the model (llama-bench feeds random token ids). 2-D weights are in
      --type, norms and biases in F32 (as llama.cpp's converter writes them). Needs the `gguf`
      package from PyPI and numpy.
  concat OUT.json IN.json...
      One llama-bench JSON array of the records of several (`-o json` output).
  pool OUT.json IN.json...
      One foveate result file of several runs of the same configurations: rows with the same
      workload, backend, variant and dtype become one, each metric the pooled mean ± sample sd.
"""

import argparse
import json
import math
import sys


def text_config(cfg):
    t = cfg.get("text_config", cfg)
    need = ["model_type", "hidden_size", "intermediate_size", "num_attention_heads",
            "num_hidden_layers", "vocab_size"]
    missing = [k for k in need if k not in t]
    if missing:
        sys.exit(f"error: the config has no text decoder field(s) {', '.join(missing)}")
    return t


def byte_tokens():
    """The 256 printable stand-ins of byte-level BPE: printable Latin-1 bytes are themselves, the
    others are mapped in order onto code points from 256 up."""
    keep = set(range(ord("!"), ord("~") + 1)) | set(range(0xA1, 0xAD)) | set(range(0xAE, 0x100))
    out, extra = [], 0
    for b in range(256):
        if b in keep:
            out.append(chr(b))
        else:
            out.append(chr(256 + extra))
            extra += 1
    return out


def tokenizer(vocab):
    if vocab < 258:
        sys.exit(f"error: vocab_size {vocab} is below the 258 tokens of the stand-in tokenizer")
    tokens = byte_tokens()
    tokens += [f"tok{i}" for i in range(len(tokens), vocab - 1)]
    tokens.append("<|endoftext|>")
    types = [1] * (vocab - 1) + [3]  # normal, ..., control
    merges = ["\u0120 t", "t o", "to k"]
    return tokens, types, merges


def write_gguf(a):
    import numpy as np
    import gguf

    cfg = text_config(json.load(open(a.config)))
    arch = cfg["model_type"]
    if arch not in ("qwen2", "llama"):
        sys.exit(f"error: model_type `{arch}`: only qwen2 and llama decoders are written")
    hidden, inter = cfg["hidden_size"], cfg["intermediate_size"]
    heads, layers, vocab = cfg["num_attention_heads"], cfg["num_hidden_layers"], cfg["vocab_size"]
    kv = cfg.get("num_key_value_heads", heads)
    hd = cfg.get("head_dim", hidden // heads)
    tied = cfg.get("tie_word_embeddings", False)
    bias = arch == "qwen2"
    qtype = {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
             "bf16": gguf.GGMLQuantizationType.BF16}[a.type]
    ftype = {"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
             "bf16": gguf.LlamaFileType.MOSTLY_BF16}[a.type]

    # (name, shape as numpy rows x columns, kind): "w" a 2-D weight, "b" a bias, "n" a norm.
    plan = [("token_embd.weight", (vocab, hidden), "w")]
    for i in range(layers):
        p = f"blk.{i}."
        plan += [(p + "attn_norm.weight", (hidden,), "n"),
                 (p + "attn_q.weight", (heads * hd, hidden), "w"),
                 (p + "attn_k.weight", (kv * hd, hidden), "w"),
                 (p + "attn_v.weight", (kv * hd, hidden), "w")]
        if bias:
            plan += [(p + "attn_q.bias", (heads * hd,), "b"), (p + "attn_k.bias", (kv * hd,), "b"),
                     (p + "attn_v.bias", (kv * hd,), "b")]
        plan += [(p + "attn_output.weight", (hidden, heads * hd), "w"),
                 (p + "ffn_norm.weight", (hidden,), "n"),
                 (p + "ffn_gate.weight", (inter, hidden), "w"),
                 (p + "ffn_up.weight", (inter, hidden), "w"),
                 (p + "ffn_down.weight", (hidden, inter), "w")]
    plan.append(("output_norm.weight", (hidden,), "n"))
    if not tied:
        plan.append(("output.weight", (vocab, hidden), "w"))

    w = gguf.GGUFWriter(a.out, arch)
    w.add_name(a.name or f"random {arch}")
    w.add_file_type(ftype)
    w.add_context_length(cfg.get("max_position_embeddings", 4096))
    w.add_embedding_length(hidden)
    w.add_block_count(layers)
    w.add_feed_forward_length(inter)
    w.add_head_count(heads)
    w.add_head_count_kv(kv)
    w.add_key_length(hd)
    w.add_value_length(hd)
    w.add_rope_freq_base(float(cfg.get("rope_theta", 10000.0)))
    w.add_layer_norm_rms_eps(float(cfg.get("rms_norm_eps", 1e-6)))
    tokens, types, merges = tokenizer(vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2" if arch == "qwen2" else "default")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(vocab - 1)
    w.add_eos_token_id(vocab - 1)

    def stored(kind):
        return a.type if kind == "w" else "f32"

    nbytes = {"f32": 4, "f16": 2, "bf16": 2}
    npdt = {"f32": np.float32, "f16": np.float16, "bf16": np.uint16}
    for name, shape, kind in plan:
        t = stored(kind)
        w.add_tensor_info(name, shape, np.dtype(npdt[t]), math.prod(shape) * nbytes[t],
                          raw_dtype=qtype if t == "bf16" else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(a.seed)
    for name, shape, kind in plan:
        if kind == "n":
            x = np.ones(shape, dtype=np.float32)
        else:
            x = rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)
        t = stored(kind)
        if t == "f16":
            x = x.astype(np.float16)
        elif t == "bf16":  # round to nearest even on the upper 16 bits
            u = x.view(np.uint32)
            x = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
        w.write_tensor_data(x)
    w.close()
    params = sum(math.prod(s) for _, s, _ in plan)
    print(f"wrote {a.out}: {arch}, {layers} layers, {params / 1e6:.1f} M parameters, {a.type}")


def concat(a):
    out = []
    for p in a.inputs:
        try:
            v = json.load(open(p))
        except (OSError, ValueError) as e:
            sys.exit(f"error: {p}: {e}")
        if not isinstance(v, list):
            sys.exit(f"error: {p}: not a llama-bench JSON array")
        out += v
    json.dump(out, open(a.out, "w"), indent=1)
    print(f"wrote {a.out}: {len(out)} llama-bench records")


def pool_metric(ms):
    n = sum(m.get("n", 1) for m in ms)
    mean = sum(m["mean"] * m.get("n", 1) for m in ms) / n
    ss = sum((m.get("n", 1) - 1) * m.get("sd", 0.0) ** 2 + m.get("n", 1) * (m["mean"] - mean) ** 2
             for m in ms)
    return {"mean": mean, "sd": math.sqrt(ss / (n - 1)) if n > 1 else 0.0, "n": n,
            "unit": ms[0]["unit"]}


def pool(a):
    files = []
    for p in a.inputs:
        try:
            files.append(json.load(open(p)))
        except (OSError, ValueError) as e:
            sys.exit(f"error: {p}: {e}")
    out = dict(files[0])
    rows, order = {}, []
    for f in files:
        for r in f["rows"]:
            k = (r["workload"], r["backend"], r.get("variant", ""), r["dtype"])
            if k not in rows:
                rows[k] = []
                order.append(k)
            rows[k].append(r)
    out["rows"] = []
    for k in order:
        rs = rows[k]
        r = dict(rs[0])
        names = [m for m in rs[0]["metrics"] if all(m in x["metrics"] for x in rs)]
        r["metrics"] = {m: pool_metric([x["metrics"][m] for x in rs]) for m in names}
        r["config"] = dict(r.get("config") or {}, runs=len(rs))
        out["rows"].append(r)
    out["host"] = dict(out.get("host") or {},
                       loadavg_per_run=[(f.get("host") or {}).get("loadavg") for f in files])
    json.dump(out, open(a.out, "w"), indent=1)
    print(f"wrote {a.out}: {len(out['rows'])} rows pooled over {len(files)} files")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("gguf")
    g.add_argument("config")
    g.add_argument("out")
    g.add_argument("--type", choices=["f32", "f16", "bf16"], default="f32")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--name")
    g.set_defaults(fn=write_gguf)
    for name, fn in [("concat", concat), ("pool", pool)]:
        s = sub.add_parser(name)
        s.add_argument("out")
        s.add_argument("inputs", nargs="+")
        s.set_defaults(fn=fn)
    a = ap.parse_args()
    a.fn(a)


if __name__ == "__main__":
    main()
