//! The rotary embedding's spec: one op for 1-D text RoPE, M-RoPE and multi-axis vision RoPE,
//! told apart by their sections (see [`RopeSpec`]). Its shape checks are in `Op::infer`.

use crate::{Error, Result};

/// Rotary embedding (rotate-half, non-interleaved: NeoX/HF style) on the first `rotary_dim` dims
/// of each head (all of them when None); the rest pass through. Pair `j < r/2` rotates
/// `(x[j], x[j+r/2])` by `angle_j = pos[axis_j] · inv_freq_j`:
/// `out[j] = x[j]·cos − x[j+r/2]·sin`, `out[j+r/2] = x[j+r/2]·cos + x[j]·sin`.
///
/// `sections` split the `r/2` pairs into consecutive runs, one per position axis (positions are
/// u32 `[A, B, S]`, A = number of sections; `[B, S]` too when A = 1): pair `j` in section `a`
/// takes its position from axis `a`. One op covers three forms (read in transformers'
/// `models/qwen2_vl/modeling_qwen2_vl.py` at commit 928b5565ecea2852ac5a41701c90589321548522):
/// - 1-D text RoPE ([`RopeSpec::text`]): one section, `inv_freq_j = theta^(-2j/r)`.
/// - M-RoPE ([`RopeSpec::mrope`], Qwen2-VL text: sections t/h/w, e.g. `[16, 24, 24]` for head_dim
///   128): `Qwen2VLRotaryEmbedding` forms every frequency of the GLOBAL pair index j for each of
///   the 3 position rows, and `apply_multimodal_rotary_pos_emb` splits `cat(freqs, freqs)` by
///   `mrope_section * 2`, chunk `i` taking row `i % 3`: the section only picks the axis.
/// - 2-D vision RoPE ([`RopeSpec::vision`], Qwen2-VL vision tower, sections `[D/4, D/4]` over the
///   (h, w) ids): `VisionRotaryEmbedding(D/2)` has `inv = theta^(-2i/(D/2))`, `i < D/4`, its
///   table is gathered per axis and concatenated (`rot_pos_emb`), then `apply_rotary_pos_emb_vision`
///   repeats it twice: each section restarts the index, `inv = theta^(-2 j_local / (2·len))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RopeSpec {
    pub theta: f32,
    pub rotary_dim: Option<usize>,
    /// Frequency pairs per position axis, in axis order; trailing zeros are unused slots, and all
    /// zeros is one section of every pair (text RoPE). A section's pairs add up to `r/2`.
    pub sections: [usize; ROPE_MAX_SECTIONS],
    pub freqs: RopeFreqs,
}

/// The most position axes (sections) a [`RopeSpec`] has.
pub const ROPE_MAX_SECTIONS: usize = 3;

/// How a [`RopeSpec`] indexes its frequencies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RopeFreqs {
    /// `inv_freq_j = theta^(-2j/r)` over the global pair index (text RoPE, M-RoPE).
    Global,
    /// Each section restarts: `inv = theta^(-2 j_local / (2·len))` (Qwen2-VL vision rotary).
    PerSection,
}

impl RopeSpec {
    /// 1-D text RoPE: one position axis, global frequencies.
    pub fn text(theta: f32, rotary_dim: Option<usize>) -> Self {
        RopeSpec { theta, rotary_dim, sections: [0; ROPE_MAX_SECTIONS], freqs: RopeFreqs::Global }
    }

    /// M-RoPE: `sections` pairs per axis (t, h, w), global frequencies.
    pub fn mrope(theta: f32, rotary_dim: Option<usize>, sections: &[usize]) -> Result<Self> {
        Self::with_sections(theta, rotary_dim, sections, RopeFreqs::Global)
    }

    /// Multi-axis vision RoPE: `sections` pairs per axis (h, w), each section's frequencies
    /// restarting from index 0.
    pub fn vision(theta: f32, rotary_dim: Option<usize>, sections: &[usize]) -> Result<Self> {
        Self::with_sections(theta, rotary_dim, sections, RopeFreqs::PerSection)
    }

    fn with_sections(theta: f32, rotary_dim: Option<usize>, sections: &[usize], freqs: RopeFreqs) -> Result<Self> {
        if sections.is_empty() || sections.len() > ROPE_MAX_SECTIONS || sections.contains(&0) {
            return Err(Error::shape(
                "rope",
                format!("sections {sections:?}: 1 to {ROPE_MAX_SECTIONS} non-empty sections expected"),
            ));
        }
        let mut s = [0; ROPE_MAX_SECTIONS];
        s[..sections.len()].copy_from_slice(sections);
        Ok(RopeSpec { theta, rotary_dim, sections: s, freqs })
    }

    /// Number of position axes (1 for text RoPE).
    pub fn axes(&self) -> usize {
        self.sections.iter().take_while(|&&n| n > 0).count().max(1)
    }

    /// Rotated dims for head dim `d`.
    pub fn rot(&self, d: usize) -> usize {
        self.rotary_dim.unwrap_or(d)
    }

    /// Where sections 1 and 2 start, in pairs, for head dim `d` (`r/2` where a section is
    /// absent): pair `j`'s axis is `(j >= starts[0]) + (j >= starts[1])`.
    pub fn section_starts(&self, d: usize) -> [usize; 2] {
        let half = self.rot(d) / 2;
        match self.axes() {
            1 => [half, half],
            2 => [self.sections[0], half],
            _ => [self.sections[0], self.sections[0] + self.sections[1]],
        }
    }

    /// Pair `j`'s position axis and inverse frequency, for head dim `d`.
    pub fn pair(&self, d: usize, j: usize) -> (usize, f64) {
        let r = self.rot(d);
        let [b1, b2] = self.section_starts(d);
        let axis = (j >= b1) as usize + (j >= b2) as usize;
        let (local, span) = match self.freqs {
            RopeFreqs::Global => (j, r),
            RopeFreqs::PerSection => {
                let bounds = [0, b1, b2, r / 2];
                (j - bounds[axis], 2 * (bounds[axis + 1] - bounds[axis]))
            }
        };
        (axis, (self.theta as f64).powf(-2.0 * local as f64 / span as f64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Op, TensorDesc};

    fn d(dt: DType, s: &[usize]) -> TensorDesc {
        TensorDesc::new(dt, s.to_vec())
    }

    fn infer(spec: RopeSpec, x: &[usize], pos: &[usize]) -> Result<TensorDesc> {
        Op::Rope(spec).infer(&[&d(DType::F32, x), &d(DType::U32, pos)])
    }

    #[test]
    fn pairs_pick_axis_and_frequency() {
        // M-RoPE: head_dim 16, 8 pairs as [2, 3, 3]; frequencies by the global index.
        let m = RopeSpec::mrope(100.0, None, &[2, 3, 3]).unwrap();
        let axes: Vec<usize> = (0..8).map(|j| m.pair(16, j).0).collect();
        assert_eq!(axes, [0, 0, 1, 1, 1, 2, 2, 2]);
        assert!((m.pair(16, 5).1 - 100f64.powf(-10.0 / 16.0)).abs() < 1e-15);
        // Vision: head_dim 16, [4, 4]; the w section restarts at inv = 1.
        let v = RopeSpec::vision(100.0, None, &[4, 4]).unwrap();
        assert_eq!(v.pair(16, 4), (1, 1.0));
        assert!((v.pair(16, 6).1 - 100f64.powf(-4.0 / 8.0)).abs() < 1e-15);
        // Text: one axis, the plain Llama frequencies.
        let t = RopeSpec::text(100.0, Some(8));
        assert_eq!(t.axes(), 1);
        assert_eq!(t.pair(16, 3), (0, 100f64.powf(-6.0 / 8.0)));
    }

    #[test]
    fn infer_checks_sections_and_positions() {
        let t = RopeSpec::text(1e4, None);
        assert!(infer(t, &[2, 3, 4, 8], &[2, 3]).is_ok());
        assert!(infer(t, &[2, 3, 4, 8], &[1, 2, 3]).is_ok());
        let m = RopeSpec::mrope(1e4, None, &[1, 1, 2]).unwrap();
        assert_eq!(infer(m, &[2, 3, 4, 8], &[3, 2, 3]).unwrap().shape.dims(), &[2, 3, 4, 8]);
        let e = infer(m, &[2, 3, 4, 8], &[2, 3]).unwrap_err().to_string();
        assert!(e.contains("expected [A, B, S] = [3, 2, 3]"), "{e}");
        let e = infer(m, &[2, 3, 4, 16], &[3, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("add up to 4 pairs, rotary_dim 16 has 8"), "{e}");
        let v = RopeSpec::vision(1e4, Some(8), &[2, 2]).unwrap();
        assert!(infer(v, &[1, 5, 2, 16], &[2, 1, 5]).is_ok());
        let mut gap = m;
        gap.sections = [2, 0, 2];
        let e = infer(gap, &[2, 3, 4, 8], &[1, 2, 3]).unwrap_err().to_string();
        assert!(e.contains("section 1 is empty"), "{e}");
        let e = Op::Rope(m).infer(&[&d(DType::F32, &[2, 3, 4, 8]), &d(DType::F32, &[3, 2, 3])]).unwrap_err();
        assert!(e.to_string().contains("must be u32"), "{e}");
        assert!(RopeSpec::mrope(1e4, None, &[1, 0, 1]).is_err());
        assert!(RopeSpec::mrope(1e4, None, &[1, 1, 1, 1]).is_err());
    }
}
