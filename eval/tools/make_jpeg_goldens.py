#!/usr/bin/env python3
"""Regenerate the JPEG decode goldens in eval/fixtures/jpeg/ (see eval/fixtures/README.md, "JPEG goldens").

What is the reference:
  * decoded pixels: Pillow's `Image.open(f).convert("RGB")` (libjpeg-turbo inside Pillow; both versions are
    recorded in manifest.json), and transformers' `load_image(path)` (= `ImageOps.exif_transpose` then
    `convert("RGB")`), which is what the image processors do with a path;
  * pixel_values: transformers' PIL-backend CLIP and SigLIP image processors (`CLIPImageProcessorPil`,
    `SiglipImageProcessorPil`, built from the configs in configs/), called with the file's path.

Files written (under --out, default eval/fixtures/jpeg):
  files/<name>.jpg        JPEG variants made from crops of the real images in --datasets (COCO and TextVQA
                          photos, the DocVQA page): every chroma subsampling (4:4:4, 4:2:2, 4:2:0 and 4:1:1 by
                          Pillow or imagecodecs, 4:4:0 by imagecodecs: Pillow cannot write it), progressive
                          (4:4:0 and arithmetic-coded ones by jpeglib, which wraps libjpeg-turbo 2.1),
                          grayscale, CMYK (Adobe, Pillow) and YCCK (Adobe transform 2, imagecodecs), RGB without
                          the YCbCr transform, quality 50 / 75 / 95, restart markers, optimised Huffman tables,
                          odd and tiny sizes, EXIF orientations 2..8 and an XMP-only orientation;
  decoded/<name>.png      Pillow's decode, `Image.open(f).convert("RGB")` (lossless PNG), for the files of at most
                          8000 pixels (odd / tiny sizes, orientations); the others have only its hash;
  decoded/<name>.loaded.png  `load_image(path)` where it differs (the EXIF-rotated files);
  configs/<proc>/preprocessor_config.json   the two processors (llava-1.5's CLIP-336 and SigLIP-384);
  manifest.json           per file: how it was made, Pillow's mode / size / sampling, SHA-256 of the decoded RGB
                          bytes, and per processor the pixel_values shape, SHA-256 of its float32 little-endian
                          bytes and a few stats. The same for the real dataset JPEGs themselves (they stay in
                          --datasets, only their hashes are stored) and the two JPEGs already in eval/fixtures.

Usage (from the repository root; needs pillow, numpy, transformers 5, imagecodecs, jpeglib; offline):
  HF_HUB_OFFLINE=1 python3 eval/tools/make_jpeg_goldens.py [--datasets ../shared/datasets]
"""
import argparse
import hashlib
import io
import json
import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import PIL.features  # noqa: E402
from PIL import Image  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The keys both processors' configs share (the rescale / normalise / convert steps, bicubic resampling).
COMMON = {
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
}
PROCESSORS = {
    # llava-hf/llava-1.5-7b-hf (openai/clip-vit-large-patch14-336)
    "clip336": {
        **COMMON,
        "image_processor_type": "CLIPImageProcessor",
        "crop_size": {"height": 336, "width": 336},
        "do_center_crop": True,
        "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711],
        "size": {"shortest_edge": 336},
    },
    # google/siglip-so400m-patch14-384 (llava-interleave-qwen)
    "siglip384": {
        **COMMON,
        "image_processor_type": "SiglipImageProcessor",
        "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5],
        "size": {"height": 384, "width": 384},
    },
}

SOURCES = {
    "coco": "vqav2/images/COCO_val2014_000000262148.jpg",
    "coco2": "vqav2/images/COCO_val2014_000000393225.jpg",
    "tv": "textvqa/images/2b538a43dd933fc1.jpg",
    "tv2": "textvqa/images/831bcec304a17054.jpg",
    "doc": "docvqa/images/nkbl0226_1.png",
}

# Real JPEGs used as they are (hashes only; the files stay in the datasets folder).
DATASET_JPEGS = [
    "vqav2/images/COCO_val2014_000000262148.jpg",
    "vqav2/images/COCO_val2014_000000393225.jpg",
    "textvqa/images/003a8ae2ef43b901.jpg",
    "textvqa/images/2b538a43dd933fc1.jpg",
    "textvqa/images/831bcec304a17054.jpg",
    "textvqa/images/b9dc400eb20bad64.jpg",
]
# JPEGs already committed elsewhere in eval/fixtures (the HF-parity photo, the preprocessing photo).
REPO_JPEGS = [
    "eval/fixtures/images/COCO_val2014_000000393225_reduced2.jpg",
    "eval/fixtures/preprocess/inputs/photo.jpg",
]

PIL_SUB = {"444": 0, "422": 1, "420": 2}
PNG_MAX_PIXELS = 8000


def source(datasets, key, box, size):
    """A crop (box = fractions l, t, r, b of the image) of a real image, resized to size (w, h)."""
    im = Image.open(os.path.join(datasets, SOURCES[key]))
    im = im.convert("L" if im.mode == "L" else "RGB")
    w, h = im.size
    l, t, r, b = box
    im = im.crop((int(l * w), int(t * h), int(r * w), int(b * h)))
    return im.resize(size, Image.Resampling.LANCZOS)


def pil_jpeg(im, **kw):
    buf = io.BytesIO()
    im.save(buf, "JPEG", **kw)
    return buf.getvalue()


def codecs_jpeg(im, **kw):
    import imagecodecs

    return bytes(imagecodecs.jpeg8_encode(np.asarray(im), **kw))


def jpeglib_jpeg(im, samp, flags, quality):
    """Written by libjpeg-turbo 2.1 through jpeglib: arithmetic coding and progressive 4:4:0, which neither
    Pillow nor imagecodecs can write. `samp` is jpeglib's per-component (vertical, horizontal) factors."""
    import tempfile

    import jpeglib

    with tempfile.TemporaryDirectory() as d, jpeglib.version("turbo210"):
        j = jpeglib.from_spatial(np.ascontiguousarray(np.asarray(im)))
        j.samp_factor = samp
        j.write_spatial(os.path.join(d, "x.jpg"), qt=quality, flags=flags)
        with open(os.path.join(d, "x.jpg"), "rb") as f:
            return f.read()


def exif_with_orientation(o):
    ex = Image.Exif()
    ex[0x0112] = o
    ex[0x010F] = "foveate-goldens"
    return ex.tobytes()


def variants(ds):
    """(name, how it was made, bytes)."""
    coco = source(ds, "coco", (0.1, 0.1, 0.9, 0.9), (128, 96))
    coco2 = source(ds, "coco2", (0.2, 0.1, 0.8, 0.9), (112, 80))
    tv = source(ds, "tv", (0.0, 0.2, 0.6, 0.8), (136, 96))
    tv2 = source(ds, "tv2", (0.3, 0.3, 0.9, 0.8), (112, 80))
    doc = source(ds, "doc", (0.05, 0.02, 0.6, 0.3), (160, 104))
    out = []

    def add(name, how, data):
        out.append((name, how, data))

    for sub in ("444", "422", "420"):
        add(f"coco_{sub}_q95", f"Pillow quality=95 subsampling={PIL_SUB[sub]} ({sub})", pil_jpeg(coco, quality=95, subsampling=PIL_SUB[sub]))
        add(f"tv_{sub}_q50", f"Pillow quality=50 subsampling={PIL_SUB[sub]} ({sub})", pil_jpeg(tv, quality=50, subsampling=PIL_SUB[sub]))
    for sub in ("440", "411"):
        add(f"coco_{sub}_q95", f"imagecodecs.jpeg8_encode level=95 subsampling='{sub}'", codecs_jpeg(coco, level=95, subsampling=sub))
        add(f"tv_{sub}_q50", f"imagecodecs.jpeg8_encode level=50 subsampling='{sub}'", codecs_jpeg(tv, level=50, subsampling=sub))
    add("tv2_420_q75", "Pillow quality=75 (4:2:0 by default)", pil_jpeg(tv2, quality=75))
    add("coco2_progressive_420_q75", "Pillow quality=75 progressive=True subsampling=2", pil_jpeg(coco2, quality=75, progressive=True, subsampling=2))
    add("coco_progressive_444_q90", "Pillow quality=90 progressive=True subsampling=0", pil_jpeg(coco, quality=90, progressive=True, subsampling=0))
    add("tv_progressive_optimize_422_q60", "Pillow quality=60 progressive=True optimize=True subsampling=1", pil_jpeg(tv, quality=60, progressive=True, optimize=True, subsampling=1))
    add("tv2_440_q85", "imagecodecs.jpeg8_encode level=85 subsampling='440'", codecs_jpeg(tv2, level=85, subsampling="440"))
    s420, s440 = ((2, 2), (1, 1), (1, 1)), ((2, 1), (1, 1), (1, 1))
    add("coco_arith_420_q85", "jpeglib (libjpeg-turbo 2.1) quality=85 4:2:0 flags=+ARITH_CODE (SOF9)", jpeglib_jpeg(coco, s420, ["+ARITH_CODE"], 85))
    add("tv_arith_progressive_420_q70", "jpeglib (libjpeg-turbo 2.1) quality=70 4:2:0 flags=+ARITH_CODE +PROGRESSIVE_MODE (SOF10)", jpeglib_jpeg(tv, s420, ["+ARITH_CODE", "+PROGRESSIVE_MODE"], 70))
    add("tv2_progressive_440_q80", "jpeglib (libjpeg-turbo 2.1) quality=80 4:4:0 flags=+PROGRESSIVE_MODE", jpeglib_jpeg(tv2, s440, ["+PROGRESSIVE_MODE"], 80))
    add("doc_gray_q90", "Pillow mode L quality=90", pil_jpeg(doc, quality=90))
    add("doc_gray_progressive_q50", "Pillow mode L quality=50 progressive=True", pil_jpeg(doc, quality=50, progressive=True))
    add("coco_cmyk_q90", "Pillow mode CMYK (coco.convert('CMYK')) quality=90: Adobe marker, transform 0, inverted", pil_jpeg(coco.convert("CMYK"), quality=90))
    cmyk = np.asarray(coco.convert("CMYK"))
    add("coco_ycck_q90", "imagecodecs.jpeg8_encode of the CMYK bytes, colorspace='CMYK' outcolorspace='YCCK' level=90: Adobe transform 2", codecs_jpeg(Image.fromarray(cmyk, "CMYK"), level=90, colorspace="CMYK", outcolorspace="YCCK"))
    add("coco2_rgb_q90", "Pillow quality=90 keep_rgb=True (RGB components, Adobe transform 0)", pil_jpeg(coco2, quality=90, keep_rgb=True))
    add("tv_restart_blocks_420_q80", "Pillow quality=80 subsampling=2 restart_marker_blocks=3", pil_jpeg(tv, quality=80, subsampling=2, restart_marker_blocks=3))
    add("coco_restart_rows_444_q80", "Pillow quality=80 subsampling=0 restart_marker_rows=1", pil_jpeg(coco, quality=80, subsampling=0, restart_marker_rows=1))
    add("coco2_restart_progressive_422_q70", "Pillow quality=70 subsampling=1 progressive=True restart_marker_blocks=5", pil_jpeg(coco2, quality=70, subsampling=1, progressive=True, restart_marker_blocks=5))
    # Odd and tiny sizes: partial MCUs and the edges of the fancy upsamplers.
    for w, h in ((37, 23), (101, 67)):
        small = source(ds, "coco2", (0.25, 0.2, 0.75, 0.7), (w, h))
        for sub in ("444", "422", "420"):
            add(f"odd_{w}x{h}_{sub}", f"Pillow quality=85 subsampling={PIL_SUB[sub]} ({sub})", pil_jpeg(small, quality=85, subsampling=PIL_SUB[sub]))
        add(f"odd_{w}x{h}_440", "imagecodecs.jpeg8_encode level=85 subsampling='440'", codecs_jpeg(small, level=85, subsampling="440"))
        add(f"odd_{w}x{h}_progressive_420", "Pillow quality=85 progressive=True subsampling=2", pil_jpeg(small, quality=85, progressive=True, subsampling=2))
    for w, h in ((1, 1), (1, 9), (9, 1), (3, 2)):
        tiny = source(ds, "tv", (0.4, 0.4, 0.6, 0.6), (w, h))
        add(f"tiny_{w}x{h}_420", "Pillow quality=90 subsampling=2", pil_jpeg(tiny, quality=90, subsampling=2))
    tiny = source(ds, "tv", (0.4, 0.4, 0.6, 0.6), (3, 5))
    add("tiny_3x5_440", "imagecodecs.jpeg8_encode level=90 subsampling='440'", codecs_jpeg(tiny, level=90, subsampling="440"))
    # Orientation: EXIF values 2..8 on a 48x32 crop (not square, so a wrong rotation changes the size), and
    # one whose orientation is only in XMP.
    rot = source(ds, "tv", (0.1, 0.3, 0.5, 0.6), (48, 32))
    for o in range(2, 9):
        add(f"exif_orientation_{o}", f"Pillow quality=90, exif with Orientation={o}", pil_jpeg(rot, quality=90, exif=exif_with_orientation(o)))
    xmp = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="6"/></rdf:RDF></x:xmpmeta>'
    )
    add("xmp_orientation_6", "Pillow quality=90, xmp packet with tiff:Orientation=\"6\" (no EXIF)", pil_jpeg(rot, quality=90, xmp=xmp))
    return out


def sha256(b):
    return hashlib.sha256(b).hexdigest()


def processors():
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    out = {}
    for name, cfg in PROCESSORS.items():
        kw = {k: v for k, v in cfg.items() if k != "image_processor_type"}
        cls = CLIPImageProcessorPil if cfg["image_processor_type"] == "CLIPImageProcessor" else SiglipImageProcessorPil
        out[name] = cls(**kw)
    return out


def describe(path, procs):
    """Pillow's view of the file, the decoded hashes and the processors' pixel_values hashes."""
    from transformers.image_utils import load_image

    im = Image.open(path)
    info = {
        "pillow_mode": im.mode,
        "size": list(im.size),
        "progressive": bool(im.info.get("progressive")),
        "components": [list(c) for c in im.layer],
        "adobe_transform": im.info.get("adobe_transform"),
        "exif_orientation": im.getexif().get(0x0112),
    }
    decoded = np.array(im.convert("RGB"))
    loaded = np.array(load_image(path))
    info["decoded_sha256"] = sha256(np.ascontiguousarray(decoded).tobytes())
    info["loaded_size"] = [loaded.shape[1], loaded.shape[0]]
    info["loaded_sha256"] = sha256(np.ascontiguousarray(loaded).tobytes())
    info["pixel_values"] = {}
    for name, p in procs.items():
        pv = p(images=path, return_tensors="np")["pixel_values"][0]
        assert pv.dtype == np.float32, pv.dtype
        info["pixel_values"][name] = {
            "class": type(p).__name__,
            "shape": list(pv.shape),
            "sha256": sha256(np.ascontiguousarray(pv).astype("<f4").tobytes()),
            "min": float(pv.min()),
            "max": float(pv.max()),
            "mean": float(pv.mean(dtype=np.float64)),
        }
    return info, decoded, loaded


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default=os.path.join(REPO, "..", "shared", "datasets"))
    ap.add_argument("--out", default=os.path.join(REPO, "eval", "fixtures", "jpeg"))
    args = ap.parse_args()
    if not os.path.isdir(args.datasets):
        args.datasets = "/work/shared/datasets"
    out = os.path.abspath(args.out)
    for sub in ("files", "decoded", "configs"):
        shutil.rmtree(os.path.join(out, sub), ignore_errors=True)
        os.makedirs(os.path.join(out, sub))

    import imagecodecs
    import jpeglib
    import transformers

    for name, cfg in PROCESSORS.items():
        os.makedirs(os.path.join(out, "configs", name))
        with open(os.path.join(out, "configs", name, "preprocessor_config.json"), "w") as f:
            json.dump(cfg, f, indent=2, sort_keys=True)
            f.write("\n")
    procs = processors()
    manifest = {
        "pillow": PIL.__version__,
        "pillow_libjpeg_turbo": PIL.features.version("libjpeg_turbo"),
        "transformers": transformers.__version__,
        "numpy": np.__version__,
        "imagecodecs": imagecodecs.__version__,
        "imagecodecs_jpeg8": imagecodecs.jpeg8_version(),
        "jpeglib": jpeglib.__version__,
        "processors": {n: {"class": type(p).__name__, "config_dir": f"configs/{n}"} for n, p in procs.items()},
        "files": [],
        "external": [],
    }
    for name, how, data in variants(args.datasets):
        if "restart" in name:
            assert b"\xff\xdd" in data, f"{name}: no DRI marker"
        rel = f"files/{name}.jpg"
        with open(os.path.join(out, rel), "wb") as f:
            f.write(data)
        info, decoded, loaded = describe(os.path.join(out, rel), procs)
        entry = {"name": name, "file": rel, "made_with": how, **info}
        # The small files (odd sizes, tiny, orientation) also keep Pillow's pixels, so a failing test can say
        # where and by how much; the larger ones only their hashes (to keep this folder small).
        if decoded.shape[0] * decoded.shape[1] <= PNG_MAX_PIXELS:
            entry["decoded_png"] = f"decoded/{name}.png"
            Image.fromarray(decoded).save(os.path.join(out, entry["decoded_png"]), optimize=True)
            back = np.array(Image.open(os.path.join(out, entry["decoded_png"])))
            assert np.array_equal(back, decoded), name
            if info["loaded_sha256"] != info["decoded_sha256"]:
                entry["loaded_png"] = f"decoded/{name}.loaded.png"
                Image.fromarray(loaded).save(os.path.join(out, entry["loaded_png"]), optimize=True)
        manifest["files"].append(entry)
        print(f"{name:36s} {info['pillow_mode']:5s} {info['size']} {len(data):6d} B  {how}")
    for rel in DATASET_JPEGS:
        path = os.path.join(args.datasets, rel)
        info, _, _ = describe(path, procs)
        with open(path, "rb") as f:
            manifest["external"].append({"datasets_path": rel, "file_sha256": sha256(f.read()), **info})
        print(f"{rel:50s} {info['pillow_mode']} {info['size']}")
    for rel in REPO_JPEGS:
        info, _, _ = describe(os.path.join(REPO, rel), procs)
        with open(os.path.join(REPO, rel), "rb") as f:
            manifest["external"].append({"repo_path": rel, "file_sha256": sha256(f.read()), **info})
        print(f"{rel:50s} {info['pillow_mode']} {info['size']}")
    with open(os.path.join(out, "manifest.json"), "w") as f:
        # One line per file entry, so a regeneration diffs file by file.
        head = {k: v for k, v in manifest.items() if k not in ("files", "external")}
        f.write(json.dumps(head, indent=1)[:-2] + ",\n")
        for key in ("files", "external"):
            rows = ",\n".join("  " + json.dumps(e) for e in manifest[key])
            f.write(f' "{key}": [\n{rows}\n ]' + (",\n" if key == "files" else "\n"))
        f.write("}\n")
    json.load(open(os.path.join(out, "manifest.json")))  # well-formed
    total = sum(os.path.getsize(os.path.join(d, n)) for d, _, ns in os.walk(out) for n in ns)
    print(f"wrote {len(manifest['files'])} variants + {len(manifest['external'])} external files, {total / 1024:.0f} KiB in {out}")


if __name__ == "__main__":
    main()
