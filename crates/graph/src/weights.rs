//! Model weights on the device, read tensor by tensor from the checkpoint (each converted to the
//! compute dtype and uploaded before the next is read, so host memory stays at one tensor).

use foveate_core::{Backend, DType, Result, Tensor};
use foveate_models::config::VisionKind;
use foveate_models::{Checkpoint, Part};

pub struct VisionLayer {
    pub ln1: (Tensor, Tensor),
    pub ln2: (Tensor, Tensor),
    pub q: (Tensor, Tensor),
    pub k: (Tensor, Tensor),
    pub v: (Tensor, Tensor),
    pub o: (Tensor, Tensor),
    pub fc1: (Tensor, Tensor),
    pub fc2: (Tensor, Tensor),
}

pub struct VisionWeights {
    pub patch_w: Tensor,
    pub patch_b: Option<Tensor>,
    pub cls: Option<Tensor>,
    pub pos: Tensor,
    pub pre_ln: Option<(Tensor, Tensor)>,
    pub layers: Vec<VisionLayer>,
}

pub struct ProjectorWeights {
    pub w1: Tensor,
    pub b1: Tensor,
    pub w2: Tensor,
    pub b2: Tensor,
}

pub struct TextLayer {
    pub in_norm: Tensor,
    pub q: (Tensor, Option<Tensor>),
    pub k: (Tensor, Option<Tensor>),
    pub v: (Tensor, Option<Tensor>),
    pub o: Tensor,
    pub post_norm: Tensor,
    pub gate: Tensor,
    pub up: Tensor,
    pub down: Tensor,
}

pub struct TextWeights {
    pub embed: Tensor,
    pub layers: Vec<TextLayer>,
    pub norm: Tensor,
    /// The LM head, or the embedding table when tied.
    pub lm_head: Tensor,
}

pub struct ModelWeights {
    pub vision: VisionWeights,
    pub projector: ProjectorWeights,
    pub text: TextWeights,
    /// Bytes uploaded.
    pub bytes: usize,
}

struct Loader<'a> {
    ck: &'a Checkpoint,
    backend: &'a dyn Backend,
    dtype: DType,
    bytes: usize,
}

impl Loader<'_> {
    fn get(&mut self, part: Part, name: &str, shape: &[usize]) -> Result<Tensor> {
        let h = self.ck.tensor(part, name, shape, self.dtype)?;
        self.bytes += h.bytes.len();
        self.backend.upload(&h)
    }
    fn zeros(&mut self, n: usize) -> Result<Tensor> {
        self.bytes += n * self.dtype.size();
        self.backend.upload(&foveate_core::HostTensor::filled(self.dtype, vec![n], 0.0))
    }
    fn vpair(&mut self, p: &str, n: &str, wshape: &[usize], bshape: &[usize]) -> Result<(Tensor, Tensor)> {
        let w = self.get(Part::Vision, &format!("{p}{n}.weight"), wshape)?;
        let b = self.get(Part::Vision, &format!("{p}{n}.bias"), bshape)?;
        Ok((w, b))
    }
}

pub fn load(ck: &Checkpoint, backend: &dyn Backend, dtype: DType) -> Result<ModelWeights> {
    let cfg = &ck.config;
    let mut l = Loader { ck, backend, dtype, bytes: 0 };
    let v = &cfg.vision;
    let (d, i) = (v.hidden_size, v.intermediate_size);
    let clip = v.kind == VisionKind::Clip;
    let patch_w = l.get(Part::Vision, "embeddings.patch_embedding.weight", &[d, v.num_channels, v.patch_size, v.patch_size])?;
    let patch_b = if clip { None } else { Some(l.get(Part::Vision, "embeddings.patch_embedding.bias", &[d])?) };
    let cls = if clip { Some(l.get(Part::Vision, "embeddings.class_embedding", &[d])?) } else { None };
    let pos = l.get(Part::Vision, "embeddings.position_embedding.weight", &[v.num_positions(), d])?;
    let pre_ln = if clip { Some(l.vpair("", "pre_layrnorm", &[d], &[d])?) } else { None };
    let mut layers = Vec::new();
    for li in 0..cfg.vision_layers_to_run() {
        let p = format!("encoder.layers.{li}.");
        layers.push(VisionLayer {
            ln1: l.vpair(&p, "layer_norm1", &[d], &[d])?,
            ln2: l.vpair(&p, "layer_norm2", &[d], &[d])?,
            q: l.vpair(&p, "self_attn.q_proj", &[d, d], &[d])?,
            k: l.vpair(&p, "self_attn.k_proj", &[d, d], &[d])?,
            v: l.vpair(&p, "self_attn.v_proj", &[d, d], &[d])?,
            o: l.vpair(&p, "self_attn.out_proj", &[d, d], &[d])?,
            fc1: l.vpair(&p, "mlp.fc1", &[i, d], &[i])?,
            fc2: l.vpair(&p, "mlp.fc2", &[d, i], &[d])?,
        });
    }
    let vision = VisionWeights { patch_w, patch_b, cls, pos, pre_ln, layers };

    let dt = cfg.text.hidden_size;
    let w1 = l.get(Part::Projector, "linear_1.weight", &[dt, d])?;
    let b1 = if cfg.projector_bias { l.get(Part::Projector, "linear_1.bias", &[dt])? } else { l.zeros(dt)? };
    let w2 = l.get(Part::Projector, "linear_2.weight", &[dt, dt])?;
    let b2 = if cfg.projector_bias { l.get(Part::Projector, "linear_2.bias", &[dt])? } else { l.zeros(dt)? };
    let projector = ProjectorWeights { w1, b1, w2, b2 };

    let t = &cfg.text;
    let (qd, kvd, ti) = (t.num_heads * t.head_dim, t.num_kv_heads * t.head_dim, t.intermediate_size);
    let embed = l.get(Part::Text, "embed_tokens.weight", &[t.vocab_size, dt])?;
    let mut tl = Vec::new();
    for li in 0..t.num_layers {
        let p = format!("layers.{li}.");
        let proj = |l: &mut Loader, n: &str, rows: usize| -> Result<(Tensor, Option<Tensor>)> {
            let w = l.get(Part::Text, &format!("{p}self_attn.{n}.weight"), &[rows, dt])?;
            let b = if t.qkv_bias { Some(l.get(Part::Text, &format!("{p}self_attn.{n}.bias"), &[rows])?) } else { None };
            Ok((w, b))
        };
        let q = proj(&mut l, "q_proj", qd)?;
        let k = proj(&mut l, "k_proj", kvd)?;
        let vv = proj(&mut l, "v_proj", kvd)?;
        tl.push(TextLayer {
            in_norm: l.get(Part::Text, &format!("{p}input_layernorm.weight"), &[dt])?,
            q,
            k,
            v: vv,
            o: l.get(Part::Text, &format!("{p}self_attn.o_proj.weight"), &[dt, qd])?,
            post_norm: l.get(Part::Text, &format!("{p}post_attention_layernorm.weight"), &[dt])?,
            gate: l.get(Part::Text, &format!("{p}mlp.gate_proj.weight"), &[ti, dt])?,
            up: l.get(Part::Text, &format!("{p}mlp.up_proj.weight"), &[ti, dt])?,
            down: l.get(Part::Text, &format!("{p}mlp.down_proj.weight"), &[dt, ti])?,
        });
    }
    let norm = l.get(Part::Text, "norm.weight", &[dt])?;
    let lm_head = if t.tie_word_embeddings { embed.clone() } else { l.get(Part::LmHead, "weight", &[t.vocab_size, dt])? };
    let text = TextWeights { embed, layers: tl, norm, lm_head };
    Ok(ModelWeights { vision, projector, text, bytes: l.bytes })
}
