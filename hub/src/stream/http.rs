//! The REST side: `GET /api/v1/namespaces/{ns}/pods/{name}/log` (plain text, streamed
//! as it arrives) and `POST …/exec` (see [`super::exec`]), with the checks both share:
//! admin token, the pod, its container (kubectl's wording), its node being Ready.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use skiff_api::protocol::stream::StreamKind;
use skiff_api::protocol::{Down, SCHEMA_VERSION};
use skiff_api::resources::ConditionStatus;
use skiff_api::{Kind, Object, ObjectKey};

use super::registry::Event;
use super::{OPEN_TIMEOUT, Session, Streams};

/// How often a streaming response checks that the node is still Ready.
const NODE_CHECK: Duration = Duration::from_secs(2);

/// The log and exec endpoints, to merge into the hub's router.
pub fn routes(streams: Arc<Streams>) -> Router {
    Router::new()
        .route("/api/v1/namespaces/{namespace}/pods/{name}/log", get(log))
        .route(
            "/api/v1/namespaces/{namespace}/pods/{name}/exec",
            post(super::exec::exec).get(super::exec::exec),
        )
        .with_state(streams)
}

pub(super) use crate::join::status_failure as failure;

/// Why a request was refused, answered as a Kubernetes `Status`.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(super) struct Refusal {
    code: StatusCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    pub(super) fn new(code: StatusCode, reason: &'static str, message: impl Into<String>) -> Self {
        Refusal {
            code,
            reason,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        failure(self.code, self.reason, &self.message)
    }
}

pub(super) fn bad_request(message: &str) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// Decodes `a=b&c=d` (percent-encoding and `+`), keeping repeated keys in order.
pub(super) fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>, String> {
    fn decode(s: &str) -> Result<String, String> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = b
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| format!("bad percent-encoding in {s:?}"))?;
                    out.push(hex);
                    i += 2;
                }
                c => out.push(c),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8"))
    }
    let mut pairs = Vec::new();
    for part in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        pairs.push((decode(k)?, decode(v)?));
    }
    Ok(pairs)
}

/// The last value of `key`.
pub(super) fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

pub(super) fn bool_param(q: &[(String, String)], key: &str) -> Result<bool, Refusal> {
    match param(q, key) {
        None | Some("false") | Some("0") => Ok(false),
        Some("") | Some("true") | Some("1") => Ok(true),
        Some(v) => Err(bad_request(&format!(
            "invalid value {v:?} for {key}: expected true or false"
        ))),
    }
}

fn number_param(q: &[(String, String)], key: &str) -> Result<Option<u64>, Refusal> {
    match param(q, key) {
        None => Ok(None),
        Some(v) => v
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| Some(n as u64))
            .ok_or_else(|| {
                bad_request(&format!(
                    "invalid value {v:?} for {key}: expected a number zero or above"
                ))
            }),
    }
}

/// The container a request is for, on a pod bound to a Ready node.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub node: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub container: String,
}

/// Checks the token, finds the pod and picks its container, as kubectl's server does.
pub(super) fn target(
    streams: &Streams,
    headers: &HeaderMap,
    namespace: &str,
    name: &str,
    container: Option<&str>,
) -> Result<Target, Refusal> {
    if streams.admin.check(headers).is_err() {
        return Err(Refusal::new(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "Unauthorized",
        ));
    }
    let key = ObjectKey::new(Kind::Pod, namespace, name);
    let pod = match streams.store.get(&key).as_deref() {
        Some(Object::Pod(p)) => p.clone(),
        _ => {
            return Err(Refusal::new(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("pods \"{name}\" not found"),
            ));
        }
    };
    let names: Vec<&str> = pod
        .spec
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    let container = match container.filter(|c| !c.is_empty()) {
        Some(c) if names.contains(&c) => c.to_string(),
        Some(c) => {
            return Err(bad_request(&format!(
                "container {c} is not valid for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
        None if names.len() == 1 => names[0].to_string(),
        None => {
            return Err(bad_request(&format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                names.join(" ")
            )));
        }
    };
    let Some(node) = pod.spec.node_name.clone() else {
        return Err(bad_request(&format!(
            "pod {name} does not have a node assigned yet"
        )));
    };
    if let Err(why) = node_ready(streams, &node) {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            why,
        ));
    }
    Ok(Target {
        node,
        namespace: namespace.to_string(),
        name: name.to_string(),
        uid: pod.metadata.uid.map(|u| u.0).unwrap_or_default(),
        container,
    })
}

/// Ok when the node is connected (Ready True); otherwise why not, for the client.
pub(super) fn node_ready(streams: &Streams, node: &str) -> Result<(), String> {
    let key = ObjectKey::new(Kind::Node, "", node);
    let status = match streams.store.get(&key).as_deref() {
        Some(Object::Node(n)) => n
            .status
            .as_ref()
            .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
            .map(|c| c.status),
        _ => return Err(format!("node {node} is not registered with the hub")),
    };
    match status {
        Some(ConditionStatus::True) => Ok(()),
        s => Err(format!(
            "node {node} is not connected (Ready is {}): logs and exec need the node online",
            s.map(|s| s.as_str()).unwrap_or("Unknown")
        )),
    }
}

/// Opens a session on the target's node and waits for the agent to accept it. The
/// error is the response to give.
pub(super) async fn open_session(
    streams: &Arc<Streams>,
    t: &Target,
    kind: StreamKind,
) -> Result<Session, Refusal> {
    let (id, rx, input_taken) = streams.open(&t.node).map_err(|e| {
        Refusal::new(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequests",
            e.to_string(),
        )
    })?;
    let mut session = Session {
        streams: streams.clone(),
        node: t.node.clone(),
        id,
        rx,
        taken: 0,
        acked: 0,
        ended: false,
        input_taken,
    };
    let open = Down::StreamOpen {
        v: SCHEMA_VERSION,
        session: id,
        namespace: t.namespace.clone(),
        name: t.name.clone(),
        uid: t.uid.clone(),
        container: t.container.clone(),
        kind,
    };
    if !streams.send(&t.node, &open).await {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            format!("cannot reach node {} over MQTT", t.node),
        ));
    }
    match tokio::time::timeout(OPEN_TIMEOUT, session.next()).await {
        Err(_) => Err(Refusal::new(
            StatusCode::GATEWAY_TIMEOUT,
            "Timeout",
            format!(
                "node {} did not answer within {}s",
                t.node,
                OPEN_TIMEOUT.as_secs()
            ),
        )),
        Ok(Some(Event::Data(..))) => Ok(session),
        Ok(Some(Event::End { error: Some(e), .. })) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("node {}: {e}", t.node),
        )),
        Ok(_) => Err(Refusal::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            format!("node {} ended the stream at once", t.node),
        )),
    }
}

async fn log(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    req: Request,
) -> Result<Response, Refusal> {
    let q = parse_query(query.as_deref()).map_err(|e| bad_request(&e))?;
    let t = target(
        &streams,
        req.headers(),
        &namespace,
        &name,
        param(&q, "container"),
    )?;
    let kind = StreamKind::Logs {
        follow: bool_param(&q, "follow")?,
        tail_lines: number_param(&q, "tailLines")?,
        previous: bool_param(&q, "previous")?,
        limit_bytes: number_param(&q, "limitBytes")?,
    };
    let session = open_session(&streams, &t, kind).await?;
    let body = futures::stream::unfold(Some(session), |state| async move {
        let mut session = state?;
        let mut check = tokio::time::interval(NODE_CHECK);
        check.tick().await;
        loop {
            tokio::select! {
                ev = session.next() => match ev {
                    Some(Event::Data(_, data)) if data.is_empty() => {}
                    Some(Event::Data(_, data)) => {
                        return Some((Ok(axum::body::Bytes::from(data)), Some(session)));
                    }
                    Some(Event::End { error: Some(e), .. }) => {
                        return Some((Err(std::io::Error::other(e)), None));
                    }
                    Some(Event::End { .. }) | None => return None,
                },
                _ = check.tick() => {
                    if let Err(why) = node_ready(&session.streams, &session.node) {
                        return Some((Err(std::io::Error::other(why)), None));
                    }
                }
            }
        }
    });
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/plain; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_decode_and_keep_repeated_keys() {
        let q = parse_query(Some("command=ls&command=-l%20%2Ftmp&stdin=true&x=a+b&flag")).unwrap();
        let commands: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "command")
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(commands, ["ls", "-l /tmp"]);
        assert_eq!(param(&q, "x"), Some("a b"));
        assert!(bool_param(&q, "stdin").unwrap());
        assert!(bool_param(&q, "flag").unwrap());
        assert!(!bool_param(&q, "absent").unwrap());
        assert!(parse_query(Some("a=%zz")).is_err());
        assert!(parse_query(Some("a=%ff")).is_err());
        let bad = parse_query(Some("follow=maybe&tailLines=-3")).unwrap();
        assert_eq!(bool_param(&bad, "follow").unwrap_err().code, 400);
        assert_eq!(number_param(&bad, "tailLines").unwrap_err().code, 400);
    }
}
