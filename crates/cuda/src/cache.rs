//! The compiled-module cache: CUBINs on disk with a manifest, and the module lookup the backend
//! uses ([`ModuleStore`]). It needs no driver, and no NVRTC when every module asked for is in
//! the cache, so a cache filled where NVRTC is (`foveate cuda-compile --arch sm_90 --fill-cache
//! DIR`) can be carried to a GPU machine and used there with `FOVEATE_CUDA_CACHE=DIR`.
//!
//! * Folder: `$FOVEATE_CUDA_CACHE`, else `$XDG_CACHE_HOME/foveate/cuda`, else `~/.cache/foveate/cuda`.
//! * Module key: sha256 of (spliced source, arch, defines), 32 hex digits. The NVRTC version is
//!   not in the key (a CUBIN made by NVRTC 12.9 or 13.0 from the same source is the same
//!   module); it is recorded in the manifest, and a CUBIN the driver refuses is recompiled when
//!   NVRTC is present.
//! * Files: `<stem>-<arch>-<key>.cubin` and `manifest.json` ([`Manifest`]): per key the source
//!   file, defines, arch, source hash, NVRTC version, CUBIN name and size, and the kernels in it.

use crate::nvrtc::{self, fmt_defines};
use crate::specs::ModuleSpec;
use foveate_core::{Error, Result};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The manifest's file name inside the cache folder.
pub const MANIFEST: &str = "manifest.json";
const FORMAT: u32 = 1;

fn hex16(d: &[u8]) -> String {
    d.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// sha256 of the spliced source of `file` (every header it includes), 32 hex digits.
pub fn source_hash(file: &str) -> Result<String> {
    Ok(hex16(&Sha256::digest(nvrtc::source(file)?.as_bytes())))
}

/// The module key: sha256 of (spliced source, arch, defines), 32 hex digits. Needs no NVRTC.
pub fn module_key(file: &str, arch: &str, defines: &[(String, String)]) -> Result<String> {
    let mut h = Sha256::new();
    h.update(nvrtc::source(file)?.as_bytes());
    h.update([0]);
    h.update(arch.as_bytes());
    h.update([0]);
    h.update(fmt_defines(defines).as_bytes());
    Ok(hex16(&h.finalize()))
}

/// The CUBIN's file name in the cache folder.
pub fn cubin_name(file: &str, arch: &str, key: &str) -> String {
    format!("{}-{arch}-{key}.cubin", file.trim_end_matches(".cu"))
}

/// The cache folder (see the module docs).
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("FOVEATE_CUDA_CACHE").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("foveate/cuda"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/foveate/cuda"))
}

/// One cached module.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub file: String,
    pub defines: String,
    pub arch: String,
    pub source_hash: String,
    pub nvrtc_version: String,
    pub cubin: String,
    pub bytes: u64,
    /// The kernels in the CUBIN (from the ptxas report).
    pub kernels: Vec<String>,
}

/// `manifest.json`: every cached module by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub modules: BTreeMap<String, Entry>,
}

impl Manifest {
    /// The manifest in `dir` (`None` when there is none); a bad one is an error naming the file.
    pub fn read(dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let m: Manifest = serde_json::from_str(&text).map_err(|e| Error::Format {
            file: path.display().to_string(),
            field: format!("line {} column {}", e.line(), e.column()),
            msg: e.to_string(),
        })?;
        if m.format != FORMAT {
            return Err(Error::Format {
                file: path.display().to_string(),
                field: "format".into(),
                msg: format!("is {}, this build reads {FORMAT}", m.format),
            });
        }
        Ok(Some(m))
    }

    /// Writes `dir/manifest.json` atomically (temp file + rename).
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let path = dir.join(MANIFEST);
        let tmp = dir.join(format!("{MANIFEST}.tmp{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::Msg(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))
    }

    /// What keeps `dir` from serving every one of `modules` for every arch: a missing or wrong
    /// manifest entry, a missing CUBIN, a size that differs, a kernel the entry lacks.
    pub fn problems(&self, dir: &Path, modules: &[ModuleSpec], archs: &[String]) -> Vec<String> {
        let mut out = vec![];
        for arch in archs {
            for m in modules {
                let label = format!("{} {arch}", m.label());
                let key = match module_key(m.file, arch, &m.defines) {
                    Ok(k) => k,
                    Err(e) => {
                        out.push(format!("{label}: {e}"));
                        continue;
                    }
                };
                let Some(e) = self.modules.get(&key) else {
                    out.push(format!("{label}: key {key} is not in the manifest"));
                    continue;
                };
                if e.file != m.file || e.arch != *arch || e.defines != fmt_defines(&m.defines) {
                    out.push(format!(
                        "{label}: manifest entry {key} is for {} [{}] {}",
                        e.file, e.defines, e.arch
                    ));
                }
                match std::fs::metadata(dir.join(&e.cubin)) {
                    Ok(md) if md.len() == e.bytes && md.len() > 0 => {}
                    Ok(md) => out.push(format!(
                        "{label}: {} has {} bytes, the manifest says {}",
                        e.cubin,
                        md.len(),
                        e.bytes
                    )),
                    Err(err) => out.push(format!("{label}: {}: {err}", e.cubin)),
                }
                for k in crate::specs::kernels_of(m.family) {
                    if !e.kernels.iter().any(|x| x == k) {
                        out.push(format!("{label}: kernel {k} is not in {}", e.cubin));
                    }
                }
            }
        }
        out
    }
}

/// Writes one compiled module into `dir` and returns its manifest entry.
pub fn store(
    dir: &Path,
    spec: &ModuleSpec,
    arch: &str,
    c: &nvrtc::Compiled,
    nvrtc_version: (i32, i32),
) -> Result<(String, Entry)> {
    let key = module_key(spec.file, arch, &spec.defines)?;
    let name = cubin_name(spec.file, arch, &key);
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, &c.cubin).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    let entry = Entry {
        file: spec.file.to_string(),
        defines: fmt_defines(&spec.defines),
        arch: arch.to_string(),
        source_hash: source_hash(spec.file)?,
        nvrtc_version: format!("{}.{}", nvrtc_version.0, nvrtc_version.1),
        cubin: name,
        bytes: c.cubin.len() as u64,
        kernels: nvrtc::parse_ptxas(&c.log)
            .into_iter()
            .map(|k| k.kernel)
            .collect(),
    };
    Ok((key, entry))
}

/// Where a module came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Already looked up in this process.
    Memory,
    /// Read from the cache folder (no NVRTC involved).
    Disk,
    /// Compiled by NVRTC now (and stored in the cache folder).
    Compiled,
}

/// Module lookup for one arch: memory, then the cache folder, then NVRTC. No driver needed.
pub struct ModuleStore {
    arch: String,
    dir: Option<PathBuf>,
    mem: Mutex<HashMap<ModuleSpec, Arc<Vec<u8>>>>,
    manifest: Mutex<Option<Manifest>>,
    disk_hits: AtomicU64,
    compiles: AtomicU64,
}

impl ModuleStore {
    /// A store over `dir` (`None`: memory and NVRTC only).
    pub fn new(arch: &str, dir: Option<PathBuf>) -> ModuleStore {
        let manifest = dir
            .as_deref()
            .and_then(|d| Manifest::read(d).ok().flatten());
        ModuleStore {
            arch: arch.to_string(),
            dir,
            mem: Mutex::new(HashMap::new()),
            manifest: Mutex::new(manifest),
            disk_hits: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
        }
    }

    /// A store over [`cache_dir`].
    pub fn from_env(arch: &str) -> ModuleStore {
        ModuleStore::new(arch, cache_dir())
    }

    pub fn arch(&self) -> &str {
        &self.arch
    }
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// (modules read from the cache folder, modules compiled by NVRTC) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.disk_hits.load(Ordering::Relaxed),
            self.compiles.load(Ordering::Relaxed),
        )
    }

    /// The manifest entry of `spec`, if the cache folder's manifest has one.
    pub fn entry(&self, spec: &ModuleSpec) -> Option<Entry> {
        let key = module_key(spec.file, &self.arch, &spec.defines).ok()?;
        self.manifest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .modules
            .get(&key)
            .cloned()
    }

    fn read_cached(&self, spec: &ModuleSpec) -> Result<Option<Vec<u8>>> {
        let Some(dir) = &self.dir else {
            return Ok(None);
        };
        let key = module_key(spec.file, &self.arch, &spec.defines)?;
        let b = match std::fs::read(dir.join(cubin_name(spec.file, &self.arch, &key))) {
            Ok(b) if !b.is_empty() => b,
            _ => return Ok(None),
        };
        // A manifest that names this module must agree on its size (a torn copy is not served).
        if let Some(e) = self.entry(spec) {
            if e.bytes != b.len() as u64 {
                return Ok(None);
            }
        }
        Ok(Some(b))
    }

    /// The CUBIN of `spec` for this store's arch and where it came from.
    pub fn cubin(&self, spec: &ModuleSpec) -> Result<(Arc<Vec<u8>>, Origin)> {
        if let Some(b) = self.mem.lock().unwrap_or_else(|e| e.into_inner()).get(spec) {
            return Ok((b.clone(), Origin::Memory));
        }
        if let Some(b) = self.read_cached(spec)? {
            self.disk_hits.fetch_add(1, Ordering::Relaxed);
            let b = Arc::new(b);
            self.mem
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(spec.clone(), b.clone());
            return Ok((b, Origin::Disk));
        }
        Ok((self.compile(spec)?, Origin::Compiled))
    }

    /// Compiles `spec` with NVRTC (replacing what memory and the folder hold for it).
    pub fn compile(&self, spec: &ModuleSpec) -> Result<Arc<Vec<u8>>> {
        if let Err(why) = nvrtc::nvrtc_status() {
            let place = match &self.dir {
                Some(d) => format!("the kernel cache {}", d.display()),
                None => "memory (no cache folder: set FOVEATE_CUDA_CACHE)".into(),
            };
            return Err(Error::Unavailable {
                backend: "cuda".into(),
                reason: format!(
                    "{} for {} is not in {place} and NVRTC is unavailable ({why}); fill a cache where NVRTC is \
                     with `foveate cuda-compile --arch {} --fill-cache DIR` and run with FOVEATE_CUDA_CACHE=DIR",
                    spec.label(),
                    self.arch,
                    self.arch
                ),
            });
        }
        let c = nvrtc::compile(spec.file, &self.arch, &spec.defines, true)?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(dir) = &self.dir {
            // A cache that cannot be written is not an error: the module still runs.
            if let Ok((key, entry)) = store(dir, spec, &self.arch, &c, nvrtc::nvrtc_version()?) {
                self.record(dir, key, entry);
            }
        }
        let b = Arc::new(c.cubin);
        self.mem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(spec.clone(), b.clone());
        Ok(b)
    }

    /// Adds one entry to the folder's manifest (re-read first: other processes may write too;
    /// a lost race only loses the entry, never the CUBIN, which is found by name).
    fn record(&self, dir: &Path, key: String, entry: Entry) {
        let mut m = Manifest::read(dir).ok().flatten().unwrap_or(Manifest {
            format: FORMAT,
            ..Default::default()
        });
        m.modules.insert(key, entry);
        let _ = m.write(dir);
        *self.manifest.lock().unwrap_or_else(|e| e.into_inner()) = Some(m);
    }

    /// The modules of `modules` that neither memory nor the cache folder holds (labels).
    pub fn missing(&self, modules: &[ModuleSpec]) -> Vec<String> {
        modules
            .iter()
            .filter(|m| {
                !self
                    .mem
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .contains_key(*m)
                    && !matches!(self.read_cached(m), Ok(Some(_)))
            })
            .map(|m| m.label())
            .collect()
    }

    /// `Ok` when this store can serve every one of `modules` without NVRTC, or NVRTC is here.
    pub fn ready(&self, modules: &[ModuleSpec]) -> Result<()> {
        let Err(why) = nvrtc::nvrtc_status() else {
            return Ok(());
        };
        let missing = self.missing(modules);
        if missing.is_empty() {
            return Ok(());
        }
        let place = self
            .dir
            .as_ref()
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "(no cache folder)".into());
        Err(Error::Unavailable {
            backend: "cuda".into(),
            reason: format!(
                "NVRTC is unavailable ({why}) and the kernel cache {place} lacks {} of {} modules for {} (first: {}); \
                 run `foveate cuda-compile --arch {} --fill-cache DIR` where NVRTC is and set FOVEATE_CUDA_CACHE=DIR",
                missing.len(),
                modules.len(),
                self.arch,
                missing[0],
                self.arch
            ),
        })
    }
}

/// Writes every compiled module of `compiled` into `dir` and a manifest naming them all (merged
/// with the manifest already there).
pub fn fill(
    dir: &Path,
    compiled: &[(ModuleSpec, String, nvrtc::Compiled)],
    nvrtc_version: (i32, i32),
) -> Result<Manifest> {
    let mut m = Manifest::read(dir)?.unwrap_or(Manifest {
        format: FORMAT,
        ..Default::default()
    });
    for (spec, arch, c) in compiled {
        let (key, entry) = store(dir, spec, arch, c, nvrtc_version)?;
        m.modules.insert(key, entry);
    }
    m.write(dir)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::specs::{all_modules, Family};

    #[test]
    fn keys_depend_on_source_arch_and_defines_only() {
        let m = &all_modules()[0];
        let k = module_key(m.file, "sm_90", &m.defines).unwrap();
        assert_eq!(k.len(), 32);
        assert_eq!(k, module_key(m.file, "sm_90", &m.defines).unwrap());
        assert_ne!(k, module_key(m.file, "sm_80", &m.defines).unwrap());
        let other = vec![("DTYPE".to_string(), "2".to_string())];
        assert_ne!(k, module_key(m.file, "sm_90", &other).unwrap());
        // Every module x arch has its own key.
        let mut keys: Vec<String> = all_modules()
            .iter()
            .flat_map(|m| ["sm_80", "sm_90"].map(|a| module_key(m.file, a, &m.defines).unwrap()))
            .collect();
        let n = keys.len();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), n);
    }

    #[test]
    fn a_bad_manifest_names_the_file_and_a_stale_one_is_reported() {
        let dir = std::env::temp_dir().join(format!("foveate-cache-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(MANIFEST), "{ not json").unwrap();
        let e = Manifest::read(&dir).unwrap_err().to_string();
        assert!(e.contains("manifest.json") && e.contains("line 1"), "{e}");
        std::fs::write(dir.join(MANIFEST), r#"{"format": 7, "modules": {}}"#).unwrap();
        assert!(Manifest::read(&dir)
            .unwrap_err()
            .to_string()
            .contains("format: is 7"));
        // A hand-made entry for one module, with a CUBIN of the wrong size and no kernels.
        let spec = ModuleSpec::new(Family::Rope, "rope.cu", &[("DTYPE", "0".into())]);
        let key = module_key(spec.file, "sm_90", &spec.defines).unwrap();
        let name = cubin_name(spec.file, "sm_90", &key);
        std::fs::write(dir.join(&name), b"cubin").unwrap();
        let mut m = Manifest {
            format: FORMAT,
            ..Default::default()
        };
        m.modules.insert(
            key,
            Entry {
                file: "rope.cu".into(),
                defines: "DTYPE=0".into(),
                arch: "sm_90".into(),
                source_hash: source_hash("rope.cu").unwrap(),
                nvrtc_version: "12.9".into(),
                cubin: name,
                bytes: 9,
                kernels: vec![],
            },
        );
        m.write(&dir).unwrap();
        let back = Manifest::read(&dir).unwrap().unwrap();
        assert_eq!(back, m);
        let p = back.problems(
            &dir,
            std::slice::from_ref(&spec),
            &["sm_90".into(), "sm_80".into()],
        );
        assert!(
            p.iter()
                .any(|x| x.contains("has 5 bytes, the manifest says 9")),
            "{p:?}"
        );
        assert!(
            p.iter().any(|x| x.contains("kernel rope is not in")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|x| x.contains("sm_80") && x.contains("not in the manifest")),
            "{p:?}"
        );
        // The store does not serve a CUBIN whose size disagrees with its manifest.
        let s = ModuleStore::new("sm_90", Some(dir.clone()));
        assert_eq!(s.read_cached(&spec).unwrap(), None);
        assert_eq!(s.missing(std::slice::from_ref(&spec)), vec![spec.label()]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
