//! foveate-graph (in progress)
