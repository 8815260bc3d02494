//! foveate-cuda (in progress)
