//! What an architecture hands the runtime for one request: the prompt's token ids, a splice plan
//! (which rows of the input embeddings come from image features) and the rotary positions of every
//! prompt row. The runtime embeds, splices, prefills and decodes without knowing the model family.

use crate::exec::Exec;
use crate::pool::Buf;
use foveate_core::{Error, Op, Result};

/// Rotary positions of a run of tokens: `axes` rows of `len` values (axis-major). Text RoPE has
/// one axis; multi-axis RoPE (2-D vision, M-RoPE) has one per section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Positions {
    pub axes: usize,
    pub len: usize,
    pub data: Vec<u32>,
}

impl Positions {
    /// `start..start + len` on every one of `axes` axes (text tokens).
    pub fn linear(axes: usize, start: u32, len: usize) -> Self {
        let row: Vec<u32> = (start..start + len as u32).collect();
        Positions { axes, len, data: row.repeat(axes) }
    }

    /// Axis `a`'s values.
    pub fn axis(&self, a: usize) -> &[u32] {
        &self.data[a * self.len..(a + 1) * self.len]
    }

    /// The runs one after another (a ragged batch's rows), axis by axis.
    pub fn concat(runs: &[&Positions]) -> Result<Positions> {
        let axes = runs.first().map_or(1, |p| p.axes);
        if runs.iter().any(|p| p.axes != axes) {
            return Err(Error::Msg("positions of one batch must have the same number of axes".into()));
        }
        let len = runs.iter().map(|p| p.len).sum();
        let mut data = Vec::with_capacity(axes * len);
        for a in 0..axes {
            for p in runs {
                data.extend_from_slice(p.axis(a));
            }
        }
        Ok(Positions { axes, len, data })
    }

    /// The largest position on any axis, plus one: where text after this run continues.
    pub fn next(&self) -> u32 {
        self.data.iter().max().map_or(0, |m| m + 1)
    }
}

/// Image features and where they go: row `t` of the spliced embeddings is row `rows[t]` of
/// `concat(token embeddings [T, D], features [N, D])`, i.e. `t` for a text token and `T + j` for
/// feature row `j`. One concat and one row gather, whatever the number of images.
pub struct Splice {
    /// `[1, N, D]`.
    pub features: Buf,
    pub rows: Vec<u32>,
}

impl Splice {
    /// Feature rows in order at every token equal to `image_token`; the counts must agree.
    pub fn at_tokens(ids: &[u32], image_token: u32, features: Buf) -> Result<Splice> {
        let n_img = ids.iter().filter(|&&i| i == image_token).count();
        let n_feat = features.dims()[1];
        if n_img != n_feat {
            return Err(Error::Msg(format!(
                "the prompt has {n_img} image tokens but the image gives {n_feat} features (write `<image>` once in the prompt)"
            )));
        }
        let t = ids.len() as u32;
        let mut next = t;
        let rows = (0..ids.len() as u32)
            .map(|i| {
                if ids[i as usize] == image_token {
                    next += 1;
                    next - 1
                } else {
                    i
                }
            })
            .collect();
        Ok(Splice { features, rows })
    }

    /// The spliced embeddings `[1, T, D]` from the token embeddings `emb` `[1, T, D]`.
    pub fn apply(&self, ex: &Exec, emb: &Buf) -> Result<Buf> {
        let (t, d) = (emb.dims()[1], emb.dims()[2]);
        let n = self.features.dims()[1];
        let table = ex.run(&Op::Concat { axis: 1 }, &[emb, &self.features])?.into_shape([t + n, d])?;
        let rows = ex.upload_u32(&[1, t], &self.rows)?;
        ex.run(&Op::Embedding, &[&table, &rows])
    }
}

/// One request as the runtime runs it.
pub struct PromptInput {
    pub ids: Vec<u32>,
    pub splice: Option<Splice>,
    /// One value per prompt row and axis.
    pub positions: Positions,
    /// Time the architecture spent on the request's images (reported in its timings).
    pub image_encode_ms: f64,
}
