"""The summary half of scripts/gpu_kit.py: the closing table of a gpu-check.sh run (step
statuses, ratios against PyTorch, fractions of peak), the files that come back from the device
machine (summary.json, summary.md, gpu-kit.tar.gz), and `collect`, which files a finished run
under benches/results/.
"""

import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

BAD = ("fail", "timeout")
# e2e metrics compared with PyTorch (times: ratio = foveate / PyTorch, below 1 is faster).
E2E_TIMES = ("image_encode_ms", "prefill_ms", "decode_ms")


def load_json(path):
    """The JSON in `path`, or None (missing, empty or not JSON)."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json(path, obj):
    """Writes `obj` as JSON through a temporary file, so a reader never sees half a file."""
    tmp = f"{path}.tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)


def verdicts(work):
    out = [v for v in (load_json(p) for p in sorted(Path(work, "steps").glob("*.json"))) if isinstance(v, dict) and "step" in v]
    return sorted(out, key=lambda v: str(v.get("order", "")))


def step_dir(work, name):
    hits = sorted(Path(work, "steps").glob(f"*-{name}"))
    return hits[0] if hits else None


def bench_rows(work, steps, tool=None):
    rows = []
    for s in steps:
        d = step_dir(work, s)
        for p in sorted(d.glob("*.json")) if d else []:
            j = load_json(p)
            if isinstance(j, dict) and str(j.get("schema", "")).startswith("foveate-bench/") and (tool is None or j.get("tool") == tool):
                rows += j.get("rows", [])
    return rows


def ratios(work, backend):
    """foveate vs PyTorch, row by row: (workload, dtype, metric, foveate, variant, torch, ratio)."""
    torch = {}
    for r in bench_rows(work, ["torch"], tool="pytorch"):
        for m in ("ms",) + E2E_TIMES:
            if m in r.get("metrics", {}):
                torch[(r["workload"], r.get("dtype"), m)] = r["metrics"][m]["mean"]
    best = {}
    for r in bench_rows(work, ["roofline", "e2e"], tool="foveate"):
        if r.get("backend") != backend:
            continue
        for m in ("ms",) + E2E_TIMES:
            key = (r["workload"], r.get("dtype"), m)
            v = r.get("metrics", {}).get(m, {}).get("mean")
            if key in torch and v and (key not in best or v < best[key][0]):
                best[key] = (v, r.get("variant", ""))
    out = []
    for key, (v, variant) in sorted(best.items()):
        t = torch[key]
        out.append(dict(workload=key[0], dtype=key[1], metric=key[2], foveate=v, variant=variant, torch=t, ratio=v / t if t > 0 else None))
    return out


def fractions(work, steps):
    """Per backend: the peaks and, per kernel workload, the best variant's fraction of peak."""
    out = {}
    for r in bench_rows(work, steps, tool="foveate"):
        be = out.setdefault(r.get("backend", "?"), {"peaks": {}, "kernels": {}})
        ms = r.get("metrics", {})
        if r.get("kind") == "peak":
            v = next(iter(ms.values()), None)
            if v:
                be["peaks"][r["workload"]] = dict(value=v["mean"], unit=v["unit"])
        elif "fraction_of_peak" in ms:
            f = ms["fraction_of_peak"]["mean"]
            cur = be["kernels"].get(r["workload"])
            if cur is None or f > cur["fraction"]:
                rate = next(((k, v["mean"], v["unit"]) for k, v in ms.items() if v["unit"].endswith("/s")), None)
                be["kernels"][r["workload"]] = dict(fraction=f, variant=r.get("variant", ""), rate=rate)
    return out


def meta_of(work, a, steps):
    info = next((v for v in steps if v["step"] == "info"), None)
    d = (info or {}).get("details", {})
    be = d.get("backends", {}).get(a.backend, {})
    build = load_json(a.build) if a.build else None
    return dict(
        mode=a.mode, backend=a.backend, device=be.get("device_or_reason") if be.get("available") else None,
        nvidia_smi=d.get("nvidia_smi"), loadavg_start=d.get("loadavg"),
        commit=(build or {}).get("commit") or a.commit or None, dirty=(build or {}).get("dirty"),
        build=build, date=a.date, budget_s=a.budget, used_s=round(a.used, 1) if a.used is not None else None,
    )


def exit_code(steps):
    if any(v["status"] in BAD and v["kind"] == "correctness" for v in steps):
        return 1
    if any(v["status"] in BAD for v in steps):
        return 2
    return 0


def fmt_table(meta, steps, rat, frac, code, final):
    L = []
    dev = meta["device"] or "no device"
    L.append(f"GPU kit {'summary' if final else 'progress'} ({meta['mode']} run): {meta['backend']} on {dev}; "
             f"commit {(meta['commit'] or '?')[:10]}{' (dirty)' if meta.get('dirty') else ''}; {meta['date']}; "
             f"budget {meta['budget_s']} s, used {meta['used_s']} s")
    if meta.get("nvidia_smi"):
        L.append(f"nvidia-smi: {meta['nvidia_smi']}")
    if rat:
        L.append("")
        L.append("vs PyTorch on the same device, same run (time ratio foveate / PyTorch; below 1 = foveate faster):")
        L.append(f"  {'workload':<36} {'dtype':<5} {'metric':<15} {'foveate':>10} {'pytorch':>10} {'ratio':>6}  variant")
        for r in rat:
            L.append(f"  {r['workload'][:36]:<36} {r['dtype']:<5} {r['metric']:<15} {r['foveate']:>10.3f} {r['torch']:>10.3f} "
                     f"{r['ratio']:>6.2f}  {r['variant']}")
    for be, f in sorted(frac.items()):
        if not f["kernels"]:
            continue
        peaks = ", ".join(f"{k} {v['value']:.3g} {v['unit']}" for k, v in sorted(f["peaks"].items()))
        L.append("")
        L.append(f"roofline {be}: {peaks or 'no peaks'}; each kernel's best variant as a fraction of the peak that bounds it:")
        for w, k in sorted(f["kernels"].items()):
            rate = f"{k['rate'][1]:.3g} {k['rate'][2]}" if k["rate"] else ""
            L.append(f"  {w[:44]:<44} {k['fraction']:>6.3f}  {rate:<18} {k['variant']}")
    L.append("")
    L.append(f"  {'step':<17} {'kind':<11} {'status':<8} {'time / share':>14}  result")
    for v in steps:
        t = f"{v.get('seconds', 0):.1f}/{v.get('share_s', '?')} s"
        st = v["status"].upper() if v["status"] in BAD else v["status"]
        L.append(f"  {v['step']:<17} {v['kind']:<11} {st:<8} {t:>14}  {v.get('reason', '')[:160]}")
    n = {s: sum(1 for v in steps if v["status"] == s) for s in ("pass", "fail", "timeout", "skip")}
    L.append(f"steps: {n['pass']} passed, {n['fail']} failed, {n['timeout']} timed out, {n['skip']} skipped")
    if final:
        why = {0: "every step that ran passed", 1: "a correctness step failed or timed out", 2: "a benchmark step failed or timed out"}[code]
        L.append(f"gpu-check: exit {code}: {why}")
    return "\n".join(L) + "\n"


def stamp_results(work, commit):
    """Fills the commit into bench result files written where git was absent (the device machine)."""
    if not commit:
        return
    for p in Path(work, "steps").glob("*/*.json"):
        j = load_json(p)
        if isinstance(j, dict) and str(j.get("schema", "")).startswith("foveate-bench/") and not j.get("commit"):
            j["commit"] = commit
            write_json(p, j)


def summary(a):
    steps = verdicts(a.work)
    meta = meta_of(a.work, a, steps)
    if a.final:
        stamp_results(a.work, meta["commit"])
    rat = ratios(a.work, a.backend)
    frac = fractions(a.work, ["roofline", "wgpu-bench"])
    code = exit_code(steps)
    text = fmt_table(meta, steps, rat, frac, code, a.final)
    doc = dict(schema="foveate-gpu-kit/1", final=a.final, exit_code=code, **meta, steps=steps, ratios_vs_pytorch=rat, roofline=frac)
    for out in {a.work, a.out}:
        write_json(Path(out, "summary.json"), doc)
        Path(out, "summary.md").write_text("```\n" + text + "```\n")
    if a.pack:
        tmp = Path(a.out, ".gpu-kit.tar.gz.tmp")
        with tarfile.open(tmp, "w:gz") as t:
            t.add(a.work, arcname="gpu-kit")
        os.replace(tmp, Path(a.out, "gpu-kit.tar.gz"))
    if not a.final:
        return 0
    print(text, end="")
    return code


def collect(a):
    """Files a finished run (a folder holding gpu-kit.tar.gz or the unpacked output) under
    benches/results/gpu-<device>-<date>/: the summary, every bench/PyTorch result file, the
    selftest reports and the compare table."""
    src = Path(a.src)
    tmp = None
    if (src / "gpu-kit.tar.gz").exists():
        tmp = tempfile.mkdtemp()
        with tarfile.open(src / "gpu-kit.tar.gz") as t:
            t.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else t.extractall(tmp)
        work = Path(tmp, "gpu-kit")
    else:
        work = src
    s = load_json(work / "summary.json")
    if not s:
        raise SystemExit(f"collect: {work}/summary.json is missing: not a gpu-check.sh output")
    slug = re.sub(r"[^a-z0-9]+", "-", (s.get("device") or s.get("backend") or "unknown").lower()).strip("-")[:40]
    dest = Path(a.dest, f"gpu-{slug}-{(s.get('date') or 'undated')[:10]}")
    dest.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "summary.md"):
        shutil.copy(work / name, dest / name)
    n = 2
    if Path(work, "steps", "compare.md").exists():
        shutil.copy(Path(work, "steps", "compare.md"), dest / "compare-pytorch.md")
        n += 1
    for p in sorted(Path(work, "steps").glob("*/*")):
        if p.stat().st_size >= 8 << 20:
            continue
        if p.suffix in (".json", ".md", ".csv", ".log"):
            shutil.copy(p, dest / f"{p.parent.name}-{p.name}")
        elif p.suffix == ".out" and load_json(p) is not None:  # selftest reports, foveate info
            shutil.copy(p, dest / f"{p.parent.name}-{p.stem}.json")
        else:
            continue
        n += 1
    print(f"collect: {n} files into {dest}")
    if tmp:
        shutil.rmtree(tmp)
    return 0


def compare_md(a):
    """`foveate compare` over the PyTorch and foveate files of a run (best effort, for the record)."""
    files = [str(p) for s in ("torch", "roofline", "e2e") if (d := step_dir(a.work, s)) for p in sorted(d.glob("*.json"))
             if str((load_json(p) or {}).get("schema", "")).startswith("foveate-bench/")]
    torch_first = sorted(files, key=lambda f: (load_json(f) or {}).get("tool") != "pytorch")
    if len(torch_first) < 2 or (load_json(torch_first[0]) or {}).get("tool") != "pytorch":
        return 0
    out = Path(a.work, "steps", "compare.md")
    subprocess.run([a.bin, "compare", *torch_first, "--out", str(out)], capture_output=True)
    return 0


def add_summary_args(p):
    p.add_argument("--work", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--mode", required=True)
    p.add_argument("--backend", required=True)
    p.add_argument("--budget", type=int, required=True)
    p.add_argument("--used", type=float)
    p.add_argument("--date", required=True)
    p.add_argument("--commit", default="")
    p.add_argument("--build", help="BUILD.json written by gpu-prepare.sh beside the binary")
    p.add_argument("--pack", action="store_true")


def add_summary_parsers(sub):
    p = sub.add_parser("summary")
    add_summary_args(p)
    p.add_argument("--final", action="store_true")
    p.set_defaults(fn=summary)
    p = sub.add_parser("collect")
    p.add_argument("src", help="the folder the device tool copied $OUT into (files_at), or an unpacked --out")
    p.add_argument("--dest", default="benches/results")
    p.set_defaults(fn=collect)
    p = sub.add_parser("compare-md")
    p.add_argument("--work", required=True)
    p.add_argument("--bin", required=True)
    p.set_defaults(fn=compare_md)
