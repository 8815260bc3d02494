//! `foveate quantize`: writes a quantised copy of a checkpoint (int8 or int4 linear weights in the
//! per-role formats of `--weights`, a `foveate_quant.json` manifest; see
//! `foveate_models::qcheckpoint`). Loading the copy uploads the stored bytes as they are.

use crate::CmdResult;
use foveate_core::Error;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(clap::Args)]
pub struct Args {
    /// The checkpoint directory to quantise.
    #[arg(long)]
    model: PathBuf,
    /// int8 | int4 (the LM head is int8 either way; embeddings, norms and the vision tower are
    /// copied as stored).
    #[arg(long)]
    weights: String,
    /// The directory to write (created; must not hold a checkpoint already).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: Args) -> CmdResult {
    let w = crate::answerer::parse_weights(&args.weights)?;
    if !w.is_quant() {
        return Err(Error::Msg(format!("--weights: quantize writes int8 or int4, not {w} (f16/bf16/f32 load from the original with --weights)")).into());
    }
    let t0 = Instant::now();
    let s = foveate_models::qcheckpoint::quantize(&args.model, &args.out, w)?;
    if let Some(first) = s.kept.first() {
        eprintln!("note: {} weight(s) copied as stored: rows not a multiple of 32 elements (first: {first})", s.kept.len());
    }
    let mib = |b: usize| b as f64 / (1 << 20) as f64;
    println!(
        "{}: {} tensors ({} quantised to {w} / int8 head), {:.1} MiB -> {:.1} MiB in {:.1} s",
        args.out.display(),
        s.tensors,
        s.quantised,
        mib(s.bytes_in),
        mib(s.bytes_out),
        t0.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}
