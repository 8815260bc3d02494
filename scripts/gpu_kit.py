#!/usr/bin/env python3
"""The checks and the summary of scripts/gpu-check.sh (the GPU session kit, issue #17).

Python standard library only: it runs on the lent GPU machine (python3 there is the one with
PyTorch) and in CI (no numpy, no torch). Each check reads what one step of gpu-check.sh left in its
folder (`NAME.json` stdout, `NAME.err` stderr, `NAME.rc` exit code of each command) and writes the
step's verdict, a JSON object:

    {"step", "kind", "status": "pass"|"fail"|"skip"|"timeout", "reason", "details", ...}

gpu-check.sh adds the timing fields (seconds, share_s, cap_s, rc) with `close`. `summary` reads
every verdict and the bench files and prints the one table the kit ends with; `collect` copies a
finished run into benches/results/.
"""

import argparse
import json
import re
import struct
import subprocess
import sys
import time
import zlib
from array import array
from pathlib import Path

# The summary half, and the JSON helpers both halves use.
from gpu_kit_summary import add_summary_args, add_summary_parsers, load_json, summary, write_json



# ---------------------------------------------------------------------------------------------
# small helpers


def read_text(path, tail=None):
    try:
        s = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    return s[-tail:] if tail else s


def read_rc(path):
    try:
        return int(Path(path).read_text().strip())
    except (OSError, ValueError):
        return None


def last_error_line(err_path):
    """The last `error: ...` line of a stderr file (foveate prints exactly one), else its last line."""
    lines = [l for l in read_text(err_path).splitlines() if l.strip()]
    errs = [l for l in lines if l.startswith("error:")]
    return (errs or lines or [""])[-1][:400]


def verdict(args, status, reason="", **details):
    v = {"step": args.step, "kind": args.kind, "status": status, "reason": reason, "details": details}
    write_json(args.verdict, v)
    print(f"gpu-check: {args.step}: {status}{': ' + reason if reason else ''}", file=sys.stderr)
    return v


def commands(d):
    """`(name, stdout path, rc, stderr path)` of every command a step ran in folder `d`, by name
    (gpu-check.sh's `run_cmd NAME` writes NAME.out, NAME.err and NAME.rc)."""
    out = []
    for rc_file in sorted(Path(d).glob("*.rc")):
        stem = rc_file.with_suffix("")
        out.append((stem.name, Path(f"{stem}.out"), read_rc(rc_file), Path(f"{stem}.err")))
    return out


def backend_probe(info, name):
    for b in (info or {}).get("backends", []):
        if b.get("name") == name:
            return b
    return None


def is_cpu_adapter(device):
    d = (device or "").lower()
    return any(s in d for s in ("llvmpipe", "lavapipe", "swiftshader", "(vulkan, cpu)"))


# ---------------------------------------------------------------------------------------------
# step checks


def check_record(a):
    verdict(a, a.status, a.reason)


def check_info(a):
    info = load_json(Path(a.dir) / "info.out")
    if info is None:
        return verdict(a, "fail", f"`foveate info --json` gave no JSON ({last_error_line(Path(a.dir) / 'info.err')})")
    backends = {b["name"]: {"available": b.get("available"), "device_or_reason": b.get("device_or_reason")} for b in info.get("backends", [])}
    extra = {k: v for k, v in info.items() if k not in ("backends",)}
    smi = read_text(Path(a.dir) / "nvidia-smi.csv").strip()
    load = read_text(Path(a.dir) / "loadavg.txt").strip()
    want = backend_probe(info, a.backend)
    details = dict(backends=backends, info=extra, nvidia_smi=smi or None, loadavg=load or None)
    if want is None or not want.get("available"):
        why = want.get("device_or_reason") if want else "not listed"
        return verdict(a, "fail", f"backend {a.backend} is unavailable: {why}", **details)
    return verdict(a, "pass", f"{a.backend}: {want.get('device_or_reason')}", **details)


def merge_selftests(d):
    """Sums every selftest JSON in folder `d`; a command without a report counts as one failure."""
    cases = failed = skipped = 0
    failures, crashed, devices, per_op = [], [], set(), []
    for name, out, rc, err in commands(d):
        if not name.startswith("selftest"):
            continue
        j = load_json(out)
        if not isinstance(j, dict) or "cases" not in j:
            crashed.append(f"{name}: exit {rc}, no report ({last_error_line(err)})")
            continue
        devices.add(j.get("device", "?"))
        cases += j.get("cases", 0)
        failed += j.get("failed", 0)
        skipped += j.get("skipped", 0)
        per_op += j.get("per_op", [])
        for r in j.get("results", []):
            if not r.get("pass"):
                failures.append({k: r.get(k) for k in ("op", "kind", "variant", "dtype", "shape", "rel_err", "max_abs_err", "error")})
        if rc not in (0, 1) or (rc == 1 and j.get("failed", 0) == 0):
            crashed.append(f"{name}: exit {rc} ({last_error_line(err)})")
    return dict(cases=cases, failed=failed, skipped=skipped, crashed=crashed, failures=failures[:40],
                failures_total=len(failures), devices=sorted(devices), per_op=per_op)


def check_selftest(a):
    m = merge_selftests(a.dir)
    note = f"; {a.note}" if a.note else ""
    if m["cases"] == 0 and not m["crashed"]:
        return verdict(a, "fail", "no selftest report was written" + note, **m)
    if a.gpu_adapter and any(is_cpu_adapter(x) for x in m["devices"]):
        return verdict(a, "fail", f"ran on a CPU rasteriser ({', '.join(m['devices'])}), not the GPU: Vulkan loaders missing?", **m)
    summary = f"{m['cases']} runs, {m['failed']} failed, {m['skipped']} skipped on {', '.join(m['devices']) or '?'}"
    if m["crashed"]:
        return verdict(a, "fail", f"{summary}; {len(m['crashed'])} process(es) died: {m['crashed'][0]}" + note, **m)
    if m["failed"]:
        first = m["failures"][0]
        return verdict(a, "fail", f"{summary}; first: {first['op']} {first['variant']} {first['dtype']} {first['shape']}" + note, **m)
    return verdict(a, "pass", summary + note, **m)


def check_fault(a):
    """The planted out-of-bounds launch under FOVEATE_CUDA_SYNC=1: the run must fail, every failing
    case must be of one op and name it, and a case after the first failure must still pass."""
    cmds = [c for c in commands(a.dir) if c[0] == "fault"]
    if not cmds:
        return verdict(a, "fail", "the planted-fault command did not run")
    _, out, rc, err = cmds[0]
    j = load_json(out)
    if not isinstance(j, dict) or "results" not in j:
        return verdict(a, "fail", f"exit {rc}, no report: the fault was not contained ({last_error_line(err)})")
    res = j["results"]
    bad = [i for i, r in enumerate(res) if not r.get("pass")]
    details = dict(rc=rc, cases=len(res), failing=[res[i] for i in bad][:10])
    if rc == 0 or not bad:
        return verdict(a, "fail", "the planted fault was not detected (exit 0 or no failing case)", **details)
    ops = {res[i].get("op") for i in bad}
    named = all(str(res[i].get("op", "")).split("[")[0] in str(res[i].get("error") or "") for i in bad)
    after = [r for r in res[bad[0] + 1:] if r.get("pass")]
    details.update(ops=sorted(map(str, ops)), passing_after_fault=len(after))
    if len(ops) != 1:
        return verdict(a, "fail", f"the fault spread to {len(ops)} ops: {sorted(map(str, ops))}", **details)
    if not named:
        return verdict(a, "fail", "the error does not name the op that faulted", **details)
    if not after:
        return verdict(a, "fail", "no case passed after the fault: the context stayed broken", **details)
    return verdict(a, "pass", f"reported against {ops.pop()}; {len(after)} later cases passed", **details)


def check_sanitizer(a):
    log = read_text(Path(a.dir) / f"{a.tool}.log")
    rc = read_rc(Path(a.dir) / "selftest.rc")
    m = re.findall(r"ERROR SUMMARY:\s*(\d+) error", log)
    hazards = re.findall(r"RACECHECK SUMMARY:\s*(\d+) hazard", log)
    st = merge_selftests(a.dir)
    details = dict(rc=rc, errors=int(m[-1]) if m else None, hazards=int(hazards[-1]) if hazards else None,
                   cases=st["cases"], failed=st["failed"], log_tail=log[-3000:])
    if "Device not supported" in log:
        # Seen on the gVisor runtime (the device tool's KINDS.md); Firecracker machines support it.
        return verdict(a, "skip", "compute-sanitizer: \"Device not supported\" on this machine's runtime", **details)
    if not m:
        return verdict(a, "fail", f"compute-sanitizer printed no ERROR SUMMARY (exit {rc})", **details)
    n = int(m[-1]) + (int(hazards[-1]) if hazards else 0)
    if n or rc == a.error_exitcode:
        return verdict(a, "fail", f"{a.tool}: {n} errors/hazards over {st['cases']} runs", **details)
    if st["failed"] or st["crashed"] or st["cases"] == 0:
        return verdict(a, "fail", f"{a.tool}: 0 errors, but the selftest under it failed ({st['failed']} failed, exit {rc})", **details)
    return verdict(a, "pass", f"{a.tool}: 0 errors over {st['cases']} runs", **details)


def check_easyvqa(a):
    d = Path(a.dir)
    res = load_json(d / "eval.out")
    if not isinstance(res, dict) or "score" not in res:
        return verdict(a, "fail", f"eval gave no results ({last_error_line(d / 'eval.err')})")
    torch = {}
    for line in read_text(a.torch).splitlines():
        if line.strip():
            t = json.loads(line)
            torch[t["question_index"]] = t["prediction"]
    ours = [json.loads(l) for l in read_text(d / "run" / "predictions.jsonl").splitlines() if l.strip()]
    same = sum(1 for p in ours if torch.get(p["question_id"]) == p["answer"])
    n = len(ours)
    agree = same / n if n else 0.0
    details = dict(score=res["score"], questions=res.get("questions"), answered=n, same_as_pytorch=same,
                   agreement=agree, questions_per_s=res.get("questions_per_s"), backend=res.get("backend"),
                   dtype=res.get("dtype"))
    summary = f"{res['score']:.2f}% on {n} questions, {same}/{n} answers as PyTorch's, {res.get('questions_per_s', 0):.0f} q/s"
    if n != a.limit:
        return verdict(a, "fail", f"{n} answers for --limit {a.limit}", **details)
    if agree < a.min_agreement:
        return verdict(a, "fail", f"{summary}: agreement {agree:.4f} < {a.min_agreement}", **details)
    return verdict(a, "pass", summary, **details)


def read_safetensors(path):
    """name -> (dtype, shape, data) of a safetensors file: an array for F32 and I64, bytes for U8."""
    b = Path(path).read_bytes()
    (n,) = struct.unpack("<Q", b[:8])
    header = json.loads(b[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = b[8 + n + lo:8 + n + hi]
        code = {"F32": "f", "I64": "q"}.get(t["dtype"])
        if code:
            data = array(code)
            data.frombytes(raw)
        elif t["dtype"] == "U8":
            data = raw
        else:
            continue
        out[name] = (t["dtype"], t["shape"], data)
    return out


def write_png(path, rgb, height, width):
    """An 8-bit RGB PNG of `rgb` (row-major H x W x 3 bytes), no filtering."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + rgb[y * width * 3:(y + 1) * width * 3] for y in range(height))
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(rows, 6)) + chunk(b"IEND", b"")
    Path(path).write_bytes(png)


def rel_err(ours, ref):
    """max |ours - ref| / max |ref|, the measure of crates/graph/tests/hf_parity.rs."""
    if len(ours) != len(ref):
        return float("inf")
    scale = max(max((abs(x) for x in ref), default=0.0), 1e-12)
    return max((abs(x - y) for x, y in zip(ours, ref)), default=0.0) / scale


def parity_image(d, fx, g, meta, gold, repo):
    """The image a golden was made from. Our JPEG decoder is not Pillow's (its own tests cover it),
    so a JPEG golden is fed Pillow's decode, losslessly as PNG: the logits then compare the model on
    the device, not two decoders."""
    if meta["image"].lower().endswith(".png") or "decoded_rgb" not in gold:
        return repo / meta["image"]
    _, (h, w, _c), rgb = gold["decoded_rgb"]
    path = d / f"{fx.name}-{g.stem}-pillow.png"
    write_png(path, rgb, h, w)
    return path


def parity_run(a, d, be, att, g, meta, gold, image, failures):
    """One `foveate run` against one golden: prompt ids, greedy tokens, prefill logits."""
    fx = g.parent
    tag = f"{be}/{att} {fx.name}/{g.stem}"
    want_ids, want_tok, want_logits = list(gold["input_ids"][2]), list(gold["greedy_tokens"][2]), gold["logits"][2]
    dump = d / f"logits-{be}-{att}-{fx.name}-{g.stem}.safetensors"
    cmd = [a.bin, "run", "--model", str(fx / "model"), "--image", str(image), "--prompt", meta["prompt"],
           "--max-new-tokens", str(len(want_tok)), "--json", "--dump-logits", str(dump),
           "--backend", be, "--attention", att, "--dtype", "f32"]
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=a.repo)
    r = dict(run=tag, rc=p.returncode, seconds=round(time.time() - t0, 2))
    if p.returncode != 0:
        err = [l for l in p.stderr.splitlines() if l.strip()]
        failures.append(f"{tag}: exit {p.returncode}: {(err or [''])[-1][:300]}")
        return r
    try:
        out = json.loads(p.stdout)
        logits = read_safetensors(dump)["logits"][2]
    except (ValueError, KeyError, OSError) as e:
        failures.append(f"{tag}: unreadable output ({e})")
        return r
    dump.unlink(missing_ok=True)
    el = rel_err(logits, want_logits)
    r.update(prompt_ids_equal=out["prompt_tokens"] == want_ids, tokens_equal=out["tokens"] == want_tok,
             logits_rel_err=el, logits_bound=a.logits_bound)
    if out["prompt_tokens"] != want_ids:
        failures.append(f"{tag}: prompt ids differ ({len(out['prompt_tokens'])} vs HF {len(want_ids)})")
    if out["tokens"] != want_tok:
        failures.append(f"{tag}: greedy tokens {out['tokens']} != HF {want_tok}")
    if not el <= a.logits_bound:
        failures.append(f"{tag}: prefill logits rel err {el:.2e} > {a.logits_bound:.0e}")
    return r


def check_parity(a):
    """HF parity through the binary: `foveate run --json --dump-logits` on the golden fixtures
    (prompt ids, the 12 greedy tokens, prefill logits rel err) per backend and attention variant,
    with the bounds of crates/graph/tests/hf_parity.rs."""
    repo, d = Path(a.repo), Path(a.dir)
    goldens = [g for fx in sorted(p.parent.parent for p in (repo / "eval/fixtures").glob("*/model/config.json"))
               for g in sorted(fx.glob("golden_*.safetensors"))]
    runs, failures, skipped = [], [], []
    for spec in a.backend:
        be, _, rest = spec.partition(":")
        atts, _, lim = rest.partition("@")
        if be in a.optional and not a.available(be):
            skipped.append(f"{be}: unavailable here")
            continue
        for g in goldens[:int(lim) if lim else None]:
            meta, gold = load_json(g.with_suffix(".json")), read_safetensors(g)
            image = parity_image(d, g.parent, g, meta, gold, repo)
            for att in (atts or "naive").split(","):
                runs.append(parity_run(a, d, be, att, g, meta, gold, image, failures))
    worst = max((r.get("logits_rel_err", 0.0) for r in runs), default=0.0)
    details = dict(runs=runs, failures=failures, skipped=skipped, worst_logits_rel_err=worst)
    if not runs:
        return verdict(a, "fail", "no parity run (no fixtures under eval/fixtures?)", **details)
    summary = f"{len(runs)} runs over {len(goldens)} goldens, ids and tokens as HF, worst logits rel err {worst:.1e}"
    if skipped:
        summary += f"; skipped {'; '.join(skipped)}"
    if failures:
        return verdict(a, "fail", f"{len(failures)} differences from HF in {len(runs)} runs; first: {failures[0]}", **details)
    return verdict(a, "pass", summary, **details)


def bench_files(d):
    out = []
    for p in sorted(Path(d).glob("*.json")):
        j = load_json(p)
        if isinstance(j, dict) and j.get("schema", "").startswith("foveate-bench/"):
            out.append((p, j))
    return out


def check_bench(a):
    """A bench step passes when every command exited 0 and wrote a result file with rows (and,
    for `--need-fraction`, kernel rows with their fraction of peak)."""
    d = Path(a.dir)
    bad = [f"{n}: exit {rc} ({last_error_line(e)})" for n, _, rc, e in commands(d) if rc != 0]
    files = bench_files(d)
    rows = sum(len(j.get("rows", [])) for _, j in files)
    details = dict(files=[p.name for p, _ in files], rows=rows, devices=sorted({j.get("device", "") for _, j in files}))
    if bad:
        return verdict(a, "fail", f"{len(bad)} command(s) failed: {bad[0]}", **details)
    if not files or rows == 0:
        return verdict(a, "fail", "no result rows were written", **details)
    if a.gpu_adapter and any(is_cpu_adapter(x) for x in details["devices"]):
        return verdict(a, "fail", f"ran on a CPU rasteriser ({details['devices']}), not the GPU", **details)
    if a.need_fraction:
        fr = [r for _, j in files for r in j["rows"] if "fraction_of_peak" in r.get("metrics", {})]
        peaks = {r["workload"]: r["metrics"] for _, j in files for r in j["rows"] if r.get("kind") == "peak"}
        details.update(kernels_with_fraction=len(fr), peaks={k: {m: v["mean"] for m, v in ms.items()} for k, ms in peaks.items()})
        if not fr or not peaks:
            return verdict(a, "fail", "no peak rows or no kernel with a fraction of peak", **details)
    return verdict(a, "pass", f"{rows} rows in {len(files)} file(s) on {', '.join(details['devices'])}", **details)


COUNTER_NAMES = ("launches", "submits", "host_syncs", "allocations")


def find_counters(row):
    """Per-decode-step counters of one e2e row, wherever `foveate bench -o json` puts them: a metric
    named like `decode_host_syncs_per_step`, or a `counters` object in `metrics` or `config`
    (optionally under a `decode_step`/`per_decode_step` key)."""
    found = {}
    for name, m in row.get("metrics", {}).items():
        for c in COUNTER_NAMES:
            if c in name and "decode" in name:
                found[c] = m.get("mean") if isinstance(m, dict) else m
    for where in (row.get("metrics", {}), row.get("config") or {}):
        obj = where.get("counters") if isinstance(where, dict) else None
        if isinstance(obj, dict):
            for key in ("per_decode_step", "decode_step", "decode_per_step", "decode"):
                if isinstance(obj.get(key), dict):
                    obj = obj[key]
                    break
            for c in COUNTER_NAMES:
                v = obj.get(c)
                if isinstance(v, dict):
                    v = v.get("mean")
                if isinstance(v, (int, float)):
                    found.setdefault(c, v)
    return found


def check_counters(a):
    want = {"cuda": {"host_syncs": 1, "allocations": 0}, "wgpu": {"submits": 1, "allocations": 0}}
    rows = [r for d in a.dir for _, j in bench_files(d) for r in j.get("rows", []) if r.get("kind") == "e2e"]
    seen, bad = [], []
    for r in rows:
        if r.get("backend") not in want or (r.get("config") or {}).get("decode", 1) == 0:
            continue
        c = find_counters(r)
        if not c:
            continue
        seen.append(dict(workload=r["workload"], backend=r["backend"], dtype=r.get("dtype"), counters=c))
        for k, v in want[r["backend"]].items():
            if k in c and c[k] != v:
                bad.append(f"{r['backend']} {r['workload']} {r.get('dtype')}: {k} per decode step {c[k]} (want {v})")
            elif k not in c:
                bad.append(f"{r['backend']} {r['workload']}: no `{k}` counter")
    if not rows:
        return verdict(a, "skip", "no e2e bench rows (the e2e step did not run)")
    if not seen:
        return verdict(a, "skip", "needs per-decode-step counters (launches, submits, host_syncs, allocations) in `foveate bench -o json`")
    if bad:
        return verdict(a, "fail", f"{len(bad)} counter(s) off: {bad[0]}", rows=seen, problems=bad)
    return verdict(a, "pass", "; ".join(f"{s['backend']} {s['workload']} {s['dtype']}: {s['counters']}" for s in seen)[:300], rows=seen)


def check_cache(a):
    before = set(read_text(a.before).split())
    now = {str(p.relative_to(a.cache)) for p in Path(a.cache).rglob("*") if p.is_file()} if Path(a.cache).is_dir() else set()
    new = sorted(now - before)
    details = dict(files_before=len(before), files_now=len(now), new=new[:50])
    if new:
        return verdict(a, "fail", f"{len(new)} cache file(s) written on the device: kernels compiled here, the carried cache missed them", **details)
    return verdict(a, "pass", f"{len(before)} carried cache files, nothing compiled on the device", **details)


def close(a):
    """Adds the parent's view (exit code, seconds, share, cap) to a step's verdict."""
    v = load_json(a.verdict) or {"step": a.step, "kind": a.kind, "status": "fail", "reason": "", "details": {}}
    if a.rc in (124, 137):
        v["status"] = "timeout"
        v["reason"] = f"killed after {a.cap} s (its share {a.share} s plus what earlier steps left)" + (f"; before that: {v['reason']}" if v.get("reason") else "")
    elif not v.get("reason") and v["status"] == "fail":
        v["reason"] = f"the step exited {a.rc} without a verdict"
    v.update(rc=a.rc, seconds=round(a.seconds, 1), share_s=a.share, cap_s=a.cap, order=a.order)
    if a.injected:
        v["injected"] = a.injected
    write_json(a.verdict, v)
    print(f"gpu-check: [{a.order}] {a.step}: {v['status']} in {a.seconds:.1f} s (share {a.share} s, cap {a.cap} s){': ' + v['reason'] if v['reason'] else ''}")
    a.final = False
    try:
        summary(a)
    except Exception as e:  # the partial summary must never stop the run
        print(f"gpu-check: could not write the partial summary: {e}", file=sys.stderr)


def probe_env(a):
    """`foveate info --json` as shell assignments (avail_NAME, reason_NAME, ops_NAME) for the steps."""
    info = load_json(a.info) or {"backends": []}
    for b in info.get("backends", []):
        key = b["name"].replace("-", "_")
        reason = str(b.get("device_or_reason", "")).replace("'", "")
        print(f"avail_{key}={1 if b.get('available') else 0}")
        print(f"reason_{key}='{reason}'")
        print(f"ops_{key}='{' '.join(sorted(b.get('variants', {})))}'")




def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def check(name, fn):
        p = sub.add_parser(name)
        p.add_argument("--step", required=True)
        p.add_argument("--kind", required=True)
        p.add_argument("--verdict", required=True)
        p.set_defaults(fn=fn)
        return p

    p = check("record", check_record)
    p.add_argument("--status", required=True, choices=["pass", "fail", "skip"])
    p.add_argument("--reason", default="")
    p = check("info", check_info)
    p.add_argument("--dir", required=True)
    p.add_argument("--backend", required=True)
    p = check("selftest", check_selftest)
    p.add_argument("--dir", required=True)
    p.add_argument("--note", default="")
    p.add_argument("--gpu-adapter", action="store_true", help="fail if the device is a CPU rasteriser")
    p = check("fault", check_fault)
    p.add_argument("--dir", required=True)
    p = check("sanitizer", check_sanitizer)
    p.add_argument("--dir", required=True)
    p.add_argument("--tool", required=True)
    p.add_argument("--error-exitcode", type=int, required=True)
    p = check("easyvqa", check_easyvqa)
    p.add_argument("--dir", required=True)
    p.add_argument("--torch", required=True)
    p.add_argument("--limit", type=int, required=True)
    p.add_argument("--min-agreement", type=float, default=0.99)
    p = check("parity", check_parity)
    p.add_argument("--dir", required=True)
    p.add_argument("--repo", required=True)
    p.add_argument("--bin", required=True)
    p.add_argument("--backend", action="append", required=True, help="BACKEND:ATT1,ATT2[@N]: these attention variants over the first N goldens (all by default)")
    p.add_argument("--optional", action="append", default=[], help="a backend that may be unavailable here (then skipped)")
    p.add_argument("--info", help="foveate info --json output, to tell which backends are available")
    p.add_argument("--logits-bound", type=float, default=1e-4)
    p = check("bench", check_bench)
    p.add_argument("--dir", required=True)
    p.add_argument("--need-fraction", action="store_true")
    p.add_argument("--gpu-adapter", action="store_true")
    p = check("counters", check_counters)
    p.add_argument("--dir", action="append", required=True)
    p = check("cache", check_cache)
    p.add_argument("--cache", required=True)
    p.add_argument("--before", required=True)
    p = check("close", close)
    p.add_argument("--rc", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--share", type=int, required=True)
    p.add_argument("--cap", type=int, required=True)
    p.add_argument("--order", required=True)
    p.add_argument("--injected", default="")
    add_summary_args(p)
    p = sub.add_parser("probe-env")
    p.add_argument("info")
    p.set_defaults(fn=probe_env)
    add_summary_parsers(sub)
    a = ap.parse_args()
    if a.cmd == "parity":
        info = load_json(a.info) if a.info else None
        a.available = lambda name: bool((backend_probe(info, name) or {}).get("available"))
    return a.fn(a)


if __name__ == "__main__":
    r = main()
    sys.exit(r if isinstance(r, int) else 0)
