//! Tensor-name aliases. A LLaVA checkpoint names the same tensor differently depending on who
//! saved it:
//! * transformers 5 `save_pretrained`: `vision_tower.encoder.layers.N...`,
//!   `language_model.model.layers.N...`, `language_model.lm_head.weight`, `multi_modal_projector...`;
//! * hub checkpoints (transformers 4): `vision_tower.vision_model.encoder.layers.N...`, same text names;
//! * the newer `model.*` layout: `model.vision_tower[.vision_model]...`, `model.language_model.layers.N...`,
//!   `model.multi_modal_projector...`, `lm_head.weight`.
//!
//! Code asks for a tensor by its part and its name inside that part (`encoder.layers.0.mlp.fc1.weight`
//! in the vision tower); [`candidates`] lists the file names tried, in order.

/// The part of the model a tensor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// Inside the vision transformer (`embeddings...`, `pre_layrnorm...`, `encoder.layers.N...`).
    Vision,
    /// Inside the decoder (`embed_tokens...`, `layers.N...`, `norm...`).
    Text,
    /// Inside the projector (`linear_1.weight`, ...).
    Projector,
    /// The LM head (`weight`).
    LmHead,
}

impl Part {
    pub fn name(self) -> &'static str {
        match self {
            Part::Vision => "vision_tower",
            Part::Text => "language_model",
            Part::Projector => "multi_modal_projector",
            Part::LmHead => "lm_head",
        }
    }
}

/// File names tried for `rest` inside `part`, first match wins.
pub fn candidates(part: Part, rest: &str) -> Vec<String> {
    let prefixes: &[&str] = match part {
        Part::Vision => &[
            "vision_tower.vision_model.",
            "vision_tower.",
            "model.vision_tower.vision_model.",
            "model.vision_tower.",
            // Qwen2-VL / Qwen2.5-VL: transformers 5 (`model.visual.`) and hub (`visual.`) layouts.
            "model.visual.",
            "visual.",
        ],
        Part::Text => &[
            "language_model.model.",
            "model.language_model.",
            "language_model.",
            "model.",
        ],
        Part::Projector => &["multi_modal_projector.", "model.multi_modal_projector."],
        Part::LmHead => &["language_model.lm_head.", "lm_head.", "model.lm_head."],
    };
    prefixes.iter().map(|p| format!("{p}{rest}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_layout_is_a_candidate() {
        let v = candidates(Part::Vision, "encoder.layers.3.mlp.fc1.weight");
        for name in [
            "vision_tower.encoder.layers.3.mlp.fc1.weight",
            "vision_tower.vision_model.encoder.layers.3.mlp.fc1.weight",
            "model.vision_tower.encoder.layers.3.mlp.fc1.weight",
        ] {
            assert!(v.iter().any(|c| c == name), "{name}");
        }
        let t = candidates(Part::Text, "layers.0.self_attn.q_proj.weight");
        assert!(t
            .iter()
            .any(|c| c == "model.language_model.layers.0.self_attn.q_proj.weight"));
        assert!(t
            .iter()
            .any(|c| c == "language_model.model.layers.0.self_attn.q_proj.weight"));
        assert!(candidates(Part::LmHead, "weight")
            .iter()
            .any(|c| c == "lm_head.weight"));
    }
}
