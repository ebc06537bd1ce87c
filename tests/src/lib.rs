//! Helpers for Skiff's end-to-end tests and benchmarks.
