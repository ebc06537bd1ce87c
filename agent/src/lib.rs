//! Skiff's agent: joins the hub, keeps the pods the hub binds to this node running,
//! and reports their status. Desired state is persisted before it is acted on, so the
//! agent keeps (and after a restart, brings back) its pods while the hub is away.

pub mod config;
pub mod image;
pub mod node;
pub mod probe;
pub mod reconcile;
mod run;
pub mod runtime;
pub mod state;
pub mod stream;
pub mod sync;

pub use config::{AgentConfig, Args, ConfigError, RuntimeKind};
pub use run::{RunError, run, simulated_name};
