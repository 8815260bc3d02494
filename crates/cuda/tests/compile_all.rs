//! Compiles every kernel x specialisation with NVRTC for sm_80 and sm_90 (no GPU needed) and
//! checks the ptxas report: no compile error anywhere, no spills in the flash, decode and GEMM
//! families, and every kernel each module should define is there. The same CUBINs then fill a
//! kernel cache whose manifest must match every module key, and a child process with NVRTC
//! hidden (`FOVEATE_NVRTC_PATH` pointing nowhere) must be served every module from that cache.
//! Skips (saying why) when NVRTC is absent; FOVEATE_REQUIRE_NVRTC=1 turns that into a failure.

use foveate_cuda::cache::{fill, Manifest, ModuleStore, Origin};
use foveate_cuda::nvrtc;
use foveate_cuda::specs::{all_modules, compile_all, kernels_of, Family, ModuleSpec, HEAD_DIMS};
use std::path::{Path, PathBuf};
use std::process::Command;

const CACHE_DIR_ENV: &str = "FOVEATE_TEST_CACHE_DIR";

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// Runs one `#[ignore]`d test of this binary in a child process with `env`.
fn child(test: &str, env: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let exe = std::env::current_exe().unwrap();
    let mut c = Command::new(exe);
    c.args([
        test,
        "--exact",
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ]);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("cannot run the test binary")
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills_and_fills_a_cache() {
    if let Err(why) = nvrtc::nvrtc_status() {
        foveate_testkit::skip_or_fail(
            "every_kernel_compiles_for_sm80_and_sm90_without_spills",
            "FOVEATE_REQUIRE_NVRTC",
            &why,
        );
        return;
    }
    let modules = all_modules();
    // 3 dtypes x (7 single modules + int8/int4-weight GEMM and MLP modules + 3 attention
    // families x 5 head dims) + 12 casts
    assert_eq!(modules.len(), 3 * (7 + 2 * 2 + 3 * HEAD_DIMS.len()) + 12);
    let archs = vec!["sm_80".to_string(), "sm_90".to_string()];
    let threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let (rep, compiled) = compile_all(&modules, &archs, threads).expect("NVRTC is present");
    assert!(
        rep.errors.is_empty(),
        "{} compile errors:\n{}",
        rep.errors.len(),
        rep.errors.join("\n")
    );
    let spills: Vec<String> = rep
        .fatal_spills()
        .iter()
        .map(|k| {
            format!(
                "{} {} {}: {} B spilled",
                k.arch,
                k.module,
                k.kernel,
                k.spill_stores + k.spill_loads
            )
        })
        .collect();
    assert!(
        spills.is_empty(),
        "spills in flash/decode/GEMM kernels:\n{}",
        spills.join("\n")
    );
    for arch in &archs {
        for m in &modules {
            let label = m.label();
            for k in kernels_of(m.family) {
                let found = rep
                    .kernels
                    .iter()
                    .find(|r| &r.arch == arch && r.module == label && r.kernel == *k);
                let r = found.unwrap_or_else(|| {
                    panic!("{arch} {label}: kernel {k} missing from the ptxas report")
                });
                assert!(r.registers > 0, "{arch} {label} {k}: 0 registers reported");
                assert!(r.registers <= 255);
            }
        }
    }
    let worst = rep
        .kernels
        .iter()
        .filter(|k| k.family == Family::Flash)
        .map(|k| k.registers)
        .max()
        .unwrap();
    eprintln!(
        "NVRTC {}: {} kernels compiled for {:?}; max flash registers {worst}",
        rep.nvrtc_version,
        rep.kernels.len(),
        archs
    );
    // The resource table of the families whose spills are fatal (KERNELS.md quotes it).
    for k in rep.kernels.iter().filter(|k| k.family.spills_fatal()) {
        eprintln!("RES {}", foveate_cuda::specs::table_line(&k.row()));
    }

    // The cache: a manifest matching every module key of both archs.
    let dir = temp_dir("cache-fill");
    fill(&dir, &compiled, nvrtc::nvrtc_version().unwrap()).unwrap();
    let m = Manifest::read(&dir)
        .unwrap()
        .expect("fill wrote a manifest");
    assert_eq!(m.modules.len(), modules.len() * archs.len());
    let problems = m.problems(&dir, &modules, &archs);
    assert!(problems.is_empty(), "{problems:#?}");
    // A CUBIN missing from the folder is reported (the check can fail).
    let victim = m.modules.values().next().unwrap().cubin.clone();
    let saved = std::fs::read(dir.join(&victim)).unwrap();
    std::fs::remove_file(dir.join(&victim)).unwrap();
    assert_eq!(m.problems(&dir, &modules, &archs).len(), 1);
    std::fs::write(dir.join(&victim), saved).unwrap();

    // NVRTC hidden in a child process: every module is served from the cache.
    let out = child(
        "served_from_the_cache_without_nvrtc",
        &[
            ("FOVEATE_NVRTC_PATH", "/nonexistent/libnvrtc.so.13".as_ref()),
            (CACHE_DIR_ENV, dir.as_os_str()),
        ],
    );
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "child failed:\n{text}");
    assert!(
        text.contains("1 passed"),
        "the child test did not run:\n{text}"
    );
    assert!(
        text.contains(&format!(
            "served {} modules from the cache, compiled 0",
            modules.len()
        )),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Child of the test above (run with NVRTC hidden and the cache folder named).
#[test]
#[ignore = "run as a child process by every_kernel_compiles_..._and_fills_a_cache"]
fn served_from_the_cache_without_nvrtc() {
    let dir = PathBuf::from(std::env::var_os(CACHE_DIR_ENV).expect("run by the parent test"));
    let why = nvrtc::nvrtc_status().expect_err("NVRTC must be hidden in this process");
    assert!(
        why.contains("FOVEATE_NVRTC_PATH=/nonexistent/libnvrtc.so.13 did not load"),
        "{why}"
    );
    let modules = all_modules();
    let store = ModuleStore::new("sm_90", Some(dir.clone()));
    // What CudaBackend::new checks before it accepts a GPU without NVRTC.
    store.ready(&modules).expect("every module is in the cache");
    for m in &modules {
        let (cubin, origin) = store
            .cubin(m)
            .unwrap_or_else(|e| panic!("{}: {e}", m.label()));
        assert_eq!(origin, Origin::Disk, "{}", m.label());
        assert!(!cubin.is_empty());
        assert_eq!(store.cubin(m).unwrap().1, Origin::Memory);
    }
    let (hits, compiles) = store.stats();
    println!("served {hits} modules from the cache, compiled {compiles}");
    // A module the cache lacks is an Unavailable error naming the module, the folder and the fix.
    let odd = ModuleSpec::new(
        Family::Decode,
        "decode_attention.cu",
        &[("DTYPE", "1".into()), ("HEAD_DIM", "48".into())],
    );
    let e = store.cubin(&odd).unwrap_err().to_string();
    assert!(
        e.contains("HEAD_DIM=48")
            && e.contains(&dir.display().to_string())
            && e.contains("--fill-cache"),
        "{e}"
    );
    // An empty cache folder: not ready, and the reason says how many modules are missing.
    let empty = ModuleStore::new("sm_90", Some(temp_dir("cache-empty")));
    let e = empty.ready(&modules).unwrap_err().to_string();
    assert!(
        e.contains(&format!(
            "lacks {} of {} modules for sm_90",
            modules.len(),
            modules.len()
        )),
        "{e}"
    );
}

/// NVRTC 12 and 13 each load through FOVEATE_NVRTC_PATH and compile (cuda-env.sh names each wheel's
/// library in FOVEATE_NVRTC_CU12 / _CU13; CI installs both and compiles everything with each).
#[test]
fn nvrtc_12_and_13_both_load_and_compile() {
    let mut ran = 0;
    for (var, major) in [("FOVEATE_NVRTC_CU12", "12"), ("FOVEATE_NVRTC_CU13", "13")] {
        let Some(lib) = std::env::var_os(var).filter(|p| Path::new(p).exists()) else {
            foveate_testkit::skip_or_fail("nvrtc_12_and_13_both_load_and_compile", "FOVEATE_REQUIRE_NVRTC", &format!("{var} is not set (eval \"$(bash scripts/cuda-env.sh)\" with the cu{major} wheel installed)"));
            continue;
        };
        let out = child(
            "compiles_with_the_nvrtc_in_env",
            &[("FOVEATE_NVRTC_PATH", &lib)],
        );
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{var}: child failed:\n{text}"
        );
        assert!(
            text.contains(&format!("NVRTC {major}.")),
            "{var} should load NVRTC {major}:\n{text}"
        );
        assert!(
            text.contains(&lib.to_string_lossy().to_string()),
            "the loaded path is reported:\n{text}"
        );
        ran += 1;
    }
    eprintln!("{ran} NVRTC majors checked");
}

#[test]
#[ignore = "run as a child process by nvrtc_12_and_13_both_load_and_compile"]
fn compiles_with_the_nvrtc_in_env() {
    let info = foveate_cuda::libs::nvrtc_info();
    assert!(info.loaded, "{info:?}");
    println!(
        "NVRTC {} at {}",
        info.version.clone().unwrap(),
        info.path.clone().unwrap()
    );
    // One module of each kind the new kernels live in, for the device's arch.
    let mods: Vec<ModuleSpec> = all_modules()
        .into_iter()
        .filter(|m| {
            m.family == Family::Gemm
                || (m.family == Family::Decode && m.defines.iter().any(|d| d.1 == "128"))
        })
        .filter(|m| m.defines[0].1 == "2")
        .collect();
    assert_eq!(mods.len(), 2);
    let (rep, _) = compile_all(&mods, &["sm_90".to_string()], 2).unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert!(rep.kernels.iter().any(|k| k.kernel == "gemv_none"));
    assert!(rep.kernels.iter().any(|k| k.kernel == "decode_v16_g8"));
}
