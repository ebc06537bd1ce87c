//! Every way an API request can fail, and the one place that turns a failure (including
//! every `StoreError`) into an HTTP status code and a Kubernetes `Status` body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use skiff_api::{FieldError, FieldErrorKind, Kind, ObjectKey, Revision, SelectorError};

use crate::store::StoreError;

/// The Kubernetes `reason` of a failed request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    NotFound,
    AlreadyExists,
    Conflict,
    Invalid,
    BadRequest,
    Unauthorized,
    Forbidden,
    Expired,
    RequestEntityTooLarge,
    UnsupportedMediaType,
    MethodNotAllowed,
    ServiceUnavailable,
    InternalError,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::NotFound => "NotFound",
            Reason::AlreadyExists => "AlreadyExists",
            Reason::Conflict => "Conflict",
            Reason::Invalid => "Invalid",
            Reason::BadRequest => "BadRequest",
            Reason::Unauthorized => "Unauthorized",
            Reason::Forbidden => "Forbidden",
            Reason::Expired => "Expired",
            Reason::RequestEntityTooLarge => "RequestEntityTooLarge",
            Reason::UnsupportedMediaType => "UnsupportedMediaType",
            Reason::MethodNotAllowed => "MethodNotAllowed",
            Reason::ServiceUnavailable => "ServiceUnavailable",
            Reason::InternalError => "InternalError",
        }
    }
}

/// A failed API request.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ApiError {
    #[error("the server could not find the requested resource")]
    UnknownPath,
    #[error("{} {:?} not found", resource(.0.kind), .0.name)]
    NotFound(ObjectKey),
    #[error("{} {:?} already exists", resource(.0.kind), .0.name)]
    AlreadyExists(ObjectKey),
    #[error("Operation cannot be fulfilled on {} {:?}: {detail}", resource(.key.kind), .key.name)]
    Conflict { key: ObjectKey, detail: String },
    #[error(
        "{} {:?} is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
        resource(*.kind), .name
    )]
    NamespaceTerminating {
        kind: Kind,
        name: String,
        namespace: String,
    },
    #[error("{kind} {name:?} is invalid: {}", join_causes(.causes))]
    Invalid {
        kind: Kind,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("the request body could not be decoded: {0}")]
    Malformed(String),
    #[error("the {field} of the object ({body:?}) does not match the {field} in the URL ({url:?})")]
    Mismatch {
        field: &'static str,
        body: String,
        url: String,
    },
    #[error("invalid {param}: {source}")]
    BadSelector {
        param: &'static str,
        source: SelectorError,
    },
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
    #[error("invalid value {value:?} for query parameter {param}")]
    BadQuery { param: String, value: String },
    #[error("the request body could not be read: {0}")]
    BodyRead(String),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("too old resource version: {requested} ({compacted})")]
    Gone {
        requested: Revision,
        compacted: Revision,
    },
    #[error("the request body is larger than the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("the content type {0:?} is not supported here")]
    UnsupportedMediaType(String),
    #[error("the method {0} is not allowed on this resource")]
    MethodNotAllowed(String),
    #[error("the server is shutting down")]
    Unavailable,
    #[error("internal error: {0}")]
    Internal(StoreError),
}

/// How a kind is named in messages and `details.kind`: `pods`, `deployments.apps`.
pub(crate) fn resource(kind: Kind) -> String {
    match kind.group() {
        "" => kind.plural().to_string(),
        g => format!("{}.{g}", kind.plural()),
    }
}

fn join_causes(causes: &[FieldError]) -> String {
    causes
        .iter()
        .map(|c| {
            if c.path.is_empty() {
                c.message.clone()
            } else {
                format!("{}: {}", c.path, c.message)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::NotFound(key) => ApiError::NotFound(key),
            StoreError::AlreadyExists(key) => ApiError::AlreadyExists(key),
            StoreError::Conflict { key, .. } => ApiError::Conflict {
                key,
                detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
            },
            StoreError::Gone {
                requested,
                compacted,
            } => ApiError::Gone {
                requested,
                compacted,
            },
            StoreError::Invalid { key, message } => ApiError::Invalid {
                kind: key.kind,
                name: key.name,
                causes: vec![FieldError {
                    path: String::new(),
                    kind: FieldErrorKind::Invalid,
                    message,
                }],
            },
            StoreError::Closed => ApiError::Unavailable,
            // Database, I/O and corruption failures: nothing the client can fix.
            e => ApiError::Internal(e),
        }
    }
}

impl ApiError {
    pub(crate) fn code(&self) -> StatusCode {
        match self.reason() {
            Reason::NotFound => StatusCode::NOT_FOUND,
            Reason::AlreadyExists | Reason::Conflict => StatusCode::CONFLICT,
            Reason::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            Reason::BadRequest => StatusCode::BAD_REQUEST,
            Reason::Unauthorized => StatusCode::UNAUTHORIZED,
            Reason::Forbidden => StatusCode::FORBIDDEN,
            Reason::Expired => StatusCode::GONE,
            Reason::RequestEntityTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Reason::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Reason::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Reason::ServiceUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Reason::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(crate) fn reason(&self) -> Reason {
        match self {
            ApiError::UnknownPath | ApiError::NotFound(_) => Reason::NotFound,
            ApiError::AlreadyExists(_) => Reason::AlreadyExists,
            ApiError::Conflict { .. } => Reason::Conflict,
            ApiError::NamespaceTerminating { .. } => Reason::Forbidden,
            ApiError::Invalid { .. } => Reason::Invalid,
            ApiError::Malformed(_)
            | ApiError::Mismatch { .. }
            | ApiError::BadSelector { .. }
            | ApiError::UnsupportedField(_)
            | ApiError::BadQuery { .. }
            | ApiError::BodyRead(_) => Reason::BadRequest,
            ApiError::Unauthorized => Reason::Unauthorized,
            ApiError::Gone { .. } => Reason::Expired,
            ApiError::TooLarge { .. } => Reason::RequestEntityTooLarge,
            ApiError::UnsupportedMediaType(_) => Reason::UnsupportedMediaType,
            ApiError::MethodNotAllowed(_) => Reason::MethodNotAllowed,
            ApiError::Unavailable => Reason::ServiceUnavailable,
            ApiError::Internal(_) => Reason::InternalError,
        }
    }

    fn details(&self) -> Option<Value> {
        let about = |kind: Kind, name: &str| {
            let mut d = Map::new();
            d.insert("name".into(), name.into());
            if !kind.group().is_empty() {
                d.insert("group".into(), kind.group().into());
            }
            d.insert("kind".into(), kind.plural().into());
            d
        };
        match self {
            ApiError::NotFound(key) | ApiError::AlreadyExists(key) => {
                Some(Value::Object(about(key.kind, &key.name)))
            }
            ApiError::Conflict { key, .. } => Some(Value::Object(about(key.kind, &key.name))),
            ApiError::NamespaceTerminating { kind, name, .. } => {
                Some(Value::Object(about(*kind, name)))
            }
            ApiError::Invalid { kind, name, causes } => {
                let mut d = about(*kind, name);
                // Kubernetes names the kind itself, not the resource, for Invalid.
                d.insert("kind".into(), kind.name().into());
                let causes = causes
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": c.kind.reason(),
                            "message": c.message,
                            "field": c.path,
                        })
                    })
                    .collect::<Vec<_>>();
                d.insert("causes".into(), Value::Array(causes));
                Some(Value::Object(d))
            }
            _ => None,
        }
    }

    /// The Kubernetes `Status` object describing this failure.
    pub(crate) fn status(&self) -> Value {
        let mut s = failure_base();
        s.insert("message".into(), self.to_string().into());
        s.insert("reason".into(), self.reason().as_str().into());
        if let Some(d) = self.details() {
            s.insert("details".into(), d);
        }
        s.insert("code".into(), self.code().as_u16().into());
        Value::Object(s)
    }
}

fn failure_base() -> Map<String, Value> {
    let mut s = Map::new();
    s.insert("kind".into(), "Status".into());
    s.insert("apiVersion".into(), "v1".into());
    s.insert("metadata".into(), json!({}));
    s.insert("status".into(), "Failure".into());
    s
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(e) = &self {
            tracing::error!(error = %e, "request failed inside the store");
        }
        json_response(self.code(), &self.status())
    }
}

/// The `Status` a delete answers with when the object is gone.
pub(crate) fn deleted_status(key: &ObjectKey, uid: Option<&str>) -> Value {
    let mut details = Map::new();
    details.insert("name".into(), key.name.clone().into());
    if !key.kind.group().is_empty() {
        details.insert("group".into(), key.kind.group().into());
    }
    details.insert("kind".into(), key.kind.plural().into());
    if let Some(uid) = uid {
        details.insert("uid".into(), uid.into());
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

pub(crate) fn json_response(code: StatusCode, body: &Value) -> Response {
    json_bytes_response(code, body.to_string().into_bytes())
}

/// An object as the response body.
pub(crate) fn object_response(code: StatusCode, obj: &skiff_api::Object) -> Response {
    json_bytes_response(code, obj.to_json_string().into_bytes())
}

/// A response whose body is already serialized JSON.
pub(crate) fn json_bytes_response(code: StatusCode, body: Vec<u8>) -> Response {
    let mut resp = (code, body).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_map_to_kubernetes_status() {
        let key = ObjectKey::new(Kind::Deployment, "prod", "web");
        let cases: Vec<(StoreError, u16, &str)> = vec![
            (StoreError::NotFound(key.clone()), 404, "NotFound"),
            (StoreError::AlreadyExists(key.clone()), 409, "AlreadyExists"),
            (
                StoreError::Conflict {
                    key: key.clone(),
                    expected: "3".into(),
                    actual: Revision(4),
                },
                409,
                "Conflict",
            ),
            (
                StoreError::Gone {
                    requested: Revision(2),
                    compacted: Revision(9),
                },
                410,
                "Expired",
            ),
            (
                StoreError::Invalid {
                    key: key.clone(),
                    message: "bad".into(),
                },
                422,
                "Invalid",
            ),
            (StoreError::Closed, 503, "ServiceUnavailable"),
            (
                StoreError::Corrupt {
                    key: "x".into(),
                    message: "y".into(),
                },
                500,
                "InternalError",
            ),
        ];
        for (err, code, reason) in cases {
            let status = ApiError::from(err).status();
            assert_eq!(status["code"], code);
            assert_eq!(status["reason"], reason);
            assert_eq!(status["kind"], "Status");
            assert_eq!(status["status"], "Failure");
        }
    }

    #[test]
    fn messages_and_details_follow_kubernetes() {
        let key = ObjectKey::new(Kind::Deployment, "prod", "web");
        let s = ApiError::NotFound(key).status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(
            s["details"],
            json!({"name": "web", "group": "apps", "kind": "deployments"})
        );

        let s = ApiError::Invalid {
            kind: Kind::Pod,
            name: "p".into(),
            causes: vec![FieldError {
                path: "spec.containers".into(),
                kind: FieldErrorKind::Required,
                message: "Required value".into(),
            }],
        }
        .status();
        assert_eq!(
            s["message"],
            "Pod \"p\" is invalid: spec.containers: Required value"
        );
        assert_eq!(s["details"]["kind"], "Pod");
        assert_eq!(
            s["details"]["causes"],
            json!([{"reason": "FieldValueRequired", "message": "Required value", "field": "spec.containers"}])
        );
    }
}
