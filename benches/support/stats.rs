//! Mean and sample standard deviation of repeated measurements.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    /// Sample standard deviation (n - 1); 0 for a single value.
    pub sd: f64,
    pub n: usize,
}

impl Stat {
    pub fn of(xs: &[f64]) -> Stat {
        let n = xs.len();
        if n == 0 {
            return Stat::default();
        }
        let mean = xs.iter().sum::<f64>() / n as f64;
        let sd = if n > 1 {
            (xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        Stat { mean, sd, n }
    }

    /// `mean ± sd` with `prec` decimals.
    pub fn show(&self, prec: usize) -> String {
        format!("{:.p$} ± {:.p$}", self.mean, self.sd, p = prec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn mean_and_sample_sd() {
        let s = Stat::of(&[1.0, 2.0, 3.0, 4.0]);
        assert_eq!(s.n, 4);
        assert!((s.mean - 2.5).abs() < 1e-12);
        assert!((s.sd - 1.2909944487358056).abs() < 1e-12);
        assert_eq!(Stat::of(&[5.0]).sd, 0.0);
    }
}
