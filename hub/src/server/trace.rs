//! One tracing span per HTTP request, with method, path, status and latency.

use std::time::Instant;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;
use tracing::field::Empty;

pub(crate) async fn request_span(req: Request, next: Next) -> Response {
    let span = tracing::info_span!(
        "http",
        method = %req.method(),
        path = %req.uri().path(),
        status = Empty,
        latency_ms = Empty,
    );
    let started = Instant::now();
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    // For a watch this is the time to the first byte; the stream goes on after it.
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.record("status", status);
    span.record("latency_ms", latency_ms);
    span.in_scope(|| {
        if status >= 500 {
            tracing::warn!("request failed");
        } else {
            tracing::info!("request");
        }
    });
    resp
}
