//! foveate-testkit (in progress)
