"""Build the HF-parity fixtures in eval/fixtures/: tiny random LLaVA checkpoints and golden tensors.

    python3 eval/tools/make_fixtures.py            # from the repository root; writes eval/fixtures/

Everything is built from configs with a fixed seed (nothing is downloaded): a byte-level BPE tokenizer
trained with the `tokenizers` library, a LLaVA-style chat template, a LlavaProcessor with the PIL
image-processor backend, and weights re-initialised with scales large enough that logits are not flat.
For each fixture and each image the golden tensors are computed in float32 with eager attention.
See eval/fixtures/README.md for the layout. The helpers at the top are shared with train_easyvqa.py.
"""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import LlavaProcessor, PreTrainedTokenizerFast  # noqa: E402

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>", "<image>"]
UNK, BOS, EOS, PAD, IMAGE = SPECIAL_TOKENS

# LLaVA-1.5 style: "USER: <image>\n{text} ASSISTANT:"; assistant turns end with the eos token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}USER: {% else %}ASSISTANT: {% endif %}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>\n"
    "{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}"
    "{% if message['role'] == 'user' %} {% else %}{{ eos_token }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)


def train_tokenizer(texts, vocab_size):
    """Byte-level BPE (no unknown bytes), special tokens at ids 0..4, BOS prepended by the post-processor."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    for i, t in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(t) == i, (t, tok.token_to_id(t))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        unk_token=UNK,
        pad_token=PAD,
        extra_special_tokens={"image_token": IMAGE},
        model_max_length=4096,
        padding_side="left",
    )


def make_processor(tokenizer, image_processor, patch_size, strategy, has_cls):
    proc = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        patch_size=patch_size,
        vision_feature_select_strategy=strategy,
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE,
        # CLIP has a CLS token: without this the processor counts one image token too few.
        num_additional_image_tokens=1 if has_cls else 0,
    )
    return proc


@torch.no_grad()
def scale_init(model, seed, lm_head_gain=4.0, residual_gain=1.0, emb_std=1.0):
    """Deterministic re-initialisation with scales large enough that logits are far from flat.

    Linear / conv weights ~ N(0, gain^2 / fan_in); embeddings ~ N(0, emb_std^2); norm weights 1 + 0.1 N(0,1);
    biases 0.1 N(0,1); position embeddings 0.5 N(0,1).
    """
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        shape = p.shape
        if p.ndim == 1:
            if name.endswith("bias"):
                v = 0.1 * torch.randn(shape, generator=g)
            elif "class_embedding" in name:
                v = torch.randn(shape, generator=g)
            else:  # layer / rms norm weights
                v = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif "embed_tokens" in name:
            v = emb_std * torch.randn(shape, generator=g)
        elif "position_embedding" in name:
            v = 0.5 * torch.randn(shape, generator=g)
        else:
            fan_in = p[0].numel()
            gain = lm_head_gain if "lm_head" in name else residual_gain
            v = gain * torch.randn(shape, generator=g) / fan_in**0.5
        p.copy_(v.to(p.dtype))


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")


# ----------------------------------------------------------------------------------------------------
# Fixtures
# ----------------------------------------------------------------------------------------------------

SEED = 20261123
FIXTURE_VOCAB = 384
MAX_NEW_TOKENS = 12

# Source images, from ../shared/datasets (outside the repo, so derived copies ship in
# eval/fixtures/images/). Both are reduced so that the decoded_rgb tensor stored in every golden file
# keeps eval/fixtures under 5 MB: the DocVQA page (808x1077, 8-bit grayscale PNG) is reduced 3x with
# Image.reduce (box filter) and stays an "L" PNG, so the RGB conversion path is exercised; the COCO
# photo (640x428 JPEG) is reduced 2x and re-encoded by Pillow's libjpeg as a baseline JPEG, quality 90,
# 4:2:0 chroma subsampling, so JPEG decoder differences (IDCT, chroma upsampling) still show.
IMAGES = [
    {
        "file": "eval/fixtures/images/nkbl0226_1_reduced3.png",
        "source": "docvqa/images/nkbl0226_1.png",
        "messages_text": "What is the date written at the top of this page?",
    },
    {
        "file": "eval/fixtures/images/COCO_val2014_000000393225_reduced2.jpg",
        "source": "vqav2/images/COCO_val2014_000000393225.jpg",
        "messages_text": "What is in the image?",
    },
]
MIN_MARGIN = 0.01  # every greedy step's top-1 / top-2 logit gap, so f32 parity cannot flip a token


def fixture_specs():
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        MistralConfig,
        Qwen2Config,
        SiglipVisionConfig,
    )

    specs = []
    # CLIP (quick_gelu, CLS, pre-layernorm) + Llama with GQA (4 query heads, 2 kv heads).
    specs.append(
        dict(
            name="clip-llama-gqa",
            exercises="CLIP tower (quick_gelu, CLS, pre-layernorm), vision_feature_layer -2 of 3, strategy "
            "default (drops CLS), CLIP preprocessing (shortest edge 56 bicubic + center crop), Llama decoder "
            "with GQA 4/2 heads, head_dim 16, untied lm_head",
            vision=CLIPVisionConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=2,
                image_size=56, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                projection_dim=32,
            ),
            text=LlamaConfig(
                hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=256,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
            ),
            layer=-2,
            strategy="default",
            image_processor=("clip", 56),
            has_cls=True,
        )
    )
    # SigLIP (gelu_pytorch_tanh, no CLS) + Qwen2 (qkv bias, tied embeddings).
    specs.append(
        dict(
            name="siglip-qwen2",
            exercises="SigLIP tower (gelu_pytorch_tanh, no CLS, no head), vision_feature_layer -1 (no "
            "post-layernorm), strategy full, SigLIP preprocessing (resize to 42x42 bilinear, mean/std 0.5), "
            "Qwen2 decoder with q/k/v bias, GQA 4/2, rope_theta 1e6, tied embeddings (no lm_head tensor)",
            vision=SiglipVisionConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=42, patch_size=14, hidden_act="gelu_pytorch_tanh", layer_norm_eps=1e-6,
                vision_use_head=False,
            ),
            text=Qwen2Config(
                hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
                num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=256,
                rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
                use_sliding_window=False,
            ),
            layer=-1,
            strategy="full",
            image_processor=("siglip", 42),
            has_cls=False,
            # Tied embeddings: keep the token embedding small against the residual branches, or every
            # position just predicts its own input token again.
            init=dict(emb_std=0.25, residual_gain=1.5),
        )
    )
    # CLIP + Mistral with a sliding window shorter than the prompt (image tokens included).
    specs.append(
        dict(
            name="clip-mistral-window",
            exercises="CLIP tower, vision_feature_layer -1, strategy full (keeps CLS: 9 patches + 1), CLIP "
            "preprocessing at 42, Mistral decoder (3 layers) with sliding_window 12, shorter than every prompt "
            "and than the image tokens plus the text after them; 2 query heads / 1 kv head (MQA), head_dim 32",
            vision=CLIPVisionConfig(
                hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                image_size=42, patch_size=14, hidden_act="quick_gelu", layer_norm_eps=1e-5,
                projection_dim=32,
            ),
            text=MistralConfig(
                hidden_size=64, intermediate_size=96, num_hidden_layers=3, num_attention_heads=2,
                num_key_value_heads=1, head_dim=32, rms_norm_eps=1e-5, max_position_embeddings=256,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, sliding_window=12,
                tie_word_embeddings=False,
            ),
            layer=-1,
            strategy="full",
            image_processor=("clip", 42),
            has_cls=True,
        )
    )
    return specs


def repo_root():
    return os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def tokenizer_corpus(datasets_dir):
    """Real English text for the fixture tokenizer: DocVQA val questions and VQAv2 sample questions."""
    texts = []
    with open(os.path.join(datasets_dir, "docvqa", "val_v1.0_withQT.json")) as f:
        for rec in json.load(f)["data"]:
            texts.append(rec["question"])
            texts.extend(rec.get("answers", []))
    with open(os.path.join(datasets_dir, "vqav2", "v2_OpenEnded_mscoco_val2014_questions.sample.json")) as f:
        texts.extend(q["question"] for q in json.load(f)["questions"])
    texts.extend(["USER: <image>\n", " ASSISTANT:", "USER:", "ASSISTANT:"] * 50)
    return texts


def prepare_images(root, datasets_dir):
    from PIL import Image

    out_dir = os.path.join(root, "eval", "fixtures", "images")
    os.makedirs(out_dir, exist_ok=True)
    doc, coco = IMAGES
    im = Image.open(os.path.join(datasets_dir, doc["source"]))
    assert im.mode == "L", im.mode
    im.reduce(3).save(os.path.join(root, doc["file"]), format="PNG", optimize=True)
    im = Image.open(os.path.join(datasets_dir, coco["source"])).convert("RGB")
    im.reduce(2).save(os.path.join(root, coco["file"]), format="JPEG", quality=90, subsampling="4:2:0")


def make_image_processor(kind, size):
    from transformers.image_utils import PILImageResampling
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.siglip.image_processing_pil_siglip import SiglipImageProcessorPil

    if kind == "clip":
        return CLIPImageProcessorPil(
            size={"shortest_edge": size}, crop_size={"height": size, "width": size},
            resample=PILImageResampling.BICUBIC,
        )
    return SiglipImageProcessorPil(size={"height": size, "width": size}, resample=PILImageResampling.BILINEAR)


def build_fixture(spec, tokenizer, out_dir, seed):
    from transformers import LlavaConfig, LlavaForConditionalGeneration

    text = spec["text"]
    text.vocab_size = len(tokenizer)
    text.bos_token_id = tokenizer.bos_token_id
    text.eos_token_id = tokenizer.eos_token_id
    text.pad_token_id = tokenizer.pad_token_id
    cfg = LlavaConfig(
        vision_config=spec["vision"],
        text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        projector_hidden_act="gelu",
        vision_feature_select_strategy=spec["strategy"],
        vision_feature_layer=spec["layer"],
        tie_word_embeddings=text.tie_word_embeddings,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    scale_init(model, seed, **spec.get("init", {}))
    if text.tie_word_embeddings:
        model.tie_weights()
        assert model.lm_head.weight.data_ptr() == model.get_input_embeddings().weight.data_ptr()
    model.generation_config.bos_token_id = tokenizer.bos_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.eval()
    kind, size = spec["image_processor"]
    proc = make_processor(tokenizer, make_image_processor(kind, size), 14, spec["strategy"], spec["has_cls"])
    model_dir = os.path.join(out_dir, "model")
    os.makedirs(model_dir, exist_ok=True)
    model.save_pretrained(model_dir)
    proc.save_pretrained(model_dir)
    return model_dir


@torch.no_grad()
def golden(model_dir, image_path, messages, root):
    """Reload the saved checkpoint + processor (PIL backend) and compute the golden tensors."""
    import numpy as np
    from PIL import Image
    from transformers import AutoProcessor, GenerationConfig, LlavaForConditionalGeneration

    proc = AutoProcessor.from_pretrained(model_dir, backend="pil")
    backend = type(proc.image_processor).__name__
    assert backend.endswith("Pil"), f"expected the PIL image-processor backend, got {backend}"
    model = LlavaForConditionalGeneration.from_pretrained(
        model_dir, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    cfg = model.config

    image = Image.open(os.path.join(root, image_path))
    decoded_rgb = np.array(image.convert("RGB"))
    prompt = proc.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    inputs = proc(images=image, text=prompt, return_tensors="pt")
    input_ids = inputs["input_ids"]
    pixel_values = inputs["pixel_values"].to(torch.float32)

    feats = model.model.get_image_features(
        pixel_values=pixel_values,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    ).pooler_output
    image_features = torch.cat(list(feats), dim=0)
    n_img = int((input_ids == cfg.image_token_index).sum())
    assert image_features.shape[0] == n_img, (image_features.shape, n_img)

    out = model(input_ids=input_ids, attention_mask=inputs["attention_mask"], pixel_values=pixel_values)
    logits = out.logits[0].float()

    gen_cfg = GenerationConfig(
        do_sample=False, max_new_tokens=MAX_NEW_TOKENS, min_new_tokens=0, eos_token_id=None,
        pad_token_id=proc.tokenizer.pad_token_id, bos_token_id=proc.tokenizer.bos_token_id,
    )
    gen = model.generate(
        input_ids=input_ids, attention_mask=inputs["attention_mask"], pixel_values=pixel_values,
        generation_config=gen_cfg, output_logits=True, return_dict_in_generate=True,
    )
    greedy = gen.sequences[0, input_ids.shape[1]:]
    assert greedy.shape[0] == MAX_NEW_TOKENS, greedy.shape
    assert int(greedy[0]) == int(logits[-1].argmax()), "first greedy token != argmax of last prefill logits"
    # Cross-check the cached generation against a plain greedy loop of full forwards (no KV cache).
    seq = input_ids
    for _ in range(MAX_NEW_TOKENS):
        nxt = model(input_ids=seq, pixel_values=pixel_values, use_cache=False).logits[0, -1].argmax()
        seq = torch.cat([seq, nxt.view(1, 1)], dim=1)
    assert seq[0, input_ids.shape[1]:].tolist() == greedy.tolist(), "generate() != no-cache greedy loop"
    margins = []
    for step_logits in gen.logits:
        top2 = step_logits[0].float().topk(2).values
        margins.append(float(top2[0] - top2[1]))

    tensors = {
        "input_ids": input_ids[0].to(torch.int64).contiguous(),
        "pixel_values": pixel_values.contiguous(),
        "decoded_rgb": torch.from_numpy(decoded_rgb.copy()).to(torch.uint8).contiguous(),
        "image_features": image_features.float().contiguous(),
        "logits": logits.contiguous(),
        "greedy_tokens": greedy.to(torch.int64).contiguous(),
    }
    meta = {
        "fixture": os.path.basename(os.path.dirname(model_dir)),
        "image": image_path,
        "prompt": prompt,
        "messages": messages,
        "num_prompt_tokens": int(input_ids.shape[1]),
        "num_image_tokens": n_img,
        "image_token_id": int(cfg.image_token_index),
        **greedy_meta(proc.tokenizer, greedy, margins, backend),
    }
    return tensors, meta


def greedy_meta(tokenizer, greedy, margins, backend):
    """The golden json fields every fixture tool writes after its own: the greedy run, the versions."""
    import transformers

    return {
        "max_new_tokens": MAX_NEW_TOKENS,
        "greedy_text": tokenizer.decode(greedy.tolist(), skip_special_tokens=False),
        "greedy_stops_on_eos": False,
        "greedy_contains_eos": bool((greedy == tokenizer.eos_token_id).any()),
        "min_greedy_top2_margin": min(margins),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "processor_backend": backend,
        "dtype": "float32",
        "attn_implementation": "eager",
    }


def write_big_checkpoint(out_dir, datasets_dir, seed, dtype):
    """A random LLaVA checkpoint of real size, no goldens: CLIP ViT-B/16 tower at 224 + a Qwen2-0.5B
    decoder (24 layers, hidden 896, 14/2 heads, SwiGLU 4864, vocab 151936, tied embeddings), saved as
    the hub saves Qwen2-0.5B (bf16 by default). For load-time / peak-memory / speed measurements."""
    from transformers import CLIPVisionConfig, LlavaConfig, LlavaForConditionalGeneration, Qwen2Config

    tokenizer = train_tokenizer(tokenizer_corpus(datasets_dir), FIXTURE_VOCAB)
    vision = CLIPVisionConfig(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        image_size=224, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=512,
    )
    text = Qwen2Config(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6, max_position_embeddings=32768,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, tie_word_embeddings=True,
        use_sliding_window=False, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg).to(getattr(torch, dtype))
    model.tie_weights()
    proc = make_processor(tokenizer, make_image_processor("clip", 224), 16, "default", True)
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    proc.save_pretrained(out_dir)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {out_dir}: {n / 1e6:.1f}M parameters, {dtype}")


def main():
    import argparse

    from safetensors.torch import save_file

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default=None, help="the shared datasets folder (default: ../shared/datasets)")
    ap.add_argument("--out", default=None, help="output folder (default: eval/fixtures)")
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--big-checkpoint", metavar="DIR", default=None,
                    help="only write a random CLIP ViT-B/16 + Qwen2-0.5B-size checkpoint to DIR (no goldens)")
    ap.add_argument("--big-dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = ap.parse_args()
    torch.set_num_threads(1)
    root = repo_root()
    datasets_dir = args.datasets or os.path.join(root, "..", "shared", "datasets")
    if args.big_checkpoint:
        write_big_checkpoint(args.big_checkpoint, datasets_dir, args.seed, args.big_dtype)
        return
    out_root = args.out or os.path.join(root, "eval", "fixtures")

    prepare_images(root, datasets_dir)
    torch.manual_seed(args.seed)
    tokenizer = train_tokenizer(tokenizer_corpus(datasets_dir), FIXTURE_VOCAB)
    for i, spec in enumerate(fixture_specs()):
        fx_dir = os.path.join(out_root, spec["name"])
        # Re-draw the weights until no greedy step is a near tie and no greedy token is eos.
        for attempt in range(20):
            seed = args.seed + 100 * i + attempt
            model_dir = build_fixture(spec, tokenizer, fx_dir, seed)
            results = []
            for k, img in enumerate(IMAGES):
                messages = [
                    {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": img["messages_text"]}]}
                ]
                results.append(golden(model_dir, img["file"], messages, root))
            if all(m["min_greedy_top2_margin"] >= MIN_MARGIN and not m["greedy_contains_eos"] for _, m in results):
                break
        else:
            raise SystemExit(f"{spec['name']}: no seed gave greedy margins >= {MIN_MARGIN}")
        for k, (tensors, meta) in enumerate(results):
            meta["exercises"] = spec["exercises"]
            meta["seed"] = seed
            save_file(tensors, os.path.join(fx_dir, f"golden_{k}.safetensors"))
            write_json(os.path.join(fx_dir, f"golden_{k}.json"), meta)
            print(
                f"{spec['name']} golden_{k}: seed={seed} T={meta['num_prompt_tokens']} "
                f"image_tokens={meta['num_image_tokens']} greedy={tensors['greedy_tokens'].tolist()} "
                f"min_margin={meta['min_greedy_top2_margin']:.4f} backend={meta['processor_backend']}"
            )

if __name__ == "__main__":
    main()
