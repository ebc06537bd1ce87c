//! Talking to the hub: joining, and later the MQTT link and the agent's main loop.

mod join;

pub use join::{JoinError, join};
