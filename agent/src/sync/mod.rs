//! Talking to the hub: joining, the MQTT link, and the agent's main loop that ties the
//! link, the state database, the reconciler and the runtime together.

mod agent;
mod backoff;
mod join;
mod link;
mod worker;

pub use agent::NodeAgent;
pub use join::{JoinError, join};
pub use link::{AckToken, HubLink, LinkCounters, LinkError, LinkEvent, MqttLink, Seq};
