"""easy-VQA image labels and the per-kind accuracy breakdown used to watch training (imported by
train_easyvqa.py).

easy-VQA's questions come from a fixed set of templates filled with one colour or shape. The yes/no ones
are skewed: in the train split the colour asked about matches the image in only 12% of colour yes/no
questions (33% for shapes), so a model can score well by answering the prior and never learn to compare
the word with the image. The breakdown separates yes/no questions that name the image's own shape or
colour (`-match`) from those that name another (`-other`), so that failure shows.
"""

import re

SHAPES = ["circle", "rectangle", "triangle"]
COLORS = ["red", "green", "blue", "black", "gray", "teal", "brown", "yellow"]
_WORD = {w: ("shape", i) for i, w in enumerate(SHAPES)} | {w: ("colour", i) for i, w in enumerate(COLORS)}


def image_labels(data):
    """Per image, [shape index, colour index] as its answers state them (-100 where none does): a "what"
    answer names it, and a yes/no answer does when it says the image has the value asked about."""
    labels = {}
    for q, a, img in data:
        lab = labels.setdefault(img, [-100, -100])
        if a in SHAPES:
            lab[0] = SHAPES.index(a)
        elif a in COLORS:
            lab[1] = COLORS.index(a)
        elif a in ("yes", "no") and (a == "yes") != negated(q) and asked(q) is not None:
            kind, value = asked(q)
            lab[0 if kind == "shape" else 1] = value
    return labels


def negated(question):
    q = f" {question} "
    return " not " in q or " no " in q or "n't " in q


def asked(question):
    """(kind, index) of the one shape or colour word a yes/no question names, None if it names none."""
    for w in re.findall(r"[a-z]+", question):
        if w in _WORD:
            return _WORD[w]
    return None


def question_kind(question, answer, label):
    """A breakdown key: `what-shape`, `what-colour`, or `yn-<kind>-<match|other>` (whether the value asked
    about is the image's own, from `image_labels` of the same split)."""
    if answer not in ("yes", "no"):
        return "what-shape" if answer in SHAPES else "what-colour"
    hit = asked(question)
    if hit is None:
        return "yn-other"
    truth = label[0 if hit[0] == "shape" else 1] if label else -100
    # An unknown label means no answer about this image said it has the value asked: not a match.
    return f"yn-{hit[0]}-{'match' if hit[1] == truth else 'other'}"


def breakdown(preds, data, labels):
    """{kind: (correct, total)} over `data` (question, answer, image) with predictions `preds`."""
    out = {}
    for p, (q, a, img) in zip(preds, data):
        k = question_kind(q, a, labels.get(img))
        c, t = out.get(k, (0, 0))
        out[k] = (c + (p == a), t + 1)
    return dict(sorted(out.items()))


def format_breakdown(b):
    return " ".join(f"{k} {100 * c / t:.0f}%/{t}" for k, (c, t) in b.items())
