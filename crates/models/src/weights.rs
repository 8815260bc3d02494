//! Safetensors checkpoints, memory-mapped: one `model.safetensors` or a sharded set listed in
//! `model.safetensors.index.json`. Headers are parsed and every tensor's byte range is checked
//! against its file when the checkpoint is opened, so a truncated or corrupt file is one error
//! naming the file and the tensor, never an out-of-bounds read.

use foveate_core::{Backend, DType, Error, HostTensor, Result, Shape, Tensor, TensorDesc};
use half::{bf16, f16};
use memmap2::Mmap;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

/// Element type as stored in the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoredDType {
    F32,
    F16,
    BF16,
    /// Raw bytes: a quantised tensor of a quantised checkpoint, shape `[bytes]`, whose format and
    /// logical shape are in its manifest ([`crate::qcheckpoint`]).
    U8,
}

impl StoredDType {
    pub fn size(self) -> usize {
        match self {
            StoredDType::F32 => 4,
            StoredDType::U8 => 1,
            _ => 2,
        }
    }
    /// The name safetensors headers use.
    pub fn name(self) -> &'static str {
        match self {
            StoredDType::F32 => "F32",
            StoredDType::F16 => "F16",
            StoredDType::BF16 => "BF16",
            StoredDType::U8 => "U8",
        }
    }
}

#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub dtype: StoredDType,
    pub shape: Vec<usize>,
    file: usize,
    /// Absolute byte range in the file.
    start: usize,
    end: usize,
}

impl TensorInfo {
    /// Absolute byte range of the tensor's data in its file (checked against the file's size).
    pub fn byte_range(&self) -> std::ops::Range<usize> {
        self.start..self.end
    }
}

/// Largest safetensors header accepted (the reference implementation's limit): a header length
/// above it is refused before anything is allocated for it.
pub const MAX_HEADER_BYTES: u64 = 100_000_000;

struct MappedFile {
    path: PathBuf,
    map: Mmap,
}

/// Every tensor of a checkpoint, by its name in the file.
pub struct Weights {
    files: Vec<MappedFile>,
    tensors: HashMap<String, TensorInfo>,
    /// What errors name: `model.safetensors` or the index file.
    label: String,
}

impl Weights {
    /// Opens `dir/model.safetensors.index.json` if present, else `dir/model.safetensors`.
    pub fn open_dir(dir: &Path) -> Result<Self> {
        let index = dir.join("model.safetensors.index.json");
        if index.exists() {
            return Self::open_sharded(&index);
        }
        let single = dir.join("model.safetensors");
        if !single.exists() {
            return Err(Error::format(
                dir.display().to_string(),
                "model.safetensors",
                "no model.safetensors or model.safetensors.index.json in the checkpoint directory",
            ));
        }
        Self::open_files(&[single.clone()], single.display().to_string(), None)
    }

    pub fn open_sharded(index: &Path) -> Result<Self> {
        let label = index.display().to_string();
        let text = foveate_core::read_utf8(index)?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&label, "(json)", e.to_string()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| Error::format(&label, "weight_map", "missing or not an object"))?;
        let dir = index.parent().unwrap_or(Path::new("."));
        let mut shard_names: Vec<String> = Vec::new();
        let mut wanted: BTreeMap<String, String> = BTreeMap::new();
        for (name, file) in map {
            let f = file.as_str().ok_or_else(|| {
                Error::format(&label, format!("weight_map.{name}"), "must be a file name")
            })?;
            if f.is_empty() || f.contains(['/', '\\']) || f == "." || f == ".." {
                return Err(Error::format(
                    &label,
                    format!("weight_map.{name}"),
                    format!("`{f}` is not a file name in the checkpoint directory"),
                ));
            }
            if !shard_names.iter().any(|s| s == f) {
                shard_names.push(f.to_string());
            }
            wanted.insert(name.clone(), f.to_string());
        }
        let paths: Vec<PathBuf> = shard_names.iter().map(|s| dir.join(s)).collect();
        Self::open_files(&paths, label, Some(&wanted))
    }

    /// Opens and validates the files; with an index, each listed tensor must be in its shard.
    fn open_files(
        paths: &[PathBuf],
        label: String,
        index: Option<&BTreeMap<String, String>>,
    ) -> Result<Self> {
        let mut files = Vec::new();
        let mut tensors = HashMap::new();
        for (fi, path) in paths.iter().enumerate() {
            let f = File::open(path).map_err(|e| Error::io(path, e))?;
            // SAFETY: the map is read-only; checkpoints are not modified while a model is loaded.
            let map = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(path, e))?;
            for (name, info) in parse_header(path, &map, fi)? {
                if let Some(prev) = tensors.get(&name).map(|t: &TensorInfo| t.file) {
                    return Err(Error::format(
                        path.display().to_string(),
                        &name,
                        format!(
                            "tensor is also in {}: each tensor must be stored once",
                            paths[prev].display()
                        ),
                    ));
                }
                tensors.insert(name, info);
            }
            files.push(MappedFile {
                path: path.clone(),
                map,
            });
        }
        if let Some(index) = index {
            for (name, shard) in index {
                match tensors.get(name) {
                    Some(info)
                        if files[info.file]
                            .path
                            .file_name()
                            .map(|n| n.to_string_lossy() == shard.as_str())
                            == Some(true) => {}
                    _ => {
                        return Err(Error::format(
                            &label,
                            name,
                            format!(
                                "listed in weight_map under {shard} but not found in that file"
                            ),
                        ))
                    }
                }
            }
        }
        Ok(Weights {
            files,
            tensors,
            label,
        })
    }

    /// Each weights file and its bytes (memory-mapped), in load order.
    pub fn files(&self) -> impl Iterator<Item = (&Path, &[u8])> {
        self.files.iter().map(|f| (f.path.as_path(), &f.map[..]))
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// Total bytes of all tensors as stored.
    pub fn stored_bytes(&self) -> usize {
        self.tensors.values().map(|t| t.end - t.start).sum()
    }

    /// Reads tensor `name`, checks its shape against `expected`, converts it to `dtype`.
    pub fn load(&self, name: &str, expected: &[usize], dtype: DType) -> Result<HostTensor> {
        let (from, raw) = self.checked(name, expected)?;
        let desc = TensorDesc::new(dtype, expected.to_vec());
        let mut bytes = vec![0u8; desc.size_bytes()];
        convert_into(raw, from, dtype, &mut bytes);
        Ok(HostTensor { desc, bytes })
    }

    /// As [`Weights::load`], converted straight into a tensor of `backend`
    /// ([`Backend::upload_with`]: on the cpu into its storage, with no host copy).
    pub fn upload(
        &self,
        name: &str,
        expected: &[usize],
        dtype: DType,
        backend: &dyn Backend,
    ) -> Result<Tensor> {
        let (from, raw) = self.checked(name, expected)?;
        let desc = TensorDesc::new(dtype, expected.to_vec());
        backend.upload_with(&desc, &mut |bytes| convert_into(raw, from, dtype, bytes))
    }

    /// Tensor `name`'s stored dtype and bytes, once its shape is `expected` and it is a float.
    fn checked(&self, name: &str, expected: &[usize]) -> Result<(StoredDType, &[u8])> {
        let info = self.tensors.get(name).ok_or_else(|| {
            Error::format(
                &self.label,
                name,
                format!("tensor missing (expected shape {})", Shape::from(expected)),
            )
        })?;
        let file = &self.files[info.file];
        if info.shape != expected {
            return Err(Error::format(
                file.path.display().to_string(),
                name,
                format!(
                    "shape {}, expected {}",
                    Shape::from(info.shape.clone()),
                    Shape::from(expected)
                ),
            ));
        }
        if info.dtype == StoredDType::U8 {
            return Err(Error::format(
                file.path.display().to_string(),
                name,
                "stored as raw U8 bytes (a quantised tensor), but the checkpoint's foveate_quant.json does not describe it",
            ));
        }
        Ok((info.dtype, &file.map[info.start..info.end]))
    }

    /// The stored bytes of tensor `name` and the file holding it.
    pub fn raw(&self, name: &str) -> Option<(&TensorInfo, &Path, &[u8])> {
        let info = self.tensors.get(name)?;
        let file = &self.files[info.file];
        Some((info, file.path.as_path(), &file.map[info.start..info.end]))
    }
}

/// `raw` (a float dtype, not U8) as `to` into `bytes` (exactly its size in `to`): the stored
/// bytes when the dtypes match, else converted a chunk at a time (a quantised `to` is encoded from
/// the f32 values; no whole-tensor f32 temporary).
fn convert_into(raw: &[u8], from: StoredDType, to: DType, bytes: &mut [u8]) {
    let same = matches!(
        (from, to),
        (StoredDType::F32, DType::F32)
            | (StoredDType::F16, DType::F16)
            | (StoredDType::BF16, DType::BF16)
    );
    if same {
        return bytes.copy_from_slice(raw);
    }
    let n = raw.len() / if from == StoredDType::F32 { 4 } else { 2 };
    HostTensor::encode_f32_chunks(to, bytes, n, |start, out| match from {
        StoredDType::F32 => {
            let src = raw[4 * start..].chunks_exact(4);
            for (o, c) in out.iter_mut().zip(src) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        StoredDType::F16 | StoredDType::BF16 => {
            let src = raw[2 * start..].chunks_exact(2);
            for (o, c) in out.iter_mut().zip(src) {
                *o = if from == StoredDType::F16 {
                    f16::from_le_bytes([c[0], c[1]]).to_f32()
                } else {
                    bf16::from_le_bytes([c[0], c[1]]).to_f32()
                };
            }
        }
        StoredDType::U8 => unreachable!("U8 tensors are refused by Weights::checked"),
    })
}

/// Parses and validates a safetensors file held in memory (what [`Weights`] does to each file
/// when it opens it): the header length, the JSON table, each tensor's dtype, shape and
/// `data_offsets`, which must lie inside the data, match the shape, be aligned to the element
/// size and not overlap. `name` names the file in errors.
pub fn parse_safetensors(name: &str, bytes: &[u8]) -> Result<Vec<(String, TensorInfo)>> {
    parse_header(Path::new(name), bytes, 0)
}

fn parse_header(path: &Path, map: &[u8], file: usize) -> Result<Vec<(String, TensorInfo)>> {
    let fname = path.display().to_string();
    let bad = |field: &str, msg: String| Error::format(&fname, field, msg);
    if map.len() < 8 {
        return Err(bad(
            "header",
            format!(
                "file is {} bytes, too short for a safetensors header (truncated?)",
                map.len()
            ),
        ));
    }
    let n = u64::from_le_bytes(map[..8].try_into().unwrap());
    if n > MAX_HEADER_BYTES {
        return Err(bad(
            "header",
            format!("header length {n} exceeds the limit of {MAX_HEADER_BYTES} bytes"),
        ));
    }
    if n > (map.len() - 8) as u64 {
        return Err(bad(
            "header",
            format!(
                "header length {n} exceeds the file size {} (truncated?)",
                map.len()
            ),
        ));
    }
    let data_start = 8 + n as usize;
    let data_len = map.len() - data_start;
    let header = std::str::from_utf8(&map[8..data_start]).map_err(|e| {
        bad(
            "header",
            format!(
                "not valid UTF-8 (first bad byte at header offset {})",
                e.valid_up_to()
            ),
        )
    })?;
    let v: Value =
        serde_json::from_str(header).map_err(|e| bad("header", format!("not valid JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| bad("header", "not a JSON object".into()))?;
    let mut out = Vec::new();
    for (name, t) in obj {
        if name == "__metadata__" {
            continue;
        }
        let dt = t.get("dtype").and_then(|d| d.as_str()).unwrap_or("?");
        let dtype = match dt {
            "F32" => StoredDType::F32,
            "F16" => StoredDType::F16,
            "BF16" => StoredDType::BF16,
            "U8" => StoredDType::U8,
            other => return Err(bad(name, format!("dtype {other} is not supported (supported: F32, F16, BF16; U8 in quantised checkpoints)"))),
        };
        let shape: Vec<usize> = t
            .get("shape")
            .and_then(|s| s.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .ok_or_else(|| bad(name, "shape missing or not a list of integers".into()))?;
        let offs = t
            .get("data_offsets")
            .and_then(|s| s.as_array())
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_u64().and_then(|x| usize::try_from(x).ok()))
                    .collect::<Option<Vec<_>>>()
            })
            .filter(|o| o.len() == 2)
            .ok_or_else(|| bad(name, "data_offsets missing or not [begin, end]".into()))?;
        let (b, e) = (offs[0], offs[1]);
        let want = shape
            .iter()
            .try_fold(dtype.size(), |acc, &d| acc.checked_mul(d));
        let Some(want) = want else {
            return Err(bad(
                name,
                format!("shape {shape:?} is too large (its byte size overflows)"),
            ));
        };
        if b > e || e - b != want {
            return Err(bad(
                name,
                format!(
                    "data_offsets [{b}, {e}] hold {} bytes, shape {} needs {want}",
                    e.saturating_sub(b),
                    Shape::from(shape.clone())
                ),
            ));
        }
        if e > data_len {
            return Err(bad(name, format!("data_offsets end {e} is past the end of the data ({data_len} bytes): file truncated?")));
        }
        if b % dtype.size() != 0 {
            return Err(bad(
                name,
                format!(
                    "data_offsets begin {b} is not aligned to the {dt} element size of {} bytes",
                    dtype.size()
                ),
            ));
        }
        out.push((
            name.clone(),
            TensorInfo {
                dtype,
                shape,
                file,
                start: data_start + b,
                end: data_start + e,
            },
        ));
    }
    // No two tensors may share bytes.
    let mut by_start: Vec<&(String, TensorInfo)> =
        out.iter().filter(|(_, t)| t.end > t.start).collect();
    by_start.sort_by_key(|(_, t)| (t.start, t.end));
    for w in by_start.windows(2) {
        let ((a, ta), (b, tb)) = (w[0], w[1]);
        if tb.start < ta.end {
            return Err(bad(
                b,
                format!(
                    "data_offsets [{}, {}] overlap those of {a} [{}, {}]",
                    tb.start - data_start,
                    tb.end - data_start,
                    ta.start - data_start,
                    ta.end - data_start
                ),
            ));
        }
    }
    Ok(out)
}
