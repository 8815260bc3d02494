//! Run-time compilation of `kernels/cuda/*.cu` with NVRTC, straight to CUBIN for one `sm_XY`.
//!
//! * Sources are embedded in the binary; `#include "x.cuh"` lines are spliced in here, so the
//!   source hash covers every header and NVRTC needs no include path for our own files.
//! * The kernels need no CUDA header (f16/bf16 are raw 16-bit words converted with PTX `cvt`);
//!   include directories are still found and passed (`FOVEATE_CUDA_INCLUDE`, the pip wheels'
//!   `nvidia/cuda_runtime/include` and `nvidia/cuda_nvcc/include`, `$CUDA_HOME/include`,
//!   `/usr/local/cuda/include`) so a kernel may include `cuda_fp16.h` later.
//! * libnvrtc is loaded by cudarc from the library path: with the PyPI wheel, put
//!   `.../site-packages/nvidia/cuda_nvrtc/lib` on `LD_LIBRARY_PATH`.
//! * CUBINs are cached on disk under `$FOVEATE_CUDA_CACHE`, else `$XDG_CACHE_HOME/foveate/cuda`,
//!   else `~/.cache/foveate/cuda`, keyed by sha256(source, arch, defines, NVRTC version).
//! * With `verbose`, ptxas runs with `-v` inside NVRTC and its report (registers, shared memory,
//!   stack frame, spill bytes per kernel) comes back in the program log: see [`parse_ptxas`].

use cudarc::nvrtc::{result, sys};
use foveate_core::{Error, Result};
use sha2::{Digest, Sha256};
use std::ffi::CString;
use std::path::PathBuf;

/// Kernel sources by file name.
pub const SOURCES: &[(&str, &str)] = &[
    ("common.cuh", include_str!("../../../kernels/cuda/common.cuh")),
    ("gemm_core.cuh", include_str!("../../../kernels/cuda/gemm_core.cuh")),
    ("attention_core.cuh", include_str!("../../../kernels/cuda/attention_core.cuh")),
    ("elementwise.cu", include_str!("../../../kernels/cuda/elementwise.cu")),
    ("norm.cu", include_str!("../../../kernels/cuda/norm.cu")),
    ("rope.cu", include_str!("../../../kernels/cuda/rope.cu")),
    ("gemm.cu", include_str!("../../../kernels/cuda/gemm.cu")),
    ("gelu_mlp.cu", include_str!("../../../kernels/cuda/gelu_mlp.cu")),
    ("patch_embed.cu", include_str!("../../../kernels/cuda/patch_embed.cu")),
    ("attention.cu", include_str!("../../../kernels/cuda/attention.cu")),
    ("decode_attention.cu", include_str!("../../../kernels/cuda/decode_attention.cu")),
    ("sparse_attention.cu", include_str!("../../../kernels/cuda/sparse_attention.cu")),
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
    // SAFETY: only probes whether the shared library can be opened.
    if !unsafe { sys::is_culib_present() } {
        return Err("libnvrtc was not found on the library path (pip install nvidia-cuda-nvrtc-cu12 and add \
                    site-packages/nvidia/cuda_nvrtc/lib to LD_LIBRARY_PATH)"
            .into());
    }
    Ok(())
}

/// NVRTC version (major, minor).
pub fn nvrtc_version() -> Result<(i32, i32)> {
    nvrtc_status().map_err(|r| Error::Unavailable { backend: "cuda".into(), reason: r })?;
    let (mut a, mut b) = (0, 0);
    // SAFETY: the library is present; out-pointers are valid.
    unsafe { sys::nvrtcVersion(&mut a, &mut b) }.result().map_err(|e| dev_err(format!("nvrtcVersion: {e:?}")))?;
    Ok((a, b))
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
        .args(["-c", "import nvidia, os; print(os.pathsep.join(nvidia.__path__))"])
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

/// Where compiled modules are cached.
pub fn cache_dir() -> Option<PathBuf> {
    if let Ok(d) = std::env::var("FOVEATE_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Ok(d) = std::env::var("XDG_CACHE_HOME") {
        return Some(PathBuf::from(d).join("foveate/cuda"));
    }
    std::env::var("HOME").ok().map(|h| PathBuf::from(h).join(".cache/foveate/cuda"))
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
pub fn compile(file: &str, arch: &str, defines: &[(String, String)], verbose: bool) -> Result<Compiled> {
    nvrtc_status().map_err(|r| Error::Unavailable { backend: "cuda".into(), reason: r })?;
    let src = source(file)?;
    let c_src = CString::new(src).map_err(|_| dev_err(format!("{file}: source contains a NUL byte")))?;
    let c_name = CString::new(file).unwrap();
    let prog = result::create_program(&c_src, Some(&c_name)).map_err(|e| dev_err(format!("{file}: nvrtcCreateProgram: {e:?}")))?;
    let opts = options(arch, defines, verbose);
    // SAFETY: prog is a live program; it is destroyed below on every path.
    let compiled = unsafe { result::compile_program(prog, &opts) };
    let log = unsafe { result::get_program_log(prog) }
        .map(|l| {
            let bytes: Vec<u8> = l.iter().map(|&c| c as u8).take_while(|&c| c != 0).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        })
        .unwrap_or_default();
    let out = match compiled {
        Err(e) => Err(dev_err(format!("{file} {arch} {}: NVRTC compile failed ({e:?}):\n{log}", fmt_defines(defines)))),
        Ok(()) => {
            let mut size = 0usize;
            // SAFETY: prog compiled successfully; the buffer has the size NVRTC reports.
            let r = unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) }.result();
            match r {
                Err(e) => Err(dev_err(format!("{file}: nvrtcGetCUBINSize: {e:?}"))),
                Ok(()) => {
                    let mut cubin = vec![0u8; size];
                    match unsafe { sys::nvrtcGetCUBIN(prog, cubin.as_mut_ptr() as *mut _) }.result() {
                        Err(e) => Err(dev_err(format!("{file}: nvrtcGetCUBIN: {e:?}"))),
                        Ok(()) => Ok(Compiled { cubin, log }),
                    }
                }
            }
        }
    };
    let _ = unsafe { result::destroy_program(prog) };
    out
}

pub fn fmt_defines(defines: &[(String, String)]) -> String {
    defines.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(",")
}

/// Cache key: sha256 of the spliced source, arch, defines and the NVRTC version.
pub fn cache_key(file: &str, arch: &str, defines: &[(String, String)]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(source(file)?.as_bytes());
    h.update(arch.as_bytes());
    h.update(fmt_defines(defines).as_bytes());
    h.update(format!("{:?}", nvrtc_version()?).as_bytes());
    let d = h.finalize();
    Ok(d.iter().take(16).map(|b| format!("{b:02x}")).collect())
}

/// A CUBIN from the disk cache, or compiled and stored there. Cache failures are not errors.
pub fn compile_cached(file: &str, arch: &str, defines: &[(String, String)]) -> Result<Vec<u8>> {
    let key = cache_key(file, arch, defines)?;
    let path = cache_dir().map(|d| d.join(format!("{}-{arch}-{key}.cubin", file.trim_end_matches(".cu"))));
    if let Some(p) = &path {
        if let Ok(b) = std::fs::read(p) {
            if !b.is_empty() {
                return Ok(b);
            }
        }
    }
    let c = compile(file, arch, defines, false)?;
    if let Some(p) = &path {
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &c.cubin).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
    Ok(c.cubin)
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
            out.push(PtxasInfo { kernel: name, ..Default::default() });
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
            PtxasInfo { kernel: "k".into(), registers: 32, smem: 400, stack: 256, spill_stores: 8, spill_loads: 12 }
        );
    }
}
