//! A checkpoint directory as HF saves it: config, weights, tokenizer, chat template, image
//! processor settings and generation config.

use crate::arch::{self, ArchConfig};
use crate::config::id_list;
use crate::image::ImageProcessorConfig;
use crate::names::{candidates, Part};
use crate::prompt::{read_json, PromptBuilder};
use crate::qcheckpoint::{stored_name, QuantManifest};
use crate::vars::Role;
use crate::weights::Weights;
use foveate_core::{Backend, DType, Error, HostTensor, Result, Shape, Tensor};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub struct Checkpoint {
    pub dir: PathBuf,
    /// `config.json`, parsed by its family's parser (chosen by `model_type`).
    pub config: Arc<dyn ArchConfig>,
    pub weights: Weights,
    /// The manifest of a quantised checkpoint (`foveate quantize`), checked against the weights.
    pub quant: Option<QuantManifest>,
    pub prompt: PromptBuilder,
    /// Stop tokens: `generation_config.json`, the text config and the tokenizer's eos, deduplicated.
    pub eos_token_ids: Vec<u32>,
}

impl Checkpoint {
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::io(
                &dir,
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "checkpoint directory not found",
                ),
            ));
        }
        let config = arch::load_config(&dir.join("config.json"))?;
        let weights = Weights::open_dir(&dir)?;
        let quant = QuantManifest::read(&dir, &weights)?;
        let mut prompt = PromptBuilder::open(
            &dir,
            config.image_token_id(),
            config.image_tokens_per_image(),
        )?;
        if let Some((start, end)) = config.image_wrap() {
            prompt = prompt.with_image_wrap(start, end)?;
        }
        let mut eos = Vec::new();
        let gen = dir.join("generation_config.json");
        if gen.exists() {
            let v = read_json(&gen)?;
            let ids = id_list(v.get("eos_token_id")).ok_or_else(|| {
                Error::format(
                    gen.display().to_string(),
                    "eos_token_id",
                    "must be an integer or a list of integers",
                )
            })?;
            eos.extend(ids);
        }
        eos.extend(config.eos_token_ids());
        eos.extend(prompt.eos_token_id());
        let mut eos_token_ids = Vec::new();
        for e in eos {
            if !eos_token_ids.contains(&e) {
                eos_token_ids.push(e);
            }
        }
        Ok(Checkpoint {
            dir,
            config,
            weights,
            quant,
            prompt,
            eos_token_ids,
        })
    }

    /// The config as its family's type (`ck.config_as::<LlavaConfig>()`), if it is of that family.
    pub fn config_as<T: 'static>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref::<T>()
    }

    /// The image-processor settings (`processor_config.json` or `preprocessor_config.json`).
    pub fn image_processor(&self) -> Result<ImageProcessorConfig> {
        ImageProcessorConfig::from_model_dir(&self.dir)
    }

    /// The file name under which `rest` of `part` is stored, if any alias matches.
    pub fn resolve(&self, part: Part, rest: &str) -> Option<String> {
        candidates(part, rest)
            .into_iter()
            .find(|c| self.weights.contains(c))
    }

    /// Reads `rest` of `part` with shape `shape`, converted to `dtype`. A missing tensor names the
    /// file, the tensor (and the aliases tried) and the expected shape.
    pub fn tensor(
        &self,
        part: Part,
        rest: &str,
        shape: &[usize],
        dtype: DType,
    ) -> Result<HostTensor> {
        self.weights
            .load(&self.name_of(part, rest, shape)?, shape, dtype)
    }

    /// The stored name of `rest` of `part`, or the missing-tensor error of [`Checkpoint::tensor`].
    fn name_of(&self, part: Part, rest: &str, shape: &[usize]) -> Result<String> {
        self.resolve(part, rest).ok_or_else(|| {
            Error::format(
                self.weights.label(),
                format!("{}.{rest}", part.name()),
                format!(
                    "tensor missing (expected shape {}; looked for {})",
                    Shape::from(shape),
                    candidates(part, rest).join(", ")
                ),
            )
        })
    }

    /// As [`Checkpoint::tensor_for`], uploaded to `backend`: a tensor converted from the
    /// checkpoint's floats goes straight into the backend's tensor ([`Weights::upload`]).
    pub fn upload_for(
        &self,
        part: Part,
        rest: &str,
        shape: &[usize],
        role: Role,
        format: DType,
        backend: &dyn Backend,
    ) -> Result<Tensor> {
        match self.stored(part, rest, shape, role, format)? {
            Some(h) => backend.upload(&h),
            None => {
                let name = self.name_of(part, rest, shape)?;
                self.weights.upload(&name, shape, format, backend)
            }
        }
    }

    /// Reads `rest` of `part`, asked for with `role`, as `format`: a quantised checkpoint's
    /// stored bytes when its manifest lists the tensor, else the stored values converted (and
    /// quantised, for a quantised `format`). In a quantised checkpoint a tensor the policy
    /// quantises must be listed.
    pub fn tensor_for(
        &self,
        part: Part,
        rest: &str,
        shape: &[usize],
        role: Role,
        format: DType,
    ) -> Result<HostTensor> {
        match self.stored(part, rest, shape, role, format)? {
            Some(h) => Ok(h),
            None => self.tensor(part, rest, shape, format),
        }
    }

    /// A quantised checkpoint's stored tensor for `rest` of `part` when its manifest lists it; an
    /// error when the policy quantises it to `format` but it is not listed; `None` when it is read
    /// from the checkpoint's floats (always, outside a quantised checkpoint; a tied head read as
    /// its own tensor there is the embedding table).
    fn stored(
        &self,
        part: Part,
        rest: &str,
        shape: &[usize],
        role: Role,
        format: DType,
    ) -> Result<Option<HostTensor>> {
        let Some(q) = &self.quant else {
            return Ok(None);
        };
        if let Some(name) =
            stored_name(self, part, rest, role).filter(|n| q.tensors.contains_key(n))
        {
            return q.load(&self.weights, &name, shape, format).map(Some);
        }
        if format.is_quant() {
            return Err(Error::format(
                &q.path,
                "tensors",
                format!(
                    "{}.{rest} is not listed: the policy stores it as {format} (missing tensor)",
                    part.name()
                ),
            ));
        }
        Ok(None)
    }
}
