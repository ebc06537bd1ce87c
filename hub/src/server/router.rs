//! The HTTP surface: unauthenticated `/healthz` and `/version`, and every `/api` and
//! `/apis` request authenticated, parsed into a target and dispatched by method.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;
use super::filter::Filter;
use super::params::Params;
use super::status::{ApiError, json_response};
use super::{patch, path, read, trace, watch, write};
use crate::store::Scope;

pub(crate) fn build(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/version", get(version))
        .fallback(dispatch)
        .layer(axum::middleware::from_fn(trace::request_span))
        .with_state(state)
}

async fn healthz() -> &'static str {
    "ok"
}

/// Go's names for CPU architectures, which Kubernetes clients expect in `platform`.
fn go_arch(arch: &str) -> &str {
    match arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

async fn version() -> Response {
    let body = json!({
        "major": env!("CARGO_PKG_VERSION_MAJOR"),
        "minor": env!("CARGO_PKG_VERSION_MINOR"),
        "gitVersion": format!("v{}", env!("CARGO_PKG_VERSION")),
        "platform": format!("{}/{}", std::env::consts::OS, go_arch(std::env::consts::ARCH)),
        "compiler": "rustc",
    });
    json_response(StatusCode::OK, &body)
}

fn is_api_path(path: &str) -> bool {
    ["/api", "/apis"].iter().any(|p| {
        path == *p
            || path
                .strip_prefix(p)
                .is_some_and(|rest| rest.starts_with('/'))
    })
}

async fn dispatch(State(state): State<Arc<AppState>>, req: Request) -> Response {
    match handle(&state, req).await {
        Ok(resp) => resp,
        Err(e) => e.into_response(),
    }
}

async fn handle(state: &Arc<AppState>, req: Request) -> Result<Response, ApiError> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    if !is_api_path(path) {
        return Err(ApiError::UnknownPath);
    }
    state.token.check(&parts.headers)?;
    let target = path::parse(path).ok_or(ApiError::UnknownPath)?;
    let params = Params::from_uri(&parts.uri)?;
    let headers = &parts.headers;
    let one = target.name.is_some();
    match (parts.method.clone(), one, target.status) {
        (Method::GET, false, _) => {
            let filter = Filter::from_params(&params)?;
            if params.watch()? {
                let scope = Scope {
                    kind: Some(target.kind),
                    namespace: target.namespace.clone(),
                };
                watch::watch(state, scope, filter, &params)
            } else {
                read::list(state, target.kind, target.namespace.as_deref(), &filter)
            }
        }
        (Method::GET, true, _) => {
            if params.watch()? {
                // Watching one object is spelled as a collection watch with
                // fieldSelector=metadata.name=NAME.
                return Err(ApiError::BadQuery {
                    param: "watch".into(),
                    value: "true".into(),
                });
            }
            let key = target.key().ok_or(ApiError::UnknownPath)?;
            read::get(state, &key)
        }
        (Method::POST, false, false) if target.namespace.is_some() || !target.kind.namespaced() => {
            write::create(state, &target, headers, body).await
        }
        (Method::PUT, true, false) => write::replace(state, &target, headers, body).await,
        (Method::PUT, true, true) => write::replace_status(state, &target, headers, body).await,
        (Method::PATCH, true, _) => patch::patch(state, &target, headers, body).await,
        (Method::DELETE, true, false) => {
            write::delete(state, &target, &params, headers, body).await
        }
        (method, _, _) => Err(ApiError::MethodNotAllowed(method.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_prefixes() {
        for p in ["/api", "/api/v1/pods", "/apis", "/apis/apps/v1/deployments"] {
            assert!(is_api_path(p), "{p}");
        }
        for p in ["/apix", "/", "/healthz", "/api2/v1", "/version"] {
            assert!(!is_api_path(p), "{p}");
        }
    }
}
