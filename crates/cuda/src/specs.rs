//! Every kernel module the backend can build: file x specialisation (-D defines), and the
//! `cuda-compile` report built from them (ptxas resources per kernel, no GPU needed).

use crate::nvrtc;
use foveate_core::{DType, Result};

/// Head dims the attention kernels are built for ahead of time (others compile on first use).
pub const HEAD_DIMS: [usize; 5] = [64, 72, 80, 96, 128];

/// Kernel families; spills are fatal in the flash, decode and GEMM families.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    Elementwise,
    Cast,
    Norm,
    Rope,
    Gemm,
    /// Gemm with int8/int4 weights (quant_gemm.cu, QBITS 8 or 4).
    QuantGemm,
    GeluMlp,
    PatchEmbed,
    AttentionNaive,
    Flash,
    Decode,
    BlockSparse,
}

impl Family {
    pub fn spills_fatal(self) -> bool {
        matches!(
            self,
            Family::Gemm
                | Family::QuantGemm
                | Family::GeluMlp
                | Family::PatchEmbed
                | Family::Flash
                | Family::Decode
                | Family::BlockSparse
        )
    }
}

/// One module: a source file and its defines.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModuleSpec {
    pub family: Family,
    pub file: &'static str,
    pub defines: Vec<(String, String)>,
}

pub fn dtype_code(dt: DType) -> u32 {
    match dt {
        DType::F32 => 0,
        DType::F16 => 1,
        DType::BF16 => 2,
        DType::U32 => 3,
        // Weight formats: refused before a module is built (refuse_mixed_weights, Op::infer).
        DType::Int8 => 4,
        DType::Int4 => 5,
    }
}

impl ModuleSpec {
    pub fn new(family: Family, file: &'static str, defines: &[(&str, String)]) -> Self {
        ModuleSpec {
            family,
            file,
            defines: defines
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        }
    }
    pub fn label(&self) -> String {
        format!("{}[{}]", self.file, nvrtc::fmt_defines(&self.defines))
    }
}

fn dt(d: DType) -> (&'static str, String) {
    ("DTYPE", dtype_code(d).to_string())
}

/// Every specialisation built ahead of time by `cuda-compile`.
pub fn all_modules() -> Vec<ModuleSpec> {
    let mut v = vec![];
    for d in DType::FLOATS {
        v.push(ModuleSpec::new(
            Family::Elementwise,
            "elementwise.cu",
            &[dt(d)],
        ));
        v.push(ModuleSpec::new(Family::Norm, "norm.cu", &[dt(d)]));
        v.push(ModuleSpec::new(Family::Rope, "rope.cu", &[dt(d)]));
        v.push(ModuleSpec::new(Family::Gemm, "gemm.cu", &[dt(d)]));
        for w in [DType::Int8, DType::Int4] {
            v.push(quant_gemm_module(d, w));
            v.push(quant_mlp_module(d, w));
        }
        v.push(ModuleSpec::new(Family::GeluMlp, "gelu_mlp.cu", &[dt(d)]));
        v.push(ModuleSpec::new(
            Family::PatchEmbed,
            "patch_embed.cu",
            &[dt(d)],
        ));
        v.push(ModuleSpec::new(
            Family::AttentionNaive,
            "attention.cu",
            &[dt(d)],
        ));
        for hd in HEAD_DIMS {
            let h = ("HEAD_DIM", hd.to_string());
            v.push(ModuleSpec::new(
                Family::Flash,
                "attention.cu",
                &[dt(d), h.clone()],
            ));
            v.push(ModuleSpec::new(
                Family::Decode,
                "decode_attention.cu",
                &[dt(d), h.clone()],
            ));
            v.push(ModuleSpec::new(
                Family::BlockSparse,
                "sparse_attention.cu",
                &[dt(d), h],
            ));
        }
    }
    let all = [DType::F32, DType::F16, DType::BF16, DType::U32];
    for s in all {
        for t in all {
            if s != t {
                v.push(cast_module(s, t));
            }
        }
    }
    v
}

/// The int8/int4-weight GEMM module for activations `act` and weights `w` (Int8 or Int4).
pub fn quant_gemm_module(act: DType, w: DType) -> ModuleSpec {
    let bits = if w == DType::Int4 { "4" } else { "8" };
    ModuleSpec::new(
        Family::QuantGemm,
        "quant_gemm.cu",
        &[dt(act), ("QBITS", bits.into())],
    )
}

/// gelu_mlp.cu with the stage's weight in int8/int4 (`w`), dequantised in the W tile load.
pub fn quant_mlp_module(act: DType, w: DType) -> ModuleSpec {
    let bits = if w == DType::Int4 { "4" } else { "8" };
    ModuleSpec::new(
        Family::GeluMlp,
        "gelu_mlp.cu",
        &[dt(act), ("QBITS", bits.into())],
    )
}

pub fn cast_module(src: DType, dst: DType) -> ModuleSpec {
    ModuleSpec::new(
        Family::Cast,
        "elementwise.cu",
        &[
            ("DTYPE", "0".into()),
            ("CAST_SRC", dtype_code(src).to_string()),
            ("CAST_DST", dtype_code(dst).to_string()),
        ],
    )
}

/// The kernels each family's module defines (checked against the ptxas report and the cache
/// manifest).
pub fn kernels_of(f: Family) -> &'static [&'static str] {
    match f {
        Family::Elementwise | Family::Cast => &[
            "ew_add",
            "ew_mul",
            "ew_swiglu",
            "ew_unary",
            "embedding",
            "cast",
            "copy_rows_b2",
            "copy_rows_b4",
            "fault_oob",
        ],
        Family::Norm => &["layer_norm", "rms_norm", "softmax", "argmax"],
        Family::Rope => &["rope"],
        Family::Gemm => &[
            "gemm_none",
            "gemm_gelu",
            "gemm_gelu_tanh",
            "gemm_quick_gelu",
            "gemm_silu",
            "gemv_none",
            "gemv_gelu",
            "gemv_gelu_tanh",
            "gemv_quick_gelu",
            "gemv_silu",
        ],
        Family::QuantGemm => &[
            "qgemm_none",
            "qgemm_gelu",
            "qgemm_gelu_tanh",
            "qgemm_quick_gelu",
            "qgemm_silu",
            "qgemv_none",
            "qgemv_gelu",
            "qgemv_gelu_tanh",
            "qgemv_quick_gelu",
            "qgemv_silu",
        ],
        Family::GeluMlp => &[
            "mlp_up_none",
            "mlp_up_gelu",
            "mlp_up_gelu_tanh",
            "mlp_up_quick_gelu",
            "mlp_up_silu",
            "mlp_down",
        ],
        Family::PatchEmbed => &["patch_embed", "patch_cls"],
        Family::AttentionNaive => &[
            "naive_none",
            "naive_causal",
            "naive_window",
            "naive_sparse_none",
            "naive_sparse_causal",
            "naive_sparse_window",
        ],
        Family::Flash => &["flash_none", "flash_causal", "flash_window"],
        Family::Decode => &[
            "decode_g1",
            "decode_g2",
            "decode_g4",
            "decode_g8",
            "decode_v16_g1",
            "decode_v16_g2",
            "decode_v16_g4",
            "decode_v16_g8",
            "decode_combine",
        ],
        Family::BlockSparse => &["sparse_none", "sparse_causal", "sparse_window"],
    }
}

/// Dynamic shared memory (bytes) a kernel asks for at launch, by family and defines.
pub fn dynamic_smem(spec: &ModuleSpec, kernel: &str) -> u32 {
    let get = |k: &str| {
        spec.defines
            .iter()
            .find(|(n, _)| n == k)
            .and_then(|(_, v)| v.parse::<usize>().ok())
    };
    let (Some(dcode), Some(hd)) = (get("DTYPE"), get("HEAD_DIM")) else {
        return 0;
    };
    match spec.family {
        Family::Flash | Family::BlockSparse if dcode != 0 => flash_tc_smem(hd) as u32,
        Family::Decode => {
            let g = |p: &str| kernel.strip_prefix(p).and_then(|g| g.parse::<usize>().ok());
            match (g("decode_g"), g("decode_v16_g")) {
                (Some(g), _) => decode_smem(hd, dcode == 0, g) as u32,
                (_, Some(g)) => decode_v16_smem(hd, dcode == 0, g) as u32,
                _ => 0,
            }
        }
        _ => 0,
    }
}

/// Tensor-core flash: Q tile + double-buffered K and V tiles, 64 rows each, row stride DP + 8 halves.
pub fn flash_tc_smem(hd: usize) -> usize {
    let dp = hd.div_ceil(16) * 16;
    (64 + 4 * 64) * (dp + 8) * 2
}

/// Decode K-tile row stride in elements (mirrors KLD in decode_attention.cu).
pub fn decode_kld(hd: usize, f32: bool) -> usize {
    if f32 {
        hd + 1
    } else if hd.is_multiple_of(4) {
        hd + 2
    } else if hd.is_multiple_of(2) {
        hd
    } else {
        hd + 1
    }
}

/// Decode: the K tile (128 rows) or, after the loop, the 4 warps' partial outputs.
pub fn decode_smem(hd: usize, f32: bool, g: usize) -> usize {
    let ktile = 128 * decode_kld(hd, f32) * if f32 { 4 } else { 2 };
    ktile.max(4 * g * hd * 4)
}

/// 16-byte decode: the K tile (128 rows, padded as [`decode_kld`]) and the V tile (128 rows of
/// exactly `hd`), or after the loop the 4 warps' partial outputs.
pub fn decode_v16_smem(hd: usize, f32: bool, g: usize) -> usize {
    let e = if f32 { 4 } else { 2 };
    (128 * decode_kld(hd, f32) * e + 128 * hd * e).max(4 * g * hd * 4)
}

/// One kernel's line in the `cuda-compile` report.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KernelReport {
    pub arch: String,
    pub family: Family,
    pub module: String,
    pub kernel: String,
    pub registers: u32,
    pub static_smem: u32,
    pub dynamic_smem: u32,
    pub stack: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

/// The header of [`KernelReport::row`].
pub const REPORT_HEADER: [&str; 9] = [
    "arch", "family", "module", "kernel", "regs", "smem", "dyn", "stack", "spill",
];

impl KernelReport {
    pub fn spills(&self) -> bool {
        self.spill_stores > 0 || self.spill_loads > 0
    }
    /// The report's columns for this kernel (see [`REPORT_HEADER`]).
    pub fn row(&self) -> [String; 9] {
        let family = serde_json::to_value(self.family)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        [
            self.arch.clone(),
            family,
            self.module.clone(),
            self.kernel.clone(),
            self.registers.to_string(),
            self.static_smem.to_string(),
            self.dynamic_smem.to_string(),
            self.stack.to_string(),
            (self.spill_stores + self.spill_loads).to_string(),
        ]
    }
}

/// One line of the resource table, columns aligned.
pub fn table_line(c: &[impl AsRef<str>; 9]) -> String {
    let c: Vec<&str> = c.iter().map(|x| x.as_ref()).collect();
    format!(
        "{:<6} {:<14} {:<44} {:<20} {:>4} {:>7} {:>7} {:>6} {:>6}",
        c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
    )
}

/// Result of compiling every module for some archs.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct CompileReport {
    pub nvrtc_version: String,
    pub resource_source: &'static str,
    pub kernels: Vec<KernelReport>,
    /// `module arch: error`.
    pub errors: Vec<String>,
}

impl CompileReport {
    /// Kernels of the flash, decode and GEMM families that spill.
    pub fn fatal_spills(&self) -> Vec<&KernelReport> {
        self.kernels
            .iter()
            .filter(|k| k.family.spills_fatal() && k.spills())
            .collect()
    }
    pub fn ok(&self) -> bool {
        self.errors.is_empty() && self.fatal_spills().is_empty()
    }
}

/// One compiled module of [`compile_all`]: spec, arch, CUBIN and log.
pub type CompiledModule = (ModuleSpec, String, nvrtc::Compiled);

/// Compiles `modules` for every arch in `archs` (e.g. `sm_80`) with `ptxas -v` inside NVRTC
/// and collects the resource report; also returns the CUBINs (for `--fill-cache`). Uses
/// `threads` compile threads. Needs NVRTC, no GPU.
pub fn compile_all(
    modules: &[ModuleSpec],
    archs: &[String],
    threads: usize,
) -> Result<(CompileReport, Vec<CompiledModule>)> {
    let (maj, min) = nvrtc::nvrtc_version()?;
    let jobs: Vec<(ModuleSpec, String)> = archs
        .iter()
        .flat_map(|a| modules.iter().map(move |m| (m.clone(), a.clone())))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some((m, arch)) = jobs.get(i) else { break };
                let r = nvrtc::compile(m.file, arch, &m.defines, true);
                results.lock().unwrap_or_else(|e| e.into_inner()).push((
                    i,
                    m.clone(),
                    arch.clone(),
                    r,
                ));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|r| r.0);
    let mut done = vec![];
    let mut rep = CompileReport {
        nvrtc_version: format!("{maj}.{min}"),
        resource_source: "ptxas -v run inside NVRTC (-Xptxas -v), parsed from the program log",
        ..Default::default()
    };
    for (_, m, arch, r) in results {
        match r {
            Err(e) => rep.errors.push(format!("{} {arch}: {e}", m.label())),
            Ok(c) => {
                let infos = nvrtc::parse_ptxas(&c.log);
                if infos.is_empty() {
                    rep.errors.push(format!(
                        "{} {arch}: no ptxas report in the NVRTC log",
                        m.label()
                    ));
                }
                for k in infos {
                    rep.kernels.push(KernelReport {
                        arch: arch.clone(),
                        family: m.family,
                        module: m.label(),
                        dynamic_smem: dynamic_smem(&m, &k.kernel),
                        kernel: k.kernel,
                        registers: k.registers,
                        static_smem: k.smem,
                        stack: k.stack,
                        spill_stores: k.spill_stores,
                        spill_loads: k.spill_loads,
                    });
                }
                done.push((m, arch, c));
            }
        }
    }
    Ok((rep, done))
}
