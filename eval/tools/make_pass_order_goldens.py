#!/usr/bin/env python3
"""Goldens for the order of Pillow's two resampling passes: eval/fixtures/preprocess/pass_order/.

Pillow 13 runs the vertical pass first when both sizes change and the height is scaled down by more
pixels than twice the width is (h0 - H > 2 * (w0 - W), H < h0); before, it always ran the horizontal
pass first. The two orders round to 8 bits in between, so they differ by a level here and there on a
noisy image. This writes two small seeded noise images and Pillow's resizes of them to sizes on both
sides of that boundary (and on it), with the order Pillow used (found by comparing with the two
single-axis resizes done in each order; "either" where both orders give the same bytes) and whether
the two orders differ at all for that case.

Usage: python3 eval/tools/make_pass_order_goldens.py [--out eval/fixtures/preprocess/pass_order]
Needs: pillow, numpy. Deterministic for a given Pillow version (recorded in manifest.json).
"""
import argparse
import json
import os
import shutil

import numpy as np
import PIL
from PIL import Image

FILTERS = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}

# (input, width, height, filter); inputs are 60x40 ("wide") and 40x60 ("tall").
CASES = [
    ("wide", 70, 30, "bicubic"),  # width grows, height shrinks
    ("wide", 55, 29, "bicubic"),  # 11 > 2 * 5: just past the boundary
    ("wide", 55, 30, "bicubic"),  # 10 = 2 * 5: on it (horizontal first)
    ("wide", 55, 31, "bilinear"),  # just inside
    ("wide", 59, 37, "lanczos"),
    ("wide", 100, 39, "hamming"),
    ("wide", 100, 41, "bicubic"),  # height grows: horizontal first
    ("wide", 30, 10, "bicubic"),  # both shrink, width more
    ("wide", 61, 20, "box"),
    ("wide", 20, 5, "lanczos"),
    ("tall", 30, 30, "bicubic"),
    ("tall", 30, 40, "bicubic"),  # on the boundary
    ("tall", 30, 39, "bicubic"),
    ("tall", 50, 59, "bilinear"),
    ("tall", 45, 80, "lanczos"),
    ("tall", 10, 5, "hamming"),  # 55 < 60
    ("tall", 12, 3, "bicubic"),  # 57 > 56
    ("tall", 77, 13, "box"),
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "preprocess", "pass_order"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    rng = np.random.default_rng(20261123)
    inputs = {"wide": rng.integers(0, 256, (40, 60, 3), dtype=np.uint8), "tall": rng.integers(0, 256, (60, 40, 3), dtype=np.uint8)}
    for name, arr in inputs.items():
        Image.fromarray(arr).save(os.path.join(out, f"{name}.png"))
    manifest = {"pillow_version": PIL.__version__, "inputs": {n: f"{n}.png" for n in inputs}, "cases": []}
    for src, w, h, f in CASES:
        im = Image.fromarray(inputs[src])
        w0, h0 = im.size
        res = np.array(im.resize((w, h), FILTERS[f]))
        hfirst = np.array(im.resize((w, h0), FILTERS[f]).resize((w, h), FILTERS[f]))
        vfirst = np.array(im.resize((w0, h), FILTERS[f]).resize((w, h), FILTERS[f]))
        differ = not np.array_equal(hfirst, vfirst)
        order = ("either" if not differ and np.array_equal(res, hfirst) else "horizontal-first" if np.array_equal(res, hfirst)
                 else "vertical-first" if np.array_equal(res, vfirst) else "unknown")
        if order == "unknown":
            raise SystemExit(f"{src} -> {w}x{h} {f}: Pillow's result matches neither pass order")
        name = f"{src}_{w}x{h}_{f}.png"
        Image.fromarray(res).save(os.path.join(out, name))
        manifest["cases"].append({
            "input": f"{src}.png", "width": w, "height": h, "filter": f, "output": name,
            "pillow_pass_order": order, "orders_differ": differ,
        })
        print(f"{src} {w0}x{h0} -> {w}x{h} {f}: {order}")
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
