//! WGSL sources, specialisation and the pipeline cache.
//!
//! A module is a list of kernel files (embedded with `include_str!`) behind a specialisation
//! header that the host writes: `enable f16;` when an element type is f16, `alias T = ...;` for
//! element types, `const NAME: u32 = ...;` for sizes and codes. Boolean defines also drive a tiny
//! preprocessor (`#if NAME`, `#if !NAME`, `#else`, `#endif`) so a module only declares the
//! bindings its specialisation uses. Pipelines are cached by (entry point, files, header).

use foveate_core::{DType, Error, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

pub const COMMON: &str = include_str!("../../../kernels/wgsl/common.wgsl");
pub const ELEMENTWISE: &str = include_str!("../../../kernels/wgsl/elementwise.wgsl");
pub const NORM: &str = include_str!("../../../kernels/wgsl/norm.wgsl");
pub const ROPE: &str = include_str!("../../../kernels/wgsl/rope.wgsl");
pub const GEMM_TILE: &str = include_str!("../../../kernels/wgsl/gemm_tile.wgsl");
pub const GEMM: &str = include_str!("../../../kernels/wgsl/gemm.wgsl");
pub const QUANT: &str = include_str!("../../../kernels/wgsl/quant.wgsl");
pub const GELU_MLP: &str = include_str!("../../../kernels/wgsl/gelu_mlp.wgsl");
pub const PATCH_EMBED: &str = include_str!("../../../kernels/wgsl/patch_embed.wgsl");
pub const ATTENTION_MASK: &str = include_str!("../../../kernels/wgsl/attention_mask.wgsl");
pub const ATTENTION: &str = include_str!("../../../kernels/wgsl/attention.wgsl");
pub const SPARSE_ATTENTION: &str = include_str!("../../../kernels/wgsl/sparse_attention.wgsl");
pub const DECODE_ATTENTION: &str = include_str!("../../../kernels/wgsl/decode_attention.wgsl");

/// Every kernel file by name, for listing and for the compile-everything test.
pub const FILES: &[(&str, &str)] = &[
    ("common.wgsl", COMMON),
    ("elementwise.wgsl", ELEMENTWISE),
    ("norm.wgsl", NORM),
    ("rope.wgsl", ROPE),
    ("gemm_tile.wgsl", GEMM_TILE),
    ("gemm.wgsl", GEMM),
    ("quant.wgsl", QUANT),
    ("gelu_mlp.wgsl", GELU_MLP),
    ("patch_embed.wgsl", PATCH_EMBED),
    ("attention_mask.wgsl", ATTENTION_MASK),
    ("attention.wgsl", ATTENTION),
    ("sparse_attention.wgsl", SPARSE_ATTENTION),
    ("decode_attention.wgsl", DECODE_ATTENTION),
];

/// One specialisation value.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Def {
    /// `alias NAME = f32|f16|u32;`
    Ty(&'static str),
    /// `const NAME: u32 = v;`
    U(u32),
    /// `const NAME: bool = v;` and the `#if NAME` switch.
    Flag(bool),
}

/// WGSL element type of a storage dtype (bf16 has none; see `variants::BF16_REASON`).
pub fn wgsl_type(dt: DType) -> Option<&'static str> {
    match dt {
        DType::F32 => Some("f32"),
        DType::F16 => Some("f16"),
        DType::U32 => Some("u32"),
        DType::BF16 | DType::Int8 | DType::Int4 => None,
    }
}

/// A kernel to compile: files (in order, after common.wgsl), entry point, specialisation.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct KernelKey {
    pub files: Vec<&'static str>,
    pub entry: &'static str,
    pub defs: Vec<(&'static str, Def)>,
}

impl KernelKey {
    pub fn new(files: &[&'static str], entry: &'static str) -> Self {
        KernelKey { files: files.to_vec(), entry, defs: Vec::new() }
    }
    pub fn ty(mut self, name: &'static str, dt: DType) -> Self {
        self.defs.push((name, Def::Ty(wgsl_type(dt).unwrap_or("f32"))));
        self
    }
    pub fn u(mut self, name: &'static str, v: u32) -> Self {
        self.defs.push((name, Def::U(v)));
        self
    }
    pub fn flag(mut self, name: &'static str, v: bool) -> Self {
        self.defs.push((name, Def::Flag(v)));
        self
    }

    /// Full WGSL text of the module.
    pub fn source(&self) -> Result<String> {
        let mut head = String::new();
        if self.defs.iter().any(|(_, d)| *d == Def::Ty("f16")) {
            head.push_str("enable f16;\n");
        }
        for (name, d) in &self.defs {
            match d {
                Def::Ty(t) => writeln!(head, "alias {name} = {t};"),
                Def::U(v) => writeln!(head, "const {name}: u32 = {v}u;"),
                Def::Flag(b) => writeln!(head, "const {name}: bool = {b};"),
            }
            .expect("write to string");
        }
        let mut body = String::from(COMMON);
        for f in &self.files {
            let text = FILES
                .iter()
                .find(|(n, _)| n == f)
                .map(|(_, t)| *t)
                .ok_or_else(|| Error::device("wgpu", format!("unknown kernel file {f}")))?;
            body.push('\n');
            body.push_str(text);
        }
        let flags: HashMap<&str, bool> =
            self.defs.iter().filter_map(|(n, d)| if let Def::Flag(b) = d { Some((*n, *b)) } else { None }).collect();
        Ok(head + &preprocess(&body, &flags, &self.files.join("+"))?)
    }

    /// Short label for errors: `gemm.wgsl:gemm[T=f16,ACT=1]`.
    pub fn label(&self) -> String {
        let defs: Vec<String> = self
            .defs
            .iter()
            .map(|(n, d)| match d {
                Def::Ty(t) => format!("{n}={t}"),
                Def::U(v) => format!("{n}={v}"),
                Def::Flag(b) => format!("{n}={b}"),
            })
            .collect();
        format!("{}:{}[{}]", self.files.last().copied().unwrap_or(""), self.entry, defs.join(","))
    }
}

/// Resolves `#if NAME` / `#if !NAME` / `#else` / `#endif` (nestable) on boolean defines.
pub fn preprocess(src: &str, flags: &HashMap<&str, bool>, what: &str) -> Result<String> {
    let mut out = String::with_capacity(src.len());
    // Stack of (this branch active, parent active).
    let mut stack: Vec<(bool, bool)> = Vec::new();
    let active = |s: &Vec<(bool, bool)>| s.last().map_or(true, |&(a, p)| a && p);
    for (n, line) in src.lines().enumerate() {
        let t = line.trim();
        if let Some(cond) = t.strip_prefix("#if ") {
            let cond = cond.trim();
            let (neg, name) = match cond.strip_prefix('!') {
                Some(n) => (true, n.trim()),
                None => (false, cond),
            };
            let v = *flags.get(name).ok_or_else(|| {
                Error::device("wgpu", format!("{what}: line {}: `#if {name}` but {name} is not defined", n + 1))
            })?;
            let parent = active(&stack);
            stack.push((v != neg, parent));
        } else if t == "#else" {
            let top = stack
                .last_mut()
                .ok_or_else(|| Error::device("wgpu", format!("{what}: line {}: #else without #if", n + 1)))?;
            top.0 = !top.0;
        } else if t == "#endif" {
            stack
                .pop()
                .ok_or_else(|| Error::device("wgpu", format!("{what}: line {}: #endif without #if", n + 1)))?;
        } else if active(&stack) {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !stack.is_empty() {
        return Err(Error::device("wgpu", format!("{what}: unterminated #if")));
    }
    Ok(out)
}

/// How a module declares one binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Uniform,
    Read,
    ReadWrite,
}

/// The `@binding(N) var<...>` declarations of a (preprocessed) module.
pub fn declared_bindings(src: &str) -> HashMap<u32, Access> {
    let mut out = HashMap::new();
    for line in src.lines() {
        let Some(at) = line.find("@binding(") else { continue };
        let rest = &line[at + "@binding(".len()..];
        let Some(n) = rest.split(')').next().and_then(|n| n.trim().parse::<u32>().ok()) else { continue };
        let Some(var) = rest.find("var<").map(|i| &rest[i + 4..]) else { continue };
        let class: String = var.split('>').next().unwrap_or("").chars().filter(|c| !c.is_whitespace()).collect();
        let access = match class.as_str() {
            "uniform" => Access::Uniform,
            "storage,read_write" => Access::ReadWrite,
            _ => Access::Read,
        };
        out.insert(n, access);
    }
    out
}

/// A compiled kernel with its explicit layout: binding 0 is the launch parameters (a uniform
/// with a dynamic offset into the per-batch parameter buffer), the others are storage buffers.
pub struct Pipeline {
    /// Unique per pipeline (part of the bind-group cache key).
    pub id: u64,
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
    /// The kernel's label, for errors.
    pub label: String,
}

/// Bytes of the parameter block (`array<vec4<u32>, 8>` in common.wgsl).
pub const PARAMS_BYTES: u64 = 128;

/// The pipelines of one kernel key, by the storage bindings of their layout.
type ByBindings = Vec<(Vec<u32>, Arc<Pipeline>)>;

/// Compiled pipelines by kernel key and the bindings a launch uses.
#[derive(Default)]
pub struct PipelineCache {
    map: Mutex<HashMap<KernelKey, ByBindings>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl PipelineCache {
    /// The pipeline of `key` whose layout has the storage `bindings` (besides binding 0),
    /// compiled on first use; the access mode of each comes from the module's declaration.
    pub fn get(&self, device: &wgpu::Device, key: &KernelKey, bindings: &[u32]) -> Result<Arc<Pipeline>> {
        if let Some(v) = self.map.lock().expect("pipeline cache lock").get(key) {
            if let Some((_, p)) = v.iter().find(|(b, _)| b == bindings) {
                return Ok(p.clone());
            }
        }
        let src = key.source()?;
        let label = key.label();
        let declared = declared_bindings(&src);
        let mut entries = vec![wgpu::BindGroupLayoutEntry {
            binding: 0,
            visibility: wgpu::ShaderStages::COMPUTE,
            ty: wgpu::BindingType::Buffer {
                ty: wgpu::BufferBindingType::Uniform,
                has_dynamic_offset: true,
                min_binding_size: std::num::NonZeroU64::new(PARAMS_BYTES),
            },
            count: None,
        }];
        for &b in bindings {
            let read_only = match declared.get(&b) {
                Some(Access::Read) => true,
                Some(Access::ReadWrite) => false,
                _ => {
                    return Err(Error::device("wgpu", format!("{label}: a launch binds @binding({b}), which the module does not declare as storage")))
                }
            };
            entries.push(wgpu::BindGroupLayoutEntry {
                binding: b,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage { read_only },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            });
        }
        let scope = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = device.create_shader_module(wgpu::ShaderModuleDescriptor {
            label: Some(&label),
            source: wgpu::ShaderSource::Wgsl(src.into()),
        });
        let layout = device.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor { label: Some(&label), entries: &entries });
        let pipeline_layout = device.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(&label),
            bind_group_layouts: &[Some(&layout)],
            immediate_size: 0,
        });
        let pipeline = device.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(&label),
            layout: Some(&pipeline_layout),
            module: &module,
            entry_point: Some(key.entry),
            compilation_options: Default::default(),
            cache: None,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::device("wgpu", format!("compiling {label}: {e}")));
        }
        let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = Arc::new(Pipeline { id, pipeline, layout, label });
        self.map.lock().expect("pipeline cache lock").entry(key.clone()).or_default().push((bindings.to_vec(), p.clone()));
        Ok(p)
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.values().map(Vec::len).sum()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessor_nests_and_negates() {
        let flags: HashMap<&str, bool> = [("A", true), ("B", false)].into_iter().collect();
        let src = "x\n#if A\na\n#if B\nab\n#else\nanb\n#endif\n#endif\n#if !B\nnb\n#endif\n";
        assert_eq!(preprocess(src, &flags, "t").unwrap(), "x\na\nanb\nnb\n");
        assert!(preprocess("#if C\n#endif\n", &flags, "t").is_err());
        assert!(preprocess("#if A\n", &flags, "t").is_err());
    }

    #[test]
    fn bindings_are_read_from_the_declarations() {
        let src = "@group(0) @binding(0) var<uniform> P: array<vec4<u32>, 8>;\n\
                   @group(0) @binding(1) var<storage, read> A: array<f32>;\n\
                   @group(0) @binding(12) var<storage,read_write> O: array<f32>;\n";
        let b = declared_bindings(src);
        assert_eq!(b.len(), 3);
        assert_eq!((b[&0], b[&1], b[&12]), (Access::Uniform, Access::Read, Access::ReadWrite));
    }
}
