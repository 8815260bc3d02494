//! `foveate score`: score a predictions file in the official submission format
//! (`[{"question_id", "answer"}]`, or `[{"questionId", "answer"}]` for DocVQA) with the task's
//! official metric. Strict by default: every question needs exactly one prediction.

use crate::CmdResult;
use foveate_eval::{data, report, DatasetPaths, TaskKind};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// vqav2 | textvqa | docvqa | easy-vqa
    #[arg(long)]
    task: String,
    /// The predictions file (official submission format).
    #[arg(long)]
    predictions: PathBuf,
    /// Ground truth: VQAv2 annotations, TextVQA json, DocVQA json, or easy-VQA questions.json /
    /// data dir (easy-VQA defaults to the installed package's test split).
    #[arg(long)]
    annotations: Option<PathBuf>,
    /// VQAv2 questions file (optional; the score does not need the question text).
    #[arg(long)]
    questions: Option<PathBuf>,
    /// Score questions without a prediction as empty answers instead of refusing.
    #[arg(long)]
    allow_missing: bool,
    /// Print JSON: {"overall", "breakdown", "per_question", ...}.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> CmdResult {
    let task = TaskKind::parse(&args.task)?;
    let paths = DatasetPaths {
        annotations: args.annotations,
        questions: args.questions,
        image_root: None,
    };
    let ds = data::load(task, &paths)?;
    let score = foveate_eval::score_file(&ds, &args.predictions, args.allow_missing)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report::score_json(&score))?
        );
    } else {
        print!("{}", report::score_table(&score));
    }
    Ok(ExitCode::SUCCESS)
}
