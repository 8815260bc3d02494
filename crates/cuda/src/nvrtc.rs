//! Run-time compilation of `kernels/cuda/*.cu` with NVRTC, straight to CUBIN for one `sm_XY`.
//!
//! * Sources are embedded in the binary; `#include "x.cuh"` lines are spliced in here, so the
//!   source hash covers every header and NVRTC needs no include path for our own files.
//! * The kernels need no CUDA header (f16/bf16 are raw 16-bit words converted with PTX `cvt`);
//!   include directories are still found and passed (`FOVEATE_CUDA_INCLUDE`, the pip wheels'
//!   `nvidia/cuda_runtime/include` and `nvidia/cuda_nvcc/include`, `$CUDA_HOME/include`,
//!   `/usr/local/cuda/include`) so a kernel may include `cuda_fp16.h` later.
//! * libnvrtc (12 or 13) is found and opened by [`crate::libs`] (`FOVEATE_NVRTC_PATH`, the loader
//!   path, `/usr/local/cuda/lib64`).
//! * Compiled modules are cached on disk with a manifest: see [`crate::cache`].
//! * With `verbose`, ptxas runs with `-v` inside NVRTC and its report (registers, shared memory,
//!   stack frame, spill bytes per kernel) comes back in the program log: see [`parse_ptxas`].

use crate::libs;
use foveate_core::{Error, Result};
use std::ffi::{c_char, CString};
use std::path::PathBuf;

/// Kernel sources by file name.
pub const SOURCES: &[(&str, &str)] = &[
    (
        "common.cuh",
        include_str!("../../../kernels/cuda/common.cuh"),
    ),
    (
        "gemm_core.cuh",
        include_str!("../../../kernels/cuda/gemm_core.cuh"),
    ),
    ("gemv.cuh", include_str!("../../../kernels/cuda/gemv.cuh")),
    (
        "quant_core.cuh",
        include_str!("../../../kernels/cuda/quant_core.cuh"),
    ),
    (
        "quant_gemm.cu",
        include_str!("../../../kernels/cuda/quant_gemm.cu"),
    ),
    (
        "attention_core.cuh",
        include_str!("../../../kernels/cuda/attention_core.cuh"),
    ),
    (
        "elementwise.cu",
        include_str!("../../../kernels/cuda/elementwise.cu"),
    ),
    ("norm.cu", include_str!("../../../kernels/cuda/norm.cu")),
    ("rope.cu", include_str!("../../../kernels/cuda/rope.cu")),
    ("gemm.cu", include_str!("../../../kernels/cuda/gemm.cu")),
    (
        "gelu_mlp.cu",
        include_str!("../../../kernels/cuda/gelu_mlp.cu"),
    ),
    (
        "patch_embed.cu",
        include_str!("../../../kernels/cuda/patch_embed.cu"),
    ),
    (
        "attention.cu",
        include_str!("../../../kernels/cuda/attention.cu"),
    ),
    (
        "decode_attention.cu",
        include_str!("../../../kernels/cuda/decode_attention.cu"),
    ),
    (
        "sparse_attention.cu",
        include_str!("../../../kernels/cuda/sparse_attention.cu"),
    ),
];

fn dev_err(msg: impl Into<String>) -> Error {
    Error::device("cuda", msg)
}

/// The source of `file` with our own includes spliced in (each header once).
pub fn source(file: &str) -> Result<String> {
    fn splice(file: &str, seen: &mut Vec<String>, out: &mut String) -> Result<()> {
        let text = SOURCES
            .iter()
            .find(|(n, _)| *n == file)
            .map(|(_, t)| *t)
            .ok_or_else(|| dev_err(format!("no kernel source named `{file}`")))?;
        for line in text.lines() {
            let t = line.trim_start();
            if let Some(rest) = t.strip_prefix("#include \"") {
                let name = rest.trim_end_matches('"');
                if !seen.iter().any(|s| s == name) {
                    seen.push(name.to_string());
                    splice(name, seen, out)?;
                }
                continue;
            }
            if t.starts_with("#pragma once") {
                continue;
            }
            out.push_str(line);
            out.push('\n');
        }
        Ok(())
    }
    let mut out = String::new();
    splice(file, &mut vec![], &mut out)?;
    Ok(out)
}

/// Why NVRTC cannot be used here, or Ok.
pub fn nvrtc_status() -> std::result::Result<(), String> {
    libs::nvrtc().map(|_| ())
}

fn unavailable(reason: String) -> Error {
    Error::Unavailable {
        backend: "cuda".into(),
        reason,
    }
}

/// NVRTC version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    libs::nvrtc().map(|n| n.version).map_err(unavailable)
}

/// CUDA include directories found on this machine (see the module docs for the search order).
pub fn include_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![];
    if let Ok(v) = std::env::var("FOVEATE_CUDA_INCLUDE") {
        dirs.extend(std::env::split_paths(&v));
        return dirs.into_iter().filter(|d| d.is_dir()).collect();
    }
    let mut site = vec![];
    if let Ok(out) = std::process::Command::new("python3")
        .args([
            "-c",
            "import nvidia, os; print(os.pathsep.join(nvidia.__path__))",
        ])
        .output()
    {
        if out.status.success() {
            let s = String::from_utf8_lossy(&out.stdout).trim().to_string();
            site.extend(std::env::split_paths(&s));
        }
    }
    for p in site {
        dirs.push(p.join("cuda_runtime/include"));
        dirs.push(p.join("cuda_nvcc/include"));
    }
    if let Ok(h) = std::env::var("CUDA_HOME") {
        dirs.push(PathBuf::from(h).join("include"));
    }
    dirs.push(PathBuf::from("/usr/local/cuda/include"));
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// One compiled module.
pub struct Compiled {
    pub cubin: Vec<u8>,
    /// NVRTC's log (ptxas report when verbose).
    pub log: String,
}

fn options(arch: &str, defines: &[(String, String)], verbose: bool) -> Vec<String> {
    let mut o = vec![format!("-arch={arch}"), "--std=c++17".into()];
    if verbose {
        o.push("-Xptxas".into());
        o.push("-v".into());
    }
    for (k, v) in defines {
        o.push(format!("-D{k}={v}"));
    }
    for d in include_dirs() {
        o.push(format!("-I{}", d.display()));
    }
    o
}

/// Compiles `file` for `arch` (e.g. `sm_90`) with `defines`; no cache.
pub fn compile(
    file: &str,
    arch: &str,
    defines: &[(String, String)],
    verbose: bool,
) -> Result<Compiled> {
    let nv = libs::nvrtc().map_err(unavailable)?;
    let src = source(file)?;
    let c_src =
        CString::new(src).map_err(|_| dev_err(format!("{file}: source contains a NUL byte")))?;
    let c_name =
        CString::new(file).map_err(|_| dev_err(format!("{file}: name contains a NUL byte")))?;
    let opts: Vec<CString> = options(arch, defines, verbose)
        .into_iter()
        .map(|o| {
            CString::new(o).map_err(|_| dev_err(format!("{file}: an option contains a NUL byte")))
        })
        .collect::<Result<_>>()?;
    let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
    let mut prog: libs::Program = std::ptr::null_mut();
    // SAFETY: valid C strings; no headers are passed (count 0, null arrays).
    let r = unsafe {
        (nv.create)(
            &mut prog,
            c_src.as_ptr(),
            c_name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    nv.check(r, &format!("{file}: nvrtcCreateProgram"))
        .map_err(dev_err)?;
    // SAFETY: prog is a live program until destroyed at the end; every buffer has the size NVRTC reports.
    let out = unsafe {
        let compiled = (nv.compile)(prog, opt_ptrs.len() as i32, opt_ptrs.as_ptr());
        let mut n = 0usize;
        let log = if (nv.log_size)(prog, &mut n) == 0 && n > 1 {
            let mut buf = vec![0u8; n];
            if (nv.log)(prog, buf.as_mut_ptr() as *mut c_char) == 0 {
                String::from_utf8_lossy(&buf[..n - 1]).into_owned()
            } else {
                String::new()
            }
        } else {
            String::new()
        };
        if compiled != 0 {
            Err(dev_err(format!(
                "{file} {arch} {}: NVRTC {}.{} compile failed ({}):\n{log}",
                fmt_defines(defines),
                nv.version.0,
                nv.version.1,
                nv.error_name(compiled)
            )))
        } else {
            let mut size = 0usize;
            match nv.check(
                (nv.cubin_size)(prog, &mut size),
                &format!("{file}: nvrtcGetCUBINSize"),
            ) {
                Err(e) => Err(dev_err(e)),
                Ok(()) => {
                    let mut cubin = vec![0u8; size];
                    nv.check(
                        (nv.cubin)(prog, cubin.as_mut_ptr() as *mut c_char),
                        &format!("{file}: nvrtcGetCUBIN"),
                    )
                    .map(|()| Compiled { cubin, log })
                    .map_err(dev_err)
                }
            }
        }
    };
    // SAFETY: prog was created above and is not used again.
    let _ = unsafe { (nv.destroy)(&mut prog) };
    out
}

pub fn fmt_defines(defines: &[(String, String)]) -> String {
    defines
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Resources of one kernel as ptxas reports them.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct PtxasInfo {
    pub kernel: String,
    pub registers: u32,
    /// Static shared memory (bytes); dynamic shared memory is added by the caller.
    pub smem: u32,
    pub stack: u32,
    pub spill_stores: u32,
    pub spill_loads: u32,
}

/// Parses the `ptxas -v` report in an NVRTC log.
pub fn parse_ptxas(log: &str) -> Vec<PtxasInfo> {
    fn num_before(s: &str, unit: &str) -> Option<u32> {
        let i = s.find(unit)?;
        s[..i].split_whitespace().last()?.parse().ok()
    }
    let mut out: Vec<PtxasInfo> = vec![];
    for line in log.lines() {
        if let Some(i) = line.find("Compiling entry function '") {
            let rest = &line[i + "Compiling entry function '".len()..];
            let name = rest.split('\'').next().unwrap_or("").to_string();
            out.push(PtxasInfo {
                kernel: name,
                ..Default::default()
            });
        } else if let Some(cur) = out.last_mut() {
            if line.contains("bytes stack frame") {
                cur.stack = num_before(line, "bytes stack frame").unwrap_or(0);
                cur.spill_stores = num_before(line, "bytes spill stores").unwrap_or(0);
                cur.spill_loads = num_before(line, "bytes spill loads").unwrap_or(0);
            } else if line.contains("Used") && line.contains("registers") {
                cur.registers = num_before(line, "registers").unwrap_or(0);
                cur.smem = num_before(line, "bytes smem").unwrap_or(0);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splices_headers_once() {
        let s = source("sparse_attention.cu").unwrap();
        assert!(s.contains("struct AttnArgs"));
        assert!(s.contains("__device__ __forceinline__ float h2f"));
        assert_eq!(s.matches("typedef unsigned int u32;").count(), 1);
        assert!(!s.lines().any(|l| l.trim_start().starts_with("#include")));
    }

    #[test]
    fn parses_a_ptxas_report() {
        let log = "ptxas info    : 0 bytes gmem\nptxas info    : Compiling entry function 'k' for 'sm_90'\n\
                   ptxas info    : Function properties for k\n\
                   ptxas         .     256 bytes stack frame, 8 bytes spill stores, 12 bytes spill loads\n\
                   ptxas info    : Used 32 registers, used 1 barriers, 256 bytes cumulative stack size, 400 bytes smem\n";
        let r = parse_ptxas(log);
        assert_eq!(r.len(), 1);
        assert_eq!(
            r[0],
            PtxasInfo {
                kernel: "k".into(),
                registers: 32,
                smem: 400,
                stack: 256,
                spill_stores: 8,
                spill_loads: 12
            }
        );
    }
}
