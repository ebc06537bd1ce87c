//! HTTP access to the hub's REST API for the CLI: REST paths per kind, the bearer
//! token, Kubernetes `Status` errors, and newline-delimited watch streams.
//!
//! Everything is returned as `serde_json::Value`: the CLI displays what the hub sends
//! and never loses a field it does not know about.

use std::io::{BufRead, BufReader};
use std::time::Duration;

use serde_json::Value;
use skiff_api::Kind;
use ureq::http::Response;
use ureq::{Agent, Body, RequestBuilder};

/// Largest response body the CLI reads; lists of a large fleet stay well below this.
const MAX_BODY: u64 = 512 * 1024 * 1024;
/// How long one ordinary request may take. Watches have no overall limit.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kubernetes `Status` failure from the hub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub code: u16,
    /// `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, ...
    pub reason: String,
    pub message: String,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Error from server ({}): {}", self.reason, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(
        "cannot reach the hub at {server}: {reason} (is skiff-hub running? set --server or SKIFF_SERVER)"
    )]
    Unreachable { server: String, reason: String },
    #[error("the hub at {server} did not accept {what} ({message}); {hint}")]
    Unauthorized {
        server: String,
        what: &'static str,
        message: String,
        hint: &'static str,
    },
    #[error("{0}")]
    Status(Status),
    #[error("request to {url} failed: {source}")]
    Transport {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("the hub sent an unreadable response to {url}: {reason}")]
    BadResponse { url: String, reason: String },
}

impl ApiError {
    pub(crate) fn status(&self) -> Option<&Status> {
        match self {
            ApiError::Status(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn is_not_found(&self) -> bool {
        self.status().is_some_and(|s| s.code == 404)
    }

    pub(crate) fn is_conflict(&self) -> bool {
        self.status().is_some_and(|s| s.code == 409)
    }
}

/// `/api/v1` for the core group, `/apis/{group}/v1` otherwise.
fn group_prefix(kind: Kind) -> String {
    match kind.group() {
        "" => "/api/v1".to_string(),
        g => format!("/apis/{g}/v1"),
    }
}

/// The collection of `kind`: in `namespace`, or across all namespaces when `None`.
/// Cluster-scoped kinds ignore the namespace.
pub(crate) fn collection_path(kind: Kind, namespace: Option<&str>) -> String {
    let prefix = group_prefix(kind);
    match namespace {
        Some(ns) if kind.namespaced() => {
            format!(
                "{prefix}/namespaces/{}/{}",
                encode_segment(ns),
                kind.plural()
            )
        }
        _ => format!("{prefix}/{}", kind.plural()),
    }
}

/// One object. `namespace` is ignored for cluster-scoped kinds.
pub(crate) fn object_path(kind: Kind, namespace: &str, name: &str) -> String {
    format!(
        "{}/{}",
        collection_path(kind, Some(namespace)),
        encode_segment(name)
    )
}

/// Object names are DNS-like and need no escaping; anything else a user types is
/// percent-encoded so it cannot change the path's shape.
pub(crate) fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Selectors of a list or watch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ListOptions {
    pub(crate) label_selector: Option<String>,
    pub(crate) field_selector: Option<String>,
}

impl ListOptions {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(l) = &self.label_selector {
            q.push(("labelSelector", l.clone()));
        }
        if let Some(f) = &self.field_selector {
            q.push(("fieldSelector", f.clone()));
        }
        q
    }
}

enum Method {
    Get,
    Post,
    Put,
    Patch,
    Delete,
}

/// A connection to one hub with one identity.
#[derive(Debug)]
pub(crate) struct Client {
    agent: Agent,
    server: String,
    token: Option<String>,
}

impl Client {
    pub(crate) fn new(server: String, token: Option<String>) -> Client {
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .user_agent(format!("skiff/{}", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            server,
            token,
        }
    }

    pub(crate) fn get(&self, kind: Kind, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.call(Method::Get, &object_path(kind, namespace, name), &[], None)
    }

    /// `None` when the object does not exist.
    pub(crate) fn get_opt(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, ApiError> {
        match self.get(kind, namespace, name) {
            Ok(v) => Ok(Some(v)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub(crate) fn list(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        opts: &ListOptions,
    ) -> Result<Value, ApiError> {
        self.call(
            Method::Get,
            &collection_path(kind, namespace),
            &opts.query(),
            None,
        )
    }

    pub(crate) fn create(
        &self,
        kind: Kind,
        namespace: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.call(
            Method::Post,
            &collection_path(kind, Some(namespace)),
            &[],
            Some(("application/json", body)),
        )
    }

    pub(crate) fn replace(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        body: &Value,
    ) -> Result<Value, ApiError> {
        self.call(
            Method::Put,
            &object_path(kind, namespace, name),
            &[],
            Some(("application/json", body)),
        )
    }

    /// An RFC 7386 JSON merge patch.
    pub(crate) fn merge_patch(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        patch: &Value,
    ) -> Result<Value, ApiError> {
        self.call(
            Method::Patch,
            &object_path(kind, namespace, name),
            &[],
            Some(("application/merge-patch+json", patch)),
        )
    }

    /// The deleted object (when finalizers keep it, marked for deletion) or a `Status`.
    pub(crate) fn delete(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Value, ApiError> {
        self.call(
            Method::Delete,
            &object_path(kind, namespace, name),
            &[],
            None,
        )
    }

    pub(crate) fn version(&self) -> Result<Value, ApiError> {
        self.call(Method::Get, "/version", &[], None)
    }

    /// GET of a hub path outside the resource API (e.g. `/skiff/v1/images`).
    pub(crate) fn get_path(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::Get, path, &[], None)
    }

    /// DELETE of a hub path outside the resource API.
    pub(crate) fn delete_path(&self, path: &str) -> Result<Value, ApiError> {
        self.call(Method::Delete, path, &[], None)
    }

    /// POSTs `body` as a stream (no overall timeout: archives can be large).
    pub(crate) fn upload(
        &self,
        path: &str,
        query: &[(&str, String)],
        body: &mut dyn std::io::Read,
    ) -> Result<Value, ApiError> {
        let url = self.url(path);
        let resp = self
            .prepare(self.agent.post(&url), query)
            .content_type("application/x-tar")
            .send(ureq::SendBody::from_reader(body))
            .map_err(|e| self.transport(&url, e))?;
        let code = resp.status().as_u16();
        let bytes = read_body(resp, &url)?;
        if !(200..300).contains(&code) {
            return Err(self.status_error(&url, code, &bytes));
        }
        serde_json::from_slice(&bytes).map_err(|e| ApiError::BadResponse {
            url,
            reason: format!("not JSON: {e}"),
        })
    }

    /// Opens a watch on a collection from `resource_version` (exclusive).
    pub(crate) fn watch(
        &self,
        kind: Kind,
        namespace: Option<&str>,
        opts: &ListOptions,
        resource_version: &str,
    ) -> Result<Watch, ApiError> {
        let path = collection_path(kind, namespace);
        let url = self.url(&path);
        let mut query = opts.query();
        query.push(("watch", "true".to_string()));
        if !resource_version.is_empty() {
            query.push(("resourceVersion", resource_version.to_string()));
        }
        let req = self.prepare(self.agent.get(&url), &query);
        let resp = req.call().map_err(|e| self.transport(&url, e))?;
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            let body = read_body(resp, &url)?;
            return Err(self.status_error(&url, code, &body));
        }
        Ok(Watch {
            url,
            lines: Box::new(BufReader::new(resp.into_body().into_reader())),
        })
    }

    /// A GET whose body is read as it arrives (`skiff logs -f`): no overall timeout.
    pub(crate) fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Box<dyn std::io::Read + Send>, ApiError> {
        let url = self.url(path);
        let resp = self
            .prepare(self.agent.get(&url), query)
            .call()
            .map_err(|e| self.transport(&url, e))?;
        let code = resp.status().as_u16();
        if !(200..300).contains(&code) {
            let body = read_body(resp, &url)?;
            return Err(self.status_error(&url, code, &body));
        }
        Ok(Box::new(resp.into_body().into_reader()))
    }

    /// The hub URL and the token, for connections ureq does not make (`skiff exec`).
    pub(crate) fn endpoint(&self) -> (&str, Option<&str>) {
        (&self.server, self.token.as_deref())
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.server, path)
    }

    fn prepare<B>(
        &self,
        mut req: RequestBuilder<B>,
        query: &[(&str, String)],
    ) -> RequestBuilder<B> {
        req = req.header("Accept", "application/json");
        if let Some(t) = &self.token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        for (k, v) in query {
            req = req.query(*k, v);
        }
        req
    }

    fn call(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<(&str, &Value)>,
    ) -> Result<Value, ApiError> {
        let url = self.url(path);
        // A `Value` always serializes: its map keys are strings.
        let bytes = body.map(|(ct, v)| (ct, v.to_string().into_bytes()));
        let result = match (method, bytes) {
            (Method::Get, _) => self.limited(self.agent.get(&url), query).call(),
            (Method::Delete, _) => self.limited(self.agent.delete(&url), query).call(),
            (Method::Post, b) => send(self.limited(self.agent.post(&url), query), b),
            (Method::Put, b) => send(self.limited(self.agent.put(&url), query), b),
            (Method::Patch, b) => send(self.limited(self.agent.patch(&url), query), b),
        };
        let resp = result.map_err(|e| self.transport(&url, e))?;
        let code = resp.status().as_u16();
        let body = read_body(resp, &url)?;
        if !(200..300).contains(&code) {
            return Err(self.status_error(&url, code, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ApiError::BadResponse {
            url,
            reason: format!("not JSON: {e}"),
        })
    }

    fn limited<B>(&self, req: RequestBuilder<B>, query: &[(&str, String)]) -> RequestBuilder<B> {
        self.prepare(req, query)
            .config()
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
    }

    fn transport(&self, url: &str, e: ureq::Error) -> ApiError {
        let unreachable = |reason: String| ApiError::Unreachable {
            server: self.server.clone(),
            reason,
        };
        match e {
            ureq::Error::Io(io) => match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    unreachable("connection refused".to_string())
                }
                std::io::ErrorKind::TimedOut => unreachable("connection timed out".to_string()),
                std::io::ErrorKind::AddrNotAvailable | std::io::ErrorKind::HostUnreachable => {
                    unreachable(io.to_string())
                }
                _ => ApiError::Transport {
                    url: url.to_string(),
                    source: ureq::Error::Io(io),
                },
            },
            ureq::Error::HostNotFound => unreachable("host not found".to_string()),
            ureq::Error::ConnectionFailed => unreachable("connection failed".to_string()),
            ureq::Error::Timeout(t) => unreachable(format!("timed out ({t})")),
            other => ApiError::Transport {
                url: url.to_string(),
                source: other,
            },
        }
    }

    fn status_error(&self, url: &str, code: u16, body: &[u8]) -> ApiError {
        let status = parse_status(code, body);
        match code {
            401 => ApiError::Unauthorized {
                server: self.server.clone(),
                what: if self.token.is_some() {
                    "the token"
                } else {
                    "a request without a token"
                },
                message: status.message,
                hint: if self.token.is_some() {
                    "check the token given with --token, --token-file, SKIFF_TOKEN or the config file"
                } else {
                    "give a token with --token, --token-file, SKIFF_TOKEN or the config file"
                },
            },
            _ if status.reason.is_empty() => ApiError::BadResponse {
                url: url.to_string(),
                reason: format!("HTTP {code}"),
            },
            _ => ApiError::Status(status),
        }
    }
}

fn send(
    req: RequestBuilder<ureq::typestate::WithBody>,
    body: Option<(&str, Vec<u8>)>,
) -> Result<Response<Body>, ureq::Error> {
    match body {
        Some((ct, bytes)) => req.content_type(ct).send(&bytes[..]),
        None => req.send_empty(),
    }
}

fn read_body(resp: Response<Body>, url: &str) -> Result<Vec<u8>, ApiError> {
    resp.into_body()
        .into_with_config()
        .limit(MAX_BODY)
        .read_to_vec()
        .map_err(|e| ApiError::BadResponse {
            url: url.to_string(),
            reason: e.to_string(),
        })
}

/// The standard reason for an HTTP status when the hub's body says none.
fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "",
    }
}

/// Reads a `Status` body. The message gets the causes appended when it does not
/// already name them, so one line tells the whole story.
pub(crate) fn parse_status(code: u16, body: &[u8]) -> Status {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    status_from_value(code, &v).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(body).trim().to_string();
        Status {
            code,
            reason: reason_for(code).to_string(),
            message: if text.is_empty() {
                format!("the server responded with HTTP {code}")
            } else {
                text
            },
        }
    })
}

pub(crate) fn status_from_value(code: u16, v: &Value) -> Option<Status> {
    let obj = v.as_object()?;
    let message = obj.get("message").and_then(Value::as_str);
    let reason = obj.get("reason").and_then(Value::as_str);
    if message.is_none() && reason.is_none() {
        return None;
    }
    let code = obj
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(code);
    let mut message = message.unwrap_or_default().to_string();
    let causes = v
        .pointer("/details/causes")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut extra = Vec::new();
    for cause in &causes {
        let field = cause.get("field").and_then(Value::as_str).unwrap_or("");
        let msg = cause.get("message").and_then(Value::as_str).unwrap_or("");
        let text = match (field.is_empty(), msg.is_empty()) {
            (true, true) => continue,
            (true, false) => msg.to_string(),
            (false, true) => field.to_string(),
            (false, false) => format!("{field}: {msg}"),
        };
        if !message.contains(&text) {
            extra.push(text);
        }
    }
    if !extra.is_empty() {
        if message.is_empty() {
            message = extra.join("; ");
        } else {
            message = format!("{message}: {}", extra.join("; "));
        }
    }
    if message.is_empty() {
        message = format!("the server responded with HTTP {code}");
    }
    let reason = match reason {
        Some(r) if !r.is_empty() => r.to_string(),
        _ => reason_for(code).to_string(),
    };
    Some(Status {
        code,
        reason,
        message,
    })
}

/// One event of a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct WatchEvent {
    /// `ADDED`, `MODIFIED`, `DELETED` (`ERROR` events become errors).
    pub(crate) event_type: String,
    pub(crate) object: Value,
}

/// A newline-delimited JSON watch stream.
pub(crate) struct Watch {
    url: String,
    lines: Box<dyn BufRead>,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch").field("url", &self.url).finish()
    }
}

impl Watch {
    #[cfg(test)]
    fn from_reader(reader: impl std::io::Read + 'static) -> Watch {
        Watch {
            url: "test".to_string(),
            lines: Box::new(BufReader::new(reader)),
        }
    }

    /// The next event; `None` when the hub closed the stream.
    pub(crate) fn next_event(&mut self) -> Result<Option<WatchEvent>, ApiError> {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self
                .lines
                .read_line(&mut line)
                .map_err(|e| ApiError::BadResponse {
                    url: self.url.clone(),
                    reason: format!("watch stream broke: {e}"),
                })?;
            if n == 0 {
                return Ok(None);
            }
            if !line.trim().is_empty() {
                break;
            }
        }
        let v: Value = serde_json::from_str(&line).map_err(|e| ApiError::BadResponse {
            url: self.url.clone(),
            reason: format!("watch event is not JSON: {e}"),
        })?;
        let event_type = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let object = v.get("object").cloned().unwrap_or(Value::Null);
        if event_type == "ERROR" {
            let code = object.get("code").and_then(Value::as_u64).unwrap_or(500);
            let code = u16::try_from(code).unwrap_or(500);
            return Err(ApiError::Status(
                status_from_value(code, &object).unwrap_or(Status {
                    code,
                    reason: reason_for(code).to_string(),
                    message: "the watch ended with an error".to_string(),
                }),
            ));
        }
        Ok(Some(WatchEvent { event_type, object }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_follow_kubernetes_conventions() {
        assert_eq!(
            collection_path(Kind::Pod, Some("default")),
            "/api/v1/namespaces/default/pods"
        );
        assert_eq!(collection_path(Kind::Pod, None), "/api/v1/pods");
        assert_eq!(
            object_path(Kind::Deployment, "prod", "web"),
            "/apis/apps/v1/namespaces/prod/deployments/web"
        );
        assert_eq!(
            collection_path(Kind::Deployment, None),
            "/apis/apps/v1/deployments"
        );
        assert_eq!(
            object_path(Kind::Job, "ci", "build"),
            "/apis/batch/v1/namespaces/ci/jobs/build"
        );
        // Cluster-scoped kinds never carry a namespace segment.
        assert_eq!(object_path(Kind::Node, "default", "n1"), "/api/v1/nodes/n1");
        assert_eq!(
            collection_path(Kind::Namespace, Some("x")),
            "/api/v1/namespaces"
        );
        assert_eq!(
            object_path(Kind::Namespace, "", "prod"),
            "/api/v1/namespaces/prod"
        );
        assert_eq!(
            object_path(Kind::Endpoints, "default", "web"),
            "/api/v1/namespaces/default/endpoints/web"
        );
        assert_eq!(
            object_path(Kind::Pod, "default", "a/b c"),
            "/api/v1/namespaces/default/pods/a%2Fb%20c"
        );
    }

    #[test]
    fn every_kind_has_a_distinct_collection() {
        let mut seen = std::collections::HashSet::new();
        for k in Kind::ALL {
            assert!(seen.insert(collection_path(k, Some("ns"))), "{k}");
        }
    }

    #[test]
    fn status_bodies_become_one_line_with_causes() {
        let body = br#"{"kind":"Status","apiVersion":"v1","status":"Failure",
            "message":"Pod \"web\" is invalid","reason":"Invalid","code":422,
            "details":{"causes":[{"field":"spec.containers[0].image","message":"Required value"}]}}"#;
        let s = parse_status(422, body);
        assert_eq!(s.reason, "Invalid");
        assert_eq!(
            s.to_string(),
            "Error from server (Invalid): Pod \"web\" is invalid: spec.containers[0].image: Required value"
        );

        let s = parse_status(
            404,
            br#"{"kind":"Status","message":"pods \"x\" not found","reason":"NotFound","code":404}"#,
        );
        assert_eq!(
            s.to_string(),
            "Error from server (NotFound): pods \"x\" not found"
        );

        let s = parse_status(500, b"boom");
        assert_eq!(s.to_string(), "Error from server (InternalError): boom");
    }

    #[test]
    fn watch_streams_yield_events_and_turn_errors_into_statuses() {
        let text = concat!(
            "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n",
            "\n",
            "{\"type\":\"DELETED\",\"object\":{\"metadata\":{\"name\":\"a\"}}}\n",
            "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410,\"reason\":\"Expired\",\"message\":\"too old resource version\"}}\n",
        );
        let mut w = Watch::from_reader(std::io::Cursor::new(text.as_bytes().to_vec()));
        let e = w.next_event().unwrap().unwrap();
        assert_eq!(e.event_type, "ADDED");
        assert_eq!(e.object.pointer("/metadata/name").unwrap(), "a");
        assert_eq!(w.next_event().unwrap().unwrap().event_type, "DELETED");
        let err = w.next_event().unwrap_err();
        assert_eq!(err.status().map(|s| s.code), Some(410));
        assert!(w.next_event().unwrap().is_none());
    }
}
