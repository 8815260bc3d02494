"""Build the Qwen2-VL / Qwen2.5-VL HF-parity fixtures in eval/fixtures/: tiny random checkpoints of
`Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration` and their golden tensors.

    HF_HUB_OFFLINE=1 python3 eval/tools/make_qwen_fixtures.py     # from the repository root

Built from configs with a fixed seed, offline, like make_fixtures.py (whose tokenizer corpus, weight
re-initialisation, images and margin rule it reuses): a byte-level BPE tokenizer with Qwen's special
tokens (no BOS), Qwen2-VL's own chat template, a Qwen2VLProcessor with the PIL image-processor backend
(max_pixels lowered so the images give 60 patches and the goldens stay small), float32, eager attention.
Both images of eval/fixtures/images (a portrait PNG, a landscape JPEG) give different patch grids
(10x6 and 6x10); the Qwen2.5-VL tower has windows of 2x2 merged tokens, so its 5x3 and 3x5 merged grids
have windows of 4, 2 and 1 tokens, and one full-attention layer between windowed ones.
See eval/fixtures/README.md for the layout.
"""

import json
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

import make_fixtures as mf  # noqa: E402

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
    "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

# Qwen2-VL-Instruct's chat template (as the hub's chat_template.json has it).
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

PATCH = 14
MERGE = 2
MAX_PIXELS = 28 * 28 * 20  # both fixture images -> 60 patches (10x6 / 6x10), 15 image tokens
MIN_PIXELS = 28 * 28


def train_tokenizer(texts, vocab_size):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", model_max_length=4096,
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
        padding_side="left",
    )


def corpus(datasets_dir):
    texts = mf.tokenizer_corpus(datasets_dir)
    texts.extend(["<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n", "<|im_start|>user\n",
                  "<|im_start|>assistant\n"] * 50)
    return texts


def fixture_specs():
    from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

    text = dict(
        hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        rms_norm_eps=1e-6, max_position_embeddings=512,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [2, 3, 3]},
    )
    return [
        dict(
            name="qwen2-vl",
            exercises="Qwen2-VL: dynamic resolution (smart resize, 2 frames, patch rows in merge-block order), Conv3d "
            "patch embed, 2-D vision RoPE, LayerNorm + quick_gelu MLP blocks with full attention, LayerNorm 2x2 "
            "merger, Qwen2 decoder with M-RoPE sections [2, 3, 3] (get_rope_index), GQA 4/2, untied lm_head",
            cls=Qwen2VLConfig,
            config=dict(
                text_config=dict(text),
                vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2,
                                   hidden_act="quick_gelu", patch_size=PATCH, spatial_merge_size=MERGE,
                                   temporal_patch_size=2),
                tie_word_embeddings=False,
            ),
        ),
        dict(
            name="qwen2_5-vl",
            exercises="Qwen2.5-VL: window attention (window_size 56 = 2x2 merged tokens, windows of 4, 2 and 1 tokens "
            "cut by the 5x3 / 3x5 merged grids, rows reordered window by window) with layer 1 of 3 full "
            "(fullatt_block_indexes), RMSNorm + SwiGLU (biased) blocks, RMSNorm merger and the gather back to image "
            "order, Qwen2 decoder with M-RoPE [2, 3, 3], tied embeddings",
            cls=Qwen2_5_VLConfig,
            config=dict(
                text_config=dict(text),
                vision_config=dict(depth=3, hidden_size=32, out_hidden_size=64, num_heads=2, intermediate_size=48,
                                   hidden_act="silu", patch_size=PATCH, spatial_merge_size=MERGE,
                                   temporal_patch_size=2, window_size=56, fullatt_block_indexes=[1]),
                tie_word_embeddings=True,
            ),
            init=dict(emb_std=0.25, residual_gain=1.5),
        ),
    ]


def make_processor(tokenizer):
    from transformers import Qwen2VLProcessor
    from transformers.image_utils import PILImageResampling
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    ip = Qwen2VLImageProcessorPil(
        size={"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}, patch_size=PATCH, merge_size=MERGE,
        temporal_patch_size=2, resample=PILImageResampling.BICUBIC,
    )
    try:
        from transformers import Qwen2VLVideoProcessor

        vp = Qwen2VLVideoProcessor()
    except Exception:  # the video processor needs torchvision; images only here
        vp = None
    return Qwen2VLProcessor(image_processor=ip, tokenizer=tokenizer, video_processor=vp, chat_template=CHAT_TEMPLATE)


def build_fixture(spec, tokenizer, out_dir, seed):
    cfg_kwargs = json.loads(json.dumps(spec["config"]))
    t = cfg_kwargs["text_config"]
    t.update(vocab_size=len(tokenizer), eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
             bos_token_id=None)
    ids = {k: tokenizer.convert_tokens_to_ids(v) for k, v in [
        ("image_token_id", "<|image_pad|>"), ("video_token_id", "<|video_pad|>"),
        ("vision_start_token_id", "<|vision_start|>"), ("vision_end_token_id", "<|vision_end|>")]}
    cfg = spec["cls"](**cfg_kwargs, **ids)
    torch.manual_seed(seed)
    model_cls = model_class(spec)
    model = model_cls(cfg)
    mf.scale_init(model, seed, **spec.get("init", {}))
    if cfg.tie_word_embeddings:
        model.tie_weights()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.bos_token_id = None
    model.eval()
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir)
    make_processor(tokenizer).save_pretrained(model_dir)
    return model_dir


def model_class(spec):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    return Qwen2VLForConditionalGeneration if spec["name"] == "qwen2-vl" else Qwen2_5_VLForConditionalGeneration


@torch.no_grad()
def golden(spec, model_dir, image_path, messages, root):
    from PIL import Image
    from transformers import AutoProcessor, GenerationConfig

    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    # backend="pil" also asks for a PIL video processor, which does not exist: load the processor
    # as saved, then its image processor with the PIL backend.
    proc = AutoProcessor.from_pretrained(model_dir)
    proc.image_processor = Qwen2VLImageProcessorPil.from_pretrained(model_dir)
    backend = type(proc.image_processor).__name__
    assert backend.endswith("Pil"), f"expected the PIL image-processor backend, got {backend}"
    model = model_class(spec).from_pretrained(model_dir, dtype=torch.float32, attn_implementation="eager").eval()
    cfg = model.config

    image = Image.open(os.path.join(root, image_path))
    prompt = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = proc(images=image, text=prompt, return_tensors="pt")
    input_ids = inputs["input_ids"]
    pixel_values = inputs["pixel_values"].to(torch.float32)
    grid = inputs["image_grid_thw"]
    feats = model.model.get_image_features(pixel_values=pixel_values, image_grid_thw=grid).pooler_output
    image_features = torch.cat(list(feats), dim=0)
    n_img = int((input_ids == cfg.image_token_id).sum())
    assert image_features.shape[0] == n_img, (image_features.shape, n_img)

    out = model(**inputs)
    logits = out.logits[0].float()
    gen_cfg = GenerationConfig(
        do_sample=False, max_new_tokens=mf.MAX_NEW_TOKENS, min_new_tokens=0, eos_token_id=None,
        pad_token_id=proc.tokenizer.pad_token_id,
    )
    model.generation_config.eos_token_id = None  # no early stop (the saved config keeps its eos)
    gen = model.generate(**inputs, generation_config=gen_cfg, output_logits=True, return_dict_in_generate=True)
    greedy = gen.sequences[0, input_ids.shape[1]:]
    assert greedy.shape[0] == mf.MAX_NEW_TOKENS, greedy.shape
    assert int(greedy[0]) == int(logits[-1].argmax()), "first greedy token != argmax of last prefill logits"
    # Cross-check the cached generation (rope_deltas) against full forwards without a cache.
    seq, types = input_ids, inputs["mm_token_type_ids"]
    for _ in range(mf.MAX_NEW_TOKENS):
        o = model(input_ids=seq, pixel_values=pixel_values, image_grid_thw=grid, mm_token_type_ids=types,
                  use_cache=False)
        nxt = o.logits[0, -1].argmax()
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
        types = torch.cat([types, torch.zeros((1, 1), dtype=types.dtype)], dim=1)
    assert seq[0, input_ids.shape[1]:].tolist() == greedy.tolist(), "generate() != no-cache greedy loop"
    margins = [float(s[0].float().topk(2).values[0] - s[0].float().topk(2).values[1]) for s in gen.logits]
    gh, gw = int(grid[0, 1]), int(grid[0, 2])
    tensors = {
        "input_ids": input_ids[0].to(torch.int64).contiguous(),
        "pixel_values": pixel_values.contiguous(),
        "image_grid_thw": grid.to(torch.int64).contiguous(),
        "image_features": image_features.float().contiguous(),
        "logits": logits.contiguous(),
        "greedy_tokens": greedy.to(torch.int64).contiguous(),
    }
    meta = {
        "fixture": os.path.basename(os.path.dirname(model_dir)),
        "image": image_path,
        "prompt": prompt,
        "messages": messages,
        "chat": False,
        "pixel_hw": [gh * PATCH, gw * PATCH],
        "num_prompt_tokens": int(input_ids.shape[1]),
        "num_image_tokens": n_img,
        "image_token_id": int(cfg.image_token_id),
        **mf.greedy_meta(proc.tokenizer, greedy, margins, backend),
    }
    return tensors, meta


def main():
    import argparse

    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="the shared datasets folder (default: ../shared/datasets)")
    ap.add_argument("--out", default=None, help="output folder (default: eval/fixtures)")
    ap.add_argument("--seed", type=int, default=mf.SEED)
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = mf.repo_root()
    datasets_dir = args.datasets or os.path.join(root, "..", "shared", "datasets")
    out_root = args.out or os.path.join(root, "eval", "fixtures")
    tokenizer = train_tokenizer(corpus(datasets_dir), mf.FIXTURE_VOCAB)
    for i, spec in enumerate(fixture_specs()):
        fx_dir = os.path.join(out_root, spec["name"])
        for attempt in range(20):
            seed = args.seed + 1000 + 100 * i + attempt
            model_dir = build_fixture(spec, tokenizer, fx_dir, seed)
            results = []
            for img in mf.IMAGES:
                messages = [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": img["messages_text"]}]}
                ]
                results.append(golden(spec, model_dir, img["file"], messages, root))
            if all(m["min_greedy_top2_margin"] >= mf.MIN_MARGIN and not m["greedy_contains_eos"] for _, m in results):
                break
        else:
            raise SystemExit(f"{spec['name']}: no seed gave greedy margins >= {mf.MIN_MARGIN}")
        for k, (tensors, meta) in enumerate(results):
            meta["exercises"] = spec["exercises"]
            meta["seed"] = seed
            save_file(tensors, os.path.join(fx_dir, f"golden_{k}.safetensors"))
            mf.write_json(os.path.join(fx_dir, f"golden_{k}.json"), meta)
            print(
                f"{spec['name']} golden_{k}: seed={seed} T={meta['num_prompt_tokens']} grid={tensors['image_grid_thw'].tolist()} "
                f"image_tokens={meta['num_image_tokens']} greedy={tensors['greedy_tokens'].tolist()} "
                f"min_margin={meta['min_greedy_top2_margin']:.4f} backend={meta['processor_backend']}"
            )


if __name__ == "__main__":
    main()
