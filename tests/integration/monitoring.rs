//! The monitoring stack in config/: validation and alerts end to end.
