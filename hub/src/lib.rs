//! Skiff hub: the API server, the SQLite store, the scheduler and controllers, and the
//! `skiff` CLI, as a library with thin binaries.
#![forbid(unsafe_code)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod controllers;
pub mod dispatch;
pub mod join;
pub mod nodes;
pub mod registry;
pub mod scheduler;
pub mod server;
pub mod store;
pub mod stream;
