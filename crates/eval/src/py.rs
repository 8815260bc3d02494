//! The few Python built-ins the reference scorers lean on, with Python's exact semantics.
//!
//! The official scorers are Python; where Python and Rust differ (what counts as whitespace, how a
//! float is rounded) the score can differ in the last digit, so these helpers copy Python.

// ---- Python 2.7 (`unicode` objects), for vqaEval.py, which is Python 2 code. ----

/// Python 2.7's `unicode.isspace()`: as [`is_space`], plus U+180E MONGOLIAN VOWEL SEPARATOR, a
/// space separator in the Unicode 5.2 database that Python 2.7 carries (a format character since
/// Unicode 6.3).
pub fn is_space_py27(c: char) -> bool {
    is_space(c) || c == '\u{180e}'
}

/// Python 2.7's `unicode.strip()`.
pub fn strip_py27(s: &str) -> &str {
    s.trim_matches(is_space_py27)
}

/// Python 2.7's `unicode.split()`.
pub fn split_py27(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space_py27).filter(|w| !w.is_empty())
}

/// Python 2.7's `unicode.lower()`: the simple, one-to-one case mapping of each code point, with no
/// final-sigma rule ("ΣΑΣ" -> "σασ", where Python 3 gives "σας") and U+0130 to a plain "i"
/// (Python 3: "i" + U+0307). (Case mappings added after Unicode 5.2, e.g. Georgian Mtavruli, are
/// applied here and were not in Python 2.7: a known gap.)
pub fn lower_py27(s: &str) -> String {
    // Of every code point, only U+0130 lower-cases to more than one in the full mapping.
    s.chars()
        .map(|c| match c {
            '\u{130}' => 'i',
            c => c.to_lowercase().next().unwrap_or(c),
        })
        .collect()
}

/// Python 2.7's `round(x, ndigits)`: correctly rounded like Python 3's, but an exact tie (of the
/// binary value) goes away from zero: `round(0.125, 2) == 0.13` (Python 3: 0.12), while
/// `round(2.675, 2) == 2.67` in both (2.675 is stored as 2.67499999...).
pub fn round_py27(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    // The exact decimal expansion of x (a binary float has at most 1074 fraction digits): x is a
    // tie exactly when it has ndigits + 1 fraction digits and the last is a 5.
    let exact = format!("{:.1100}", x.abs());
    let frac = exact.split('.').nth(1).unwrap_or("").trim_end_matches('0');
    if frac.len() == ndigits + 1 && frac.ends_with('5') {
        let step = 0.5 * 10f64.powi(-(ndigits as i32));
        // x + step (or x - step) lands exactly on the multiple above; formatting it is exact too.
        let away = if x > 0.0 { x + step } else { x - step };
        return format!("{:.*}", ndigits, away).parse().unwrap_or(x);
    }
    round(x, ndigits)
}

// ---- Python 3 ----

/// `str.isspace()` for one character: Rust's Unicode `White_Space` plus the four ASCII
/// information separators U+001C..U+001F that Python also treats as whitespace.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// `s.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// `s.split()` with no argument: runs of whitespace separate, no empty pieces.
pub fn split(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// `' '.join(s.split())`.
pub fn collapse_spaces(s: &str) -> String {
    split(s).collect::<Vec<_>>().join(" ")
}

/// `s.lower()`. Rust's `to_lowercase` applies the same full Unicode case mapping (including the
/// final-sigma rule); differences between Unicode versions of the two runtimes are possible.
pub fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// `len(s.upper())`: the number of code points after full upper-casing ("ß" becomes "SS").
pub fn upper_len(s: &str) -> usize {
    s.chars().flat_map(char::to_uppercase).count()
}

/// `round(x, ndigits)` for a float: correctly rounded, ties to even on the exact binary value
/// (so `round(2.675, 2) == 2.67` and `round(0.125, 2) == 0.12`). Rust's `{:.N}` formatting rounds
/// the exact binary value the same way, and parsing the decimal back gives the nearest double,
/// which is what CPython returns.
pub fn round(x: f64, ndigits: usize) -> f64 {
    if !x.is_finite() {
        return x;
    }
    format!("{:.*}", ndigits, x).parse().unwrap_or(x)
}

/// Levenshtein distance over code points (what the RRC script's pure-Python DP computes).
pub fn levenshtein(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let (short, long) = if a.len() <= b.len() {
        (&a, &b)
    } else {
        (&b, &a)
    };
    let mut prev: Vec<usize> = (0..=short.len()).collect();
    let mut cur = vec![0usize; short.len() + 1];
    for (i2, c2) in long.iter().enumerate() {
        cur[0] = i2 + 1;
        for (i1, c1) in short.iter().enumerate() {
            cur[i1 + 1] = if c1 == c2 {
                prev[i1]
            } else {
                1 + prev[i1].min(prev[i1 + 1]).min(cur[i1])
            };
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[short.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_round_is_ties_to_even_on_the_binary_value() {
        assert_eq!(round(2.675, 2), 2.67); // 2.675 is stored as 2.67499999...
        assert_eq!(round(0.125, 2), 0.12); // exact tie -> even
        assert_eq!(round(0.375, 2), 0.38); // exact tie -> even
        assert_eq!(round(100.0 * (2.0 / 3.0), 2), 66.67);
        assert_eq!(round(100.0 / 3.0, 2), 33.33);
    }

    #[test]
    fn python27_round_is_ties_away_from_zero_on_the_binary_value() {
        assert_eq!(round_py27(0.125, 2), 0.13);
        assert_eq!(round_py27(0.375, 2), 0.38);
        assert_eq!(round_py27(-0.125, 2), -0.13);
        assert_eq!(round_py27(2.675, 2), 2.67); // not a tie: stored below 2.675
        assert_eq!(round_py27(65.125, 2), 65.13); // Python 3: 65.12
        assert_eq!(round(65.125, 2), 65.12);
        assert_eq!(round_py27(100.0 * (2.0 / 3.0), 2), 66.67);
        assert_eq!(round_py27(62.5, 2), 62.5);
        assert_eq!(round_py27(0.5, 0), 1.0); // Python 3: 0.0
        assert_eq!(round_py27(1.0 / 3.0, 2), 0.33);
    }

    #[test]
    fn python27_lower_and_whitespace() {
        assert_eq!(lower_py27("ΣΑΣ"), "σασ");
        assert_eq!(lower("ΣΑΣ"), "σας");
        assert_eq!(lower_py27("İ"), "i");
        assert_eq!(lower("İ").chars().count(), 2);
        assert_eq!(lower_py27("Straße T-Shirt"), "straße t-shirt");
        assert_eq!(strip_py27("\u{180e} a \u{1f}"), "a");
        assert_eq!(strip("\u{180e} a"), "\u{180e} a");
        assert_eq!(
            split_py27("a\u{180e}b\u{a0}c").collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
    }

    #[test]
    fn python_whitespace_and_split() {
        assert_eq!(strip("\u{1f} a b \u{a0}"), "a b");
        assert_eq!(
            split(" a\t\nb\u{1c}c ").collect::<Vec<_>>(),
            vec!["a", "b", "c"]
        );
        assert_eq!(collapse_spaces("  San   Diego "), "San Diego");
        assert_eq!(upper_len("straße"), 7);
    }

    #[test]
    fn levenshtein_known_values() {
        assert_eq!(levenshtein("kitten", "sitting"), 3);
        assert_eq!(levenshtein("", "abc"), 3);
        assert_eq!(levenshtein("abc", ""), 3);
        assert_eq!(levenshtein("", ""), 0);
        assert_eq!(levenshtein("flaw", "lawn"), 2);
        assert_eq!(levenshtein("ñandú", "nandu"), 2); // code points, not bytes
    }
}
