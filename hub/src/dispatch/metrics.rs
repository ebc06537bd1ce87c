//! Counters of MQTT traffic the hub accepted, published and rejected (by reason), and
//! `GET /skiff/v1/metrics` (admin bearer token) serving them as Prometheus text, or as
//! JSON with `?format=json`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use crate::server::AdminToken;

/// Why an upward message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not a Skiff topic, a broken frame, or JSON that is not a message.
    Malformed,
    /// Larger than `MAX_PAYLOAD`.
    TooLarge,
    /// A frame or schema version this hub does not know.
    UnknownVersion,
    /// Does not open with the key of the node named in the topic (or no such node).
    Unauthenticated,
    /// A sequence number at or below the last accepted one.
    Replay,
    /// Status or an event for a pod that is not bound to the sending node.
    NotBound,
    /// An event beyond the sending node's budget, or while the event queue is full.
    EventFlood,
}

impl Reject {
    pub const ALL: [Reject; 7] = [
        Reject::Malformed,
        Reject::TooLarge,
        Reject::UnknownVersion,
        Reject::Unauthenticated,
        Reject::Replay,
        Reject::NotBound,
        Reject::EventFlood,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reject::Malformed => "malformed",
            Reject::TooLarge => "too_large",
            Reject::UnknownVersion => "unknown_version",
            Reject::Unauthenticated => "unauthenticated",
            Reject::Replay => "replay",
            Reject::NotBound => "not_bound",
            Reject::EventFlood => "event_flood",
        }
    }
}

/// Shared counters; every field only ever grows.
#[derive(Debug, Default)]
pub struct Counters {
    rejected: [AtomicU64; 7],
    accepted: AtomicU64,
    published: AtomicU64,
}

impl Counters {
    pub(crate) fn reject(&self, why: Reject) {
        let i = Reject::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn accept(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn publish(&self) {
        self.published.fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, why: Reject) -> u64 {
        let i = Reject::ALL.iter().position(|r| *r == why).unwrap_or(0);
        self.rejected[i].load(Ordering::Relaxed)
    }

    pub fn accepted(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }

    pub fn published(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition format.
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP skiff_mqtt_rejected_total Upward MQTT messages dropped, by reason.\n");
        out.push_str("# TYPE skiff_mqtt_rejected_total counter\n");
        for r in Reject::ALL {
            out.push_str(&format!(
                "skiff_mqtt_rejected_total{{reason=\"{}\"}} {}\n",
                r.as_str(),
                self.rejected(r)
            ));
        }
        out.push_str("# HELP skiff_mqtt_accepted_total Upward MQTT messages accepted.\n");
        out.push_str("# TYPE skiff_mqtt_accepted_total counter\n");
        out.push_str(&format!("skiff_mqtt_accepted_total {}\n", self.accepted()));
        out.push_str("# HELP skiff_mqtt_published_total Desired-state messages published.\n");
        out.push_str("# TYPE skiff_mqtt_published_total counter\n");
        out.push_str(&format!(
            "skiff_mqtt_published_total {}\n",
            self.published()
        ));
        out
    }

    /// `{"rejected": {"malformed": 0, ...}, "accepted": N, "published": N}`.
    pub fn json(&self) -> Value {
        let rejected: Map<String, Value> = Reject::ALL
            .iter()
            .map(|r| (r.as_str().to_string(), Value::from(self.rejected(*r))))
            .collect();
        serde_json::json!({
            "rejected": rejected,
            "accepted": self.accepted(),
            "published": self.published(),
        })
    }
}

#[derive(Debug)]
struct MetricsState {
    admin: AdminToken,
    counters: Arc<Counters>,
}

/// `GET /skiff/v1/metrics`, to merge into the hub's router.
pub fn metrics_routes(admin: AdminToken, counters: Arc<Counters>) -> Router {
    Router::new()
        .route("/skiff/v1/metrics", get(metrics))
        .with_state(Arc::new(MetricsState { admin, counters }))
}

async fn metrics(
    State(state): State<Arc<MetricsState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    if state.admin.check(&headers).is_err() {
        return crate::join::unauthorized();
    }
    if query.as_deref() == Some("format=json") {
        return crate::join::json_response(StatusCode::OK, &state.counters.json());
    }
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.counters.prometheus(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_in_both_formats() {
        let c = Counters::default();
        c.reject(Reject::Replay);
        c.reject(Reject::Replay);
        c.reject(Reject::NotBound);
        c.accept();
        assert_eq!(c.rejected(Reject::Replay), 2);
        assert!(
            c.prometheus()
                .contains("skiff_mqtt_rejected_total{reason=\"replay\"} 2\n")
        );
        assert!(c.prometheus().contains("skiff_mqtt_accepted_total 1\n"));
        assert_eq!(c.json()["rejected"]["not_bound"], 1);
        assert_eq!(c.json()["rejected"]["malformed"], 0);
    }
}
