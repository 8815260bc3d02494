//! Every bad request of the list, over real HTTP against a real server on 127.0.0.1 (an
//! ephemeral port): each gets a JSON error with an OpenAI-style `error.type` and a 4xx status
//! (413 for size limits, 429 when the queue is full), and afterwards the server still answers a
//! good request with the same answer the model gives in-process.

mod common;
use common::*;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The server still serves: health, and a good request answered as in-process.
fn still_serving(addr: SocketAddr, m: &foveate_models::Model) {
    assert_eq!(get(addr, "/health")["status"], "ok");
    let (want, _, _) = in_process(m, 3, 8);
    assert_eq!(content(&post(addr, &vqa_request(3))), want);
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let files = scratch("files");
    let inside = files.join("shape.png");
    std::fs::copy(question(0).2, &inside).unwrap();
    let server = start(&tiny_model_dir(), |o| {
        o.max_body_bytes = 256 << 10;
        o.limits.max_image_pixels = 1_000_000;
        o.limits.allow_file_urls = Some(files.clone());
    });
    let addr = server.addr();
    let m = load(&tiny_model_dir()).unwrap();
    let png = std::fs::read(question(0).2).unwrap();
    let good = data_url(&png, "image/png");
    let body = |v: Value| v.to_string().into_bytes();
    let chat_path = "/v1/chat/completions";

    // Malformed JSON, and JSON that is not an object.
    for raw in [
        &b"{\"model\": \"tiny\", \"messages\": ["[..],
        b"",
        b"[1, 2]",
        b"\xff\xfe",
    ] {
        assert_error(
            &http(addr, "POST", chat_path, raw),
            400,
            "invalid_request_error",
            "invalid_json",
        );
    }
    // Unknown fields, at the top, in a message, in a part, in image_url.
    let mut v = chat(None, "hi", 4);
    v["temperatur"] = json!(0.5);
    let e = assert_error(
        &post(addr, &v),
        400,
        "invalid_request_error",
        "unknown_field",
    );
    assert_eq!(e["error"]["param"], "temperatur");
    let mut v = chat(None, "hi", 4);
    v["messages"][0]["tool_calls"] = json!([]);
    let e = assert_error(
        &post(addr, &v),
        400,
        "invalid_request_error",
        "unknown_field",
    );
    assert_eq!(e["error"]["param"], "messages[0].tool_calls");
    let mut v = chat(Some(&good), "hi", 4);
    v["messages"][0]["content"][0]["image_url"]["format"] = json!("png");
    let e = assert_error(
        &post(addr, &v),
        400,
        "invalid_request_error",
        "unknown_field",
    );
    assert_eq!(
        e["error"]["param"],
        "messages[0].content[0].image_url.format"
    );
    // Wrong or missing model; bad values.
    let mut v = chat(None, "hi", 4);
    v["model"] = json!("gpt-4o");
    assert_error(&post(addr, &v), 404, "not_found_error", "model_not_found");
    let mut v = chat(None, "hi", 4);
    v.as_object_mut().unwrap().remove("model");
    assert_error(
        &post(addr, &v),
        400,
        "invalid_request_error",
        "invalid_value",
    );
    for (field, val) in [
        ("temperature", json!(7)),
        ("top_p", json!(0)),
        ("n", json!(2)),
        ("max_tokens", json!(0)),
        ("stop", json!(["a", "b", "c", "d", "e"])),
        ("messages", json!([])),
    ] {
        let mut v = chat(None, "hi", 4);
        v[field] = val;
        let e = assert_error(
            &post(addr, &v),
            400,
            "invalid_request_error",
            "invalid_value",
        );
        assert_eq!(e["error"]["param"], field, "{e}");
    }
    let mut v = chat(None, "hi", 4);
    v["messages"][0]["role"] = json!("tool");
    assert_error(
        &post(addr, &v),
        400,
        "invalid_request_error",
        "invalid_value",
    );
    // Text may not smuggle image tokens in.
    assert_error(
        &post(addr, &chat(None, "<image> what?", 4)),
        400,
        "invalid_request_error",
        "invalid_value",
    );

    // Broken images: not an image, a truncated PNG, bad base64, an unsupported type, a remote URL.
    let e = assert_error(
        &post(
            addr,
            &chat(
                Some(&data_url(b"this is not a picture", "image/png")),
                "q",
                4,
            ),
        ),
        400,
        "invalid_request_error",
        "invalid_image",
    );
    assert_eq!(e["error"]["param"], "messages[0].content[0].image_url");
    assert_error(
        &post(
            addr,
            &chat(Some(&data_url(&png[..png.len() / 2], "image/png")), "q", 4),
        ),
        400,
        "invalid_request_error",
        "invalid_image",
    );
    assert_error(
        &post(
            addr,
            &chat(Some("data:image/png;base64,@@@not base64@@@"), "q", 4),
        ),
        400,
        "invalid_request_error",
        "invalid_image",
    );
    assert_error(
        &post(addr, &chat(Some(&data_url(&png, "image/gif")), "q", 4)),
        400,
        "invalid_request_error",
        "invalid_image",
    );
    assert_error(
        &post(addr, &chat(Some("https://example.com/cat.png"), "q", 4)),
        400,
        "invalid_request_error",
        "invalid_image",
    );
    // Local files: only under --allow-file-urls.
    assert_error(
        &post(addr, &chat(Some("file:///etc/passwd"), "q", 4)),
        400,
        "invalid_request_error",
        "file_url_not_allowed",
    );
    let escape = format!("file://{}/../../etc/passwd", files.display());
    assert_error(
        &post(addr, &chat(Some(&escape), "q", 4)),
        400,
        "invalid_request_error",
        "file_url_not_allowed",
    );
    let via_file = post(
        addr,
        &chat(
            Some(&format!("file://{}", inside.display())),
            &question(0).0,
            8,
        ),
    );
    assert_eq!(content(&via_file), in_process(&m, 0, 8).0);

    // Huge: a body over --max-body-bytes, and an image whose header declares too many pixels.
    let big = chat(Some(&data_url(&vec![0u8; 300 << 10], "image/png")), "q", 4);
    let e = assert_error(
        &http(addr, "POST", chat_path, &body(big)),
        413,
        "invalid_request_error",
        "body_too_large",
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-body-bytes"),
        "{e}"
    );
    let bomb = foveate_models::synth::png_header(40_000, 40_000);
    let e = assert_error(
        &post(addr, &chat(Some(&data_url(&bomb, "image/png")), "q", 4)),
        413,
        "invalid_request_error",
        "image_too_large",
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--max-image-pixels"),
        "{e}"
    );
    // Too many images.
    let mut two = chat(Some(&good), "q", 4);
    two["messages"][0]["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "image_url", "image_url": {"url": good}}));
    assert_error(
        &post(addr, &two),
        400,
        "invalid_request_error",
        "too_many_images",
    );
    // A prompt over the context window (128 tokens for the tiny model), and a budget over it.
    let long = "what is the color of the shape? ".repeat(40);
    let e = assert_error(
        &post(addr, &chat(Some(&good), &long, 4)),
        400,
        "invalid_request_error",
        "context_length_exceeded",
    );
    assert!(
        e["error"]["message"]
            .as_str()
            .unwrap()
            .contains("context window of 128"),
        "{e}"
    );
    assert_error(
        &post(addr, &chat(Some(&good), "what shape?", 500)),
        400,
        "invalid_request_error",
        "context_length_exceeded",
    );
    // Routes and methods.
    let r = http(addr, "GET", "/v2/nothing", b"");
    assert_error(&r, 404, "not_found_error", "unknown_route");
    let r = http(addr, "GET", chat_path, b"");
    assert_error(&r, 405, "invalid_request_error", "method_not_allowed");
    // Every refusal above went through the chat route (404 and 405 do not) and was counted.
    let health = get(addr, "/health");
    assert_eq!(health["rejected"], 29, "{health}");
    assert_eq!(health["failed"], 0, "{health}");
    assert_eq!(health["finished"], 1, "{health}");
    // A client that sends half a body and hangs up.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        let _ = s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n{\"model\":");
    }
    still_serving(addr, &m);
    server.shutdown();
}

#[test]
fn a_thousand_requests_at_once_get_answers_or_429() {
    let server = start(&tiny_model_dir(), |o| {
        o.batch_size = 4;
        o.max_queue = 8;
    });
    let addr = server.addr();
    let req = vqa_request(1).to_string();
    let n = 1000;
    let results: Vec<(u16, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..n)
            .map(|_| {
                std::thread::Builder::new()
                    .stack_size(128 << 10)
                    .spawn_scoped(s, || {
                        let r = http(addr, "POST", "/v1/chat/completions", req.as_bytes());
                        (r.status, r.json())
                    })
                    .unwrap()
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let m = load(&tiny_model_dir()).unwrap();
    let (want, _, _) = in_process(&m, 1, 8);
    let (mut ok, mut busy) = (0, 0);
    for (status, v) in &results {
        match status {
            200 => {
                assert_eq!(v["choices"][0]["message"]["content"], want.as_str());
                ok += 1;
            }
            429 => {
                assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
                assert_eq!(v["error"]["code"], "queue_full", "{v}");
                busy += 1;
            }
            other => panic!("status {other}: {v}"),
        }
    }
    assert_eq!(ok + busy, n);
    assert!(ok >= 1 && busy >= 1, "{ok} answered, {busy} refused");
    let h = get(addr, "/health");
    assert_eq!(h["rejected"], busy, "{h}");
    assert_eq!(h["finished"], ok, "{h}");
    assert_eq!(h["queued"], 0, "{h}");
    eprintln!("1000 at once: {ok} answered, {busy} got 429");
    still_serving(addr, &m);
    server.shutdown();
}

/// Reads the response head and the first SSE `data:` line of a streaming request, then hangs up.
fn stream_then_hang_up(addr: SocketAddr, body: &Value) -> String {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let b = body.to_string();
    write!(s, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{b}", b.len()).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(
            r.read_line(&mut line).unwrap() > 0,
            "the stream ended before any data"
        );
        if line.starts_with("data:")
            && line.contains("content")
            && !line.contains("\"content\":\"\"")
        {
            return line;
        }
    }
}

#[test]
fn a_client_that_hangs_up_mid_stream_leaves_the_batch() {
    // A random model rarely emits its stop token, so its generations run to max_tokens; each
    // decode step is slowed down so the hang-up happens mid-generation.
    let dir = scratch("synth");
    foveate_models::synth::write_checkpoint(&dir, &foveate_models::synth::SynthSpec::default())
        .unwrap();
    let server = start(&dir, |o| o.step_pause = Some(Duration::from_millis(20)));
    let addr = server.addr();
    let mut req = chat(None, "what is the color of the cat ?", 200);
    req["stream"] = json!(true);
    let first = stream_then_hang_up(addr, &req);
    assert!(first.contains("chat.completion.chunk"), "{first}");
    // The request leaves the batch well before its 200 steps (4 s at 20 ms a step) would end.
    let t0 = Instant::now();
    loop {
        let h = get(addr, "/health");
        if h["running"] == 0 && h["dropped"] == 1 {
            assert_eq!(h["finished"], 0, "{h}");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(3),
            "the request is still running after the hang-up: {h}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // And the server serves the next one to the end.
    let r = post(addr, &chat(None, "what is the cat ?", 5));
    let v = r.json();
    assert_eq!(r.status, 200, "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    server.shutdown();
}
