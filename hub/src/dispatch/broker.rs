//! The embedded broker: rumqttd, MQTT 3.1.1, started on its own threads inside the hub.
//!
//! Every client logs in with a user name equal to its client id: a node with its node
//! name and the password it got at join, the hub itself with [`HUB_USERNAME`] and a
//! random password that lives only in this process. rumqttd has no topic ACLs; the
//! sealed frames are what keeps nodes apart (see docs/protocol.md). The broker runs
//! until the process exits: rumqttd has no way to stop it.

use std::net::{SocketAddr, TcpListener};

use rand::TryRngCore;
use rand::rngs::OsRng;
use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use skiff_api::protocol::MAX_PACKET;

use super::mqtt::{BrokerLogin, BrokerUrl};
use crate::join::Credentials;

/// The hub's own user name on the embedded broker. Not a valid node name (`_`), so no
/// node can claim it.
pub const HUB_USERNAME: &str = "_skiff-hub";

/// Agents the broker is sized for, plus room for the hub and reconnects in flight.
const MAX_AGENTS: usize = 10_000;

#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// Where to listen; port 0 picks a free port.
    pub listen: SocketAddr,
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("MQTT listen address {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the embedded MQTT broker: {0}")]
    Start(String),
    #[error("the operating system's random number generator failed: {0}")]
    Random(rand::rand_core::OsError),
}

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    hub_password: String,
}

impl EmbeddedBroker {
    /// Starts the broker on its own threads; it accepts connections moments later.
    pub fn start(
        options: &EmbeddedOptions,
        credentials: Credentials,
    ) -> Result<EmbeddedBroker, BrokerError> {
        // rumqttd binds inside its own thread and only logs a failure there; binding
        // here first turns "address in use" into a startup error, and resolves port 0.
        let probe = TcpListener::bind(options.listen).map_err(|source| BrokerError::Bind {
            addr: options.listen,
            source,
        })?;
        let addr = probe.local_addr().map_err(|source| BrokerError::Bind {
            addr: options.listen,
            source,
        })?;
        drop(probe);

        let mut secret = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut secret)
            .map_err(BrokerError::Random)?;
        let hub_password: String = secret.iter().map(|b| format!("{b:02x}")).collect();

        let mut connections = ConnectionSettings {
            connection_timeout_ms: 10_000,
            // rumqttd checks this against whole packets: a payload of MAX_PAYLOAD plus
            // MQTT headers must pass, anything larger is cut off at the broker.
            max_payload_size: MAX_PACKET,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        };
        let hub_pw = hub_password.clone();
        connections.set_auth_handler(move |client_id: String, user: String, pass: String| {
            let ok = client_id == user
                && if user == HUB_USERNAME {
                    crate::join::constant_time_eq(pass.as_bytes(), hub_pw.as_bytes())
                } else {
                    credentials.check_password(&user, &pass)
                };
            if !ok {
                tracing::info!(client_id = %client_id, user = %user, "MQTT login refused");
            }
            async move { ok }
        });
        let server = ServerSettings {
            name: "skiff".into(),
            listen: addr,
            tls: None,
            next_connection_delay_ms: 1,
            connections,
        };
        let config = Config {
            id: 0,
            router: RouterConfig {
                max_connections: MAX_AGENTS + 100,
                max_outgoing_packet_count: 200,
                // Every subscription filter keeps a log of what it matched, in segments,
                // dropping the oldest segment only when the count is exceeded: the
                // hub's `+/h` and `+/u` filters therefore always hold count × size
                // bytes of heartbeats and statuses, several times that in memory
                // (each message is its own topic and payload allocation). A segment
                // must hold the largest packet; two let a reader finish one while
                // the other fills. The hub reads as they arrive, so nothing it needs
                // is older than that.
                max_segment_size: MAX_PACKET,
                max_segment_count: 2,
                ..RouterConfig::default()
            },
            v4: Some([("skiff".to_string(), server)].into_iter().collect()),
            ..Config::default()
        };
        let mut broker = Broker::new(config);
        std::thread::Builder::new()
            .name("mqtt-broker".into())
            .spawn(move || {
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "the embedded MQTT broker stopped");
                }
            })
            .map_err(|e| BrokerError::Start(e.to_string()))?;

        // Readiness is the hub's own login (`MqttDispatcher::wait_connected`): a bare
        // TCP probe here would make rumqttd log an aborted connect as an error.
        tracing::info!(%addr, "embedded MQTT broker listening");
        Ok(EmbeddedBroker { addr, hub_password })
    }

    /// The address the broker listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// How the hub logs into this broker.
    pub fn hub_login(&self) -> BrokerLogin {
        let host = if self.addr.ip().is_unspecified() {
            "127.0.0.1".to_string()
        } else {
            self.addr.ip().to_string()
        };
        BrokerLogin {
            url: BrokerUrl {
                host,
                port: self.addr.port(),
            },
            client_id: HUB_USERNAME.into(),
            username: Some(HUB_USERNAME.into()),
            password: Some(self.hub_password.clone()),
        }
    }
}
