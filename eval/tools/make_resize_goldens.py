#!/usr/bin/env python3
"""Regenerate the image-preprocessing goldens in eval/fixtures/preprocess/.

Reference implementations:
  * resampling: Pillow's Image.resize (ImagingResample / affine nearest), version printed in manifest.json;
  * decode + mode conversion: Pillow's Image.open(...).convert("RGB"), and transformers' convert_to_rgb
    (which composites transparent images onto white);
  * pixel_values: transformers' PIL backend image processors (CLIPImageProcessorPil, SiglipImageProcessorPil,
    LlavaImageProcessorPil), i.e. the slow/PIL path, never the torchvision "fast" one.

Every uint8 image is stored as PNG (lossless).  pixel_values (float32, CHW) are stored losslessly as a per-channel
codebook of the distinct float32 values (little-endian u32 bit patterns in <case>.codebook.u32) plus a PNG of indices into it;
the script checks that decoding the codebook gives back exactly transformers' array.

Usage: python3 eval/tools/make_resize_goldens.py [--datasets /work/shared/datasets] [--out eval/fixtures/preprocess]
Needs: pillow, numpy, transformers (offline is fine; nothing is downloaded).
"""
import argparse
import json
import os
import shutil
import struct
import zlib

import numpy as np
import PIL
from PIL import Image

FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
    "lanczos": Image.Resampling.LANCZOS,
}


FULL_MAX_PIXELS = 12000
WINDOW = 40


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def save_png(arr, path):
    Image.fromarray(np.ascontiguousarray(arr)).save(path, optimize=True)


def write_raw_png(path, width, height, bit_depth, color_type, raw_rows, extra_chunks=()):
    """Write a PNG by hand (filter 0 per row) so 16-bit colour and tRNS cases can be made without extra deps."""

    def chunk(tag, data):
        c = struct.pack(">I", len(data)) + tag + data
        return c + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    body = b"".join(b"\x00" + row for row in raw_rows)
    data = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
    for tag, payload in extra_chunks:
        data += chunk(tag, payload)
    data += chunk(b"IDAT", zlib.compress(body, 9)) + chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def hf_convert_to_rgb(im):
    from transformers.image_transforms import convert_to_rgb

    return convert_to_rgb(im, return_numpy=True)


def encode_pixel_values(pv, path):
    """pv: float32 (3, H, W). Returns per-channel codebooks (u32 bits); writes the index PNG."""
    assert pv.dtype == np.float32 and pv.ndim == 3 and pv.shape[0] == 3, (pv.dtype, pv.shape)
    idx = np.zeros(pv.shape, dtype=np.uint8)
    books = []
    for c in range(3):
        vals = np.unique(pv[c])
        assert len(vals) <= 256, len(vals)
        idx[c] = np.searchsorted(vals, pv[c]).astype(np.uint8)
        assert np.array_equal(vals[idx[c]], pv[c])
        books.append([int(b) for b in vals.view(np.uint32)])
    save_png(np.moveaxis(idx, 0, -1), path)
    back = Image.open(path)
    assert np.array_equal(np.moveaxis(np.array(back), -1, 0), idx)
    return books


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="/work/shared/datasets")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "fixtures", "preprocess"))
    args = ap.parse_args()
    out = os.path.abspath(args.out)
    for sub in ("inputs", "resize", "decode", "pixel_values", "configs"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.makedirs(os.path.join(out, sub))

    import transformers
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    manifest = {
        "pillow_version": PIL.__version__,
        "transformers_version": transformers.__version__,
        "numpy_version": np.__version__,
        "backend": "transformers PIL backend (*ImageProcessorPil), not torchvision",
        "inputs": {},
        "resize": [],
        "decode": [],
        "pixel_values": [],
    }

    # ---- inputs: the real DocVQA page (grayscale PNG) and a small real JPEG made from a TextVQA photo ----
    doc_src = os.path.join(args.datasets, "docvqa/images/nkbl0226_1.png")
    shutil.copyfile(doc_src, os.path.join(out, "inputs/doc_page.png"))
    photo_src = Image.open(os.path.join(args.datasets, "textvqa/images/003a8ae2ef43b901.jpg")).convert("RGB")
    small = photo_src.resize((240, 156), Image.Resampling.BICUBIC)
    small.save(os.path.join(out, "inputs/photo.jpg"), quality=90)  # baseline, 4:2:0, libjpeg(-turbo)
    photo = Image.open(os.path.join(out, "inputs/photo.jpg"))
    photo_rgb = np.array(photo.convert("RGB"))
    save_png(photo_rgb, os.path.join(out, "inputs/photo_pillow_rgb.png"))
    doc = Image.open(os.path.join(out, "inputs/doc_page.png"))
    manifest["inputs"] = {
        "doc_page.png": {"mode": doc.mode, "size": list(doc.size), "from": "docvqa/images/nkbl0226_1.png"},
        "photo.jpg": {
            "mode": photo.mode,
            "size": list(photo.size),
            "from": "textvqa/images/003a8ae2ef43b901.jpg resized to 240x156 (bicubic), saved quality=90",
            "pillow_decoded": "photo_pillow_rgb.png",
        },
    }

    # ---- resize goldens ----
    doc_rgb = doc.convert("RGB")
    photo_im = Image.fromarray(photo_rgb)
    cases = []
    for f in FILTERS:
        cases.append(("doc", 37, 29, f))
        cases.append(("photo", 37, 29, f))
    cases += [
        ("doc", 224, 298, "bicubic"),  # CLIP shortest_edge 224 on 808x1077
        ("doc", 224, 224, "bilinear"),  # SigLIP square
        ("doc", 336, 447, "bicubic"),  # llava-1.5 shortest_edge 336
        ("doc", 808, 531, "bicubic"),  # vertical pass only
        ("doc", 413, 1077, "bilinear"),  # horizontal pass only
        ("doc", 1003, 1201, "bicubic"),  # upscale, odd sizes
        ("photo", 344, 224, "bicubic"),  # upscale (CLIP 224 on 240x156)
        ("photo", 101, 67, "bilinear"),
        ("photo", 301, 97, "bicubic"),  # up in x, down in y
        ("photo", 97, 301, "lanczos"),
        ("photo", 333, 211, "nearest"),
        ("photo", 71, 45, "nearest"),
        ("photo", 240, 156, "bicubic"),  # same size: a copy
    ]
    for src, w, h, f in cases:
        im = doc_rgb if src == "doc" else photo_im
        res = np.array(im.resize((w, h), FILTERS[f]))
        entry = {"input": "doc_page.png" if src == "doc" else "photo_pillow_rgb.png", "width": w, "height": h,
                 "filter": f, "fnv1a64": fnv1a64(res.tobytes())}
        # Which pass Pillow ran first (it does not always do horizontal first): compare with the two
        # single-axis resizes done in each order.
        if f != "nearest" and w != im.size[0] and h != im.size[1]:
            hfirst = np.array(im.resize((w, im.size[1]), FILTERS[f]).resize((w, h), FILTERS[f]))
            vfirst = np.array(im.resize((im.size[0], h), FILTERS[f]).resize((w, h), FILTERS[f]))
            entry["pillow_pass_order"] = ("horizontal-first" if np.array_equal(res, hfirst) else
                                          "vertical-first" if np.array_equal(res, vfirst) else "unknown")
        if w * h <= FULL_MAX_PIXELS:
            name = f"{src}_{w}x{h}_{f}.png"
            save_png(res, os.path.join(out, "resize", name))
            entry["output"] = name
        else:
            # Large outputs: a hash of the whole image plus a few windows (top-left, centre, bottom-right and one
            # on the content) stored as PNG, so a mismatch can still be counted byte by byte.
            wins = []
            s = WINDOW
            for k, (y, x) in enumerate([(0, 0), ((h - s) // 2, (w - s) // 2), (h - s, w - s),
                                        (h * 3 // 10, w // 5)]):
                name = f"{src}_{w}x{h}_{f}.win{k}.png"
                save_png(res[y:y + s, x:x + s], os.path.join(out, "resize", name))
                wins.append({"x": x, "y": y, "width": s, "height": s, "png": name})
            entry["windows"] = wins
        manifest["resize"].append(entry)

    # ---- decode / mode-conversion goldens ----
    rng = np.random.default_rng(7)
    patch = photo_rgb[40:64, 100:132].copy()  # 24x32 real pixels
    hh, ww = patch.shape[:2]
    alpha = ((np.arange(ww)[None, :] * 8 + np.arange(hh)[:, None] * 3) % 256).astype(np.uint8)
    alpha[0, :4] = [0, 255, 1, 254]
    gray = patch.mean(axis=2).astype(np.uint8)
    dec = []
    Image.fromarray(np.dstack([patch, alpha])).save(os.path.join(out, "decode/rgba.png"))
    dec.append("rgba.png")
    Image.fromarray(np.dstack([gray, alpha]), mode="LA").save(os.path.join(out, "decode/la.png"))
    dec.append("la.png")
    Image.fromarray(patch).quantize(colors=37).save(os.path.join(out, "decode/palette.png"))
    dec.append("palette.png")
    pal_t = Image.fromarray(patch).quantize(colors=19)
    pal_t.info["transparency"] = 3
    pal_t.save(os.path.join(out, "decode/palette_trns.png"), transparency=3)
    dec.append("palette_trns.png")
    Image.fromarray(gray > 120).save(os.path.join(out, "decode/bilevel.png"))
    dec.append("bilevel.png")
    Image.fromarray(gray).save(os.path.join(out, "decode/gray_trns.png"), transparency=int(gray[5, 5]))
    dec.append("gray_trns.png")
    g16 = (gray.astype(np.uint16) * 3 + rng.integers(0, 3, gray.shape)).astype(np.uint16)
    g16[0, :6] = [0, 1, 255, 256, 1000, 65535]
    write_raw_png(os.path.join(out, "decode/gray16.png"), ww, hh, 16, 0, [r.astype(">u2").tobytes() for r in g16])
    dec.append("gray16.png")
    rgb16 = patch.astype(np.uint16) * 257 + rng.integers(0, 257, patch.shape).astype(np.uint16)
    write_raw_png(os.path.join(out, "decode/rgb16.png"), ww, hh, 16, 2,
                  [r.astype(">u2").tobytes() for r in rgb16])
    dec.append("rgb16.png")
    rgba16 = np.dstack([rgb16, alpha.astype(np.uint16) * 257 + 100 * (alpha > 0) * (alpha < 255)])
    write_raw_png(os.path.join(out, "decode/rgba16.png"), ww, hh, 16, 6,
                  [r.astype(">u2").tobytes() for r in rgba16.astype(np.uint16)])
    dec.append("rgba16.png")
    for name in dec:
        im = Image.open(os.path.join(out, "decode", name))
        mode = im.mode
        pil_rgb = np.array(im.convert("RGB"))
        hf_rgb = hf_convert_to_rgb(Image.open(os.path.join(out, "decode", name)))
        stem = name[:-4]
        save_png(pil_rgb, os.path.join(out, "decode", f"{stem}.pil_rgb.png"))
        save_png(hf_rgb, os.path.join(out, "decode", f"{stem}.hf_rgb.png"))
        manifest["decode"].append(
            {"input": name, "pillow_mode": mode, "pil_rgb": f"{stem}.pil_rgb.png", "hf_rgb": f"{stem}.hf_rgb.png"}
        )

    # ---- pixel_values goldens (transformers PIL backend) ----
    pv_cases = [
        ("clip224_doc", CLIPImageProcessorPil(), "doc_page.png"),
        ("siglip224_bilinear_doc", SiglipImageProcessorPil(resample=2), "doc_page.png"),
        ("siglip_default_doc", SiglipImageProcessorPil(size={"height": 96, "width": 96}), "doc_page.png"),
        ("clip112_photo", CLIPImageProcessorPil(size={"shortest_edge": 112}, crop_size={"height": 112, "width": 112}),
         "photo.jpg"),
        ("clip_crop_bigger_photo", CLIPImageProcessorPil(size={"shortest_edge": 61},
                                                         crop_size={"height": 67, "width": 71}), "photo.jpg"),
        ("siglip96_bilinear_photo", SiglipImageProcessorPil(size={"height": 96, "width": 96}, resample=2),
         "photo.jpg"),
        ("llava_pad112_photo", LlavaImageProcessorPil(do_pad=True, size={"shortest_edge": 112},
                                                      crop_size={"height": 112, "width": 112}), "photo.jpg"),
        ("clip_longest_edge_photo", CLIPImageProcessorPil(size={"shortest_edge": 80, "longest_edge": 100},
                                                          do_center_crop=False), "photo.jpg"),
    ]
    for case, proc, inp in pv_cases:
        cfg_dir = os.path.join(out, "configs", case)
        proc.save_pretrained(cfg_dir)
        if inp == "photo.jpg":
            # Pillow's own decode of the JPEG: the Rust test feeds inputs/photo_pillow_rgb.png, so the resize
            # and normalisation are tested independently of JPEG decoder differences.
            im = Image.open(os.path.join(out, "inputs", inp))
        else:
            im = Image.open(os.path.join(out, "inputs", inp))
        pv = proc(im, return_tensors="np")["pixel_values"][0]
        books = encode_pixel_values(pv, os.path.join(out, "pixel_values", f"{case}.idx.png"))
        np.concatenate([np.array(b, dtype="<u4") for b in books]).tofile(
            os.path.join(out, "pixel_values", f"{case}.codebook.u32"))
        manifest["pixel_values"].append(
            {"case": case, "config_dir": f"configs/{case}", "input": inp,
             "rust_input": "photo_pillow_rgb.png" if inp == "photo.jpg" else inp,
             "class": type(proc).__name__, "shape": list(pv.shape), "index_png": f"{case}.idx.png",
             "codebook": f"{case}.codebook.u32", "codebook_len": [len(b) for b in books]}
        )

    # a processor_config.json with the image processor nested under "image_processor" (as LlavaProcessor saves it)
    nested = os.path.join(out, "configs", "nested_processor")
    os.makedirs(nested)
    clip336 = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size={"height": 336, "width": 336}).to_dict()
    with open(os.path.join(nested, "processor_config.json"), "w") as f:
        json.dump({"image_processor": clip336, "image_token": "<image>", "num_additional_image_tokens": 0,
                   "patch_size": 14, "processor_class": "LlavaProcessor",
                   "vision_feature_select_strategy": None}, f, indent=2)

    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(out) for x in fs)
    print(f"wrote {out}: {total / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
