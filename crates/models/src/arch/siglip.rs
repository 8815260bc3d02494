//! SigLIP vision tower (`siglip_vision_model`): a patch conv with bias, no CLS token, no LayerNorm
//! before the encoder, gelu_pytorch_tanh MLPs. (The post-layernorm and attention-pooling head are
//! not used by LLaVA-style models, which take an encoder layer's hidden states.)

use super::vit::{self, PatchEmbedding, VisionTower, VitLayer};
use crate::config::VisionConfig;
use crate::vars::{Scope, TensorSource};
use foveate_core::{Result, Tensor};
use foveate_graph::{Buf, Exec};

pub struct Siglip {
    cfg: VisionConfig,
    embed: PatchEmbedding,
    layers: Vec<VitLayer>,
}

impl Siglip {
    /// The tower with its first `layers` encoder layers, from the vision part of `src`.
    pub fn load(
        src: &mut dyn TensorSource,
        s: &Scope,
        cfg: &VisionConfig,
        layers: usize,
    ) -> Result<Siglip> {
        let embed = PatchEmbedding::load(s, src, cfg, true, false)?;
        let layers = vit::load_layers(s, src, cfg, layers)?;
        Ok(Siglip {
            cfg: cfg.clone(),
            embed,
            layers,
        })
    }
}

impl VisionTower for Siglip {
    fn embed(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf> {
        self.embed.forward(ex, pixels)
    }
    fn forward(&self, ex: &Exec, pixels: &Tensor) -> Result<Buf> {
        let x = self.embed.forward(ex, pixels)?;
        vit::encode(ex, &self.cfg, &self.layers, x)
    }
}
