//! foveate-eval (in progress)
