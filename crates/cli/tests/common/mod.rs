//! Helpers the CLI test files share (`mod common;` in each).
#![allow(dead_code)]

use std::path::PathBuf;

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the repository root exists")
}

/// A fresh scratch folder `foveate-<tag>-<pid>-<name>` under the temp dir: removed if present,
/// then created when `create` (else left for the command under test to make).
pub fn scratch(tag: &str, name: &str, create: bool) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-{tag}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    if create {
        std::fs::create_dir_all(&d).expect("create the scratch folder");
    }
    d
}
