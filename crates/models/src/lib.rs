//! foveate-models (in progress)
