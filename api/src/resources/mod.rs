//! The resource kinds: each file holds one kind (or a family) with its spec and status.

mod core;
mod event;
mod namespace;
mod node;
mod pod;
mod service;
mod workloads;

pub use self::core::*;
pub use event::*;
pub use namespace::*;
pub use node::*;
pub use pod::*;
pub use service::*;
pub use workloads::*;
