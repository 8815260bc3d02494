//! The model thread: owns the continuous batcher ([`foveate_graph::run_continuous`]) and feeds it
//! from the request queue. HTTP handlers send [`Job`]s over a channel and read [`Event`]s back;
//! concurrent requests share every forward pass. A request whose receiver is gone (the client
//! disconnected, or a stop string ended it) leaves the batch at the next step.
//!
//! A failure of the batch as a whole (a device error) fails the requests in flight with a 500 and
//! the loop starts again; a request whose image the tower cannot take fails alone.

use foveate_graph::{run_continuous, Admitted, GenerateParams, Generation, Scheduler};
use foveate_models::{Model, Request};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// What the model thread tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// Tokens generated since the last event (sent only when the handler asked for them).
    Tokens(Vec<u32>),
    /// Finished: every generated token (a stop token last when `stopped_on_token`).
    Done {
        tokens: Vec<u32>,
        stopped_on_token: bool,
    },
    /// The server could not run it (the message says why).
    Failed(String),
}

/// Counters for `GET /health`.
#[derive(Default)]
pub struct Stats {
    /// Accepted and not yet admitted into the batch (bounded by `--max-queue`).
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub finished: AtomicUsize,
    /// Left the batch early: the client went away, or a stop string ended it.
    pub dropped: AtomicUsize,
    pub failed: AtomicUsize,
    /// Refused with a 4xx.
    pub rejected: AtomicUsize,
}

/// A place in the queue: counted in [`Stats::queued`] until dropped (admitted, or refused on the way).
pub struct Ticket(Arc<Stats>);

impl Ticket {
    /// Takes a place if fewer than `max` are taken.
    pub fn take(stats: &Arc<Stats>, max: usize) -> Option<Ticket> {
        let mut cur = stats.queued.load(Ordering::Relaxed);
        loop {
            if cur >= max {
                return None;
            }
            match stats.queued.compare_exchange_weak(
                cur,
                cur + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(Ticket(stats.clone())),
                Err(now) => cur = now,
            }
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One request for the model thread.
pub struct Job {
    pub request: Request,
    pub params: GenerateParams,
    /// Send [`Event::Tokens`] after every step (streaming, or stop strings to check).
    pub want_tokens: bool,
    pub events: UnboundedSender<Event>,
    pub ticket: Ticket,
}

struct Live {
    events: UnboundedSender<Event>,
    want_tokens: bool,
    sent: usize,
}

struct Batcher<'a> {
    model: &'a Model,
    queue: &'a Receiver<Job>,
    stats: &'a Stats,
    /// By admission index within the current [`run_continuous`] call.
    live: HashMap<usize, Live>,
    admitted: usize,
    step_pause: Option<Duration>,
}

impl Batcher<'_> {
    fn set_running(&self) {
        self.stats.running.store(self.live.len(), Ordering::Relaxed);
    }

    /// Prompt inputs of a group (its images through the tower as one batch); when that fails,
    /// one at a time so only the request at fault fails.
    fn prompts(&mut self, jobs: Vec<Job>) -> Vec<(Job, foveate_graph::PromptInput)> {
        let m = self.model;
        let inputs = jobs
            .iter()
            .map(|j| (j.request.input_ids.clone(), j.request.pixels.as_ref()))
            .collect();
        if let Ok(p) = m.arch.prompts(&m.ex, inputs) {
            return jobs.into_iter().zip(p).collect();
        }
        let mut out = Vec::with_capacity(jobs.len());
        for j in jobs {
            match m.arch.prompt(
                &m.ex,
                j.request.input_ids.clone(),
                j.request.pixels.as_ref(),
            ) {
                Ok(p) => out.push((j, p)),
                Err(e) => {
                    self.stats.failed.fetch_add(1, Ordering::Relaxed);
                    let _ = j.events.send(Event::Failed(format!(
                        "the model could not take this request: {e}"
                    )));
                }
            }
        }
        out
    }
}

impl Scheduler for Batcher<'_> {
    fn admit(&mut self, free: usize, idle: bool) -> foveate_core::Result<Option<Vec<Admitted>>> {
        let mut jobs = Vec::new();
        if idle {
            match self.queue.recv() {
                Ok(j) => jobs.push(j),
                Err(_) => return Ok(None),
            }
        }
        while jobs.len() < free {
            match self.queue.try_recv() {
                Ok(j) => jobs.push(j),
                Err(TryRecvError::Empty) | Err(TryRecvError::Disconnected) => break,
            }
        }
        // A client that left while waiting is not run at all.
        let (gone, jobs): (Vec<Job>, Vec<Job>) =
            jobs.into_iter().partition(|j| j.events.is_closed());
        self.stats.dropped.fetch_add(gone.len(), Ordering::Relaxed);
        if jobs.is_empty() {
            return Ok(Some(Vec::new()));
        }
        let mut out = Vec::with_capacity(jobs.len());
        for (j, prompt) in self.prompts(jobs) {
            let Job {
                params,
                want_tokens,
                events,
                ticket,
                ..
            } = j;
            drop(ticket);
            self.live.insert(
                self.admitted + out.len(),
                Live {
                    events,
                    want_tokens,
                    sent: 0,
                },
            );
            out.push(Admitted { prompt, params });
        }
        self.admitted += out.len();
        self.set_running();
        Ok(Some(out))
    }

    fn progress(&mut self, index: usize, tokens: &[u32]) -> bool {
        let Some(l) = self.live.get_mut(&index) else {
            return false;
        };
        let keep = !l.events.is_closed()
            && (!l.want_tokens || tokens.len() <= l.sent || {
                let ok = l
                    .events
                    .send(Event::Tokens(tokens[l.sent..].to_vec()))
                    .is_ok();
                l.sent = tokens.len();
                ok
            });
        if !keep {
            self.live.remove(&index);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            self.set_running();
        }
        if let Some(p) = self.step_pause {
            std::thread::sleep(p);
        }
        keep
    }

    fn done(&mut self, index: usize, g: Generation) -> foveate_core::Result<()> {
        if let Some(l) = self.live.remove(&index) {
            let _ = l.events.send(Event::Done {
                tokens: g.tokens,
                stopped_on_token: g.stopped_on_token,
            });
            self.stats.finished.fetch_add(1, Ordering::Relaxed);
        }
        self.set_running();
        Ok(())
    }
}

/// Serves the queue until every sender is gone. `step_pause` sleeps after each request's step
/// (tests use it to make a generation slow enough to disconnect from).
pub fn serve_queue(
    model: &Model,
    max_batch: usize,
    queue: Receiver<Job>,
    stats: &Stats,
    step_pause: Option<Duration>,
) {
    loop {
        let mut b = Batcher {
            model,
            queue: &queue,
            stats,
            live: HashMap::new(),
            admitted: 0,
            step_pause,
        };
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_continuous(&model.ex, model.arch.text(), max_batch, &mut b)
        }));
        let why = match r {
            Ok(Ok(())) => return,
            Ok(Err(e)) => format!("the batch failed: {e}"),
            Err(_) => "the batch failed: internal error (a bug in foveate; see the server log)"
                .to_string(),
        };
        eprintln!(
            "foveate serve: {why}; {} request(s) in flight failed, serving on",
            b.live.len()
        );
        for (_, l) in b.live.drain() {
            stats.failed.fetch_add(1, Ordering::Relaxed);
            let _ = l.events.send(Event::Failed(why.clone()));
        }
        stats.running.store(0, Ordering::Relaxed);
    }
}
