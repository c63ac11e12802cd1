//! The fetch built-in against local sources.
