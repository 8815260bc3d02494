//! Answer normalisation of the official VQA scorers, quirks included.
//!
//! Two reference implementations share most rules:
//! * GT-Vision-Lab/VQA `vqaEval.py` at a013f0043c1e2cdc995922dfe257f7149aa9af06 ("Fixed processing
//!   answers bug", PythonEvaluationTools/vqaEvaluation/vqaEval.py): `processPunctuation` and
//!   `processDigitArticle`. It is Python 2 code, so its string operations are Python 2.7's on
//!   `unicode` ([`Reference::VqaEval`]).
//! * MMF `EvalAIAnswerProcessor` (used by `TextVQAAccuracyEvaluator`, Python 3): a `word_tokenize`
//!   step, then the same two functions, with a different comma regex ([`Reference::Mmf`]).
//!
//! Rules reproduced here, each with a unit test:
//! * A punctuation character `p` from [`PUNCT`] is deleted when `p + ' '` or `' ' + p` occurs in the
//!   ORIGINAL input, or when the comma regex matches anywhere in the ORIGINAL input; otherwise it is
//!   replaced by a space. (The check looks at the input, the replacement applies to the text built
//!   so far.) `'`, `:` and `.` are not in the list.
//! * `periodStrip = (?!<=\d)(\.)(?!\d)`: the first group is a negative LOOKAHEAD for the literal
//!   `<=` then a digit, which can never match at a `.`, so the rule is "delete every `.` not
//!   followed by a digit" ("2.5" keeps its period, "2." loses it). The reference calls
//!   `sub("", text, re.UNICODE)`, passing `re.UNICODE` (= 32) as the `count` argument, so at most
//!   the first 32 such periods are removed.
//! * Digit/article: lower-case, split on whitespace, number words none..ten to digits, drop the
//!   articles a/an/the, then map contractions ("dont" -> "don't"); words are re-joined by one space.
//!
//! `\d`: vqaEval.py compiles its patterns without `re.UNICODE`, so under Python 2 `\d` is ASCII
//! 0-9 only, as here. Known gap for MMF: under Python 3 `\d` matches every Unicode decimal digit;
//! here only ASCII 0-9 count.

use crate::py;

/// The punctuation list of the current vqaEval.py and of MMF's EvalAIAnswerProcessor (identical).
pub const PUNCT: [&str; 21] = [
    ";", "/", "[", "]", "\"", "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
    ",", "?", "!",
];

/// `manualMap` / `NUMBER_MAP`.
pub const NUMBER_WORDS: [(&str, &str); 12] = [
    ("none", "0"),
    ("zero", "0"),
    ("one", "1"),
    ("two", "2"),
    ("three", "3"),
    ("four", "4"),
    ("five", "5"),
    ("six", "6"),
    ("seven", "7"),
    ("eight", "8"),
    ("nine", "9"),
    ("ten", "10"),
];

pub const ARTICLES: [&str; 3] = ["a", "an", "the"];

/// Whose rules a normalisation step follows: the comma regex, and which Python's string methods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// vqaEval.py (Python 2.7): comma regex `(\d)(\,)(\d)`, a digit, exactly one comma, a digit;
    /// `unicode.lower()` / `split()` of Python 2.7 ([`py::lower_py27`], [`py::split_py27`]).
    VqaEval,
    /// MMF (Python 3): comma regex `(?<=\d)(\,)+(?=\d)`, a digit, one or more commas, a digit;
    /// Python 3's `str.lower()` / `split()`.
    Mmf,
}

fn is_digit(c: char) -> bool {
    c.is_ascii_digit()
}

fn comma_matches(s: &str, rule: Reference) -> bool {
    let c: Vec<char> = s.chars().collect();
    for i in 0..c.len() {
        if !is_digit(c[i]) {
            continue;
        }
        let mut j = i + 1;
        while j < c.len() && c[j] == ',' {
            j += 1;
            if rule == Reference::VqaEval {
                break;
            }
        }
        if j > i + 1 && j < c.len() && is_digit(c[j]) {
            return true;
        }
    }
    false
}

/// `periodStrip.sub("", text, 32)`: delete up to 32 periods that are not followed by a digit.
pub fn strip_periods(s: &str) -> String {
    let c: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut removed = 0;
    for i in 0..c.len() {
        let next_is_digit = c.get(i + 1).is_some_and(|&n| is_digit(n));
        if c[i] == '.' && !next_is_digit && removed < 32 {
            removed += 1;
            continue;
        }
        out.push(c[i]);
    }
    out
}

/// `processPunctuation` / `process_punctuation`.
pub fn process_punctuation(input: &str, rule: Reference) -> String {
    let comma = comma_matches(input, rule);
    let mut out = input.to_string();
    for p in PUNCT {
        let spaced = input.contains(&format!("{p} ")) || input.contains(&format!(" {p}"));
        out = if spaced || comma {
            out.replace(p, "")
        } else {
            out.replace(p, " ")
        };
    }
    strip_periods(&out)
}

/// `processDigitArticle` / `process_digit_article`.
pub fn process_digit_article(input: &str, rule: Reference) -> String {
    let (lowered, split): (String, fn(&str) -> Vec<&str>) = match rule {
        Reference::VqaEval => (py::lower_py27(input), |s| py::split_py27(s).collect()),
        Reference::Mmf => (py::lower(input), |s| py::split(s).collect()),
    };
    let mut words: Vec<&str> = Vec::new();
    for w in split(&lowered) {
        let w = NUMBER_WORDS
            .iter()
            .find(|(k, _)| *k == w)
            .map_or(w, |(_, v)| v);
        if !ARTICLES.contains(&w) {
            words.push(w);
        }
    }
    words
        .into_iter()
        .map(|w| crate::contractions::lookup(w).unwrap_or(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The first step vqaEval.py applies to every human answer and to the prediction: `\n` and `\t`
/// to spaces, then `strip()` (Python 2.7). Nothing else happens when the human answers are all
/// identical.
pub fn vqa_clean(ans: &str) -> String {
    py::strip_py27(&ans.replace(['\n', '\t'], " ")).to_string()
}

/// What vqaEval.py applies to a cleaned answer (human or predicted) when the human answers are NOT
/// all identical: `processPunctuation`, then `processDigitArticle`.
pub fn vqa_normalise(cleaned: &str) -> String {
    process_digit_article(
        &process_punctuation(cleaned, Reference::VqaEval),
        Reference::VqaEval,
    )
}

/// MMF `EvalAIAnswerProcessor.__call__`, applied by TextVQA to the prediction and every answer.
pub fn evalai(ans: &str) -> String {
    let tok = py::lower(ans)
        .replace(',', "")
        .replace('?', "")
        .replace("'s", " 's");
    let tok = py::strip(&tok).replace('\n', " ").replace('\t', " ");
    process_digit_article(
        &process_punctuation(py::strip(&tok), Reference::Mmf),
        Reference::Mmf,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The prediction path of a question whose human answers differ.
    fn vqa_prediction(s: &str) -> String {
        vqa_normalise(&vqa_clean(s))
    }

    #[test]
    fn number_word_with_trailing_period_becomes_digit() {
        assert_eq!(vqa_prediction("two."), "2");
        assert_eq!(vqa_prediction("Ten"), "10");
        assert_eq!(vqa_prediction("none"), "0");
        assert_eq!(vqa_prediction("eleven"), "eleven");
    }

    #[test]
    fn articles_are_dropped_only_as_whole_words() {
        assert_eq!(vqa_prediction("the dog"), "dog");
        assert_eq!(vqa_prediction("A Dog"), "dog");
        assert_eq!(vqa_prediction("theater an apple"), "theater apple");
    }

    #[test]
    fn contractions_table() {
        assert_eq!(vqa_prediction("dont"), "don't");
        assert_eq!(vqa_prediction("whats"), "what's");
        // "its" is not in the table, and "'" is not punctuation: "its" and "it's" stay apart.
        assert_eq!(vqa_prediction("its"), "its");
        assert_eq!(vqa_prediction("it's"), "it's");
        // the table's odd entry maps a contraction to a non-contraction
        assert_eq!(vqa_prediction("somebody'd"), "somebodyd");
        // capitalised keys (Im, Ive) can never match after lower-casing
        assert_eq!(vqa_prediction("Im"), "im");
    }

    #[test]
    fn period_between_digits_is_kept_other_periods_go() {
        assert_eq!(vqa_prediction("2.5"), "2.5");
        assert_eq!(vqa_prediction("2.5."), "2.5");
        assert_eq!(vqa_prediction("a.m."), "am");
        assert_eq!(vqa_prediction(".5"), ".5");
        // the lookahead sees the original text: the first period precedes a period, so it goes
        assert_eq!(strip_periods("..5"), ".5");
    }

    #[test]
    fn period_strip_count_is_32() {
        let s = ".".repeat(40);
        assert_eq!(strip_periods(&s), ".".repeat(8));
    }

    #[test]
    fn comma_between_digits_deletes_all_punctuation() {
        // comma regex matches -> every punctuation char is deleted, not spaced
        assert_eq!(vqa_prediction("1,000"), "1000");
        assert_eq!(process_punctuation("1,000-2", Reference::VqaEval), "10002");
        // no digit comma digit: "-" becomes a space
        assert_eq!(
            process_punctuation("t-shirt", Reference::VqaEval),
            "t shirt"
        );
        // VQA's regex needs exactly one comma; MMF's allows a run
        assert_eq!(process_punctuation("1,,0-x", Reference::VqaEval), "1  0 x");
        assert_eq!(process_punctuation("1,,0-x", Reference::Mmf), "10x");
    }

    #[test]
    fn punctuation_next_to_a_space_is_deleted_everywhere() {
        // "! " occurs in the input, so every "!" is deleted (even the one between letters)
        assert_eq!(
            process_punctuation("yes! a!b", Reference::VqaEval),
            "yes ab"
        );
        // otherwise replaced by a space, which survives when the digit/article step is not run
        assert_eq!(process_punctuation("yes!", Reference::VqaEval), "yes ");
        // ... and goes with the digit/article step's split
        assert_eq!(vqa_prediction("yes!"), "yes");
        // the check is per character: "/" next to a space is deleted, "-" is not
        assert_eq!(process_punctuation("a / b-c", Reference::VqaEval), "a  b c");
    }

    #[test]
    fn clean_is_whitespace_only() {
        assert_eq!(vqa_clean(" Two Dogs.\n"), "Two Dogs.");
        assert_eq!(vqa_clean("\tthe\tdog "), "the dog");
        assert_eq!(vqa_clean("\u{180e}x\u{a0}"), "x"); // Python 2.7 whitespace
    }

    #[test]
    fn python27_lower_in_digit_article() {
        // vqaEval.py runs on Python 2.7: no final sigma; MMF on Python 3: final sigma.
        assert_eq!(process_digit_article("ΟΔΟΣ", Reference::VqaEval), "οδοσ");
        assert_eq!(process_digit_article("ΟΔΟΣ", Reference::Mmf), "οδος");
    }

    #[test]
    fn whitespace_handling() {
        assert_eq!(vqa_prediction("  red\tand\nblue  "), "red and blue");
        assert_eq!(vqa_prediction(""), "");
    }

    #[test]
    fn evalai_processor() {
        // commas are removed before the punctuation step, so "1,000" -> "1000"
        assert_eq!(evalai("1,000"), "1000");
        // "'s" is split off
        assert_eq!(evalai("It's"), "it 's");
        assert_eq!(evalai("Bob's Bar?"), "bob 's bar");
        assert_eq!(evalai("10 years "), "10 years");
        assert_eq!(evalai("Two."), "2");
        assert_eq!(evalai("the Stone"), "stone");
        assert_eq!(evalai("coca-cola"), "coca cola");
        assert_eq!(evalai("coca - cola"), "coca cola");
    }
}
