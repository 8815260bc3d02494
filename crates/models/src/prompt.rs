//! Tokenizer, chat template and `<image>` expansion: turns a user prompt into the token ids the
//! HF LLaVA processor would feed the model.

use foveate_core::{Error, Result};
use serde_json::Value;
use std::path::Path;
use tokenizers::Tokenizer;

/// The placeholder a user writes for the image.
pub const IMAGE_PLACEHOLDER: &str = "<image>";

pub struct PromptBuilder {
    tokenizer: Tokenizer,
    tokenizer_file: String,
    chat_template: Option<(String, String)>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    image_token_id: u32,
    /// The image token's text in the vocabulary (usually `<image>`).
    image_token: String,
    image_tokens_per_image: usize,
    /// The tokens a raw `<image>` placeholder puts around the image tokens (Qwen2-VL's vision
    /// start / end), as text.
    image_wrap: Option<(String, String)>,
}

impl PromptBuilder {
    /// Reads `tokenizer.json`, `tokenizer_config.json` and the chat template from `dir`.
    pub fn open(dir: &Path, image_token_id: u32, image_tokens_per_image: usize) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        let tokenizer_file = tok_path.display().to_string();
        if !tok_path.exists() {
            return Err(Error::format(
                &tokenizer_file,
                "(file)",
                "missing: the checkpoint needs a tokenizer.json",
            ));
        }
        let tokenizer = Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::format(&tokenizer_file, "(file)", e.to_string()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: Value = if cfg_path.exists() {
            read_json(&cfg_path)?
        } else {
            Value::Null
        };
        let special = |key: &str| -> Option<String> {
            match cfg.get(key)? {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("content")?.as_str().map(String::from),
                _ => None,
            }
        };
        let bos_token = special("bos_token");
        let eos_token = special("eos_token");
        let chat_template = find_chat_template(dir, &cfg)?;
        let image_token = tokenizer.id_to_token(image_token_id).ok_or_else(|| {
            Error::format(
                &tokenizer_file,
                "vocab",
                format!(
                    "image_token_index {image_token_id} from config.json is not in the vocabulary"
                ),
            )
        })?;
        Ok(PromptBuilder {
            tokenizer,
            tokenizer_file,
            chat_template,
            bos_token,
            eos_token,
            image_token_id,
            image_token,
            image_tokens_per_image,
            image_wrap: None,
        })
    }

    /// A raw `<image>` placeholder becomes `start`, the image tokens, `end` (ids of the vocabulary).
    pub fn with_image_wrap(mut self, start: u32, end: u32) -> Result<Self> {
        let text = |id: u32, what: &str| {
            self.tokenizer.id_to_token(id).ok_or_else(|| {
                Error::format(
                    &self.tokenizer_file,
                    "vocab",
                    format!("{what} {id} from config.json is not in the vocabulary"),
                )
            })
        };
        self.image_wrap = Some((
            text(start, "vision_start_token_id")?,
            text(end, "vision_end_token_id")?,
        ));
        Ok(self)
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// The eos id of `tokenizer_config.json`, if it names one in the vocabulary.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token
            .as_deref()
            .and_then(|t| self.tokenizer.token_to_id(t))
    }

    /// Renders the chat template for one user turn holding the image and `prompt`
    /// (a `<image>` in the prompt marks where the image goes; otherwise it comes first).
    pub fn apply_chat_template(&self, prompt: &str, with_image: bool) -> Result<String> {
        if self.chat_template.is_none() {
            return Err(Error::format(&self.tokenizer_file, "chat_template", "--chat given but the checkpoint has no chat template (looked in chat_template.jinja, chat_template.json, tokenizer_config.json)"));
        }
        let mut content = Vec::new();
        let parts: Vec<&str> = prompt.split(IMAGE_PLACEHOLDER).collect();
        if parts.len() == 1 && with_image {
            content.push(serde_json::json!({"type": "image"}));
        }
        for (i, p) in parts.iter().enumerate() {
            if i > 0 {
                content.push(serde_json::json!({"type": "image"}));
            }
            if !p.is_empty() {
                content.push(serde_json::json!({"type": "text", "text": p}));
            }
        }
        self.render_messages(&serde_json::json!([{"role": "user", "content": content}]))
    }

    /// Renders the chat template over `messages` as transformers' `apply_chat_template` takes them
    /// (`[{"role", "content": string or [{"type": "image"} | {"type": "text", "text"}]}]`), with
    /// the generation prompt. Each image part becomes `<image>` where the template puts it.
    pub fn render_messages(&self, messages: &Value) -> Result<String> {
        let (file, src) = self.chat_template.as_ref().ok_or_else(|| {
            Error::format(&self.tokenizer_file, "chat_template", "the checkpoint has no chat template (looked in chat_template.jinja, chat_template.json, tokenizer_config.json)")
        })?;
        crate::template::render(
            file,
            src,
            messages,
            self.bos_token.as_deref(),
            self.eos_token.as_deref(),
        )
    }

    /// The chat template's source text, if the checkpoint has one.
    pub fn chat_template_source(&self) -> Option<&str> {
        self.chat_template.as_ref().map(|(_, src)| src.as_str())
    }

    /// Token ids for `text` (already templated or verbatim): each `<image>` becomes
    /// `image_tokens_per_image` image tokens, as the HF processor writes them. Special tokens
    /// (BOS) are added unless the text already starts with the BOS token.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        self.encode_with(text, self.image_tokens_per_image)
    }

    /// [`PromptBuilder::encode`] with `per_image` tokens for each image: a raw `<image>` first
    /// becomes the image token (wrapped in the family's start / end tokens, if any), then every
    /// image token (from `<image>` or written by the chat template, as Qwen2-VL's `<|image_pad|>`)
    /// becomes `per_image` of them, as the HF processors expand them.
    pub fn encode_with(&self, text: &str, per_image: usize) -> Result<Vec<u32>> {
        let marked = match &self.image_wrap {
            Some((start, end)) => text.replace(
                IMAGE_PLACEHOLDER,
                &format!("{start}{}{end}", self.image_token),
            ),
            None => text.replace(IMAGE_PLACEHOLDER, &self.image_token),
        };
        let images = marked.matches(self.image_token.as_str()).count();
        let expanded = marked.replace(
            self.image_token.as_str(),
            &self.image_token.repeat(per_image),
        );
        let add_special =
            !matches!(&self.bos_token, Some(b) if !b.is_empty() && text.starts_with(b.as_str()));
        let enc = self
            .tokenizer
            .encode(expanded.as_str(), add_special)
            .map_err(|e| Error::format(&self.tokenizer_file, "(encode)", e.to_string()))?;
        let ids = enc.get_ids().to_vec();
        let want = images * per_image;
        let got = ids.iter().filter(|&&i| i == self.image_token_id).count();
        if got != want {
            return Err(Error::format(&self.tokenizer_file, "added_tokens", format!(
                "the prompt has {want} image tokens after expansion but tokenizes into {got} of id {}: `{}` must be one added token",
                self.image_token_id, self.image_token
            )));
        }
        Ok(ids)
    }

    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer
            .decode(ids, true)
            .map_err(|e| Error::format(&self.tokenizer_file, "(decode)", e.to_string()))
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::format(path.display().to_string(), "(json)", e.to_string()))
}

/// `chat_template.jinja`, then `chat_template.json`, then `tokenizer_config.json` (a string, or a
/// list of named templates of which `default` is used). Returns (file, source).
fn find_chat_template(dir: &Path, tok_cfg: &Value) -> Result<Option<(String, String)>> {
    let jinja = dir.join("chat_template.jinja");
    if jinja.exists() {
        let src = std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?;
        return Ok(Some((jinja.display().to_string(), src)));
    }
    let json = dir.join("chat_template.json");
    if json.exists() {
        let v = read_json(&json)?;
        return match template_value(v.get("chat_template")) {
            Some(src) => Ok(Some((json.display().to_string(), src))),
            None => Err(Error::format(
                json.display().to_string(),
                "chat_template",
                "missing or not a string",
            )),
        };
    }
    let file = dir.join("tokenizer_config.json").display().to_string();
    Ok(template_value(tok_cfg.get("chat_template")).map(|src| (file, src)))
}

fn template_value(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => list
            .iter()
            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
            .or_else(|| list.first())
            .and_then(|t| t.get("template"))
            .and_then(|t| t.as_str())
            .map(String::from),
        _ => None,
    }
}
