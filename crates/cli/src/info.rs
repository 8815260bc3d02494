//! `foveate info`: the backends usable here (with their device) and why the others are not, and
//! which CUDA libraries this process loaded (libnvrtc, libcuda: file and version) and the kernel
//! cache it would run from.

use crate::{backends, CmdResult};
use foveate_core::OpKind;
use serde::Serialize;
use std::collections::BTreeMap;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Serialize)]
struct BackendInfo {
    #[serde(flatten)]
    probe: backends::BackendProbe,
    /// Registered variants per op family (available backends only).
    variants: BTreeMap<String, Vec<String>>,
}

#[derive(Serialize)]
struct CacheInfo {
    dir: Option<String>,
    /// Modules the manifest lists (0 when there is none).
    modules: usize,
    /// Why the manifest could not be read, if it could not.
    error: Option<String>,
}

#[derive(Serialize)]
struct CudaInfo {
    nvrtc: foveate_cuda::libs::LibInfo,
    driver: foveate_cuda::libs::LibInfo,
    cache: CacheInfo,
}

/// The CPU fast path's kernels: the instruction set chosen and every one this CPU runs.
#[derive(Serialize)]
struct CpuKernels {
    selected: &'static str,
    runnable: Vec<&'static str>,
    /// Paths this CPU cannot run, with the features each needs.
    unavailable: Vec<String>,
    /// "on" where the `bf16-dot` Gemm (AVX-512 BF16) runs, else why not.
    bf16_dot: String,
}

fn cpu_kernels() -> CpuKernels {
    use foveate_cpu::Isa;
    CpuKernels {
        selected: foveate_cpu::selected_isa().name(),
        runnable: foveate_cpu::runnable_isas().iter().map(|i| i.name()).collect(),
        unavailable: Isa::ALL
            .iter()
            .filter(|i| !i.supported())
            .map(|i| format!("{} (needs {})", i.name(), i.needs()))
            .collect(),
        bf16_dot: foveate_cpu::bf16_dot_unavailable().unwrap_or_else(|| "on".into()),
    }
}

#[derive(Serialize)]
struct Info {
    version: &'static str,
    cpu_threads: usize,
    cpu_kernels: CpuKernels,
    backends: Vec<BackendInfo>,
    cuda: CudaInfo,
}

fn cuda_info() -> CudaInfo {
    let dir = foveate_cuda::cache::cache_dir();
    let (modules, error) = match dir.as_deref().map(foveate_cuda::cache::Manifest::read) {
        Some(Ok(Some(m))) => (m.modules.len(), None),
        Some(Err(e)) => (0, Some(e.to_string())),
        _ => (0, None),
    };
    CudaInfo {
        nvrtc: foveate_cuda::libs::nvrtc_info(),
        driver: foveate_cuda::libs::driver_info(),
        cache: CacheInfo {
            dir: dir.map(|d| d.display().to_string()),
            modules,
            error,
        },
    }
}

fn variants_of(name: &str) -> BTreeMap<String, Vec<String>> {
    let Ok(b) = backends::open(name) else {
        return BTreeMap::new();
    };
    OpKind::ALL
        .into_iter()
        .map(|k| {
            (
                k.name().to_string(),
                b.variants(k).iter().map(|v| v.name.to_string()).collect(),
            )
        })
        .collect()
}

pub fn run(args: Args) -> CmdResult {
    let cpu_threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let backends: Vec<BackendInfo> = backends::probe_all()
        .into_iter()
        .map(|p| {
            let variants = if p.available {
                variants_of(&p.name)
            } else {
                BTreeMap::new()
            };
            BackendInfo { probe: p, variants }
        })
        .collect();
    let info = Info {
        version: env!("CARGO_PKG_VERSION"),
        cpu_threads,
        cpu_kernels: cpu_kernels(),
        backends,
        cuda: cuda_info(),
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "foveate {}  (CPU threads: {})",
        info.version, info.cpu_threads
    );
    let k = &info.cpu_kernels;
    let missing = if k.unavailable.is_empty() {
        String::new()
    } else {
        format!("; not on this CPU: {}", k.unavailable.join(", "))
    };
    println!(
        "cpu-kernels  {} (runs here: {}; FOVEATE_CPU_ISA=scalar|avx2|avx512 picks a narrower one{missing}); bf16-dot Gemm: {}",
        k.selected,
        k.runnable.join(", "),
        k.bf16_dot
    );
    let w = info
        .backends
        .iter()
        .map(|b| b.probe.name.len())
        .max()
        .unwrap_or(7)
        .max(7);
    println!("{:<w$}  {:<11}  device / reason", "backend", "status");
    for b in &info.backends {
        let status = if b.probe.available {
            "available"
        } else {
            "unavailable"
        };
        println!(
            "{:<w$}  {:<11}  {}",
            b.probe.name, status, b.probe.device_or_reason
        );
        if let Some(att) = b.variants.get("attention") {
            println!(
                "{:<w$}  {:<11}  attention variants: {}",
                "",
                "",
                att.join(", ")
            );
        }
    }
    let c = &info.cuda;
    println!("libnvrtc  {}", c.nvrtc.line());
    println!("libcuda   {}", c.driver.line());
    match (&c.cache.dir, &c.cache.error) {
        (_, Some(e)) => println!("kernel cache  {e}"),
        (Some(d), None) => println!(
            "kernel cache  {d} ({} modules in its manifest)",
            c.cache.modules
        ),
        (None, None) => println!("kernel cache  none (set FOVEATE_CUDA_CACHE)"),
    }
    Ok(ExitCode::SUCCESS)
}
