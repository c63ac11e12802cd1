//! The notify built-in against local channels.
