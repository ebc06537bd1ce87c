//! Watches (`?watch=true`): a streamed response with one JSON event per line,
//! `{"type":"ADDED|MODIFIED|DELETED|ERROR","object":{...}}`.
//!
//! Without `resourceVersion` (or with `0`) the stream starts with a synthetic `ADDED` for
//! every object that matches now, then follows from the revision of that list. With
//! `resourceVersion=N` it replays what happened after N. Selectors filter each event on
//! the object it carries: an object modified so that it stops matching is simply not
//! sent again (no synthetic `DELETED`), and one that starts matching arrives as
//! `MODIFIED`. History that is no longer retained gives 410 before streaming starts, or
//! an `ERROR` event carrying a 410 `Status` if the watcher falls behind later. The stream
//! ends after `timeoutSeconds`, when the store shuts down, or when the server does.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{Object, Revision};
use tokio::sync::watch;
use tokio::time::Instant;

use super::AppState;
use super::filter::Filter;
use super::params::Params;
use super::status::ApiError;
use crate::store::{Scope, Watch};

pub(crate) fn watch(
    state: &AppState,
    scope: Scope,
    filter: Filter,
    params: &Params,
) -> Result<Response, ApiError> {
    let requested = params.revision("resourceVersion")?;
    let deadline = params.timeout()?.map(|t| Instant::now() + t);
    let (initial, from) = match requested {
        None | Some(Revision(0)) => {
            let (items, revision) = state.store.list(&scope);
            let matching: VecDeque<_> = items.into_iter().filter(|o| filter.matches(o)).collect();
            (matching, revision)
        }
        Some(revision) => (VecDeque::new(), revision),
    };
    let events = state.store.watch(scope, from)?;
    let stream = EventStream {
        initial,
        events,
        filter,
        deadline,
        shutdown: state.shutdown.clone(),
        done: false,
    };
    let body = futures::stream::unfold(stream, |mut s| async move {
        s.next_line()
            .await
            .map(|line| (Ok::<_, Infallible>(line), s))
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(resp)
}

struct EventStream {
    initial: VecDeque<Arc<Object>>,
    events: Watch,
    filter: Filter,
    deadline: Option<Instant>,
    shutdown: watch::Receiver<bool>,
    done: bool,
}

impl EventStream {
    async fn next_line(&mut self) -> Option<Bytes> {
        if self.done {
            return None;
        }
        if let Some(obj) = self.initial.pop_front() {
            return Some(event_line("ADDED", obj.to_json()));
        }
        loop {
            let deadline = self.deadline;
            let expired = async move {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let next = tokio::select! {
                biased;
                // An error here means the server is gone too: end either way.
                _ = self.shutdown.wait_for(|stop| *stop) => return None,
                () = expired => return None,
                next = self.events.next() => next,
            };
            match next? {
                Ok(event) => {
                    if self.filter.matches(&event.object) {
                        return Some(event_line(
                            event.event_type.as_str(),
                            event.object.to_json(),
                        ));
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(event_line("ERROR", ApiError::from(e).status()));
                }
            }
        }
    }
}

fn event_line(event_type: &str, object: Value) -> Bytes {
    let mut line = json!({"type": event_type, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}
