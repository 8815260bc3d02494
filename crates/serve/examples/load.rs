//! A small load client for `foveate serve` (or any OpenAI-compatible server): easy-VQA questions
//! (image as a data: URL, greedy, the task's 8-token budget) sent by C client threads at once, each
//! sending its next request as soon as the last one is answered. Reports requests/s and latency
//! percentiles per concurrency level, and checks every answer is a 200.
//!
//! ```text
//! cargo run --release -p foveate-serve --example load -- --url http://127.0.0.1:8080 \
//!     --model easyvqa-tiny --data eval/data/easy-vqa --concurrency 1,8,32 --requests 2000 [--json OUT]
//! ```

use base64::Engine;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Opts {
    url: String,
    model: String,
    data: String,
    levels: Vec<usize>,
    requests: usize,
    warmup: usize,
    json: Option<String>,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts {
        url: "http://127.0.0.1:8080".into(),
        model: String::new(),
        data: "eval/data/easy-vqa".into(),
        levels: vec![1, 8, 32],
        requests: 1000,
        warmup: 32,
        json: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--url" => o.url = val()?,
            "--model" => o.model = val()?,
            "--data" => o.data = val()?,
            "--concurrency" => {
                o.levels = val()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse()
                            .map_err(|_| format!("--concurrency: bad number `{s}`"))
                    })
                    .collect::<Result<_, _>>()?
            }
            "--requests" => o.requests = val()?.parse().map_err(|_| "--requests: a number")?,
            "--warmup" => o.warmup = val()?.parse().map_err(|_| "--warmup: a number")?,
            "--json" => o.json = Some(val()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if o.model.is_empty() {
        return Err("--model NAME (the served model) is required".into());
    }
    Ok(o)
}

/// Request bodies for the first `n` questions of the split.
fn bodies(o: &Opts, n: usize) -> Result<Vec<Vec<u8>>, String> {
    let root = std::path::Path::new(&o.data).join("test");
    let text = std::fs::read_to_string(root.join("questions.json"))
        .map_err(|e| format!("{}: {e}", root.display()))?;
    let qs: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let qs = qs.as_array().ok_or("questions.json: not a list")?;
    (0..n.min(qs.len()))
        .map(|i| {
            let q = &qs[i];
            let img = std::fs::read(root.join("images").join(format!("{}.png", q[2]))).map_err(|e| e.to_string())?;
            let url = format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(img));
            let content = json!([{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": q[0]}]);
            Ok(json!({"model": o.model, "messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0}).to_string().into_bytes())
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1]
}

/// Sends `n` requests (cycling through `bodies`) from `c` threads; latencies in ms, wall seconds, errors.
fn level(
    agent: &ureq::Agent,
    url: &str,
    bodies: &[Vec<u8>],
    c: usize,
    n: usize,
) -> (Vec<f64>, f64, usize) {
    let next = AtomicUsize::new(0);
    let errors = AtomicUsize::new(0);
    let t0 = Instant::now();
    let mut lat: Vec<f64> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..c)
            .map(|_| {
                s.spawn(|| {
                    let mut mine = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return mine;
                        }
                        let t = Instant::now();
                        let ok = match agent
                            .post(url)
                            .header("Content-Type", "application/json")
                            .send(&bodies[i % bodies.len()][..])
                        {
                            Ok(mut r) => {
                                r.status().as_u16() == 200 && r.body_mut().read_to_string().is_ok()
                            }
                            Err(_) => false,
                        };
                        if !ok {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                        mine.push(t.elapsed().as_secs_f64() * 1e3);
                    }
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let wall = t0.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (lat, wall, errors.load(Ordering::Relaxed))
}

fn main() {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let bodies = match bodies(&o, o.requests.max(o.warmup)) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    let max_c = o.levels.iter().copied().max().unwrap_or(1);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(300)))
        .http_status_as_error(false)
        .max_idle_connections(max_c + 4)
        .max_idle_connections_per_host(max_c + 4)
        .build()
        .into();
    let url = format!(
        "{}/v1/chat/completions",
        o.url.trim_end_matches('/').trim_end_matches("/v1")
    );
    let (_, _, e) = level(&agent, &url, &bodies, max_c, o.warmup);
    if e > 0 {
        eprintln!("error: {e} of {} warm-up requests failed", o.warmup);
        std::process::exit(1);
    }
    println!(
        "{:>11} {:>9} {:>10} {:>9} {:>9} {:>9} {:>7}",
        "concurrency", "requests", "req/s", "p50 ms", "p90 ms", "p99 ms", "errors"
    );
    let mut rows = Vec::new();
    for &c in &o.levels {
        let (lat, wall, errors) = level(&agent, &url, &bodies, c, o.requests);
        let rps = o.requests as f64 / wall;
        let (p50, p90, p99) = (
            percentile(&lat, 50.0),
            percentile(&lat, 90.0),
            percentile(&lat, 99.0),
        );
        println!(
            "{c:>11} {:>9} {rps:>10.1} {p50:>9.2} {p90:>9.2} {p99:>9.2} {errors:>7}",
            o.requests
        );
        rows.push(json!({"concurrency": c, "requests": o.requests, "wall_s": wall, "requests_per_s": rps, "p50_ms": p50, "p90_ms": p90, "p99_ms": p99, "errors": errors}));
    }
    if let Some(p) = &o.json {
        let v = json!({"url": o.url, "model": o.model, "levels": rows});
        if let Err(e) = std::fs::write(p, serde_json::to_string_pretty(&v).unwrap() + "\n") {
            eprintln!("error: {p}: {e}");
            std::process::exit(1);
        }
    }
}
