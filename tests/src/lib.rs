//! Shared helpers for duet integration tests.
