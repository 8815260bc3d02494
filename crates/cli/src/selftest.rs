//! `foveate selftest`: runs the correctness matrix on one backend against the CPU oracle, prints
//! a table and a summary, and exits non-zero on any failure. `--reference naive` runs the
//! device-vs-device matrix instead: GPU-scale attention and GEMM, each fast variant against the
//! same backend's naive variant (`foveate_testkit::run_naive_matrix`). `--isolate` runs each op
//! family in its own process (see [`isolate`]).

mod isolate;

use crate::{backends, CmdResult};
use foveate_core::{DType, OpKind};
use foveate_testkit::{
    run_matrix, run_naive_matrix, MatrixOptions, MatrixSize, OpSummary, Reference, Report,
};
use serde::Serialize;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Backend to test (cpu, wgpu, cuda; see `foveate info`).
    #[arg(long, default_value = "cpu")]
    backend: String,
    /// Only these op families (comma separated), e.g. `attention,gemm`.
    #[arg(long, value_delimiter = ',', value_parser = parse_op)]
    op: Vec<OpKind>,
    /// Only this kernel variant, e.g. `flash`.
    #[arg(long)]
    variant: Option<String>,
    /// Case dtypes (comma separated; default f32,f16,bf16).
    #[arg(long, value_delimiter = ',', value_parser = parse_dtype)]
    dtype: Vec<DType>,
    /// Shape set: small (slow devices) or full. Default: small for wgpu (and for cpu with
    /// `--reference naive`), full otherwise.
    #[arg(long, value_parser = parse_size)]
    size: Option<MatrixSize>,
    /// What each variant is compared with: `oracle` (the f64 CPU oracle, oracle-sized shapes) or
    /// `naive` (the same backend's naive variant, GPU-scale attention and GEMM shapes).
    #[arg(long, default_value = "oracle", value_parser = parse_reference)]
    reference: Reference,
    /// Seed of the random inputs.
    #[arg(long, default_value_t = MatrixOptions::default().seed)]
    seed: u64,
    /// Print only the failing rows of the table.
    #[arg(long)]
    failures_only: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
    /// Run each op family (`--op`, default all) in its own process, so a sticky device fault
    /// (e.g. a CUDA illegal address) fails one family and the next still runs.
    #[arg(long)]
    isolate: bool,
    /// CUDA only: plant an out-of-bounds launch after the first execution of this op (e.g.
    /// `gemm`; FOVEATE_CUDA_FAULT) and run isolated: the report must fail that op's cases only,
    /// name the op, and pass the families after it (the GPU kit's fault check).
    #[arg(long, value_name = "OP", value_parser = parse_op)]
    plant_fault: Option<OpKind>,
}

fn parse_op(s: &str) -> Result<OpKind, String> {
    s.parse()
}
fn parse_dtype(s: &str) -> Result<DType, String> {
    match s.parse()? {
        DType::U32 => Err("u32 is not a case dtype (use f32, f16 or bf16)".into()),
        d => Ok(d),
    }
}
fn parse_size(s: &str) -> Result<MatrixSize, String> {
    s.parse()
}
fn parse_reference(s: &str) -> Result<Reference, String> {
    s.parse()
}

#[derive(Serialize)]
struct JsonReport<'a> {
    backend: &'a str,
    device: &'a str,
    size: &'static str,
    reference: &'static str,
    cases: usize,
    failed: usize,
    skipped: usize,
    per_op: Vec<OpSummary>,
    results: &'a [foveate_testkit::CaseResult],
    skipped_cases: &'a [foveate_testkit::Skipped],
}

pub fn run(args: Args) -> CmdResult {
    let naive = args.reference == Reference::Naive;
    let slow = args.backend == "wgpu" || (naive && args.backend.starts_with("cpu"));
    let size = args.size.unwrap_or(if slow {
        MatrixSize::Small
    } else {
        MatrixSize::Full
    });
    if let Some(op) = args.plant_fault {
        if args.backend != "cuda" {
            return Err(format!(
                "--plant-fault: only the cuda backend can plant a fault (got `{}`)",
                args.backend
            )
            .into());
        }
        return isolate::run(
            &args.backend,
            size.name(),
            &args.op,
            args.json,
            &[(foveate_cuda::FAULT_ENV, op.name())],
        );
    }
    if args.isolate {
        return isolate::run(&args.backend, size.name(), &args.op, args.json, &[]);
    }
    let backend = backends::open(&args.backend)?;
    let oracle = backends::open(backends::ORACLE)?;
    let mut opts = MatrixOptions::new(size);
    opts.seed = args.seed;
    if !args.op.is_empty() {
        opts.ops = Some(args.op.clone());
    }
    if !args.dtype.is_empty() {
        opts.dtypes = args.dtype.clone();
    }
    opts.variant = args.variant.clone();
    if naive && foveate_testkit::scale_cases(&opts).is_empty() {
        return Err("--reference naive has cases for attention and gemm only (select one with --op, or drop --op)".into());
    }
    let report = if naive {
        run_naive_matrix(backend.as_ref(), oracle.as_ref(), &opts)
    } else {
        run_matrix(backend.as_ref(), oracle.as_ref(), &opts)
    };
    if report.results.is_empty() && report.skipped.is_empty() {
        // Only a variant filter can select nothing at all.
        let kinds = opts.ops.clone().unwrap_or_else(|| OpKind::ALL.to_vec());
        let mut names: Vec<&str> = kinds
            .iter()
            .flat_map(|&k| backend.variants(k))
            .map(|v| v.name)
            .collect();
        names.sort_unstable();
        names.dedup();
        return Err(format!(
            "variant `{}` is not registered on backend `{}` for the selected ops (variants: {})",
            args.variant.as_deref().unwrap_or(""),
            backend.name(),
            names.join(", ")
        )
        .into());
    }
    if args.json {
        print_json(&report, size, args.reference)?;
    } else {
        print!("{}", report.table(args.failures_only));
        println!();
        print!("{}", report.per_op_table());
        print!("{}", report.skipped_table());
        println!("{}", report.summary_line());
    }
    if report.results.is_empty() {
        return Err(format!(
            "backend `{}` ran no case: every selected case was skipped",
            backend.name()
        )
        .into());
    }
    if !report.all_passed() {
        if args.json {
            eprintln!(
                "error: {} of {} runs failed",
                report.failed().len(),
                report.results.len()
            );
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(
    report: &Report,
    size: MatrixSize,
    reference: Reference,
) -> Result<(), serde_json::Error> {
    let j = JsonReport {
        backend: &report.backend,
        device: &report.device,
        size: size.name(),
        reference: match reference {
            Reference::Oracle => "oracle",
            Reference::Naive => "naive",
        },
        cases: report.results.len(),
        failed: report.failed().len(),
        skipped: report.skipped.len(),
        per_op: report.per_op(),
        results: &report.results,
        skipped_cases: &report.skipped,
    };
    println!("{}", serde_json::to_string_pretty(&j)?);
    Ok(())
}
