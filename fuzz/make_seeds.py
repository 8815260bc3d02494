#!/usr/bin/env python3
"""Writes the small seed corpora under fuzz/corpus/<target>/ (committed; regenerate with
`python3 fuzz/make_seeds.py`). Needs Pillow for the image seeds."""
import io, json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def put(target, name, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def safetensors(tensors, pad=True, meta=None):
    header, blob = {}, b""
    for name, dtype, shape, size in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + size]}
        blob += bytes((i * 7) % 256 for i in range(size))
    if meta:
        header["__metadata__"] = meta
    h = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + blob


put("safetensors_header", "two_f32", safetensors([("a.weight", "F32", [2, 3], 24), ("b", "F32", [4], 16)], meta={"format": "pt"}))
put("safetensors_header", "mixed", safetensors([("x", "BF16", [3, 2], 12), ("y", "F16", [5], 10), ("z", "F32", [], 4)]))
put("safetensors_header", "empty_tensor", safetensors([("e", "F32", [0, 4], 0), ("f", "F16", [1], 2)], pad=False))
put("safetensors_header", "bad_dtype", safetensors([("q", "I8", [4], 4)]))

text = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 48, "num_attention_heads": 4,
        "num_key_value_heads": 2, "num_hidden_layers": 2, "rms_norm_eps": 1e-6, "vocab_size": 64,
        "max_position_embeddings": 256, "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu"}
vision = {"model_type": "clip_vision_model", "hidden_size": 24, "intermediate_size": 40, "num_attention_heads": 2,
          "num_hidden_layers": 3, "image_size": 28, "patch_size": 7, "num_channels": 3, "hidden_act": "quick_gelu"}
cfg = {"architectures": ["LlavaForConditionalGeneration"], "model_type": "llava", "image_token_index": 63,
       "projector_hidden_act": "gelu", "vision_feature_layer": -2, "vision_feature_select_strategy": "default",
       "vision_config": vision, "text_config": text}
put("config_json", "llama_clip.json", json.dumps(cfg, indent=1))
qwen = dict(cfg, vision_feature_layer=-1, vision_feature_select_strategy="full",
            vision_config=dict(vision, model_type="siglip_vision_model", hidden_act="gelu_pytorch_tanh"),
            text_config=dict(text, model_type="qwen2", use_sliding_window=True, sliding_window=4, max_window_layers=1,
                             layer_types=["full_attention", "sliding_attention"], tie_word_embeddings=True))
put("config_json", "qwen2_siglip.json", json.dumps(qwen))
put("config_json", "mistral.json", json.dumps(dict(cfg, text_config=dict(text, model_type="mistral", sliding_window=8, head_dim=16)), indent=1))

put("preprocessor_config", "clip.json", json.dumps({"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 28},
    "crop_size": {"height": 28, "width": 28}, "do_center_crop": True, "resample": 3, "rescale_factor": 0.00392156862745098,
    "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}))
put("preprocessor_config", "siglip.json", json.dumps({"image_processor_type": "SiglipImageProcessor", "size": {"height": 32, "width": 24},
    "resample": 2, "image_mean": 0.5, "image_std": [0.5, 0.5, 0.5]}))
put("preprocessor_config", "llava_pad.json", json.dumps({"image_processor_type": "LlavaImageProcessorFast", "do_pad": True,
    "size": {"shortest_edge": 20, "longest_edge": 40}, "crop_size": 18, "resample": 1}))

ten = [{"answer": a, "answer_confidence": "yes", "answer_id": i + 1} for i, a in enumerate(["2", "two", "2", "2", "two", "2", "3", "2", "2", "2"])]
put("dataset_vqav2", "annotations.json", json.dumps({"data_subtype": "val2014", "annotations": [
    {"question_id": 262148000, "image_id": 262148, "question_type": "how many", "answer_type": "number",
     "multiple_choice_answer": "2", "answers": ten},
    {"question_id": 262148001, "image_id": 262148, "answers": ten[:3]}]}))
put("dataset_vqav2", "questions.json", json.dumps({"questions": [
    {"question_id": 262148000, "image_id": 262148, "question": "How many dogs?"},
    {"question_id": 262148001, "image_id": 262148, "question": "What color?"}]}))
put("dataset_textvqa", "val.json", json.dumps({"dataset_name": "textvqa", "data": [
    {"question_id": 34602, "question": "what is the brand?", "image_id": "003a8ae2ef43b901", "answers": ["nokia"] * 10},
    {"question_id": 34603, "question": "what does it say?", "image_id": "00685bc495504d61", "answers": None}]}))
put("dataset_docvqa", "val.json", json.dumps({"dataset_name": "SP-DocVQA", "data": [
    {"questionId": 24580, "question": "What is the name?", "question_types": ["layout"], "image": "documents/nkbl0226_1.png",
     "answers": ["University of California", "UC"]},
    {"questionId": "24581", "question": "Where?", "image": "documents/x.png", "answers": ["San Diego, CA"]}]}))
put("predictions", "vqa.json", json.dumps([{"question_id": 1, "answer": "Two dogs."}, {"question_id": 2, "answer": "2"},
                                             {"question_id": "x7", "answer": "isn't it 3?"}]))
put("predictions", "doc.json", json.dumps([{"questionId": 1, "answer": "two  DOGS"}, {"questionId": "2", "answer": ""}]))

try:
    from PIL import Image
except ImportError:
    raise SystemExit("Pillow is needed for the image seeds")


def img_bytes(img, fmt, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    return b.getvalue()


rgb = Image.new("RGB", (9, 6))
rgb.putdata([((x * 29) % 256, (y * 41) % 256, (x * y * 13) % 256) for y in range(6) for x in range(9)])
put("image_decode", "rgb.png", img_bytes(rgb, "PNG"))
put("image_decode", "rgba.png", img_bytes(rgb.convert("RGBA"), "PNG"))
put("image_decode", "gray.png", img_bytes(rgb.convert("L"), "PNG"))
put("image_decode", "palette.png", img_bytes(rgb.convert("P"), "PNG"))
put("image_decode", "gray16.png", img_bytes(rgb.convert("I;16"), "PNG"))
put("image_decode", "baseline.jpg", img_bytes(rgb, "JPEG", quality=80))
put("image_decode", "progressive.jpg", img_bytes(rgb, "JPEG", quality=70, progressive=True))
put("image_decode", "gray.jpg", img_bytes(rgb.convert("L"), "JPEG"))
