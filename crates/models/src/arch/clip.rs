//! CLIP vision tower (`clip_vision_model`): a patch conv without bias, a learned CLS token, a
//! LayerNorm before the encoder (`pre_layrnorm`, as HF spells it), quick_gelu MLPs.

use super::layers::LayerNorm;
use super::vit::{self, PatchEmbedding, VisionTower, VitLayer};
use crate::config::VisionConfig;
use crate::vars::{Scope, TensorSource};
use foveate_core::{Result, Tensor};
use foveate_graph::{Buf, Exec};

pub struct Clip {
    cfg: VisionConfig,
    embed: PatchEmbedding,
    pre_ln: LayerNorm,
    layers: Vec<VitLayer>,
}

impl Clip {
    /// The tower with its first `layers` encoder layers, from the vision part of `src`.
    pub fn load(
        src: &mut dyn TensorSource,
        s: &Scope,
        cfg: &VisionConfig,
        layers: usize,
    ) -> Result<Clip> {
        let embed = PatchEmbedding::load(s, src, cfg, false, true)?;
        let pre_ln = LayerNorm::load(s, src, "pre_layrnorm", cfg.hidden_size, cfg.layer_norm_eps)?;
        let layers = vit::load_layers(s, src, cfg, layers)?;
        Ok(Clip {
            cfg: cfg.clone(),
            embed,
            pre_ln,
            layers,
        })
    }
}

impl VisionTower for Clip {
    fn embed(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf> {
        self.embed.forward(ex, pixels)
    }
    fn forward(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf> {
        let x = self.embed.forward(ex, pixels)?;
        let x = self.pre_ln.forward(ex, &x)?;
        vit::encode(ex, &self.cfg, &self.layers, x)
    }
}
