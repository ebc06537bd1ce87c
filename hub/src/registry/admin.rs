//! The admin endpoints (admin bearer token only), answering with Kubernetes `Status`
//! bodies like the rest of the hub's API:
//! `POST /skiff/v1/images/import[?tag=NAME[:TAG]]` takes an archive as a streamed body,
//! `GET /skiff/v1/images` lists the tagged images,
//! `DELETE /skiff/v1/images/NAME:TAG` removes a tag and collects what nothing uses.

use std::io::{self, Read};
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{delete, get, post};
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::names::{ImageRef, RefError};
use super::{ImportError, Served, TagOverride};
use crate::join::{json_response, status_failure as failure};

pub(crate) fn routes(state: Arc<Served>) -> Router {
    Router::new()
        .route("/skiff/v1/images", get(list))
        .route("/skiff/v1/images/import", post(import))
        .route("/skiff/v1/images/{*reference}", delete(remove))
        .with_state(state)
}

fn unauthorized() -> Response {
    failure(
        StatusCode::UNAUTHORIZED,
        "Unauthorized",
        "the image endpoints need the admin token (Authorization: Bearer ...)",
    )
}

fn internal(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "image operation failed");
    failure(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalError",
        &e.to_string(),
    )
}

async fn list(State(state): State<Arc<Served>>, headers: HeaderMap) -> Response {
    if !state.auth.is_admin_bearer(&headers) {
        return unauthorized();
    }
    let reg = state.registry.clone();
    match tokio::task::spawn_blocking(move || reg.list()).await {
        Ok(Ok(images)) => json_response(StatusCode::OK, &json!({ "images": images })),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

async fn remove(
    State(state): State<Arc<Served>>,
    Path(reference): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !state.auth.is_admin_bearer(&headers) {
        return unauthorized();
    }
    let image = match ImageRef::parse(&reference) {
        Ok(r) => r,
        Err(e) => return failure(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string()),
    };
    let reg = state.registry.clone();
    let target = image.clone();
    match tokio::task::spawn_blocking(move || reg.remove(&target)).await {
        Ok(Ok(Some(removed))) => json_response(
            StatusCode::OK,
            &serde_json::to_value(removed).unwrap_or(Value::Null),
        ),
        Ok(Ok(None)) => failure(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("image {image} not found"),
        ),
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

/// Reads the body chunks a task forwards, as a blocking `Read`.
struct ChannelReader {
    rx: mpsc::Receiver<Result<Bytes, io::Error>>,
    current: Bytes,
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(Ok(chunk)) => self.current = chunk,
                Some(Err(e)) => return Err(e),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current.split_to(n));
        Ok(n)
    }
}

fn query_tag(query: Option<&str>) -> Result<Option<TagOverride>, RefError> {
    let Some(q) = query else { return Ok(None) };
    for pair in q.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "tag" {
            let v = percent_decode(v);
            return TagOverride::parse(&v).map(Some);
        }
    }
    Ok(None)
}

/// Decodes `%XX` escapes (and `+` as a space, as forms send it).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let escaped = (b[i] == b'%' && i + 2 < b.len())
            .then(|| Some(hex(b[i + 1])? * 16 + hex(b[i + 2])?))
            .flatten();
        match (escaped, b[i]) {
            (Some(v), _) => {
                out.push(v);
                i += 3;
                continue;
            }
            (None, b'+') => out.push(b' '),
            (None, c) => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn import(
    State(state): State<Arc<Served>>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Body,
) -> Response {
    if !state.auth.is_admin_bearer(&headers) {
        return unauthorized();
    }
    let tag = match query_tag(query.as_deref()) {
        Ok(t) => t,
        Err(e) => return failure(StatusCode::BAD_REQUEST, "BadRequest", &format!("tag: {e}")),
    };
    let limit = state.registry.options().import_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return too_large(limit);
    }
    // The body is forwarded chunk by chunk to the blocking import; a refused archive
    // still has its body read to the end (up to the limit), so the client gets the
    // answer instead of a reset connection while it is still sending.
    let (tx, rx) = mpsc::channel::<Result<Bytes, io::Error>>(16);
    let pump = tokio::spawn(async move {
        let mut stream = body.into_data_stream();
        let mut total: u64 = 0;
        let mut forwarding = true;
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => {
                    total += bytes.len() as u64;
                    if total > limit {
                        if forwarding {
                            let _ = tx
                                .send(Err(io::Error::new(
                                    io::ErrorKind::FileTooLarge,
                                    "over the limit",
                                )))
                                .await;
                        }
                        return false;
                    }
                    if forwarding && tx.send(Ok(bytes)).await.is_err() {
                        forwarding = false;
                    }
                }
                Err(e) => {
                    if forwarding {
                        let _ = tx.send(Err(io::Error::other(e.to_string()))).await;
                    }
                    return false;
                }
            }
        }
        true
    });
    let reg = state.registry.clone();
    let result = tokio::task::spawn_blocking(move || {
        let reader = ChannelReader {
            rx,
            current: Bytes::new(),
        };
        reg.import(reader, tag.as_ref())
    })
    .await;
    let _ = pump.await;
    match result {
        Ok(Ok(images)) => json_response(StatusCode::OK, &json!({ "images": images })),
        Ok(Err(ImportError::TooLarge { limit })) => too_large(limit),
        Ok(Err(e)) if e.is_client_error() => {
            tracing::info!(error = %e, "image import refused");
            failure(StatusCode::BAD_REQUEST, "BadRequest", &e.to_string())
        }
        Ok(Err(e)) => internal(e),
        Err(e) => internal(e),
    }
}

fn too_large(limit: u64) -> Response {
    tracing::info!(
        limit,
        "image import refused: the archive is over the size limit"
    );
    failure(
        StatusCode::PAYLOAD_TOO_LARGE,
        "RequestEntityTooLarge",
        &format!(
            "the image archive is larger than the hub's limit of {limit} bytes (skiff-hub serve --image-import-limit)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("library%2Fbusybox%3A1"), "library/busybox:1");
        assert_eq!(percent_decode("a:b"), "a:b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
