//! `foveate cuda-compile`: compiles every CUDA kernel x specialisation with NVRTC to CUBIN for the
//! given archs and prints registers, shared memory (static + the dynamic amount the launch asks
//! for), stack frame and spill bytes per kernel, as ptxas reports them (ptxas -v run inside NVRTC).
//! Needs libnvrtc (LD_LIBRARY_PATH), no GPU. Exits 1 on any compile error or on any spill in the
//! flash, decode and GEMM kernels.

use crate::CmdResult;
use foveate_cuda::specs::{all_modules, compile_all};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Target archs, comma separated (NVRTC -arch values).
    #[arg(long, value_delimiter = ',', default_value = "sm_80,sm_90")]
    arch: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Compile threads.
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

pub fn run(args: Args) -> CmdResult {
    for a in &args.arch {
        let ok = a.strip_prefix("sm_").is_some_and(|n| !n.is_empty() && n.trim_end_matches('a').chars().all(|c| c.is_ascii_digit()));
        if !ok {
            return Err(format!("--arch: `{a}` is not an NVRTC arch like sm_80 or sm_90").into());
        }
    }
    foveate_cuda::nvrtc::nvrtc_status().map_err(|r| format!("cuda-compile needs NVRTC: {r}"))?;
    let modules = all_modules();
    let rep = compile_all(&modules, &args.arch, args.threads)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rep)?);
    } else {
        println!("NVRTC {}; resources: {}", rep.nvrtc_version, rep.resource_source);
        println!(
            "{:<6} {:<14} {:<44} {:<20} {:>4} {:>7} {:>7} {:>6} {:>6}",
            "arch", "family", "module", "kernel", "regs", "smem", "dyn", "stack", "spill"
        );
        for k in &rep.kernels {
            println!(
                "{:<6} {:<14} {:<44} {:<20} {:>4} {:>7} {:>7} {:>6} {:>6}",
                k.arch,
                serde_json::to_value(k.family)?.as_str().unwrap_or("?"),
                k.module,
                k.kernel,
                k.registers,
                k.static_smem,
                k.dynamic_smem,
                k.stack,
                k.spill_stores + k.spill_loads
            );
        }
        println!(
            "{} modules x {} archs: {} kernels, {} compile errors, {} spilling flash/decode/GEMM kernels",
            modules.len(),
            args.arch.len(),
            rep.kernels.len(),
            rep.errors.len(),
            rep.fatal_spills().len()
        );
    }
    for e in &rep.errors {
        eprintln!("error: {e}");
    }
    for k in rep.fatal_spills() {
        eprintln!("error: {} {} {} spills {} bytes", k.arch, k.module, k.kernel, k.spill_stores + k.spill_loads);
    }
    Ok(if rep.ok() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
