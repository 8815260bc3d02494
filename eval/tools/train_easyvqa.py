"""Train the tiny LLaVA-architecture easy-VQA model shipped in eval/models/easyvqa-tiny/.

    python3 eval/tools/train_easyvqa.py            # from the repository root

An HF LlavaForConditionalGeneration (CLIP-style vision tower + Llama decoder + a byte-level BPE
tokenizer trained on the easy-VQA train questions and answers), built from configs with a fixed seed,
trained on the CPU, offline, on the easy-VQA train split (PyPI package `easy-vqa`, MIT), in two stages:
the vision tower learns shape, then colour, through an auxiliary classifier (stage 1, ~2.5 minutes);
then, with the tower frozen, the projector and decoder learn to answer (stage 2, ~13 minutes on one
thread; the loss is on the answer tokens and the closing eos only). 5% of the train images are held out for validation (used
to stop early); the test split is only used once, at the end: greedy `model.generate` on all 9,673 test
questions, exact match of the stripped answer. Writes the checkpoint (float32, save_pretrained), the
processor files (PIL backend), easyvqa.json (prompt and decoding settings the Rust eval uses),
torch_predictions.jsonl and MODEL_CARD.md, and copies the test split to eval/data/easy-vqa/.
"""

import argparse
import json
import math
import os
import random
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_fixtures import IMAGE, make_processor, repo_root, train_tokenizer, write_json  # noqa: E402
from easyvqa_questions import (  # noqa: E402
    COLORS, SHAPES, breakdown, format_breakdown, image_labels,
)

import numpy as np  # noqa: E402
import torch  # noqa: E402

# Short prompt: easy-VQA answers are single words anyway, and every prompt token costs training time.
PROMPT = "USER: <image>\n{question} ASSISTANT:"
MAX_NEW_TOKENS = 8
VOCAB = 400


def easyvqa_dir(path):
    if path:
        return path
    import easy_vqa

    return os.path.join(os.path.dirname(easy_vqa.__file__), "data")


def load_split(data_dir, split):
    with open(os.path.join(data_dir, split, "questions.json")) as f:
        return [(q, a, int(i)) for q, a, i in json.load(f)]


def build(tokenizer, seed, hidden=128, intermediate=256, layers=3, init_std=0.02):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration
    from transformers.image_utils import PILImageResampling
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    vision = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        image_size=64, patch_size=16, hidden_act="quick_gelu", layer_norm_eps=1e-5, projection_dim=64,
    )
    text = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=hidden, intermediate_size=intermediate, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-5, max_position_embeddings=128,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0}, tie_word_embeddings=False,
        initializer_range=init_std, bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    cfg = LlavaConfig(
        vision_config=vision, text_config=text, image_token_index=tokenizer.convert_tokens_to_ids(IMAGE),
        projector_hidden_act="gelu", vision_feature_select_strategy="default", vision_feature_layer=-1,
        image_seq_length=16,
    )
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(cfg)
    for k in ("bos_token_id", "eos_token_id", "pad_token_id"):
        setattr(model.generation_config, k, getattr(tokenizer, k))
    # 64x64 images: shortest edge 64 + center crop 64 is the identity, but the settings are the real ones.
    image_processor = CLIPImageProcessorPil(
        size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}, resample=PILImageResampling.BICUBIC
    )
    processor = make_processor(tokenizer, image_processor, 16, "default", has_cls=True)
    return model, processor


def pixel_table(processor, image_dir, ids):
    """Preprocess every image once with the checkpoint's own (PIL-backend) image processor."""
    from PIL import Image

    ids = sorted(set(ids))
    index = {i: n for n, i in enumerate(ids)}
    pix = []
    for s in range(0, len(ids), 250):
        ims = [Image.open(os.path.join(image_dir, f"{i}.png")) for i in ids[s : s + 250]]
        pix.append(processor.image_processor(ims, return_tensors="pt")["pixel_values"])
    return torch.cat(pix).float(), index


def encode_prompts(processor, questions):
    """Token ids of each prompt with <image> expanded, as the processor does it (checked on a sample)."""
    n_img = processor.image_processor.crop_size["height"] // processor.patch_size
    n_img = n_img * n_img + processor.num_additional_image_tokens - 1
    prompts = [PROMPT.format(question=q).replace(IMAGE, IMAGE * n_img) for q in questions]
    return processor.tokenizer(prompts, add_special_tokens=True)["input_ids"]


def make_examples(processor, data):
    tok = processor.tokenizer
    prompt_ids = encode_prompts(processor, [q for q, _, _ in data])
    answer_ids = tok([" " + a for _, a, _ in data], add_special_tokens=False)["input_ids"]
    return [(p, a + [tok.eos_token_id], img) for p, a, (_, _, img) in zip(prompt_ids, answer_ids, data)]


def collate(batch, pix, index, pad_id):
    longest = max(len(p) + len(a) for p, a, _ in batch)
    ids = torch.full((len(batch), longest), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), longest), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), longest), dtype=torch.long)
    for r, (p, a, _) in enumerate(batch):
        seq = p + a
        ids[r, : len(seq)] = torch.tensor(seq)
        labels[r, len(p) : len(seq)] = torch.tensor(a)
        mask[r, : len(seq)] = 1
    pixel_values = pix[torch.tensor([index[img] for _, _, img in batch])]
    return ids, mask, labels, pixel_values


@torch.no_grad()
def greedy_answers(model, processor, data, pix, index, batch_size=256):
    """model.generate greedy on every question. Prompts are grouped by exact token length, so no batch
    has padding and each answer is what an unbatched run gives."""
    model.eval()
    tok = processor.tokenizer
    prompt_ids = encode_prompts(processor, [q for q, _, _ in data])
    by_len = {}
    for n, p in enumerate(prompt_ids):
        by_len.setdefault(len(p), []).append(n)
    preds = [None] * len(data)
    for _, members in sorted(by_len.items()):
        for s in range(0, len(members), batch_size):
            rows = members[s : s + batch_size]
            ids = torch.tensor([prompt_ids[n] for n in rows])
            pv = pix[torch.tensor([index[data[n][2]] for n in rows])]
            out = model.generate(
                input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv, do_sample=False,
                max_new_tokens=MAX_NEW_TOKENS, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
            )
            for n, seq in zip(rows, out[:, ids.shape[1] :].tolist()):
                preds[n] = tok.decode(seq, skip_special_tokens=True).strip()
    return preds


def image_features(model, pixel_values):
    """The projected image tokens [B, N_img, D] as LlavaForConditionalGeneration computes them."""
    feats = model.model.get_image_features(
        pixel_values=pixel_values, vision_feature_layer=model.config.vision_feature_layer,
        vision_feature_select_strategy=model.config.vision_feature_select_strategy,
    ).pooler_output
    return torch.stack(list(feats))


@torch.no_grad()
def vision_cache(model, pix, variants):
    """Stage 2 with a frozen tower: the tower's selected hidden states (layer -1, CLS dropped) of every
    image in each dihedral variant ([variants, images, N_img, D_vision]); the projector still trains."""
    assert model.config.vision_feature_layer == -1 and model.config.vision_feature_select_strategy == "default"
    tower = model.model.vision_tower
    tower.eval()
    out = []
    for v in range(variants):
        x = torch.rot90(pix, v // 2, (2, 3))
        x = torch.flip(x, (3,)) if v % 2 else x
        out.append(torch.cat([tower(x[s : s + 500], output_hidden_states=True).hidden_states[-1][:, 1:]
                              for s in range(0, len(x), 500)]))
    ref = image_features(model, pix[:4])
    got = model.model.multi_modal_projector(out[0][:4])
    assert torch.allclose(ref, got, atol=1e-5), "cached tower states disagree with get_image_features"
    return torch.stack(out)


def answer_loss(model, aux_head, ids, mask, feats, labels, aux_labels):
    """Cross-entropy on the answer tokens and eos only (the LM head runs only at those positions), plus an
    auxiliary shape / colour classification of the mean image feature. The auxiliary head is a training
    aid that gives the vision tower a direct signal; it is not part of the saved model."""
    lm = model.model
    embeds = lm.get_input_embeddings()(ids)
    image_mask = (ids == model.config.image_token_index).unsqueeze(-1).expand_as(embeds)
    embeds = embeds.masked_scatter(image_mask, feats.reshape(-1, feats.shape[-1]).to(embeds.dtype))
    hidden = lm.language_model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    keep = target != -100
    logits = model.lm_head(hidden[:, :-1][keep])
    loss = torch.nn.functional.cross_entropy(logits, target[keep])
    aux = aux_head(feats.mean(dim=1))
    f = torch.nn.functional
    aux_loss = f.cross_entropy(aux[:, :3], aux_labels[:, 0], ignore_index=-100) + f.cross_entropy(
        aux[:, 3:], aux_labels[:, 1], ignore_index=-100
    )
    return loss, aux_loss


def dihedral(pixel_values, gen):
    """One of the 8 rotations/reflections per image (easy-VQA answers are invariant to them). The CLIP
    normalisation is per channel, so transforming normalised pixels equals normalising transformed ones."""
    out = torch.empty_like(pixel_values)
    for n in range(pixel_values.shape[0]):
        k = int(torch.randint(4, (1,), generator=gen))
        x = torch.rot90(pixel_values[n], k, (1, 2))
        out[n] = torch.flip(x, (2,)) if int(torch.randint(2, (1,), generator=gen)) else x
    return out


@torch.no_grad()
def aux_accuracy(model, aux_head, pix, index, labels):
    """(shape, colour) accuracy of the auxiliary head on the images whose label is known."""
    imgs = sorted(labels)
    lab = torch.tensor([labels[i] for i in imgs])
    aux = aux_head(image_features(model, pix[torch.tensor([index[i] for i in imgs])]).mean(dim=1))
    out = []
    for pred, truth in ((aux[:, :3].argmax(-1), lab[:, 0]), (aux[:, 3:].argmax(-1), lab[:, 1])):
        known = truth >= 0
        out.append((pred[known] == truth[known]).float().mean().item())
    return tuple(out)


def pretrain_vision(model, aux_head, pix, index, img_labels, steps, batch_size, lr, gen, augment, val_labels):
    """Stage 1: the vision tower and projector learn shape and colour through the auxiliary head alone
    (about 25 ms a step instead of ~1 s for the whole model). From scratch inside the joint loss the tower
    learnt shapes too slowly (test shape accuracy 61% after 2,000 joint steps). Shape comes first: with
    the colour loss on from the start (colour is learnt in a few hundred steps from the mean pixel) the
    tower reached only 74% validation shape accuracy in 4,000 steps; on shape alone, 97% in 3,000. So the
    first three quarters train shape only at a constant rate, the last quarter adds colour and decays
    the rate (cosine)."""
    lm = model.model
    params = list(lm.vision_tower.parameters()) + list(lm.multi_modal_projector.parameters())
    params += list(aux_head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01, betas=(0.9, 0.98))
    imgs = sorted(img_labels)
    labels = torch.tensor([img_labels[i] for i in imgs])
    rows = torch.tensor([index[i] for i in imgs])
    f = torch.nn.functional
    shape_steps = steps * 3 // 4
    for step in range(steps):
        pick = torch.randint(len(imgs), (batch_size,), generator=gen)
        pv = pix[rows[pick]]
        if augment:
            pv = dihedral(pv, gen)
        aux = aux_head(image_features(model, pv).mean(dim=1))
        lab = labels[pick]
        loss = f.cross_entropy(aux[:, :3], lab[:, 0], ignore_index=-100)
        if step >= shape_steps:
            loss = loss + f.cross_entropy(aux[:, 3:], lab[:, 1], ignore_index=-100)
            for g in opt.param_groups:
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * (step - shape_steps) / (steps - shape_steps)))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (step + 1) % 500 == 0:
            shape, colour = aux_accuracy(model, aux_head, pix, index, val_labels)
            print(f"vision pretrain step {step + 1}/{steps} aux loss {loss.item():.4f} "
                  f"val shape {100 * shape:.1f}% colour {100 * colour:.1f}%", flush=True)
    return aux_accuracy(model, aux_head, pix, index, val_labels)


class TiedAuxHead(torch.nn.Module):
    """The auxiliary shape/colour classifier scored against the decoder's own input embeddings of the
    answer words (" circle", " red", ...): image features are pulled toward the embedding of the word
    that names what they show, so "is there a red shape?" compares two vectors that live in the same
    space. Owns no parameters (the embedding rows train with the decoder in stage 2)."""

    def __init__(self, embedding, token_ids):
        super().__init__()
        self.embedding = [embedding]  # a list: not registered as a submodule, so not a parameter here
        self.register_buffer("ids", torch.tensor(token_ids), persistent=False)

    def forward(self, x):
        return x @ self.embedding[0].weight[self.ids].t()


def yes_no_key(question, answer):
    """(shape or colour, negated, answer) of a yes/no question; None for the others."""
    if answer not in ("yes", "no"):
        return None
    q = f" {question} "
    kind = "shape" if any(s in q for s in SHAPES) else "colour"
    negated = " not " in q or "n't " in q or " no " in q
    return kind, negated, answer


def sample_weights(data):
    """Per-example sampling weights that give each (kind, negated, answer) group of yes/no questions
    the same share of the yes/no mass; other questions keep weight 1. In easy-VQA train the colour
    asked about matches the image in only 12% of the colour yes/no questions: trained on the natural
    mix, the model learnt the prior ("is there a red shape?" -> no) and answered every matching colour
    question wrongly (test accuracy 86%)."""
    keys = [yes_no_key(q, a) for q, a, _ in data]
    counts = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    share = sum(counts.values()) / len(counts)
    return [1.0 if k is None else share / counts[k] for k in keys]


def accuracy(preds, data):
    return sum(p == a for p, (_, a, _) in zip(preds, data)) / len(data)


def _stage1(info):
    acc = info.get("vision_pretrain_val_accuracy")
    if not acc:
        return "not recorded"
    return f"shape {100 * acc['shape']:.1f}%, colour {100 * acc['colour']:.1f}%"


def write_card(out, info):
    """MODEL_CARD.md from the facts recorded in easyvqa.json (`--card-only` rewrites it from that file)."""
    hist = "\n".join(
        f"| {h['step']} | {h['epoch']} | {100 * h['val_acc']:.1f} | {h['minutes']} |" for h in info["val_history"]
    )
    status = "**Below the 90% target.**\n\n" if info["test_accuracy_pytorch"] < 0.90 else ""
    if info.get("test_breakdown"):
        rows = "\n".join(f"| {k} | {v['questions']} | {100 * v['correct'] / v['questions']:.1f} |"
                         for k, v in info["test_breakdown"].items())
        status += f"""Test accuracy by kind of question (`yn-colour-match`: a yes/no question naming the image's own
colour, `-other`: naming another; labels from each image's own test answers):

| kind | questions | accuracy % |
|---|---|---|
{rows}
"""
    history = """## What did not work (earlier runs, one each)

The previous shipped model (86.15%, vision tower trained inside the joint loss after a mixed
shape+colour stage 1) had learnt the prior of the yes/no questions instead of comparing: in the train
split the colour asked about matches the image in only 12% of colour yes/no questions (33% for
shapes), and it answered "no" to every "is there a red shape?" about a red shape. With the tower
trained jointly, these did not fix it within 2,000 to 2,800 joint steps (validation accuracy):
sampling yes/no questions balanced (`--balance-yes-no`, ~60%), SwiGLU width 1024 (84%), decoder init
std 0.08 with balancing (60%), the auxiliary head tied to the word embeddings (`--aux-tied`, 83%). What
changed the outcome: a tower that really knows shapes (shape-first stage 1: 97% validation shape
accuracy instead of 74%) and, with the tower frozen, stage-2 steps 4x cheaper, so the decoder gets
six epochs; the colour comparison appears after about 2,500 steps, while the learning rate is still
high. Adding 25% template yes/no questions about the train images, matching half the time, taught
shape comparison sooner but cost accuracy on the other questions (validation 95.7% against 98.1% at
step 6,000; dropped).
"""
    card = f"""# easyvqa-tiny

A tiny LLaVA-architecture model (HF `LlavaForConditionalGeneration`) trained from scratch on the
easy-VQA train split. It is the default model of `foveate eval --task easy-vqa`.

**PyTorch test accuracy: {100 * info['test_accuracy_pytorch']:.2f}%** (exact match of the stripped greedy
answer, {info['test_correct']}/{info['test_questions']} easy-VQA test questions; float32, eager attention,
transformers {info['transformers']}, torch {info['torch']}, CPU).

Produced by (from the repository root, {info['torch_threads']} torch thread, {info['train_minutes']} minutes of
training on a shared 2-core machine, {info['total_minutes']} minutes in all; training stopped after
{info.get('steps', '?')} steps because {info.get('stop_reason', 'of the time limit')}; `--max-steps {info.get('steps', '?')}`
instead of a time limit replays exactly that run):

```
OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 {info['command']}
```

{info.get('command_note', '')}

{status}

## Model

- Vision: CLIP-style tower (`clip_vision_model`), 64x64 input, patch 16 (16 patches + CLS), hidden 64,
  2 layers, 4 heads, quick_gelu; `vision_feature_layer` -1, strategy `default` (CLS dropped): 16 image tokens.
- Projector: linear 64 -> {info.get('text_hidden', 128)}, GELU (erf), linear {info.get('text_hidden', 128)} -> {info.get('text_hidden', 128)}.
- Decoder: Llama, hidden {info.get('text_hidden', 128)}, {info.get('text_layers', 3)} layers, 4 heads / 2 kv heads (GQA), head_dim {info.get('text_hidden', 128) // 4}, SwiGLU {info.get('text_intermediate', 256)}, RoPE 1e4,
  untied lm_head. {info['params']} parameters in all, float32 (`model.safetensors`).
- Tokenizer: byte-level BPE trained on the train questions and answers ({info['vocab']} tokens;
  `<unk> <s> </s> <pad> <image>` = 0..4; `<s>` prepended by the post-processor).
- Image processor: CLIPImageProcessor (PIL backend) with shortest edge 64 and a 64x64 center crop,
  the identity on easy-VQA's 64x64 RGB images, then rescale and the CLIP mean/std.

## Prompt and decoding (also in `easyvqa.json`)

```
{info['prompt']}
```

`{{question}}` is the easy-VQA question verbatim. This is the chat template applied to one user turn
(an image, then the question; no lmms-eval suffix) with the generation prompt. The
answer is generated greedily after `ASSISTANT:` and ends with `</s>`; at most {info['max_new_tokens']} new
tokens; the prediction is the decoded new tokens without special tokens, stripped.

## Training

Stage 1 ({info.get('vision_pretrain_steps', 0)} steps, {info.get('vision_pretrain_minutes', 0)} minutes): the vision tower and
projector alone learn an auxiliary shape (3-way) and colour (8-way) classification of the mean image
feature, through a linear head that exists only during training (labels: each image's shape and
colour as its own train answers state them, by name or by a yes/no answer that confirms it). Shape
comes first: three quarters of the steps train shape alone at a constant rate, the last quarter adds
colour and decays the rate (with both from the start, colour is learnt at once and shape stalled at
74% validation accuracy after 4,000 steps). Validation accuracy of the auxiliary head at the end of
stage 1 (held-out images): {_stage1(info)}.

Stage 2: {"the vision tower stays as stage 1 left it (its hidden states are computed once per image and cached); the projector and the decoder train" if info.get('freeze_vision') else "the whole model"}; loss: cross-entropy on the answer tokens and the closing `</s>` only, plus
(weight {info.get('aux_weight', 1.0)}) the same auxiliary loss. {"Yes/no questions are sampled so that every (shape or colour, negated or not, yes or no) group weighs the same (other questions at their natural rate): in the train split the colour asked about matches the image in only 12% of colour yes/no questions, and trained on the natural mix the model learnt the prior and answered every matching-colour question wrongly (test accuracy 86%). " if info.get('balance_yes_no') else ""}5% of the train images (and their questions)
held out for validation; AdamW (lr {info['lr']}, betas 0.9/0.98, weight decay 0.01), batch {info['batch_size']},
warmup then cosine decay over {info['epochs']} epochs, gradient clipping 1.0, seed {info['seed']}; training stops
when validation accuracy (1,000 held-out questions) reaches {info['target']}, or after {info['max_minutes']}
minutes. The test split is used once, at the end, on the model reloaded from the saved files.

| step | epoch | val acc % | minutes |
|---|---|---|---|
{hist}

{history}
## Files

- `config.json`, `generation_config.json`, `model.safetensors`: the checkpoint (`save_pretrained`).
- `tokenizer.json`, `tokenizer_config.json`, `chat_template.jinja`, `processor_config.json`: the processor.
- `easyvqa.json`: prompt, decoding, post-processing, accuracy, training facts.
- `torch_predictions.jsonl`: PyTorch's greedy answer for every test question, in the order of
  `eval/data/easy-vqa/test/questions.json`: `question_index`, `image_id`, `question`, `answer` (gold),
  `prediction`. The Rust eval checks its answers against these.

## Data and licence

easy-VQA (Victor Zhou, PyPI `easy-vqa` 1.0, MIT licence): 4,000 train / 1,000 test 64x64 images of one
coloured shape, 38,575 / 9,673 questions, 13 answers. The test split ships in `eval/data/easy-vqa/`
with the package's LICENSE and README.
"""
    with open(os.path.join(out, "MODEL_CARD.md"), "w") as f:
        f.write(card)


def copy_test_split(data_dir, root):
    import easy_vqa

    dst = os.path.join(root, "eval", "data", "easy-vqa")
    os.makedirs(os.path.join(dst, "test", "images"), exist_ok=True)
    shutil.copy(os.path.join(data_dir, "test", "questions.json"), os.path.join(dst, "test", "questions.json"))
    for name in os.listdir(os.path.join(data_dir, "test", "images")):
        if name.endswith(".png"):
            shutil.copy(os.path.join(data_dir, "test", "images", name), os.path.join(dst, "test", "images", name))
    shutil.copy(os.path.join(data_dir, "answers.txt"), os.path.join(dst, "answers.txt"))
    shutil.copy(os.path.join(data_dir, "README.md"), os.path.join(dst, "README.md"))
    pkg = os.path.dirname(os.path.dirname(easy_vqa.__file__))
    lic = [d for d in os.listdir(pkg) if d.startswith("easy_vqa-") and d.endswith(".dist-info")]
    shutil.copy(os.path.join(pkg, lic[0], "LICENSE"), os.path.join(dst, "LICENSE"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="easy-VQA data folder (default: the easy_vqa package's)")
    ap.add_argument("--out", default=None, help="default: eval/models/easyvqa-tiny")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--epochs", type=float, default=6.0)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy machine)")
    ap.add_argument("--aux-weight", type=float, default=1.0, help="weight of the shape/colour auxiliary loss")
    ap.add_argument("--eval-every", type=int, default=500, help="validation every N steps")
    ap.add_argument("--max-minutes", type=float, default=40.0, help="stop training after this much wall time")
    ap.add_argument("--max-steps", type=int, default=0,
                    help="stop after this many steps (0: no limit); reproduces a run that stopped on --max-minutes")
    ap.add_argument("--target", type=float, default=0.985, help="stop when validation accuracy reaches this")
    ap.add_argument("--vision-pretrain-steps", type=int, default=6000,
                    help="stage 1: steps of vision tower + projector on the auxiliary head alone")
    ap.add_argument("--augment", action="store_true",
                    help="random rotation/reflection (8 symmetries) of every training image")
    ap.add_argument("--balance-yes-no", action="store_true",
                    help="sample yes/no questions so every (kind, negated, answer) group weighs the same")
    ap.add_argument("--text-hidden", type=int, default=128, help="decoder hidden size")
    ap.add_argument("--text-intermediate", type=int, default=256, help="decoder SwiGLU width")
    ap.add_argument("--text-layers", type=int, default=3, help="decoder layers")
    ap.add_argument("--text-init-std", type=float, default=0.02, help="decoder initializer_range")
    ap.add_argument("--aux-tied", action="store_true",
                    help="score the auxiliary classification against the decoder's embeddings of the answer words")
    ap.add_argument("--freeze-vision", action=argparse.BooleanOptionalAction, default=True,
                    help="stage 2 keeps the stage-1 vision tower fixed (its states cached); projector and decoder train")
    ap.add_argument("--stage1-only", action="store_true", help="stop after stage 1 (to tune it)")
    ap.add_argument("--constant-lr", action="store_true", help="no cosine decay after warmup")
    ap.add_argument("--card-only", action="store_true", help="only rewrite MODEL_CARD.md from OUT/easyvqa.json")
    args = ap.parse_args()
    if args.card_only:
        out = args.out or os.path.join(repo_root(), "eval", "models", "easyvqa-tiny")
        with open(os.path.join(out, "easyvqa.json")) as f:
            write_card(out, json.load(f))
        return

    t_start = time.time()
    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    root = repo_root()
    data_dir = easyvqa_dir(args.data)
    out = args.out or os.path.join(root, "eval", "models", "easyvqa-tiny")

    train_all = load_split(data_dir, "train")
    test = load_split(data_dir, "test")
    images = sorted({i for _, _, i in train_all})
    rng = random.Random(args.seed)
    val_images = set(rng.sample(images, len(images) // 20))
    train = [r for r in train_all if r[2] not in val_images]
    val = [r for r in train_all if r[2] in val_images]
    val_sub = random.Random(args.seed + 1).sample(val, min(1000, len(val)))

    corpus = [PROMPT.format(question=q) for q, _, _ in train_all] + [" " + a for _, a, _ in train_all]
    tokenizer = train_tokenizer(corpus, VOCAB)
    model, processor = build(tokenizer, args.seed, args.text_hidden, args.text_intermediate, args.text_layers,
                             args.text_init_std)
    n_params = sum(p.numel() for p in model.parameters())

    # The fast path in encode_prompts must agree with the processor itself.
    from PIL import Image

    for q, _, img in train[:5]:
        ref = processor(images=Image.open(os.path.join(data_dir, "train", "images", f"{img}.png")),
                        text=PROMPT.format(question=q), return_tensors="pt")["input_ids"][0].tolist()
        assert ref == encode_prompts(processor, [q])[0], "prompt encoding differs from the processor"

    train_pix, train_index = pixel_table(processor, os.path.join(data_dir, "train", "images"), images)
    test_pix, test_index = pixel_table(processor, os.path.join(data_dir, "test", "images"), [i for _, _, i in test])
    examples = make_examples(processor, train)
    print(f"params {n_params}, vocab {len(tokenizer)}, train {len(train)} val {len(val)} test {len(test)}, "
          f"prompt tokens ~{len(examples[0][0])}", flush=True)

    model.train()
    img_labels = image_labels(train)
    if args.aux_tied:
        word_ids = []
        for w in SHAPES + COLORS:
            ids = tokenizer(" " + w, add_special_tokens=False)["input_ids"]
            assert len(ids) == 1, f"{w!r} is not one token: {ids}"
            word_ids += ids
        aux_head = TiedAuxHead(model.get_input_embeddings(), word_ids)
    else:
        aux_head = torch.nn.Linear(model.config.text_config.hidden_size, len(SHAPES) + len(COLORS))
    gen = torch.Generator().manual_seed(args.seed)
    t_pre = time.time()
    stage1_val = None
    if args.vision_pretrain_steps > 0:
        stage1_val = pretrain_vision(model, aux_head, train_pix, train_index, img_labels,
                                     args.vision_pretrain_steps, args.batch_size, args.lr, gen, args.augment,
                                     image_labels(val))
    pretrain_minutes = (time.time() - t_pre) / 60
    print(f"vision pretraining {pretrain_minutes:.1f} min", flush=True)
    cache = None
    if args.freeze_vision:
        cache = vision_cache(model, train_pix, 8 if args.augment else 1)
        if args.stage1_only:
            return
        for p in model.model.vision_tower.parameters():
            p.requires_grad_(False)
        print(f"vision tower frozen, cached states {tuple(cache.shape)}", flush=True)
    params = [p for p in model.parameters() if p.requires_grad] + list(aux_head.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.98))
    steps_per_epoch = math.ceil(len(examples) / args.batch_size)
    total = int(steps_per_epoch * args.epochs)
    warmup = min(100, total // 10)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        if args.constant_lr:
            return args.lr
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

    step, val_acc, history = 0, 0.0, []
    t_train = time.time()
    done = False
    weights = sample_weights(train) if args.balance_yes_no else None
    val_labels = image_labels(val)
    while not done:
        order = list(range(len(examples)))
        if weights is None:
            rng.shuffle(order)
        else:
            order = rng.choices(order, weights=weights, k=len(order))
        for s in range(0, len(order), args.batch_size):
            batch = [examples[k] for k in order[s : s + args.batch_size]]
            ids, mask, labels, pv = collate(batch, train_pix, train_index, tokenizer.pad_token_id)
            if cache is not None:
                variant = torch.randint(cache.shape[0], (len(batch),), generator=gen)
                rows = torch.tensor([train_index[img] for _, _, img in batch])
                feats = model.model.multi_modal_projector(cache[variant, rows])
            else:
                if args.augment:
                    pv = dihedral(pv, gen)
                feats = image_features(model, pv)
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            aux_labels = torch.tensor([img_labels[img] for _, _, img in batch])
            loss, aux_loss = answer_loss(model, aux_head, ids, mask, feats, labels, aux_labels)
            if args.aux_weight > 0:
                loss_total = loss + args.aux_weight * aux_loss
            else:
                loss_total = loss
            opt.zero_grad(set_to_none=True)
            loss_total.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            step += 1
            if step % 50 == 0:
                print(f"step {step}/{total} epoch {step / steps_per_epoch:.2f} loss {loss.item():.4f} "
                      f"aux {aux_loss.item():.4f} "
                      f"lr {lr_at(step):.2e} {time.time() - t_train:.0f}s", flush=True)
            minutes = (time.time() - t_train) / 60
            out_of_time = minutes > args.max_minutes or (args.max_steps and step >= args.max_steps)
            if step % args.eval_every == 0 or step >= total or out_of_time:
                val_preds = greedy_answers(model, processor, val_sub, train_pix, train_index)
                val_acc = accuracy(val_preds, val_sub)
                history.append({"step": step, "epoch": round(step / steps_per_epoch, 3), "val_acc": val_acc,
                                "minutes": round(minutes, 2)})
                print(f"== step {step} val acc {val_acc:.4f} ({minutes:.1f} min) "
                      f"{format_breakdown(breakdown(val_preds, val_sub, val_labels))}", flush=True)
                model.train()
                if val_acc >= args.target or step >= total or out_of_time:
                    stop_reason = ("validation accuracy reached the target" if val_acc >= args.target
                                   else "the schedule ended" if step >= total else "the time or step limit")
                    done = True
                    break
    train_minutes = (time.time() - t_train) / 60

    # Save in float32, reload the saved files, and evaluate the reloaded model (eager attention).
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    os.makedirs(out, exist_ok=True)
    model.to(torch.float32).save_pretrained(out)
    processor.save_pretrained(out)
    model = LlavaForConditionalGeneration.from_pretrained(out, dtype=torch.float32, attn_implementation="eager")
    processor = AutoProcessor.from_pretrained(out, backend="pil")
    assert type(processor.image_processor).__name__.endswith("Pil")
    t_eval = time.time()
    preds = greedy_answers(model, processor, test, test_pix, test_index)
    test_acc = accuracy(preds, test)
    eval_minutes = (time.time() - t_eval) / 60
    test_breakdown = breakdown(preds, test, image_labels(test))
    print(f"TEST accuracy {test_acc:.4f} ({sum(p == a for p, (_, a, _) in zip(preds, test))}/{len(test)}), "
          f"eval {eval_minutes:.1f} min; {format_breakdown(test_breakdown)}", flush=True)

    with open(os.path.join(out, "torch_predictions.jsonl"), "w") as f:
        for i, ((q, a, img), p) in enumerate(zip(test, preds)):
            f.write(json.dumps({"question_index": i, "image_id": img, "question": q, "answer": a,
                                "prediction": p}) + "\n")
    import transformers

    info = {
        "task": "easy-vqa",
        "prompt": PROMPT,
        "prompt_note": "{question} is the easy-VQA question verbatim; equals the chat template applied to "
        "one user turn [{image}, {text: question}] with add_generation_prompt",
        "max_new_tokens": MAX_NEW_TOKENS,
        "decoding": "greedy, stop at eos (</s>)",
        "answer_postprocess": "decode the new tokens skipping special tokens, strip whitespace",
        "metric_pytorch": "exact match of the stripped prediction with the easy-VQA answer",
        "test_accuracy_pytorch": test_acc,
        "test_correct": sum(p == a for p, (_, a, _) in zip(preds, test)),
        "test_questions": len(test),
        "test_breakdown": {k: {"correct": c, "questions": t} for k, (c, t) in test_breakdown.items()},
        "vocab": len(processor.tokenizer),
        "lr": args.lr,
        "batch_size": args.batch_size,
        "epochs": args.epochs,
        "target": args.target,
        "max_minutes": args.max_minutes,
        "val_history": history,
        "params": n_params,
        "seed": args.seed,
        "steps": step,
        "stop_reason": stop_reason,
        "aux_weight": args.aux_weight,
        "vision_pretrain_steps": args.vision_pretrain_steps,
        "vision_pretrain_minutes": round(pretrain_minutes, 2),
        "vision_pretrain_val_accuracy": stage1_val and {"shape": stage1_val[0], "colour": stage1_val[1]},
        "augment": args.augment,
        "balance_yes_no": args.balance_yes_no,
        "text_hidden": args.text_hidden,
        "text_intermediate": args.text_intermediate,
        "text_layers": args.text_layers,
        "text_init_std": args.text_init_std,
        "aux_tied": args.aux_tied,
        "freeze_vision": args.freeze_vision,
        "constant_lr": args.constant_lr,
        "train_minutes": round(train_minutes, 2),
        "torch_threads": args.threads,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "command": "python3 " + " ".join([os.path.relpath(os.path.abspath(__file__), root)] + sys.argv[1:]),
    }
    info["total_minutes"] = round((time.time() - t_start) / 60, 2)
    write_json(os.path.join(out, "easyvqa.json"), info)
    write_card(out, info)
    copy_test_split(data_dir, root)
    print(json.dumps({k: v for k, v in info.items() if k != "val_history"}, indent=1))


if __name__ == "__main__":
    main()
