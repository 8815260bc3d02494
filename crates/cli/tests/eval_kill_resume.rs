//! A real `foveate eval` process is killed with SIGKILL in the middle of a run, resumed with
//! `--resume`, and must end with the same predictions as an uninterrupted run: nothing lost,
//! nothing answered twice.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::repo;

fn tmp(name: &str) -> PathBuf {
    common::scratch("kill", name, false)
}

const N: usize = 240;

fn eval_cmd(out: &Path, resume: bool) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_foveate"));
    c.args([
        "eval",
        "--task",
        "easy-vqa",
        "--json",
        "--limit",
        &N.to_string(),
    ])
    .arg("--model")
    .arg(repo().join("eval/models/easyvqa-tiny"))
    .arg("--data")
    .arg(repo().join("eval/data/easy-vqa"))
    .arg("--output")
    .arg(out);
    if resume {
        c.arg("--resume");
    }
    c
}

fn journal_lines(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("predictions.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Question ids of the complete journal lines (a line torn by the kill does not count).
fn journal_ids(dir: &Path) -> Vec<String> {
    journal_lines(dir)
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|v| v["question_id"].to_string())
        .collect()
}

#[test]
fn sigkilled_eval_resumes_to_the_uninterrupted_predictions() {
    let full = tmp("full");
    let o = eval_cmd(&full, false).output().expect("run foveate");
    assert!(
        o.status.success(),
        "uninterrupted eval failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );

    // Start the same eval and SIGKILL it (std's Child::kill is SIGKILL on Unix) once a third of
    // the questions are journaled.
    let killed = tmp("killed");
    let mut child = eval_cmd(&killed, false)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn foveate");
    let start = Instant::now();
    let mut at_kill = 0;
    while start.elapsed() < Duration::from_secs(300) {
        at_kill = journal_lines(&killed).len();
        if at_kill >= N / 3 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the eval exited before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the eval finished before the kill ({at_kill} journaled)"
    );
    child.kill().expect("SIGKILL");
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "a killed process must not report success"
    );
    let journaled = journal_ids(&killed).len();
    assert!(
        journaled >= N / 3 && journaled < N,
        "{journaled} of {N} journaled at the kill"
    );
    assert!(
        !killed.join("submission.json").exists(),
        "a killed run must not have written its submission"
    );

    // Without --resume the folder is refused, untouched.
    let o = eval_cmd(&killed, false).output().unwrap();
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("--resume"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(journal_ids(&killed).len(), journaled);

    let o = eval_cmd(&killed, true).output().expect("resume");
    assert!(
        o.status.success(),
        "resumed eval failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let res: serde_json::Value = serde_json::from_slice(&o.stdout).expect("results JSON");
    assert_eq!(res["resumed_from_journal"], journaled, "{res}");
    assert_eq!(res["answered_this_run"], N - journaled, "{res}");

    let ids = journal_ids(&killed);
    assert_eq!(ids.len(), N, "journal length after resume");
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        N,
        "a question was journaled twice"
    );
    let read = |d: &Path| std::fs::read_to_string(d.join("submission.json")).unwrap();
    assert_eq!(
        read(&killed),
        read(&full),
        "resumed predictions differ from the uninterrupted run"
    );
    let score = |d: &Path| -> serde_json::Value {
        serde_json::from_str::<serde_json::Value>(
            &std::fs::read_to_string(d.join("results.json")).unwrap(),
        )
        .unwrap()["score"]
            .clone()
    };
    assert_eq!(score(&killed), score(&full));
    let _ = std::fs::remove_dir_all(&full);
    let _ = std::fs::remove_dir_all(&killed);
}
