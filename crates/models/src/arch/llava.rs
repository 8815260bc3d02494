//! `LlavaForConditionalGeneration`: a CLIP or SigLIP tower up to `vision_feature_layer`, the
//! feature rows `vision_feature_select_strategy` keeps, a two-layer GELU projector, and a
//! Llama-family text model; each `<image>` token is replaced by one projected feature row, and
//! positions are `0..T` (text RoPE).

use super::clip::Clip;
use super::layers::{Linear, Mlp};
use super::llama::Llama;
use super::siglip::Siglip;
use super::vit::VisionTower;
use super::{ArchConfig, Architecture, Family};
use crate::config::{LlavaConfig, VisionKind};
use crate::model::PixelValues;
use crate::names::Part;
use crate::vars::{Scope, TensorSource};
use foveate_core::{Error, Op, Result, Tensor};
use foveate_graph::{Buf, Exec, Positions, PromptInput, Splice, TextModel};
use std::any::Any;
use std::sync::Arc;
use std::time::Instant;

pub const FAMILY: Family = Family {
    model_type: "llava",
    class: "LlavaForConditionalGeneration",
    parse: |v, file| Ok(Arc::new(LlavaConfig::from_json(v, file)?)),
};

impl ArchConfig for LlavaConfig {
    fn model_type(&self) -> &'static str {
        FAMILY.model_type
    }
    fn image_token_id(&self) -> u32 {
        self.image_token_id
    }
    fn image_tokens_per_image(&self) -> usize {
        self.feature_rows().1
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
    fn build(&self, src: &mut dyn TensorSource, all_layers: bool) -> Result<Box<dyn Architecture>> {
        let layers = if all_layers {
            self.vision.num_layers
        } else {
            self.vision_layers_to_run()
        };
        Ok(Box::new(Llava::load(src, self, layers)?))
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The vision half: tower and projector.
pub struct LlavaVision {
    pub tower: Box<dyn VisionTower>,
    pub projector: Mlp,
}

impl LlavaVision {
    /// The tower's first `layers` layers and the projector.
    pub fn load(
        src: &mut dyn TensorSource,
        cfg: &LlavaConfig,
        layers: usize,
    ) -> Result<LlavaVision> {
        let v = &cfg.vision;
        let s = Scope::new(Part::Vision, "");
        let tower: Box<dyn VisionTower> = match v.kind {
            VisionKind::Clip => Box::new(Clip::load(src, &s, v, layers)?),
            VisionKind::Siglip => Box::new(Siglip::load(src, &s, v, layers)?),
        };
        let p = Scope::new(Part::Projector, "");
        let (dv, dt, bias) = (v.hidden_size, cfg.text.hidden_size, cfg.projector_bias);
        let projector = Mlp {
            fc1: Linear::load_zero_bias(&p, src, "linear_1", dt, dv, bias)?,
            fc2: Linear::load_zero_bias(&p, src, "linear_2", dt, dt, bias)?,
            act: cfg.projector_act,
        };
        Ok(LlavaVision { tower, projector })
    }

    /// Pixels `[B, C, H, W]` → projected image features `[B, N, D_text]`.
    pub fn features(&self, ex: &Exec, cfg: &LlavaConfig, pixels: &Tensor) -> Result<Buf> {
        let x = self.tower.forward(ex, pixels)?;
        let (start, len) = cfg.feature_rows();
        let feats = if start == 0 && len == x.dims()[1] {
            x
        } else {
            ex.run(
                &Op::Slice {
                    axis: 1,
                    start,
                    len,
                },
                &[&x],
            )?
        };
        self.projector.forward(ex, &feats, None)
    }
}

pub struct Llava {
    pub cfg: LlavaConfig,
    pub vision: LlavaVision,
    pub text: Llama,
}

impl Llava {
    pub fn load(
        src: &mut dyn TensorSource,
        cfg: &LlavaConfig,
        vision_layers: usize,
    ) -> Result<Llava> {
        let vision = LlavaVision::load(src, cfg, vision_layers)?;
        let text = Llama::load(src, &cfg.text)?;
        Ok(Llava {
            cfg: cfg.clone(),
            vision,
            text,
        })
    }

    /// Uploads preprocessed pixels of one or more images as `[B, C, S, S]`; the tower takes
    /// `image_size` squares.
    fn upload_pixels(&self, ex: &Exec, images: &[&PixelValues]) -> Result<Tensor> {
        let v = &self.cfg.vision;
        let mut data =
            Vec::with_capacity(images.len() * v.num_channels * v.image_size * v.image_size);
        for px in images {
            if px.height != v.image_size
                || px.width != v.image_size
                || px.data.len() != v.num_channels * px.height * px.width
            {
                return Err(Error::Msg(format!(
                    "pixel values are {}x{} ({} values) but the vision tower takes {c}x{s}x{s}",
                    px.height,
                    px.width,
                    px.data.len(),
                    c = v.num_channels,
                    s = v.image_size
                )));
            }
            data.extend_from_slice(&px.data);
        }
        ex.upload_f32(
            &[images.len(), v.num_channels, v.image_size, v.image_size],
            &data,
        )
    }

    /// The splice of `ids` with `features` `[1, N, D]`, or a check that `ids` has no image token.
    fn splice(&self, ids: &[u32], features: Option<Buf>) -> Result<Option<Splice>> {
        match features {
            Some(f) => Ok(Some(Splice::at_tokens(ids, self.cfg.image_token_id, f)?)),
            None => {
                let n_img = ids
                    .iter()
                    .filter(|&&i| i == self.cfg.image_token_id)
                    .count();
                if n_img > 0 {
                    return Err(Error::Msg(format!(
                        "the prompt has {n_img} image tokens but no image was given"
                    )));
                }
                Ok(None)
            }
        }
    }
}

impl Architecture for Llava {
    fn text(&self) -> &dyn TextModel {
        &self.text
    }

    /// The images of all requests go through the tower and the projector as one batch.
    fn prompts(
        &self,
        ex: &Exec,
        reqs: Vec<(Vec<u32>, Option<&PixelValues>)>,
    ) -> Result<Vec<PromptInput>> {
        let t0 = Instant::now();
        let images: Vec<&PixelValues> = reqs.iter().filter_map(|r| r.1).collect();
        let mut feats = if images.is_empty() {
            None
        } else {
            Some(
                self.vision
                    .features(ex, &self.cfg, &self.upload_pixels(ex, &images)?)?,
            )
        };
        let single = images.len() == 1;
        let mut b = 0;
        let mut out = Vec::with_capacity(reqs.len());
        for (ids, px) in reqs {
            // The features `[B, N, D]` of request b's image: row b (all of them for one image).
            let f = match (px, feats.as_ref()) {
                (Some(_), _) if single => feats.take(),
                (Some(_), Some(all)) => {
                    b += 1;
                    Some(ex.run(
                        &Op::Slice {
                            axis: 0,
                            start: b - 1,
                            len: 1,
                        },
                        &[all],
                    )?)
                }
                _ => None,
            };
            let splice = self.splice(&ids, f)?;
            let positions = Positions::linear(1, 0, ids.len());
            out.push(PromptInput {
                ids,
                splice,
                positions,
                image_encode_ms: 0.0,
            });
        }
        drop(feats);
        super::stamp_image_encode(ex, t0, out)
    }

    fn image_features(&self, ex: &Exec, px: &PixelValues) -> Result<Buf> {
        let pixels = self.upload_pixels(ex, &[px])?;
        self.vision.features(ex, &self.cfg, &pixels)
    }

    fn patch_embeddings(&self, ex: &Exec, px: &PixelValues) -> Result<Buf> {
        let pixels = self.upload_pixels(ex, &[px])?;
        self.vision.tower.embed(ex, &pixels)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
