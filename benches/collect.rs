//! `foveate-bench-collect`: the latest `cargo bench -p foveate-benches` results as one
//! `foveate-bench/1` file (device, date, commit, host load), for `foveate compare`.
//!
//! ```sh
//! cargo run --release -p foveate-benches --bin foveate-bench-collect -- \
//!     [--dir target/criterion] [--only attention/] [--backend cpu] [--max-age-hours 6] [--note TEXT] [--out FILE]
//! ```
//!
//! `--only` keeps groups starting with the prefix (repeatable); `--backend` keeps one backend's
//! rows (repeatable); `--max-age-hours` drops results
//! older than that (criterion keeps every case it ever ran). Device names come from opening the
//! backends the rows name, with the same `FOVEATE_BENCH_THREADS` / `FOVEATE_BENCH_BACKENDS`.

use foveate_benches::results::{self, ResultFile};
use foveate_benches::{criterion, devices};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str =
    "usage: foveate-bench-collect [--dir DIR] [--only GROUP_PREFIX]... [--backend NAME]... [--max-age-hours H] [--note TEXT] [--out FILE]";

fn main() -> ExitCode {
    let mut dir = None;
    let (mut only, mut backends, mut max_age, mut out, mut note) =
        (Vec::new(), Vec::<String>::new(), None, None, None);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = |name: &str| {
            args.next()
                .ok_or_else(|| format!("{name} needs a value\n{USAGE}"))
        };
        let r: Result<(), String> = match a.as_str() {
            "--dir" => val("--dir").map(|v| dir = Some(PathBuf::from(v))),
            "--only" => val("--only").map(|v| only.push(v)),
            "--backend" => val("--backend").map(|v| backends.push(v)),
            "--out" => val("--out").map(|v| out = Some(PathBuf::from(v))),
            "--note" => val("--note").map(|v| note = Some(v)),
            "--max-age-hours" => val("--max-age-hours").and_then(|v| {
                v.parse::<f64>()
                    .map(|h| max_age = Some(Duration::from_secs_f64(h * 3600.0)))
                    .map_err(|e| format!("--max-age-hours `{v}`: {e}"))
            }),
            "-h" | "--help" => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => Err(format!("unknown argument `{other}`\n{USAGE}")),
        };
        if let Err(e) = r {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    let dir = dir.unwrap_or_else(criterion::default_dir);
    let rows = match criterion::collect(&dir, &only, max_age) {
        Ok(r) => r
            .into_iter()
            .filter(|r| backends.is_empty() || backends.contains(&r.backend))
            .collect::<Vec<_>>(),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut device = Vec::new();
    for d in devices::available() {
        if rows.iter().any(|r| r.backend == d.name()) {
            device.push(format!("{}: {}", d.name(), d.backend.device_name()));
        }
    }
    let mut host = results::host_info();
    host["source"] = serde_json::json!(format!("criterion results in {}", dir.display()));
    if let Some(n) = note {
        host["note"] = serde_json::json!(n);
    }
    let file = ResultFile::new(device.join("; "), host, rows);
    let text = serde_json::to_string_pretty(&file).expect("serialisable") + "\n";
    match out {
        Some(p) => {
            if let Err(e) = std::fs::write(&p, text) {
                eprintln!("error: {}: {e}", p.display());
                return ExitCode::from(1);
            }
            eprintln!(
                "collect: {} rows from {} into {}",
                file.rows.len(),
                dir.display(),
                p.display()
            );
        }
        None => print!("{text}"),
    }
    ExitCode::SUCCESS
}
