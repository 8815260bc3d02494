//! Token sampling: greedy (on the device with `Op::Argmax`), or temperature + top-k + top-p on
//! the host from the downloaded last-position logits, with a seeded generator.

/// How the next token is chosen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy.
    pub temperature: f32,
    /// 0 means no top-k cut.
    pub top_k: usize,
    /// 1 means no nucleus cut.
    pub top_p: f32,
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams { temperature: 0.0, top_k: 0, top_p: 1.0, seed: 0 }
    }
}

impl SamplingParams {
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 || self.top_k == 1
    }
}

/// A small deterministic generator (splitmix64) so a seed gives the same tokens everywhere.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1A4_F87B)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Index of the largest logit (first on ties, NaN ignored).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0usize;
    let mut bv = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > bv {
            bv = v;
            best = i;
        }
    }
    best as u32
}

/// Samples one token: temperature, then top-k, then top-p (HF's warper order), then a draw.
pub fn sample(logits: &[f32], p: &SamplingParams, rng: &mut Rng) -> u32 {
    if p.is_greedy() {
        return argmax(logits);
    }
    let mut cand: Vec<(usize, f64)> =
        logits.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(i, &v)| (i, v as f64 / p.temperature as f64)).collect();
    if cand.is_empty() {
        return argmax(logits);
    }
    cand.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal).then(a.0.cmp(&b.0)));
    if p.top_k > 0 && p.top_k < cand.len() {
        cand.truncate(p.top_k);
    }
    let m = cand[0].1;
    let mut probs: Vec<f64> = cand.iter().map(|c| (c.1 - m).exp()).collect();
    let z: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|x| *x /= z);
    if p.top_p < 1.0 {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (i, pr) in probs.iter().enumerate() {
            acc += pr;
            if acc >= p.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        probs.truncate(keep);
        cand.truncate(keep);
        let z: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|x| *x /= z);
    }
    let r = rng.uniform();
    let mut acc = 0.0;
    for (c, pr) in cand.iter().zip(&probs) {
        acc += pr;
        if r < acc {
            return c.0 as u32;
        }
    }
    cand.last().unwrap().0 as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_and_cuts() {
        let l = [0.1, 3.0, 2.9, -1.0, f32::NAN];
        assert_eq!(argmax(&l), 1);
        let mut rng = Rng::new(1);
        // top_k = 2 never gives a token outside the two best.
        let p = SamplingParams { temperature: 5.0, top_k: 2, top_p: 1.0, seed: 1 };
        let mut seen = [0usize; 5];
        for _ in 0..400 {
            seen[sample(&l, &p, &mut rng) as usize] += 1;
        }
        assert_eq!(seen[0] + seen[3] + seen[4], 0, "{seen:?}");
        assert!(seen[1] > 50 && seen[2] > 50, "{seen:?}");
        // a tiny top_p keeps only the best.
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.01, seed: 1 };
        for _ in 0..50 {
            assert_eq!(sample(&l, &p, &mut rng), 1);
        }
    }

    #[test]
    fn seeded_is_reproducible() {
        let l: Vec<f32> = (0..50).map(|i| ((i * 37) % 11) as f32 * 0.3).collect();
        let p = SamplingParams { temperature: 1.0, top_k: 0, top_p: 0.9, seed: 3 };
        let a: Vec<u32> = {
            let mut r = Rng::new(3);
            (0..20).map(|_| sample(&l, &p, &mut r)).collect()
        };
        let b: Vec<u32> = {
            let mut r = Rng::new(3);
            (0..20).map(|_| sample(&l, &p, &mut r)).collect()
        };
        let c: Vec<u32> = {
            let mut r = Rng::new(4);
            (0..20).map(|_| sample(&l, &p, &mut r)).collect()
        };
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
