//! `foveate info`: the backends usable here (with their device) and why the others are not.

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
struct Info {
    version: &'static str,
    cpu_threads: usize,
    backends: Vec<BackendInfo>,
}

fn variants_of(name: &str) -> BTreeMap<String, Vec<String>> {
    let Ok(b) = backends::open(name) else { return BTreeMap::new() };
    OpKind::ALL
        .into_iter()
        .map(|k| (k.name().to_string(), b.variants(k).iter().map(|v| v.name.to_string()).collect()))
        .collect()
}

pub fn run(args: Args) -> CmdResult {
    let cpu_threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let backends: Vec<BackendInfo> = backends::probe_all()
        .into_iter()
        .map(|p| {
            let variants = if p.available { variants_of(&p.name) } else { BTreeMap::new() };
            BackendInfo { probe: p, variants }
        })
        .collect();
    let info = Info { version: env!("CARGO_PKG_VERSION"), cpu_threads, backends };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!("foveate {}  (CPU threads: {})", info.version, info.cpu_threads);
    let w = info.backends.iter().map(|b| b.probe.name.len()).max().unwrap_or(7).max(7);
    println!("{:<w$}  {:<11}  device / reason", "backend", "status");
    for b in &info.backends {
        let status = if b.probe.available { "available" } else { "unavailable" };
        println!("{:<w$}  {:<11}  {}", b.probe.name, status, b.probe.device_or_reason);
        if let Some(att) = b.variants.get("attention") {
            println!("{:<w$}  {:<11}  attention variants: {}", "", "", att.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
