//! `foveate cuda-compile`: compiles every CUDA kernel x specialisation with NVRTC to CUBIN for the
//! given archs (in parallel) and prints registers, shared memory (static + the dynamic amount the
//! launch asks for), stack frame and spill bytes per kernel, as ptxas reports them (ptxas -v run
//! inside NVRTC). With `--fill-cache DIR` the CUBINs and a manifest go into DIR, which a GPU
//! machine without NVRTC then runs from (`FOVEATE_CUDA_CACHE=DIR`); the manifest is read back and
//! checked against every module key. Needs libnvrtc 12 or 13 (`FOVEATE_NVRTC_PATH` or the loader
//! path), no GPU. Exits 1 on any compile error, any spill in the flash, decode and GEMM kernels,
//! or a cache that does not match.

use crate::CmdResult;
use foveate_cuda::specs::{all_modules, compile_all, table_line, REPORT_HEADER};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Target archs, comma separated (NVRTC -arch values).
    #[arg(long, value_delimiter = ',', default_value = "sm_80,sm_90")]
    arch: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Compile threads (default: every CPU).
    #[arg(long)]
    threads: Option<usize>,
    /// Write the CUBINs and manifest.json into this folder (the kernel cache).
    #[arg(long, value_name = "DIR")]
    fill_cache: Option<PathBuf>,
}

pub fn run(args: Args) -> CmdResult {
    for a in &args.arch {
        let ok = a.strip_prefix("sm_").is_some_and(|n| {
            !n.is_empty() && n.trim_end_matches('a').chars().all(|c| c.is_ascii_digit())
        });
        if !ok {
            return Err(format!("--arch: `{a}` is not an NVRTC arch like sm_80 or sm_90").into());
        }
    }
    foveate_cuda::nvrtc::nvrtc_status().map_err(|r| format!("cuda-compile needs NVRTC: {r}"))?;
    let nvrtc = foveate_cuda::libs::nvrtc_info();
    let threads = args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    });
    let modules = all_modules();
    let (rep, compiled) = compile_all(&modules, &args.arch, threads)?;
    let mut cache_problems = vec![];
    if let Some(dir) = &args.fill_cache {
        let version = foveate_cuda::nvrtc::nvrtc_version()?;
        foveate_cuda::cache::fill(dir, &compiled, version)?;
        // Read back what was written: every module key of every arch must be served.
        let back = foveate_cuda::cache::Manifest::read(dir)?.ok_or_else(|| {
            format!(
                "{}: no manifest after writing it",
                dir.join(foveate_cuda::cache::MANIFEST).display()
            )
        })?;
        cache_problems = back.problems(dir, &modules, &args.arch);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!(
            "NVRTC {} ({}); resources: {}",
            rep.nvrtc_version,
            nvrtc.path.as_deref().unwrap_or("?"),
            rep.resource_source
        );
        println!("{}", table_line(&REPORT_HEADER));
        for k in &rep.kernels {
            println!("{}", table_line(&k.row()));
        }
        println!(
            "{} modules x {} archs: {} kernels, {} compile errors, {} spilling flash/decode/GEMM kernels",
            modules.len(),
            args.arch.len(),
            rep.kernels.len(),
            rep.errors.len(),
            rep.fatal_spills().len()
        );
        if let Some(dir) = &args.fill_cache {
            println!(
                "cache {}: {} modules written, manifest {}",
                dir.display(),
                compiled.len(),
                if cache_problems.is_empty() {
                    "matches every module key".to_string()
                } else {
                    format!("has {} problems", cache_problems.len())
                }
            );
        }
    }
    for e in &rep.errors {
        eprintln!("error: {e}");
    }
    for k in rep.fatal_spills() {
        eprintln!(
            "error: {} {} {} spills {} bytes",
            k.arch,
            k.module,
            k.kernel,
            k.spill_stores + k.spill_loads
        );
    }
    for p in &cache_problems {
        eprintln!("error: cache: {p}");
    }
    Ok(if rep.ok() && cache_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
