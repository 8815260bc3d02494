//! `Qwen2VLForConditionalGeneration` and `Qwen2_5_VLForConditionalGeneration`: the Qwen2-VL /
//! Qwen2.5-VL vision tower with its patch merger ([`super::qwen2_vl_vision`]) and the Qwen2
//! decoder of [`super::llama`] with M-RoPE. An image becomes `grid_h · grid_w / merge²` image
//! tokens (its size decides how many: dynamic resolution), their embeddings replaced by the
//! merged features; the positions are transformers' `get_rope_index` (`modeling_qwen2_vl.py`,
//! transformers 5.25.0; the same rule as at commit 928b5565ecea2852ac5a41701c90589321548522):
//! text tokens count up on all three axes, an image's tokens sit at temporal `s`, height `s + row`,
//! width `s + column` of its merged grid (`s` the position after the text before it), and the
//! text after the image continues from `s + max(rows, columns)`: the image's largest position
//! plus one. Decode positions continue from the prompt's largest position plus one (the runtime's
//! rule, transformers' `rope_deltas`).

use super::llama::Llama;
use super::qwen2_vl_config::{video_unsupported, QwenVlConfig, QwenVlKind};
use super::qwen2_vl_vision::QwenVision;
use super::{ArchConfig, Architecture, Family};
use crate::model::PixelValues;
use crate::names::Part;
use crate::vars::{Scope, TensorSource};
use foveate_core::{Error, Op, Result};
use foveate_graph::{Buf, Exec, Positions, PromptInput, Splice, TextModel};
use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

pub const FAMILY_2: Family = Family {
    model_type: "qwen2_vl",
    class: "Qwen2VLForConditionalGeneration",
    parse: |v, file| Ok(Arc::new(QwenVlConfig::from_json(v, file)?)),
};

pub const FAMILY_2_5: Family = Family {
    model_type: "qwen2_5_vl",
    class: "Qwen2_5_VLForConditionalGeneration",
    parse: |v, file| Ok(Arc::new(QwenVlConfig::from_json(v, file)?)),
};

impl ArchConfig for QwenVlConfig {
    fn model_type(&self) -> &'static str {
        match self.kind {
            QwenVlKind::V2 => FAMILY_2.model_type,
            QwenVlKind::V2_5 => FAMILY_2_5.model_type,
        }
    }
    fn image_token_id(&self) -> u32 {
        self.image_token_id
    }
    /// 0: the count depends on the image ([`ArchConfig::image_tokens`]).
    fn image_tokens_per_image(&self) -> usize {
        0
    }
    fn image_tokens(&self, px: &PixelValues) -> Result<usize> {
        let v = &self.vision;
        let f = v.patch_size * v.merge;
        if !px.height.is_multiple_of(f) || !px.width.is_multiple_of(f) {
            return Err(Error::Msg(format!(
                "a {}x{} image is not a multiple of patch_size x spatial_merge_size = {f} on each side (preprocess it with the checkpoint's Qwen2-VL image processor)",
                px.width, px.height
            )));
        }
        Ok((px.height / v.patch_size) * (px.width / v.patch_size) / v.merge_unit())
    }
    fn image_tokens_vary(&self) -> bool {
        true
    }
    fn image_wrap(&self) -> Option<(u32, u32)> {
        Some((self.vision_start_token_id, self.vision_end_token_id))
    }
    fn context_window(&self) -> (usize, &'static str) {
        (
            self.text.max_position_embeddings,
            "text_config.max_position_embeddings",
        )
    }
    fn eos_token_ids(&self) -> Vec<u32> {
        self.text.eos_token_ids.clone()
    }
    fn build(
        &self,
        src: &mut dyn TensorSource,
        _all_layers: bool,
    ) -> Result<Box<dyn Architecture>> {
        Ok(Box::new(QwenVl::load(src, self)?))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

pub struct QwenVl {
    pub cfg: QwenVlConfig,
    pub vision: QwenVision,
    pub text: Llama,
}

impl QwenVl {
    pub fn load(src: &mut dyn TensorSource, cfg: &QwenVlConfig) -> Result<QwenVl> {
        let vision = QwenVision::load(src, &Scope::new(Part::Vision, ""), &cfg.vision)?;
        let text = Llama::load(src, &cfg.text)?;
        Ok(QwenVl {
            cfg: cfg.clone(),
            vision,
            text,
        })
    }

    /// Refuses video tokens and checks the prompt's image tokens against the image (if any).
    fn check_ids(&self, ids: &[u32], image: Option<usize>) -> Result<()> {
        if ids.contains(&self.cfg.video_token_id) {
            return Err(video_unsupported(&format!(
                "the prompt has video tokens (id {})",
                self.cfg.video_token_id
            )));
        }
        let n_img = ids
            .iter()
            .filter(|&&i| i == self.cfg.image_token_id)
            .count();
        match image {
            None if n_img > 0 => Err(Error::Msg(format!("the prompt has {n_img} image tokens but no image was given"))),
            Some(want) if n_img != want => Err(Error::Msg(format!(
                "the prompt has {n_img} image tokens but the image gives {want} features (tokenize the prompt with the image: \
                 its size decides the number of image tokens)"
            ))),
            _ => Ok(()),
        }
    }

    /// The request with its image's features (`[1, M, D]`, or none).
    fn input(
        &self,
        ids: Vec<u32>,
        px: Option<&PixelValues>,
        features: Option<Buf>,
    ) -> Result<PromptInput> {
        let grid = match px {
            Some(px) => Some(self.vision.grid(px)?),
            None => None,
        };
        self.check_ids(&ids, grid.map(|g| self.vision.tokens(g)))?;
        let m = self.cfg.vision.merge;
        let merged: Vec<(usize, usize)> = grid.iter().map(|g| (g.h / m, g.w / m)).collect();
        let positions = mrope_positions(&ids, self.cfg.image_token_id, &merged)?;
        let splice = match features {
            Some(f) => Some(Splice::at_tokens(&ids, self.cfg.image_token_id, f)?),
            None => None,
        };
        Ok(PromptInput {
            ids,
            splice,
            positions,
            image_encode_ms: 0.0,
        })
    }
}

/// transformers' `get_rope_index` for a prompt whose image-token runs are the images of `grids`
/// (merged rows, merged columns), in order. Three axes (temporal, height, width).
pub fn mrope_positions(
    ids: &[u32],
    image_token: u32,
    grids: &[(usize, usize)],
) -> Result<Positions> {
    let n = ids.len();
    let mut axes = [
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    ];
    let (mut pos, mut i, mut img) = (0u32, 0usize, 0usize);
    while i < n {
        if ids[i] != image_token {
            for a in axes.iter_mut() {
                a.push(pos);
            }
            pos += 1;
            i += 1;
            continue;
        }
        let run = ids[i..].iter().take_while(|&&t| t == image_token).count();
        let Some(&(gh, gw)) = grids.get(img) else {
            return Err(Error::Msg(format!(
                "the prompt has {} runs of image tokens but {} images",
                img + 1,
                grids.len()
            )));
        };
        if run != gh * gw {
            return Err(Error::Msg(format!(
                "image {img}: a run of {run} image tokens, its {gh}x{gw} merged grid needs {}",
                gh * gw
            )));
        }
        for r in 0..gh as u32 {
            for c in 0..gw as u32 {
                axes[0].push(pos);
                axes[1].push(pos + r);
                axes[2].push(pos + c);
            }
        }
        pos += gh.max(gw) as u32;
        i += run;
        img += 1;
    }
    if img != grids.len() {
        return Err(Error::Msg(format!(
            "the prompt has {img} runs of image tokens but {} images",
            grids.len()
        )));
    }
    Ok(Positions {
        axes: 3,
        len: n,
        data: axes.concat(),
    })
}

impl Architecture for QwenVl {
    fn text(&self) -> &dyn TextModel {
        &self.text
    }

    /// The images of all requests go through the tower as one sequence (each image attending to
    /// itself only), then each request takes its rows of the merged features.
    fn prompts(
        &self,
        ex: &Exec,
        reqs: Vec<(Vec<u32>, Option<&PixelValues>)>,
    ) -> Result<Vec<PromptInput>> {
        let t0 = Instant::now();
        for (ids, px) in &reqs {
            let want = match px {
                Some(px) => Some(self.vision.tokens(self.vision.grid(px)?)),
                None => None,
            };
            self.check_ids(ids, want)?;
        }
        let images: Vec<&PixelValues> = reqs.iter().filter_map(|r| r.1).collect();
        let mut feats = if images.is_empty() {
            None
        } else {
            Some(self.vision.forward(ex, &images)?)
        };
        let single = images.len() == 1;
        let mut start = 0;
        let mut out = Vec::with_capacity(reqs.len());
        for (ids, px) in reqs {
            let f = match (px, feats.as_ref()) {
                (Some(_), _) if single => feats.take(),
                (Some(p), Some(all)) => {
                    let len = self.vision.tokens(self.vision.grid(p)?);
                    start += len;
                    Some(ex.run(
                        &Op::Slice {
                            axis: 1,
                            start: start - len,
                            len,
                        },
                        &[all],
                    )?)
                }
                _ => None,
            };
            out.push(self.input(ids, px, f)?);
        }
        drop(feats);
        super::stamp_image_encode(ex, t0, out)
    }

    fn image_features(&self, ex: &Exec, px: &PixelValues) -> Result<Buf> {
        self.vision.forward(ex, &[px])
    }

    fn patch_embeddings(&self, ex: &Exec, px: &PixelValues) -> Result<Buf> {
        self.vision.embed(ex, px)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rope_index_continues_after_the_image_from_its_max() {
        // 2 text tokens, a 2x3 merged image, 2 text tokens (transformers' get_rope_index).
        let ids = [5, 6, 9, 9, 9, 9, 9, 9, 7, 8];
        let p = mrope_positions(&ids, 9, &[(2, 3)]).unwrap();
        assert_eq!(p.axis(0), [0, 1, 2, 2, 2, 2, 2, 2, 5, 6]);
        assert_eq!(p.axis(1), [0, 1, 2, 2, 2, 3, 3, 3, 5, 6]);
        assert_eq!(p.axis(2), [0, 1, 2, 3, 4, 2, 3, 4, 5, 6]);
        assert_eq!(p.next(), 7);
        assert!(mrope_positions(&ids, 9, &[(2, 2)]).is_err());
        assert!(mrope_positions(&ids, 9, &[]).is_err());
        let text = mrope_positions(&[1, 2, 3], 9, &[]).unwrap();
        assert_eq!(text, Positions::linear(3, 0, 3));
    }
}
