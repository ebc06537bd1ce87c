//! `POST /skiff/v1/tokens` (admin bearer token): creates a join token.
//! `POST /skiff/v1/join` (the join token is the credential): issues a node's MQTT login
//! and key. Failures answer with a Kubernetes `Status` body like the rest of the API.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

use super::credentials::{Credentials, JoinError};
use crate::clock::Clock;
use crate::server::AdminToken;

/// Default lifetime of a join token.
pub const DEFAULT_TOKEN_TTL_SECONDS: u64 = 24 * 3600;

/// What the join endpoints need.
#[derive(Debug)]
pub struct JoinApi {
    pub credentials: Credentials,
    pub admin: AdminToken,
    pub clock: Arc<dyn Clock>,
    /// The broker URL agents are told to connect to.
    pub broker_url: String,
    /// Mosquitto's dynamic security, when the hub manages accounts in an external
    /// broker; `None` with the embedded broker (it asks [`Credentials`] directly).
    pub broker_accounts: Option<Arc<crate::dispatch::DynSec>>,
}

/// The routes, to merge into the hub's router.
pub fn routes(api: Arc<JoinApi>) -> Router {
    Router::new()
        .route("/skiff/v1/tokens", post(create_token))
        .route("/skiff/v1/join", post(join))
        .with_state(api)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct TokenRequest {
    ttl_seconds: Option<u64>,
    uses: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct JoinRequest {
    token: String,
    node_name: String,
}

/// A Kubernetes `Status` failure.
pub(crate) fn failure(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    json(code, &body)
}

pub(crate) fn json(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) fn unauthorized() -> Response {
    failure(StatusCode::UNAUTHORIZED, "Unauthorized", "Unauthorized")
}

fn bad_body(e: serde_json::Error) -> Response {
    failure(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        &format!("the request body could not be decoded: {e}"),
    )
}

async fn create_token(
    State(api): State<Arc<JoinApi>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if api.admin.check(&headers).is_err() {
        return unauthorized();
    }
    let req: TokenRequest = if body.is_empty() {
        TokenRequest {
            ttl_seconds: None,
            uses: None,
        }
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return bad_body(e),
        }
    };
    let ttl = req.ttl_seconds.unwrap_or(DEFAULT_TOKEN_TTL_SECONDS);
    let uses = req.uses.unwrap_or(1);
    let max_ttl = 10 * 365 * 24 * 3600;
    if ttl == 0 || ttl > max_ttl || uses == 0 {
        return failure(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "ttlSeconds must be between 1 and ten years, uses at least 1",
        );
    }
    let now = api.clock.now();
    let expires = now.0 + chrono::Duration::seconds(ttl as i64);
    match api.credentials.create_token(expires.timestamp(), uses) {
        Ok(token) => {
            tracing::info!(ttl, uses, "join token created");
            json(
                StatusCode::CREATED,
                &json!({
                    "token": token.reveal(),
                    "expires": skiff_api::Time::from_datetime(expires).to_string(),
                    "uses": uses,
                }),
            )
        }
        Err(e) => {
            tracing::error!(error = %e, "creating a join token failed");
            failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            )
        }
    }
}

async fn join(State(api): State<Arc<JoinApi>>, body: Bytes) -> Response {
    let req: JoinRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad_body(e),
    };
    let now = api.clock.now().0.timestamp();
    // SQLite and the random generator block; keep them off the async workers.
    let creds = api.credentials.clone();
    let node = req.node_name.clone();
    let result = tokio::task::spawn_blocking(move || creds.join(&req.token, &node, now)).await;
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "join task failed");
            return failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                "join failed",
            );
        }
    };
    match result {
        Ok(issued) => {
            if let Some(dynsec) = &api.broker_accounts
                && let Err(e) = dynsec.provision(&issued.node, &issued.password).await
            {
                tracing::error!(node = %issued.node, error = %e, "creating the node's broker account failed");
                return failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    &format!(
                        "the broker did not accept the node's account ({e}); join again with a new token"
                    ),
                );
            }
            tracing::info!(node = %issued.node, "node joined; credentials issued");
            json(
                StatusCode::OK,
                &json!({
                    "nodeName": issued.node,
                    "broker": api.broker_url,
                    "username": issued.node,
                    "password": issued.password,
                    "key": issued.key.to_hex(),
                }),
            )
        }
        Err(e) => {
            tracing::info!(node = %req.node_name, error = %e, "join refused");
            let (code, reason) = match &e {
                JoinError::UnknownToken => (StatusCode::UNAUTHORIZED, "Unauthorized"),
                JoinError::Spent | JoinError::Expired => (StatusCode::FORBIDDEN, "Forbidden"),
                JoinError::InvalidName(_) => (StatusCode::UNPROCESSABLE_ENTITY, "Invalid"),
                JoinError::Credentials(_) => (StatusCode::INTERNAL_SERVER_ERROR, "InternalError"),
            };
            failure(code, reason, &e.to_string())
        }
    }
}
