//! foveate-serve: an OpenAI-compatible HTTP server over foveate's continuous batcher.
//!
//! * [`http`]: axum routes (`POST /v1/chat/completions` with JSON or SSE answers, `GET /v1/models`,
//!   `GET /health`), stop strings, usage counts;
//! * [`request`]: the request body checked field by field; images (data: URLs, or `file://` under
//!   `--allow-file-urls`) decoded and preprocessed with the checkpoint's processor; the model's own
//!   chat template over the messages;
//! * [`worker`]: the model thread, which owns the batcher; concurrent requests share its forwards;
//! * [`error`]: OpenAI-style JSON errors (4xx for the request's faults: 413 for size limits, 429
//!   when the queue is full; 5xx for the server's).
//!
//! [`start`] loads the model on its own thread (a GPU context stays on the thread that made it),
//! binds the address and serves on a tokio runtime until [`Server::shutdown`] (or Ctrl-C with
//! [`ServeOptions::ctrl_c`]).

pub mod error;
pub mod http;
pub mod request;
pub mod worker;

use foveate_core::{Error, Result};
use foveate_models::Model;
use request::{Frontend, Limits};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// How to serve (each field a `foveate serve` flag).
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0: an ephemeral port ([`Server::addr`] says which).
    pub port: u16,
    /// The `model` name clients send (default: the checkpoint folder's name).
    pub served_model_name: String,
    /// Requests decoding together in the continuous batch.
    pub batch_size: usize,
    /// Requests accepted and waiting for a slot (being read, or queued); one more gets a 429.
    pub max_queue: usize,
    /// Largest request body; a larger one gets a 413.
    pub max_body_bytes: usize,
    pub limits: Limits,
    /// The attention variant's name, for the engine report.
    pub attention: String,
    /// Threads of the HTTP runtime (request parsing and image decoding run on its blocking pool).
    pub http_threads: usize,
    /// Stop on Ctrl-C (the CLI); tests stop with [`Server::shutdown`].
    pub ctrl_c: bool,
    /// Sleep after each request's decode step: only for tests that need a slow generation.
    pub step_pause: Option<Duration>,
}

impl ServeOptions {
    pub fn new(served_model_name: impl Into<String>) -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            served_model_name: served_model_name.into(),
            batch_size: 16,
            max_queue: 256,
            max_body_bytes: 20 << 20,
            limits: Limits {
                max_images: 1,
                max_image_pixels: 16_000_000,
                allow_file_urls: None,
            },
            attention: "flash".into(),
            http_threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .max(2),
            ctrl_c: false,
            step_pause: None,
        }
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    http: Option<JoinHandle<()>>,
    model: Option<JoinHandle<()>>,
    /// The model's side of the protocol card, as `GET /v1/models` reports it.
    pub card: Value,
}

impl Server {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://HOST:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Blocks until the server stops (Ctrl-C with [`ServeOptions::ctrl_c`]).
    pub fn wait(mut self) {
        self.join();
    }

    /// Stops accepting, lets requests in flight finish, stops the model thread.
    pub fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join();
    }

    fn join(&mut self) {
        if let Some(h) = self.http.take() {
            let _ = h.join();
        }
        if let Some(h) = self.model.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        self.join();
    }
}

/// Loads the model with `load` on the model thread, binds `host:port` and starts serving.
/// Returns once the server accepts connections (or with the load or bind error).
pub fn start(
    opts: ServeOptions,
    load: Box<dyn FnOnce() -> Result<Model> + Send>,
) -> Result<Server> {
    if opts.batch_size == 0 || opts.max_queue == 0 {
        return Err(Error::Msg(
            "--batch-size and --max-queue must be at least 1".into(),
        ));
    }
    if opts.limits.max_images > 1 {
        return Err(Error::Msg(format!(
            "--max-images {}: the runtime takes at most one image per request",
            opts.limits.max_images
        )));
    }
    let (queue_tx, queue_rx) = std::sync::mpsc::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(Arc<Model>, Value)>>();
    let stats = Arc::new(worker::Stats::default());
    let (batch, pause, st) = (opts.batch_size, opts.step_pause, stats.clone());
    // The model runs on a worker of a rayon pool of its own (as many threads as the global pool;
    // the cpu backend's parallel loops run on the pool they are called from): its parallel ops
    // then start where it runs instead of waking a worker and sleeping (easy-VQA at concurrency 32
    // on 2 cores: 351-428 -> 904-1016 req/s, docs/BENCHMARKS.md). Its own pool, not the global
    // one, because it blocks a worker while the queue is empty: servers sharing a process (the
    // tests) would otherwise take every global worker and wait on each other.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(rayon::current_num_threads())
        .thread_name(|i| format!("foveate-model-{i}"))
        .build()
        .map_err(|e| Error::Msg(format!("cannot start the model's thread pool: {e}")))?;
    let model_thread = std::thread::Builder::new()
        .name("foveate-model".into())
        .spawn(move || {
            pool.install(|| {
                let loaded = load().and_then(|m| {
                    let card = foveate_models::protocol::model_card(&m)?;
                    Ok((Arc::new(m), card))
                });
                let model = match loaded {
                    Ok((m, card)) => {
                        let _ = ready_tx.send(Ok((m.clone(), card)));
                        m
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                worker::serve_queue(&model, batch, queue_rx, &st, pause);
            })
        })
        .map_err(|e| Error::Msg(format!("cannot start the model thread: {e}")))?;
    let (model, card) = ready_rx
        .recv()
        .map_err(|_| Error::Msg("the model thread stopped while loading".into()))??;
    let mut limits = opts.limits.clone();
    if let Some(dir) = &limits.allow_file_urls {
        limits.allow_file_urls = Some(std::fs::canonicalize(dir).map_err(|e| Error::io(dir, e))?);
    }
    let app = Arc::new(http::App {
        engine: foveate_models::protocol::engine_json(
            &model,
            "server",
            &opts.attention,
            opts.batch_size,
        ),
        front: Frontend::new(model, opts.served_model_name.clone(), limits)?,
        queue: queue_tx,
        stats,
        max_queue: opts.max_queue,
        max_body_bytes: opts.max_body_bytes,
        card: card.clone(),
        created: http::now(),
        ids: AtomicU64::new(1),
    });
    let listener = listen(&opts.host, opts.port)
        .map_err(|e| Error::Msg(format!("cannot listen on {}:{}: {e}", opts.host, opts.port)))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Msg(format!("listener: {e}")))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::Msg(format!("listener: {e}")))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.http_threads.max(1))
        .thread_name("foveate-http")
        .enable_all()
        .build()
        .map_err(|e| Error::Msg(format!("cannot start the HTTP runtime: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ctrl_c = opts.ctrl_c;
    let http_thread = std::thread::Builder::new()
        .name("foveate-http-main".into())
        .spawn(move || {
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => l,
                    Err(e) => return eprintln!("error: listener: {e}"),
                };
                let stopped = async move {
                    if ctrl_c {
                        tokio::select! { _ = stop_rx => {}, _ = tokio::signal::ctrl_c() => {} }
                    } else {
                        let _ = stop_rx.await;
                    }
                };
                if let Err(e) = axum::serve(listener, http::router(app))
                    .with_graceful_shutdown(stopped)
                    .await
                {
                    eprintln!("error: the HTTP server stopped: {e}");
                }
            });
            // Requests still streaming are cut here; the app (and with it the queue's sender)
            // is dropped, so the model thread ends once its batch is done.
            rt.shutdown_timeout(Duration::from_secs(5));
        })
        .map_err(|e| Error::Msg(format!("cannot start the HTTP thread: {e}")))?;
    Ok(Server {
        addr,
        stop: Some(stop_tx),
        http: Some(http_thread),
        model: Some(model_thread),
        card,
    })
}

/// Connections the kernel holds completed for us before we accept them. `std`'s `bind` asks for
/// 128: a burst of a thousand clients overflowed that (the kernel's `ListenOverflows` counter rose
/// by 24 in one run of `a_thousand_requests_at_once_get_answers_or_429`, and on a loaded CI machine
/// some of the dropped handshakes ended in resets: empty replies instead of 200 or 429). The kernel
/// caps this at `net.core.somaxconn` (4096 by default since Linux 5.4).
const LISTEN_BACKLOG: i32 = 4096;

/// Binds `host:port` (the first address it resolves to that binds) with [`LISTEN_BACKLOG`].
fn listen(host: &str, port: u16) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    use std::net::ToSocketAddrs;
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        let bound = Socket::new(Domain::for_address(addr), Type::STREAM, None).and_then(|s| {
            // As std does on Unix: a restarted server can take its port back from TIME_WAIT.
            #[cfg(unix)]
            s.set_reuse_address(true)?;
            s.bind(&addr.into())?;
            s.listen(LISTEN_BACKLOG)?;
            Ok(s)
        });
        match bound {
            Ok(s) => return Ok(s.into()),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the host resolves to no address",
        )
    }))
}
