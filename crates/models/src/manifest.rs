//! The tensors a model reads, with their shapes: what its builder asks for, recorded by a
//! [`Recorder`] (so the list is never written out by hand a second time).

use crate::arch::ArchConfig;
pub use crate::vars::Entry;
use crate::vars::Recorder;

fn record(cfg: &dyn ArchConfig, all_layers: bool) -> Vec<Entry> {
    let mut r = Recorder::default();
    // A recorder hands out placeholders and never fails; a builder error is a bug in the builder.
    cfg.build(&mut r, all_layers)
        .expect("a builder over a recorder cannot fail");
    r.entries
}

/// Everything the model reads (a vision tower's layers up to the feature layer), in load order.
pub fn all(cfg: &dyn ArchConfig) -> Vec<Entry> {
    record(cfg, false)
}

/// Everything a checkpoint of this config holds (every layer, also those past the feature layer).
pub fn stored(cfg: &dyn ArchConfig) -> Vec<Entry> {
    record(cfg, true)
}
