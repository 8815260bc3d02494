//! What the server tests share: a server on 127.0.0.1 with an ephemeral port, a plain HTTP/1.1
//! client over a `TcpStream` (so a test can also send broken requests and hang up mid-stream),
//! request bodies with easy-VQA images.
#![allow(dead_code)]

use base64::Engine;
use foveate_core::Backend;
use foveate_graph::AttentionKind;
use foveate_models::{Model, ModelOptions};
use foveate_serve::{ServeOptions, Server};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn tiny_model_dir() -> PathBuf {
    repo().join("eval/models/easyvqa-tiny")
}

pub fn load(dir: &Path) -> foveate_core::Result<Model> {
    let backend: Arc<dyn Backend> = Arc::new(foveate_cpu::CpuBackend::fast());
    Model::load(
        dir,
        backend,
        ModelOptions {
            dtype: foveate_core::DType::F32,
            attention: AttentionKind::Flash,
            weights: None,
            kv: None,
        },
    )
}

/// A server for the model in `dir`, on an ephemeral port, named `tiny`.
pub fn start(dir: &Path, tune: impl FnOnce(&mut ServeOptions)) -> Server {
    let mut o = ServeOptions::new("tiny");
    o.port = 0;
    o.http_threads = 2;
    tune(&mut o);
    let dir = dir.to_path_buf();
    foveate_serve::start(o, Box::new(move || load(&dir))).expect("the server starts")
}

/// A scratch folder for this test process.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("foveate-serve-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// An HTTP response: status, headers (lower-cased names) and the body (de-chunked).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one request with `Connection: close` and reads the whole response.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    // A server may answer (413) and close before it read all of a large body.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let read = s.read_to_end(&mut raw);
    // An error after a whole reply (a reset once the server closed) still leaves the reply to check.
    assert!(
        !raw.is_empty(),
        "no reply to {method} {path} from {addr}: {read:?}"
    );
    parse(&raw)
}

pub fn parse(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head in {:?}", String::from_utf8_lossy(raw)));
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status code");
    let headers = head.to_lowercase();
    let mut body = raw[split + 4..].to_vec();
    if headers.contains("transfer-encoding: chunked") {
        body = dechunk(&body);
    }
    Resp {
        status,
        headers,
        body,
    }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        let start = eol + 2;
        out.extend_from_slice(&b[start..(start + n).min(b.len())]);
        b = &b[(start + n + 2).min(b.len())..];
    }
    out
}

pub fn post(addr: SocketAddr, body: &Value) -> Resp {
    http(
        addr,
        "POST",
        "/v1/chat/completions",
        body.to_string().as_bytes(),
    )
}

pub fn get(addr: SocketAddr, path: &str) -> Value {
    let r = http(addr, "GET", path, b"");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

pub fn data_url(bytes: &[u8], mime: &str) -> String {
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

/// easy-VQA test question `i`: (question, answer, image path).
pub fn question(i: usize) -> (String, String, PathBuf) {
    let root = repo().join("eval/data/easy-vqa/test");
    let qs: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("questions.json")).unwrap())
            .unwrap();
    let q = &qs[i];
    let img = root.join("images").join(format!("{}.png", q[2]));
    (
        q[0].as_str().unwrap().to_string(),
        q[1].as_str().unwrap().to_string(),
        img,
    )
}

/// A greedy chat request: one user turn, the image first, then the text.
pub fn chat(image_url: Option<&str>, text: &str, max_tokens: usize) -> Value {
    let mut content = Vec::new();
    if let Some(u) = image_url {
        content.push(json!({"type": "image_url", "image_url": {"url": u}}));
    }
    content.push(json!({"type": "text", "text": text}));
    json!({"model": "tiny", "messages": [{"role": "user", "content": content}], "max_tokens": max_tokens, "temperature": 0})
}

/// The request for easy-VQA question `i`, its image as a data: URL.
pub fn vqa_request(i: usize) -> Value {
    let (q, _, img) = question(i);
    chat(
        Some(&data_url(&std::fs::read(img).unwrap(), "image/png")),
        &q,
        8,
    )
}

/// The answer text of a 200 response.
pub fn content(r: &Resp) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["choices"][0]["message"]["content"]
        .as_str()
        .expect("content")
        .to_string()
}

/// The in-process answer to easy-VQA question `i` (greedy, the checkpoint's stop tokens), and the
/// number of prompt tokens.
pub fn in_process(m: &Model, i: usize, max: usize) -> (String, usize, usize) {
    let (q, _, img) = question(i);
    let req = foveate_models::Request {
        input_ids: m.tokenize(&q, true, true).unwrap(),
        pixels: Some(m.load_image(img).unwrap()),
    };
    let g = m.generate_one(&req, &m.default_params(max)).unwrap();
    let n = g.tokens.len();
    let mut t = g.tokens;
    if g.stopped_on_token {
        t.pop();
    }
    (m.decode_text(&t).unwrap(), req.input_ids.len(), n)
}

/// Asserts an OpenAI-style error: the status, `error.type`, and `error.code`.
pub fn assert_error(r: &Resp, status: u16, kind: &str, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["type"], kind, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    v
}
