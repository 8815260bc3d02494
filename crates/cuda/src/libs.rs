//! Which libnvrtc and libcuda this process uses, and where they came from.
//!
//! NVRTC is opened here, not by cudarc: cudarc 0.19 (built for CUDA 12.9) looks only for
//! `libnvrtc.so`, `libnvrtc.so.12` and older names, so NVRTC 13 (`libnvrtc.so.13`, e.g. the PyPI
//! wheel `nvidia-cuda-nvrtc` at `site-packages/nvidia/cu13/lib`) was never found. The handful of
//! NVRTC entry points foveate calls have the same C signatures in CUDA 12 and 13, so one binding
//! serves both. Search order:
//!
//! 1. `FOVEATE_NVRTC_PATH`: a library file, or a folder holding `libnvrtc.so.13` / `.12` / `.so`.
//!    When it is set nothing else is tried (so pointing it nowhere hides NVRTC).
//! 2. The loader path (`LD_LIBRARY_PATH`, the ld.so cache): `libnvrtc.so.13`, `libnvrtc.so.12`,
//!    `libnvrtc.so`.
//! 3. `$CUDA_HOME/lib64`, then `/usr/local/cuda/lib64`, with the same three names.
//!
//! `scripts/cuda-env.sh` puts either wheel layout (cu12: `nvidia/cuda_nvrtc/lib`, cu13:
//! `nvidia/cu13/lib`) and `/usr/local/cuda/lib64` on `LD_LIBRARY_PATH`.
//!
//! The driver (`libcuda.so.1`) is still opened by cudarc; [`driver_info`] reports which file the
//! loader mapped and the version the driver gives.

use serde::Serialize;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The environment variable naming the NVRTC library (a file or a folder).
pub const NVRTC_PATH_ENV: &str = "FOVEATE_NVRTC_PATH";
const NVRTC_NAMES: [&str; 3] = ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"];

pub(crate) type Program = *mut c_void;
type Res = c_int;

/// The NVRTC entry points foveate uses (same signatures in CUDA 12 and 13).
pub(crate) struct Nvrtc {
    _lib: libloading::Library,
    pub path: PathBuf,
    pub version: (i32, i32),
    pub create: unsafe extern "C" fn(
        *mut Program,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> Res,
    pub compile: unsafe extern "C" fn(Program, c_int, *const *const c_char) -> Res,
    pub log_size: unsafe extern "C" fn(Program, *mut usize) -> Res,
    pub log: unsafe extern "C" fn(Program, *mut c_char) -> Res,
    pub cubin_size: unsafe extern "C" fn(Program, *mut usize) -> Res,
    pub cubin: unsafe extern "C" fn(Program, *mut c_char) -> Res,
    pub destroy: unsafe extern "C" fn(*mut Program) -> Res,
    error_string: unsafe extern "C" fn(Res) -> *const c_char,
}

// SAFETY: the function pointers are plain C entry points of a library that stays loaded for the
// life of the process (it sits in a static); NVRTC is thread safe per program.
unsafe impl Send for Nvrtc {}
unsafe impl Sync for Nvrtc {}

impl Nvrtc {
    /// NVRTC's name for a result code.
    pub fn error_name(&self, r: Res) -> String {
        // SAFETY: nvrtcGetErrorString returns a static string for any code.
        let p = unsafe { (self.error_string)(r) };
        if p.is_null() {
            return format!("NVRTC error {r}");
        }
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
    /// `Ok` for NVRTC_SUCCESS, else the code's name after `what`.
    pub fn check(&self, r: Res, what: &str) -> std::result::Result<(), String> {
        if r == 0 {
            Ok(())
        } else {
            Err(format!("{what}: {}", self.error_name(r)))
        }
    }
}

/// Where to look for libnvrtc, in order (see the module docs).
pub fn nvrtc_candidates() -> Vec<PathBuf> {
    candidates(
        std::env::var_os(NVRTC_PATH_ENV),
        std::env::var_os("CUDA_HOME"),
    )
}

fn candidates(
    explicit: Option<std::ffi::OsString>,
    cuda_home: Option<std::ffi::OsString>,
) -> Vec<PathBuf> {
    let in_dir = |d: &Path| NVRTC_NAMES.iter().map(|n| d.join(n)).collect::<Vec<_>>();
    if let Some(p) = explicit.filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_dir() { in_dir(&p) } else { vec![p] };
    }
    let mut v: Vec<PathBuf> = NVRTC_NAMES.iter().map(PathBuf::from).collect();
    if let Some(h) = cuda_home.filter(|h| !h.is_empty()) {
        v.extend(in_dir(&PathBuf::from(h).join("lib64")));
    }
    v.extend(in_dir(Path::new("/usr/local/cuda/lib64")));
    v
}

fn open_nvrtc(path: &Path) -> std::result::Result<Nvrtc, String> {
    // SAFETY: loading libnvrtc runs its initialisers, which have no preconditions.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
    macro_rules! sym {
        ($name:literal) => {
            // SAFETY: the symbol is an NVRTC C function with the declared signature.
            *unsafe { lib.get(concat!($name, "\0").as_bytes()) }
                .map_err(|e| format!("{}: {e}", $name))?
        };
    }
    let version_fn: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Res = sym!("nvrtcVersion");
    let n = Nvrtc {
        create: sym!("nvrtcCreateProgram"),
        compile: sym!("nvrtcCompileProgram"),
        log_size: sym!("nvrtcGetProgramLogSize"),
        log: sym!("nvrtcGetProgramLog"),
        cubin_size: sym!("nvrtcGetCUBINSize"),
        cubin: sym!("nvrtcGetCUBIN"),
        destroy: sym!("nvrtcDestroyProgram"),
        error_string: sym!("nvrtcGetErrorString"),
        path: PathBuf::new(),
        version: (0, 0),
        _lib: lib,
    };
    let (mut a, mut b) = (0, 0);
    // SAFETY: out-pointers are valid.
    n.check(unsafe { version_fn(&mut a, &mut b) }, "nvrtcVersion")?;
    // A by-name open resolves through the loader path: report the file it mapped.
    let file = if path.components().count() > 1 {
        Some(path.to_path_buf())
    } else {
        mapped_file("libnvrtc.so")
    };
    Ok(Nvrtc {
        path: file.unwrap_or_else(|| path.to_path_buf()),
        version: (a, b),
        ..n
    })
}

/// The NVRTC library of this process, opened on first use (the outcome is kept).
pub(crate) fn nvrtc() -> std::result::Result<&'static Nvrtc, String> {
    static LIB: OnceLock<std::result::Result<Nvrtc, String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let mut tried = vec![];
        for c in nvrtc_candidates() {
            match open_nvrtc(&c) {
                Ok(n) => return Ok(n),
                Err(e) => tried.push(format!("{}: {e}", c.display())),
            }
        }
        let how = match std::env::var_os(NVRTC_PATH_ENV).filter(|p| !p.is_empty()) {
            Some(p) => format!("{NVRTC_PATH_ENV}={} did not load", PathBuf::from(p).display()),
            None => "libnvrtc was not found".into(),
        };
        Err(format!(
            "{how} (tried {}). Install it (pip install nvidia-cuda-nvrtc for CUDA 13, nvidia-cuda-nvrtc-cu12 for \
             CUDA 12) and run `eval \"$(bash scripts/cuda-env.sh)\"`, or set {NVRTC_PATH_ENV} to the library or its folder",
            tried.join("; ")
        ))
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// The first file mapped into this process whose name starts with `stem` (e.g. `libcuda.so`),
/// from /proc/self/maps.
pub fn mapped_file(stem: &str) -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(PathBuf::from)
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(stem) && !n.contains("builtins"))
        })
}

/// One library as `foveate info` reports it.
#[derive(Clone, Debug, Serialize)]
pub struct LibInfo {
    pub loaded: bool,
    /// The file the process mapped.
    pub path: Option<String>,
    /// `12.9`, `13.0` (NVRTC); the CUDA version the driver supports (libcuda).
    pub version: Option<String>,
    /// Why it is not loaded.
    pub reason: Option<String>,
}

impl LibInfo {
    fn missing(reason: String) -> LibInfo {
        LibInfo {
            loaded: false,
            path: None,
            version: None,
            reason: Some(reason),
        }
    }
    /// `path (version)` or the reason.
    pub fn line(&self) -> String {
        match (&self.path, &self.version, &self.reason) {
            (Some(p), Some(v), _) => format!("{v}  {p}"),
            (Some(p), None, _) => p.clone(),
            (_, _, Some(r)) => format!("not loaded: {r}"),
            _ => "not loaded".into(),
        }
    }
}

/// The NVRTC library this process loads (opening it if needed).
pub fn nvrtc_info() -> LibInfo {
    match nvrtc() {
        Ok(n) => LibInfo {
            loaded: true,
            path: Some(n.path.display().to_string()),
            version: Some(format!("{}.{}", n.version.0, n.version.1)),
            reason: None,
        },
        Err(e) => LibInfo::missing(e),
    }
}

/// The CUDA driver library (opened by cudarc) and the CUDA version it supports.
pub fn driver_info() -> LibInfo {
    use cudarc::driver::sys;
    // SAFETY: only tries to open the shared library.
    if !unsafe { sys::is_culib_present() } {
        return LibInfo::missing(
            "libcuda.so was not found: no NVIDIA driver on this machine".into(),
        );
    }
    let mut v: c_int = 0;
    // SAFETY: the library is present; cuDriverGetVersion needs no cuInit.
    let r = unsafe { sys::cuDriverGetVersion(&mut v) };
    let version =
        (r == sys::CUresult::CUDA_SUCCESS).then(|| format!("{}.{}", v / 1000, (v % 1000) / 10));
    LibInfo {
        loaded: true,
        path: mapped_file("libcuda.so").map(|p| p.display().to_string()),
        version,
        reason: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_the_explicit_path() {
        let dir = std::env::temp_dir();
        let c = candidates(Some(dir.clone().into_os_string()), Some("/opt/cuda".into()));
        assert_eq!(
            c,
            NVRTC_NAMES.iter().map(|n| dir.join(n)).collect::<Vec<_>>(),
            "a folder: its three names only"
        );
        let c = candidates(Some("/nowhere/libnvrtc.so.13".into()), None);
        assert_eq!(
            c,
            vec![PathBuf::from("/nowhere/libnvrtc.so.13")],
            "a file: that file only"
        );
        let c = candidates(Some("".into()), Some("/opt/cuda".into()));
        assert_eq!(
            &c[..2],
            &[
                PathBuf::from("libnvrtc.so.13"),
                PathBuf::from("libnvrtc.so.12")
            ]
        );
        assert_eq!(c[3], PathBuf::from("/opt/cuda/lib64/libnvrtc.so.13"));
        assert_eq!(
            c.last().unwrap(),
            &PathBuf::from("/usr/local/cuda/lib64/libnvrtc.so")
        );
    }

    #[test]
    fn a_missing_library_is_an_error_naming_what_was_tried() {
        let e = match open_nvrtc(Path::new("/nowhere/libnvrtc.so.13")) {
            Err(e) => e,
            Ok(_) => panic!("opened a library that does not exist"),
        };
        assert!(
            e.contains("/nowhere/libnvrtc.so.13") || e.contains("No such file"),
            "{e}"
        );
    }
}
