//! [`MqttDispatcher`]: an MQTT 3.1.1 client (rumqttc) logged in as the hub. It
//! subscribes to every node's upward topics on each (re)connect, so a broker that
//! restarted and lost its sessions is served again as soon as it is back; agents resync
//! on their own reconnect.

use std::time::Duration;

use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use skiff_api::protocol::{MAX_PACKET, TopicKind, topic};
use tokio::sync::{Mutex, mpsc, watch};

use super::{DispatchError, Dispatcher, Incoming};

/// A broker address: `mqtt://HOST[:PORT]` (port 1883 by default).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a broker URL of the form mqtt://HOST[:PORT]")]
pub struct UrlError(pub String);

impl BrokerUrl {
    pub fn parse(s: &str) -> Result<BrokerUrl, UrlError> {
        let err = || UrlError(s.to_string());
        let rest = s.strip_prefix("mqtt://").ok_or_else(err)?;
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() || rest.contains('/') || rest.contains('@') {
            return Err(err());
        }
        // `[::1]:1883`, `host:1883`, `host`.
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(':') && (!h.contains(':') || h.starts_with('[')) => {
                (h, p.parse().map_err(|_| err())?)
            }
            _ => (rest, 1883),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(err());
        }
        Ok(BrokerUrl {
            host: host.to_string(),
            port,
        })
    }
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "mqtt://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "mqtt://{}:{}", self.host, self.port)
        }
    }
}

/// How the hub logs into a broker.
#[derive(Clone)]
pub struct BrokerLogin {
    pub url: BrokerUrl,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl std::fmt::Debug for BrokerLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerLogin")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// The real dispatcher.
#[derive(Debug)]
pub struct MqttDispatcher {
    client: AsyncClient,
    incoming: Mutex<mpsc::Receiver<Incoming>>,
    connected: watch::Receiver<bool>,
}

impl MqttDispatcher {
    /// Starts the client; it connects (and reconnects, every second) in the background
    /// until `stop` turns true.
    pub fn start(login: BrokerLogin, mut stop: watch::Receiver<bool>) -> MqttDispatcher {
        let mut opts = MqttOptions::new(&login.client_id, &login.url.host, login.url.port);
        opts.set_keep_alive(Duration::from_secs(15));
        opts.set_clean_session(true);
        opts.set_max_packet_size(MAX_PACKET, MAX_PACKET);
        if let Some(user) = &login.username {
            opts.set_credentials(user.clone(), login.password.clone().unwrap_or_default());
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 1024);
        let (tx, rx) = mpsc::channel(4096);
        let (connected_tx, connected) = watch::channel(false);
        let sub = client.clone();
        let url = login.url.clone();
        tokio::spawn(async move {
            // Quick retries first (the embedded broker starts moments before the hub
            // logs in), then at most every 5 s.
            let mut backoff = Duration::from_millis(50);
            loop {
                let event = tokio::select! {
                    _ = stop.wait_for(|s| *s) => break,
                    ev = eventloop.poll() => ev,
                };
                match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        tracing::info!(broker = %url, "connected to the MQTT broker");
                        connected_tx.send_replace(true);
                        backoff = Duration::from_millis(50);
                        // Subscribing from inside the poll loop could block on a full
                        // request channel that only this loop drains.
                        let sub = sub.clone();
                        tokio::spawn(async move {
                            for (kind, qos) in [
                                (TopicKind::Up, QoS::AtLeastOnce),
                                (TopicKind::Heartbeat, QoS::AtMostOnce),
                            ] {
                                if let Err(e) = sub.subscribe(kind.all_nodes_filter(), qos).await {
                                    tracing::warn!(error = %e, "subscribing failed");
                                }
                            }
                        });
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let msg = Incoming {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                        };
                        if tx.send(msg).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        // Logged once per outage, not on every retry.
                        if connected_tx.send_replace(false) {
                            tracing::warn!(broker = %url, error = %e, "MQTT connection lost; reconnecting");
                        }
                        tokio::select! {
                            _ = stop.wait_for(|s| *s) => break,
                            () = tokio::time::sleep(backoff) => {}
                        }
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
        });
        MqttDispatcher {
            client,
            incoming: Mutex::new(rx),
            connected,
        }
    }

    /// Waits until the client is connected, up to `timeout`; false if it is not.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let mut rx = self.connected.clone();
        tokio::time::timeout(timeout, rx.wait_for(|c| *c))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

#[async_trait]
impl Dispatcher for MqttDispatcher {
    async fn publish(
        &self,
        node: &str,
        kind: TopicKind,
        payload: Vec<u8>,
    ) -> Result<(), DispatchError> {
        let qos = match kind {
            TopicKind::Heartbeat => QoS::AtMostOnce,
            TopicKind::Down | TopicKind::Up => QoS::AtLeastOnce,
        };
        self.client
            .publish(topic(node, kind), qos, false, payload)
            .await
            .map_err(|_| DispatchError::Closed)
    }

    async fn next(&self) -> Option<Incoming> {
        self.incoming.lock().await.recv().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_urls() {
        let u = BrokerUrl::parse("mqtt://broker.local:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("broker.local", 1884));
        assert_eq!(BrokerUrl::parse("mqtt://10.0.0.1").unwrap().port, 1883);
        let v6 = BrokerUrl::parse("mqtt://[::1]:1885").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 1885));
        assert_eq!(v6.to_string(), "mqtt://[::1]:1885");
        assert_eq!(u.to_string(), "mqtt://broker.local:1884");
        for bad in [
            "tcp://x",
            "mqtt://",
            "mqtt://h:port",
            "mqtt://u:p@h",
            "mqtt://h/x",
        ] {
            assert!(BrokerUrl::parse(bad).is_err(), "{bad}");
        }
    }
}
