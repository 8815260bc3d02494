//! `foveate compare FILE...`: several bench result files (backends, variants, commits, or the
//! PyTorch baseline) side by side. Rows line up by workload and metric; each column is one
//! (file, series) and carries its time ratio against the reference column (`--baseline`, default
//! the first): `x / ref` for times, `ref / x` for rates, so below 1.0 means faster than the
//! reference either way. With `--chart PREFIX` it also draws throughput vs sequence length, one
//! line per family x series, as `PREFIX.png` and `PREFIX.svg`.
//!
//! A file may also be llama.cpp's `llama-bench -o json` output (crate::llama_bench). With
//! `--by-weights`, the default when a llama-bench file is among them, rows line up by workload and
//! weight format (`f32/wint8` -> `int8`, as a llama.cpp model file fixes its format) and columns
//! are (file, backend/variant/activations): one table of llama.cpp against foveate per format.

use crate::{llama_bench, CmdResult};
use foveate_benches::results::{Metric, ResultFile, Row};
use foveate_core::Error;
use plotters::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Result files written by `foveate bench -o json` or eval/tools/torch_baseline.py, or
    /// llama.cpp's `llama-bench -o json` output.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Index (0-based, over the columns as listed) of the reference column for the ratios.
    #[arg(long, default_value_t = 0)]
    baseline: usize,
    /// Write the table here instead of stdout.
    #[arg(long = "out")]
    out: Option<PathBuf>,
    /// Draw throughput vs sequence length into PREFIX.png and PREFIX.svg (one pair per unit,
    /// PREFIX-gflops.svg, PREFIX-gbps.svg, ..., when the charted rows mix units).
    #[arg(long)]
    chart: Option<PathBuf>,
    /// Chart only the families whose name contains one of these (comma separated), e.g.
    /// `--chart-only "vit-b16 none,qwen2-0.5b causal"`.
    #[arg(long, value_delimiter = ',')]
    chart_only: Vec<String>,
    /// Line rows up by workload and weight format (`int8` of `f32/wint8`), the columns being
    /// backend/variant/activations; the default when a file is llama-bench output.
    #[arg(long)]
    by_weights: bool,
}

/// One column: a series of one file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Column {
    file: usize,
    series: String,
}

fn label(files: &[(String, ResultFile)], c: &Column) -> String {
    let (name, f) = &files[c.file];
    let commit = f
        .commit
        .as_deref()
        .map(|s| &s[..s.len().min(7)])
        .unwrap_or("");
    format!(
        "{name} {} {}{}",
        f.tool,
        c.series,
        if commit.is_empty() {
            String::new()
        } else {
            format!(" @{commit}")
        }
    )
}

/// A dtype as (activations, weights): `f32/wint8` -> (`f32`, `int8`), `f16` -> (`f16`, `f16`).
fn split_dtype(d: &str) -> (&str, &str) {
    d.split_once("/w").unwrap_or((d, d))
}

/// The series of a row (its column within its file) and the weight format it lines up by
/// (empty unless `by_weights`).
fn series_and_weights(r: &Row, by_weights: bool) -> (String, String) {
    if !by_weights {
        return (r.series(), String::new());
    }
    let (act, w) = split_dtype(&r.dtype);
    let series = [r.backend.as_str(), r.variant.as_str(), act]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join("/");
    (series, w.to_string())
}

/// `x` relative to the reference, as a time ratio (below 1 = faster than the reference).
fn ratio(x: &Metric, reference: &Metric) -> Option<f64> {
    if x.mean <= 0.0 || reference.mean <= 0.0 {
        return None;
    }
    Some(if x.higher_is_better() {
        reference.mean / x.mean
    } else {
        x.mean / reference.mean
    })
}

pub fn table(
    files: &[(String, ResultFile)],
    baseline: usize,
    by_weights: bool,
) -> Result<String, Error> {
    let mut cols: Vec<Column> = Vec::new();
    // (workload, weights, metric) -> column -> metric
    type Cells = BTreeMap<(String, String, String), BTreeMap<usize, Metric>>;
    let mut cells: Cells = BTreeMap::new();
    for (fi, (_, f)) in files.iter().enumerate() {
        for r in &f.rows {
            let (series, weights) = series_and_weights(r, by_weights);
            let c = Column { file: fi, series };
            let ci = match cols.iter().position(|x| *x == c) {
                Some(i) => i,
                None => {
                    cols.push(c);
                    cols.len() - 1
                }
            };
            for (name, m) in &r.metrics {
                cells
                    .entry((r.workload.clone(), weights.clone(), name.clone()))
                    .or_default()
                    .insert(ci, m.clone());
            }
        }
    }
    if baseline >= cols.len() {
        return Err(Error::Msg(format!(
            "--baseline {baseline}: there are only {} columns",
            cols.len()
        )));
    }
    let mut out = String::from("Columns:\n");
    for (i, c) in cols.iter().enumerate() {
        out += &format!(
            "  [{i}] {}{}\n",
            label(files, c),
            if i == baseline { " (reference)" } else { "" }
        );
    }
    out += &format!("\nratio = time relative to [{baseline}] (x/ref for times, ref/x for rates): below 1.0 is faster.\n\n");
    let mut head = vec!["workload".to_string()];
    if by_weights {
        head.push("weights".into());
    }
    head.push("metric".into());
    for i in 0..cols.len() {
        head.push(format!("[{i}]"));
        if i != baseline {
            head.push(format!("[{i}] ratio"));
        }
    }
    out += &format!(
        "| {} |\n|{}\n",
        head.join(" | "),
        " --- |".repeat(head.len())
    );
    for ((w, weights, name), by_col) in &cells {
        let reference = by_col.get(&baseline);
        let mut line = vec![w.clone()];
        if by_weights {
            line.push(weights.clone());
        }
        line.push(format!(
            "{name} ({})",
            by_col
                .values()
                .next()
                .map(|m| m.unit.as_str())
                .unwrap_or("")
        ));
        for i in 0..cols.len() {
            let m = by_col.get(&i);
            line.push(m.map_or("-".into(), |m| {
                if m.n > 1 {
                    format!("{:.3} ± {:.3}", m.mean, m.sd)
                } else {
                    format!("{:.3}", m.mean)
                }
            }));
            if i != baseline {
                line.push(match (m, reference) {
                    (Some(m), Some(r)) => ratio(m, r).map_or("-".into(), |x| format!("{x:.2}")),
                    _ => "-".into(),
                });
            }
        }
        out += &format!("| {} |\n", line.join(" | "));
    }
    Ok(out)
}

/// The throughput metric of a row to chart: the first rate metric, by name order.
fn rate(r: &Row) -> Option<(&String, &Metric)> {
    r.metrics.iter().find(|(_, m)| m.unit.ends_with("/s"))
}

type Line = (String, Vec<(f64, f64)>);

/// Chart lines by unit: unit -> (family x file x series, points sorted by sequence length).
fn lines(files: &[(String, ResultFile)], only: &[String]) -> BTreeMap<String, Vec<Line>> {
    let mut by: BTreeMap<(String, String), Vec<(f64, f64)>> = BTreeMap::new();
    for (fi, (_, f)) in files.iter().enumerate() {
        for r in &f.rows {
            let (Some(s), Some((name, m))) = (r.seq_len, rate(r)) else {
                continue;
            };
            let fam = r.family.clone().unwrap_or_else(|| r.workload.clone());
            if !only.is_empty() && !only.iter().any(|o| fam.contains(o.as_str())) {
                continue;
            }
            let key = format!(
                "{} {} [{fi}] {}/{} {name}",
                fam, f.tool, r.backend, r.variant
            );
            by.entry((m.unit.clone(), key))
                .or_default()
                .push((s as f64, m.mean));
        }
    }
    let mut out: BTreeMap<String, Vec<Line>> = BTreeMap::new();
    for ((unit, k), mut v) in by {
        v.sort_by(|a, b| a.0.total_cmp(&b.0));
        out.entry(unit).or_default().push((k, v));
    }
    out
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    lines: &[Line],
    unit: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let e = |x: &dyn std::fmt::Display| x.to_string();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let xmax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.0))
        .fold(1.0f64, f64::max);
    let ymax = lines
        .iter()
        .flat_map(|l| l.1.iter().map(|p| p.1))
        .fold(1e-9f64, f64::max);
    let mut b = ChartBuilder::on(&root);
    b.margin(20)
        .caption("throughput vs sequence length", ("sans-serif", 20))
        .x_label_area_size(40)
        .y_label_area_size(60);
    let mut chart = b
        .build_cartesian_2d(0f64..xmax * 1.05, 0f64..ymax * 1.1)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("sequence length")
        .y_desc(format!("throughput ({unit})"))
        .draw()
        .map_err(|x| e(&x))?;
    for (i, (name, pts)) in lines.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let s = chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|x| e(&x))?;
        s.label(name.clone()).legend(move |(x, y)| {
            PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
        });
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|x| e(&x))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// `GFLOP/s` -> `gflops`, `GB/s` -> `gbps`, `tokens/s` -> `tokens-per-s`.
fn unit_slug(unit: &str) -> String {
    match unit {
        "GFLOP/s" => "gflops".into(),
        "GB/s" => "gbps".into(),
        u => u
            .to_lowercase()
            .replace("/s", "-per-s")
            .replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "-"),
    }
}

/// DejaVu Sans (its licence is `assets/DejaVuSans.LICENSE`), embedded so that the PNG charts have
/// their labels on any machine, fonts installed or not.
static FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

fn register_font() -> Result<(), Error> {
    static DONE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", plotters::style::FontStyle::Normal, FONT)
            .is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(Error::Msg(
            "the embedded chart font (DejaVu Sans) could not be loaded".into(),
        ))
    }
}

/// Writes `PREFIX.svg` and `PREFIX.png` (both with labels and legend); with several units, one such pair per unit
/// (`PREFIX-gflops.svg`, ...). Returns the paths written.
pub fn chart(
    files: &[(String, ResultFile)],
    prefix: &Path,
    only: &[String],
) -> Result<Vec<PathBuf>, Error> {
    register_font()?;
    let by_unit = lines(files, only);
    if by_unit.is_empty() {
        return Err(Error::Msg(
            "nothing to chart: no row has a seq_len and a rate metric (…/s)".into(),
        ));
    }
    let mut written = Vec::new();
    for (unit, ls) in &by_unit {
        let stem = if by_unit.len() == 1 {
            prefix.to_path_buf()
        } else {
            let name = prefix
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            prefix.with_file_name(format!("{name}-{}", unit_slug(unit)))
        };
        // Appended, not `with_extension`: a prefix may contain a dot (`qwen2-0.5b`).
        let (svg, png) = (
            PathBuf::from(format!("{}.svg", stem.display())),
            PathBuf::from(format!("{}.png", stem.display())),
        );
        draw(
            SVGBackend::new(&svg, (1000, 640)).into_drawing_area(),
            ls,
            unit,
        )
        .map_err(|m| Error::Msg(format!("{}: {m}", svg.display())))?;
        draw(
            BitMapBackend::new(&png, (1000, 640)).into_drawing_area(),
            ls,
            unit,
        )
        .map_err(|m| Error::Msg(format!("{}: {m}", png.display())))?;
        written.extend([png, svg]);
    }
    Ok(written)
}

pub fn run(a: Args) -> CmdResult {
    let mut files = Vec::new();
    let mut by_weights = a.by_weights;
    for p in &a.files {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        let name = p.display().to_string();
        let v: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(&name, "(json)", e.to_string()))?;
        let f = if llama_bench::is_llama_bench(&v) {
            if !by_weights {
                eprintln!("compare: {name} is llama-bench output: rows line up by weight format (--by-weights)");
                by_weights = true;
            }
            llama_bench::parse(&v, &name)?
        } else {
            ResultFile::parse(&text, &name)?
        };
        let name = p
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        files.push((name, f));
    }
    let t = table(&files, a.baseline, by_weights)?;
    match &a.out {
        Some(p) => std::fs::write(p, &t).map_err(|e| Error::io(p, e))?,
        None => print!("{t}"),
    }
    if let Some(prefix) = &a.chart {
        for p in chart(&files, prefix, &a.chart_only)? {
            eprintln!("compare: wrote {}", p.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}
