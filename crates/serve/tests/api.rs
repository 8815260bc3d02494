//! The API over real HTTP against the shipped tiny model: answers equal the in-process model's
//! (alone and with concurrent requests sharing the batcher), streaming gives the same text in
//! chunks, usage counts are the token counts, stop strings cut the text, seeded sampling repeats
//! (on a random-weight model, whose next-token distribution is spread out),
//! `GET /v1/models` carries the protocol card.

mod common;
use common::*;
use serde_json::{json, Value};

/// The `data:` payloads of an SSE body.
fn events(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .map(|d| d.trim().to_string())
        .collect()
}

#[test]
fn answers_usage_streaming_and_stop_strings() {
    let server = start(&tiny_model_dir(), |_| {});
    let addr = server.addr();
    let m = load(&tiny_model_dir()).unwrap();

    // Greedy answers and usage as in-process.
    for i in [0, 5, 11] {
        let (want, prompt_tokens, generated) = in_process(&m, i, 8);
        let r = post(addr, &vqa_request(i));
        let v = r.json();
        assert_eq!(content(&r), want, "question {i}");
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["model"], "tiny");
        assert_eq!(v["choices"][0]["message"]["role"], "assistant");
        assert_eq!(
            v["choices"][0]["finish_reason"],
            if generated < 8 { "stop" } else { "length" },
            "{v}"
        );
        assert_eq!(v["usage"]["prompt_tokens"], prompt_tokens, "{v}");
        assert_eq!(v["usage"]["completion_tokens"], generated, "{v}");
        assert_eq!(v["usage"]["total_tokens"], prompt_tokens + generated, "{v}");
    }

    // Streaming: the same text in chunks, a finish chunk, usage when asked, [DONE].
    let (want, prompt_tokens, generated) = in_process(&m, 5, 8);
    let mut req = vqa_request(5);
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let r = post(addr, &req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers.contains("content-type: text/event-stream"),
        "{}",
        r.headers
    );
    let ev = events(&r.text());
    assert_eq!(ev.last().map(String::as_str), Some("[DONE]"), "{ev:?}");
    let chunks: Vec<Value> = ev[..ev.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, want);
    let finish: Vec<&Value> = chunks
        .iter()
        .filter(|c| !c["choices"][0]["finish_reason"].is_null())
        .collect();
    assert_eq!(finish.len(), 1, "{chunks:?}");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], prompt_tokens);
    assert_eq!(usage["usage"]["completion_tokens"], generated);

    // A stop string cuts the text before it, streamed or not.
    let (want, _, _) = in_process(&m, 0, 8);
    assert!(want.len() > 3, "{want}");
    let stop = want[2..4].to_string();
    let mut req = vqa_request(0);
    req["stop"] = json!([stop]);
    let v = post(addr, &req).json();
    assert_eq!(v["choices"][0]["message"]["content"], &want[..2], "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    req["stream"] = json!(true);
    let ev = events(&post(addr, &req).text());
    let text: String = ev
        .iter()
        .filter_map(|e| serde_json::from_str::<Value>(e).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(String::from)
        })
        .collect();
    assert_eq!(text, &want[..2]);

    // Messages as a plain string and a system turn go through the model's template.
    let r = post(
        addr,
        &json!({"model": "tiny", "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello"}], "max_tokens": 3, "temperature": 0}),
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The model list carries the protocol card (weights and template hashes) and the engine.
    let models = get(addr, "/v1/models");
    let entry = &models["data"][0];
    assert_eq!(entry["id"], "tiny");
    let card = &entry["foveate"]["protocol"];
    assert_eq!(card, &foveate_models::protocol::model_card(&m).unwrap());
    assert_eq!(card["weights"]["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(entry["foveate"]["engine"]["mode"], "server");
    server.shutdown();
}

#[test]
fn concurrent_requests_share_the_batcher_and_get_their_own_answers() {
    let server = start(&tiny_model_dir(), |o| o.batch_size = 8);
    let addr = server.addr();
    let m = load(&tiny_model_dir()).unwrap();
    let n = 24;
    let got: Vec<String> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..n)
            .map(|i| s.spawn(move || content(&post(addr, &vqa_request(i)))))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, &in_process(&m, i, 8).0, "question {i}");
    }
    let h = get(addr, "/health");
    assert_eq!(h["finished"], n, "{h}");
    assert_eq!(h["running"], 0, "{h}");
    server.shutdown();
}

#[test]
fn seeded_sampling_repeats_and_other_seeds_differ() {
    // Random weights: a spread-out next-token distribution, so sampling shows.
    let dir = scratch("synth-sampling");
    foveate_models::synth::write_checkpoint(&dir, &foveate_models::synth::SynthSpec::default())
        .unwrap();
    let server = start(&dir, |_| {});
    let addr = server.addr();
    let sampled = |seed: Option<u64>, t: f64| {
        let mut r = chat(None, "what is the color of the cat ?", 8);
        r["temperature"] = json!(t);
        r["top_p"] = json!(0.95);
        if let Some(s) = seed {
            r["seed"] = json!(s);
        }
        let v = post(addr, &r).json();
        assert_eq!(v["usage"]["completion_tokens"], 8, "{v}");
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let a = sampled(Some(11), 1.0);
    assert_eq!(a, sampled(Some(11), 1.0));
    let others: Vec<String> = (12..16).map(|s| sampled(Some(s), 1.0)).collect();
    assert!(
        others.iter().any(|o| o != &a),
        "four other seeds all gave {a:?}"
    );
    // Without a seed each request draws its own; greedy (temperature 0) ignores the seed.
    assert_ne!(sampled(None, 1.0), sampled(None, 1.0));
    assert_eq!(sampled(Some(1), 0.0), sampled(Some(2), 0.0));
    server.shutdown();
}
