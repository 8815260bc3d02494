//! Quantised checkpoints (`foveate quantize`): a checkpoint directory whose `model.safetensors`
//! holds the tensors in the per-role formats of [`Formats`], and a manifest [`MANIFEST`] saying
//! which tensors are quantised.
//!
//! * A quantised tensor is stored as safetensors dtype `U8`, shape `[bytes]`: the planar bytes of
//!   [`foveate_core::quant`] (quants, then f16 scales) exactly as uploaded. (U8 rather than I8:
//!   the bytes are not one integer per element; int4 packs two.)
//! * Every other tensor (embeddings, norms, biases, the vision tower, a weight whose rows are not a
//!   multiple of 32) is copied as the source stored it; it is converted to the compute dtype at
//!   load, as in any checkpoint.
//! * A tied LM head in int8 is its own tensor, [`TIED_HEAD`] (the embedding table stays float).
//! * The manifest: `{"format_version": 1, "weights": "int4", "tensors": [{"name", "format",
//!   "shape"}]}`, `shape` being the logical shape. Every quantised tensor is listed, and every
//!   listed tensor must be a U8 tensor of exactly `quant::bytes_for(format, numel)` bytes.
//!
//! Loading uploads the stored bytes as they are (no re-quantising); the `--weights` of the load
//! must be the manifest's (or absent).

use crate::checkpoint::Checkpoint;
use crate::formats::Formats;
use crate::names::Part;
use crate::vars::{Recorder, Role};
use crate::weights::{StoredDType, Weights};
use foveate_core::{quant, DType, Error, HostTensor, Result, Shape, TensorDesc};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

/// The manifest's file name in a checkpoint directory.
pub const MANIFEST: &str = "foveate_quant.json";
/// The manifest format version this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;
/// The stored name of a tied LM head kept in its own format.
pub const TIED_HEAD: &str = "foveate.tied_lm_head.weight";

#[derive(Clone, Debug, PartialEq)]
pub struct QuantEntry {
    pub format: DType,
    pub shape: Vec<usize>,
}

/// A quantised checkpoint's manifest, checked against its weights.
#[derive(Clone, Debug)]
pub struct QuantManifest {
    /// The `--weights` format it was quantised with.
    pub weights: DType,
    pub tensors: HashMap<String, QuantEntry>,
    /// The manifest's path (for messages).
    pub path: String,
}

impl QuantManifest {
    /// Reads `dir/foveate_quant.json` if present and checks it against `weights`: a known format
    /// version and formats, every listed tensor present as U8 with the byte count of its format
    /// and shape, every U8 tensor listed. Errors name the file and the field.
    pub fn read(dir: &Path, weights: &Weights) -> Result<Option<Self>> {
        let p = dir.join(MANIFEST);
        if !p.exists() {
            return Ok(None);
        }
        let path = p.display().to_string();
        let bad = |field: &str, msg: String| Error::format(&path, field, msg);
        let text = foveate_core::read_utf8(&p)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| bad("(json)", e.to_string()))?;
        match v.get("format_version").and_then(Value::as_u64) {
            Some(FORMAT_VERSION) => {}
            Some(n) => {
                return Err(bad(
                    "format_version",
                    format!("{n} is not supported (this build reads {FORMAT_VERSION})"),
                ))
            }
            None => return Err(bad("format_version", "missing or not an integer".into())),
        }
        let fmt = |field: &str, v: Option<&Value>| -> Result<DType> {
            let s = v
                .and_then(Value::as_str)
                .ok_or_else(|| bad(field, "missing or not a string".into()))?;
            let d: DType = s.parse().map_err(|e: String| bad(field, e))?;
            if !d.is_quant() && !d.is_float() {
                return Err(bad(field, format!("{d} is not a weight format")));
            }
            Ok(d)
        };
        let wfmt = fmt("weights", v.get("weights"))?;
        let list = v
            .get("tensors")
            .and_then(Value::as_array)
            .ok_or_else(|| bad("tensors", "missing or not a list".into()))?;
        let mut tensors = HashMap::new();
        for (i, t) in list.iter().enumerate() {
            let field = |f: &str| format!("tensors[{i}].{f}");
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(&field("name"), "missing or not a string".into()))?;
            let format = fmt(&field("format"), t.get("format"))?;
            if !format.is_quant() {
                return Err(bad(
                    &field("format"),
                    format!("{format}: only quantised tensors (int8, int4) are listed"),
                ));
            }
            let shape: Vec<usize> = t
                .get("shape")
                .and_then(Value::as_array)
                .and_then(|a| {
                    a.iter()
                        .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
                        .collect::<Option<Vec<_>>>()
                })
                .ok_or_else(|| bad(&field("shape"), "missing or not a list of integers".into()))?;
            let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
            let numel =
                numel.ok_or_else(|| bad(&field("shape"), format!("{shape:?} overflows")))?;
            quant::check_shape(format, numel, shape.iter().skip(1).product())
                .map_err(|e| bad(&field("shape"), e.to_string()))?;
            let want = quant::bytes_for(format, numel);
            match weights.info(name) {
                None => {
                    return Err(bad(
                        &field("name"),
                        format!("tensor `{name}` is not in {}", weights.label()),
                    ))
                }
                Some(info) if info.dtype != StoredDType::U8 => {
                    return Err(bad(
                        &field("name"),
                        format!(
                            "tensor `{name}` is stored as {}, a quantised tensor is U8",
                            info.dtype.name()
                        ),
                    ))
                }
                Some(info) if info.byte_range().len() != want => {
                    return Err(bad(
                        &field("shape"),
                        format!(
                            "`{name}`: {format} {} needs {want} bytes, {} holds {}",
                            Shape::from(shape.clone()),
                            weights.label(),
                            info.byte_range().len()
                        ),
                    ))
                }
                Some(_) => {}
            }
            if tensors
                .insert(name.to_string(), QuantEntry { format, shape })
                .is_some()
            {
                return Err(bad(
                    &field("name"),
                    format!("tensor `{name}` is listed twice"),
                ));
            }
        }
        for n in weights.names() {
            if weights.info(n).is_some_and(|i| i.dtype == StoredDType::U8)
                && !tensors.contains_key(n)
            {
                return Err(bad(
                    "tensors",
                    format!(
                        "U8 tensor `{n}` of {} is not listed (missing tensor)",
                        weights.label()
                    ),
                ));
            }
        }
        Ok(Some(QuantManifest {
            weights: wfmt,
            tensors,
            path,
        }))
    }

    /// The stored bytes of `name` as a tensor of `format` and `shape` (what the load policy asks).
    pub fn load(
        &self,
        weights: &Weights,
        name: &str,
        shape: &[usize],
        format: DType,
    ) -> Result<HostTensor> {
        let e = &self.tensors[name];
        if e.shape != shape || e.format != format {
            return Err(Error::format(
                &self.path,
                name,
                format!(
                    "stored as {} {}, the model reads it as {format} {}",
                    e.format,
                    Shape::from(e.shape.clone()),
                    Shape::from(shape)
                ),
            ));
        }
        let (_, _, raw) = weights
            .raw(name)
            .expect("checked when the manifest was read");
        Ok(HostTensor {
            desc: TensorDesc::new(format, shape.to_vec()),
            bytes: raw.to_vec(),
        })
    }
}

/// The stored name of tensor `rest` of `part` read with `role`, in a quantised checkpoint.
pub fn stored_name(ck: &Checkpoint, part: Part, rest: &str, role: Role) -> Option<String> {
    if role == Role::Head && part == Part::Text {
        return Some(TIED_HEAD.to_string());
    }
    ck.resolve(part, rest)
}

/// What [`quantize`] wrote.
#[derive(Clone, Debug, Default)]
pub struct QuantSummary {
    pub tensors: usize,
    pub quantised: usize,
    /// Tensors the policy would quantise whose rows are not a multiple of 32 (copied as stored).
    pub kept: Vec<String>,
    pub bytes_in: usize,
    pub bytes_out: usize,
}

/// Files besides the weights copied into a quantised checkpoint (those present).
const COPIED: [&str; 10] = [
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "chat_template.json",
    "processor_config.json",
    "preprocessor_config.json",
    "tokenizer.model",
];

/// Writes a quantised copy of the checkpoint in `src` to `dst` (created; must not hold a
/// `model.safetensors` already): config, tokenizer and processor files copied, one
/// `model.safetensors` in the per-role formats of `--weights` = `weights` (int8 or int4), and
/// the manifest. One tensor is held in memory at a time.
pub fn quantize(src: &Path, dst: &Path, weights: DType) -> Result<QuantSummary> {
    if !weights.is_quant() {
        return Err(Error::Msg(format!(
            "--weights: quantize writes int8 or int4, not {weights}"
        )));
    }
    let ck = Checkpoint::open(src)?;
    if ck.quant.is_some() {
        return Err(Error::Msg(format!(
            "{}: already a quantised checkpoint ({MANIFEST}); quantize the original",
            src.display()
        )));
    }
    if src.canonicalize().ok() == dst.canonicalize().ok() {
        return Err(Error::Msg(format!(
            "--out {} is the source directory",
            dst.display()
        )));
    }
    std::fs::create_dir_all(dst).map_err(|e| Error::io(dst, e))?;
    let out_file = dst.join("model.safetensors");
    if out_file.exists() || dst.join(MANIFEST).exists() {
        return Err(Error::Msg(format!(
            "--out {}: already holds a checkpoint (model.safetensors); give a new directory",
            dst.display()
        )));
    }
    let formats = Formats::new(DType::F32, weights);
    let mut rec = Recorder {
        entries: Vec::new(),
        formats: Some(formats),
        ..Default::default()
    };
    ck.config.build(&mut rec, true)?;
    // (stored name, entry's file name in the source, stored dtype name, shape, format or None = copy)
    struct Plan {
        name: String,
        src: String,
        dtype: &'static str,
        shape: Vec<usize>,
        quant: Option<(DType, Vec<usize>)>,
        bytes: usize,
    }
    let mut plans: Vec<Plan> = Vec::new();
    let mut summary = QuantSummary::default();
    for e in &rec.entries {
        let (fmt, kept) = formats.of(e.part, e.role, &e.shape);
        let src_name = ck.resolve(e.part, &e.name).ok_or_else(|| {
            Error::format(
                ck.weights.label(),
                format!("{}.{}", e.part.name(), e.name),
                "tensor missing",
            )
        })?;
        let name = stored_name(&ck, e.part, &e.name, e.role).expect("resolved above");
        let (info, _, _) = ck.weights.raw(&src_name).expect("resolved");
        if info.shape != e.shape {
            return Err(Error::format(
                ck.weights.label(),
                &src_name,
                format!("shape {:?}, expected {:?}", info.shape, e.shape),
            ));
        }
        if kept {
            summary.kept.push(format!("{src_name} {:?}", e.shape));
        }
        if plans.iter().any(|p| p.name == name) {
            continue;
        }
        let numel: usize = e.shape.iter().product();
        let p = if fmt.is_quant() {
            let b = quant::bytes_for(fmt, numel);
            Plan {
                name,
                src: src_name,
                dtype: "U8",
                shape: vec![b],
                quant: Some((fmt, e.shape.clone())),
                bytes: b,
            }
        } else {
            let b = info.byte_range().len();
            Plan {
                name,
                src: src_name,
                dtype: info.dtype.name(),
                shape: e.shape.clone(),
                quant: None,
                bytes: b,
            }
        };
        summary.bytes_in += info.byte_range().len();
        plans.push(p);
    }
    // Header: every tensor's offsets, padded to 8 bytes (what safetensors writers do).
    let mut header = serde_json::Map::new();
    let mut off = 0usize;
    for p in &plans {
        header.insert(
            p.name.clone(),
            json!({"dtype": p.dtype, "shape": p.shape, "data_offsets": [off, off + p.bytes]}),
        );
        off += p.bytes;
    }
    let mut h = serde_json::to_vec(&Value::Object(header)).expect("json");
    while h.len() % 8 != 0 {
        h.push(b' ');
    }
    let io = |e: std::io::Error| Error::io(&out_file, e);
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out_file).map_err(io)?);
    f.write_all(&(h.len() as u64).to_le_bytes()).map_err(io)?;
    f.write_all(&h).map_err(io)?;
    let mut listed = Vec::new();
    for p in &plans {
        match &p.quant {
            Some((fmt, shape)) => {
                // Converted and quantised a chunk per thread at a time (no f32 copy).
                let q = ck.weights.load(&p.src, shape, *fmt)?;
                f.write_all(&q.bytes).map_err(io)?;
                listed.push(json!({"name": p.name, "format": fmt.name(), "shape": shape}));
                summary.quantised += 1;
            }
            None => f
                .write_all(ck.weights.raw(&p.src).expect("resolved").2)
                .map_err(io)?,
        }
        summary.tensors += 1;
        summary.bytes_out += p.bytes;
    }
    f.flush().map_err(io)?;
    drop(f);
    for name in COPIED {
        let s = src.join(name);
        if s.exists() {
            std::fs::copy(&s, dst.join(name)).map_err(|e| Error::io(&s, e))?;
        }
    }
    let manifest =
        json!({"format_version": FORMAT_VERSION, "weights": weights.name(), "tensors": listed});
    let mp = dst.join(MANIFEST);
    std::fs::write(&mp, serde_json::to_string_pretty(&manifest).expect("json"))
        .map_err(|e| Error::io(&mp, e))?;
    Ok(summary)
}
