#!/usr/bin/env python3
"""Run the official VQAv2 scorer on generated test vectors, for crates/eval/tests/vqa_official.rs.

The reference is GT-Vision-Lab/VQA at commit a013f0043c1e2cdc995922dfe257f7149aa9af06 ("Fixed
processing answers bug"), PythonEvaluationTools/vqaEvaluation/vqaEval.py, class VQAEval, method
evaluate. That file is Python 2 (print statements). No Python 2 interpreter can be installed here, so
this script loads the file itself from a checkout and runs it under Python 3 with exactly three
mechanical changes, each restoring Python 2.7 behaviour:
  1. `print "..."` statements become `print("...")` calls (syntax only);
  2. `round` in the module is Python 2.7's: correctly rounded, exact ties away from zero
     (Python 3 rounds exact ties to even: round(0.125, 2) is 0.13 in 2.7 and 0.12 in 3);
  3. the two regexes are compiled with re.ASCII: under Python 2 a pattern compiled without
     re.UNICODE matches `\\d` against ASCII digits only, also in unicode text.
Python 2.7's unicode.lower() is the simple (one code point) case mapping with no final-sigma rule,
unlike Python 3's; the generated vectors avoid the characters where the two differ (U+0130, a final
capital sigma) and crates/eval/src/py.rs tests those rules on its own.

Nothing of the official file is copied into this repository; pass the checkout:

    python3 eval/tools/vqa_reference.py --vqa-repo /path/to/GT-Vision-Lab/VQA \
        --out crates/eval/tests/data/vqa_official.json

Requires only the Python standard library.
"""
import argparse
import decimal
import json
import random
import re
import subprocess
import types

COMMIT = "a013f0043c1e2cdc995922dfe257f7149aa9af06"
PATH = "PythonEvaluationTools/vqaEvaluation/vqaEval.py"


def py27_round(x, n=0):
    q = decimal.Decimal(1).scaleb(-n)
    return float(decimal.Decimal(x).quantize(q, rounding=decimal.ROUND_HALF_UP))


def load_official(repo):
    src = subprocess.run(["git", "-C", repo, "show", f"{COMMIT}:{PATH}"], check=True,
                         capture_output=True, text=True).stdout
    src = re.sub(r'^(\s*)print (".*")\s*$', r"\1print(\2)", src, flags=re.M)
    mod = types.ModuleType("vqaEval")
    mod.__dict__["round"] = py27_round
    exec(compile(src, PATH, "exec"), mod.__dict__)
    return mod.VQAEval


class FakeVQA:
    """The two attributes VQAEval reads from vqa.py's VQA objects: `qa` and `getQuesIds()`."""

    def __init__(self, qa):
        self.qa = qa

    def getQuesIds(self):
        return list(self.qa)


def evaluate(VQAEval, anns, preds):
    """Scores `anns` (official annotation dicts) against `preds` (question_id -> answer string)."""
    gts = FakeVQA({a["question_id"]: json.loads(json.dumps(a)) for a in anns})
    res = FakeVQA({q: {"question_id": q, "answer": p} for q, p in preds.items()})
    ev = VQAEval(gts, res, n=2)
    ev.periodStrip = re.compile(ev.periodStrip.pattern, re.ASCII)
    ev.commaStrip = re.compile(ev.commaStrip.pattern, re.ASCII)
    ev.updateProgress = lambda progress: None
    raw = {}
    set_eval_qa = ev.setEvalQA

    def capture(qid, acc):
        raw[qid] = acc
        set_eval_qa(qid, acc)

    ev.setEvalQA = capture
    ev.evaluate()
    return ev, raw


# Tokens that exercise the rules: case, punctuation next to spaces or not, digit commas, periods,
# number words, articles, contractions, whitespace (newline/tab/U+001F/U+00A0), non-ASCII digits.
TOKENS = ["yes", "Yes", "YES", "no", "No.", "two", "Two", "2", "2.", "2.5", "1,000", "1000",
          "t-shirt", "T-Shirt", "t shirt", "the dog", "The Dog", "dog", "a dog", "an apple",
          "dont", "don't", "it's", "its", "a.m.", "yes!", "yes !", "red / blue", "red/blue",
          "\ttab", "new\nline", " spaced ", "x, y", "none", "zero", "ten", "Im", "whats",
          "\u00a0nbsp", "end\u001f", "\u0663", "caf\u00e9", "STRASSE", "(left)", "@home",
          "well...", "..5", "1,,0", "3 , 4", "coca-cola", "", " "]


def random_answer(rng):
    k = rng.choice([1, 1, 1, 2, 2, 3])
    return " ".join(rng.choice(TOKENS) for _ in range(k)) if rng.random() < 0.3 else rng.choice(TOKENS)


def make_case(rng, qid):
    # a few files in the wild lack answer ids: then vqaEval.py's dict comparison leaves out every
    # equal dict, not just one
    no_ids = rng.random() < 0.05
    kind = rng.random()
    if kind < 0.25:
        answers = [random_answer(rng)] * 10  # all identical: nothing but strip
    elif kind < 0.6:
        base = [random_answer(rng) for _ in range(rng.randint(2, 4))]
        answers = [rng.choice(base) for _ in range(10)]
    else:
        answers = [random_answer(rng) for _ in range(10)]
    if rng.random() < 0.5:
        prediction = rng.choice(answers)
        # perturb: capitalise, punctuate, add an article or whitespace
        t = rng.random()
        if t < 0.2:
            prediction = prediction.upper()
        elif t < 0.4:
            prediction = prediction + rng.choice([".", "!", " .", "?", ","])
        elif t < 0.6:
            prediction = rng.choice(["the ", "a ", "A "]) + prediction
        elif t < 0.8:
            prediction = rng.choice(["\n", "\t", " "]) + prediction + rng.choice(["\n", "\t", ""])
    else:
        prediction = random_answer(rng)
    return {
        "question_id": qid,
        "image_id": qid // 1000,
        "question_type": rng.choice(["what color is the", "how many", "is the", "none of the above"]),
        "answer_type": rng.choice(["yes/no", "number", "other"]),
        "multiple_choice_answer": answers[0],
        "answers": [dict({"answer": a, "answer_confidence": "yes"},
                         **({} if no_ids else {"answer_id": i + 1}))
                    for i, a in enumerate(answers)],
    }, prediction


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vqa-repo", required=True, help="a git checkout of GT-Vision-Lab/VQA")
    ap.add_argument("--out", required=True)
    ap.add_argument("--cases", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()
    VQAEval = load_official(args.vqa_repo)
    rng = random.Random(args.seed)
    anns, preds = [], {}
    for i in range(args.cases):
        a, p = make_case(rng, 1000 * (i + 1) + i % 7)
        anns.append(a)
        preds[a["question_id"]] = p
    ev, raw = evaluate(VQAEval, anns, preds)
    out = {
        "reference": f"GT-Vision-Lab/VQA@{COMMIT}:{PATH} (VQAEval.evaluate), see eval/tools/vqa_reference.py",
        "annotations": {"data_subtype": "val2014", "annotations": anns},
        "results": [{"question_id": q, "answer": p} for q, p in preds.items()],
        "per_question_raw": {str(q): raw[q] for q in raw},
        "evalQA": {str(q): v for q, v in ev.evalQA.items()},
        "accuracy": ev.accuracy,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, ensure_ascii=True, separators=(",", ":"), sort_keys=True)
    print(f"{len(anns)} questions, overall {ev.accuracy['overall']}, "
          f"per answer type {ev.accuracy['perAnswerType']}")


if __name__ == "__main__":
    main()
