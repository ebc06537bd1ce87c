//! GET of one object and of collections (`PodList`, `DeploymentList`, ...).

use axum::http::StatusCode;
use axum::response::Response;
use std::io::Write;

use skiff_api::{Kind, ObjectKey};

use super::AppState;
use super::filter::Filter;
use super::status::{ApiError, json_bytes_response};
use crate::store::Scope;

pub(crate) fn get(state: &AppState, key: &ObjectKey) -> Result<Response, ApiError> {
    let obj = state
        .store
        .get(key)
        .ok_or_else(|| ApiError::NotFound(key.clone()))?;
    Ok(json_bytes_response(
        StatusCode::OK,
        obj.to_json_string().into_bytes(),
    ))
}

pub(crate) fn list(
    state: &AppState,
    kind: Kind,
    namespace: Option<&str>,
    filter: &Filter,
) -> Result<Response, ApiError> {
    let scope = Scope {
        kind: Some(kind),
        namespace: namespace.map(String::from),
    };
    let (items, revision) = state.store.list(&scope);
    // Written by hand around each object's own serialization: a list of ten thousand
    // pods must not build a JSON tree first.
    let mut body = Vec::with_capacity(256 + items.len() * 1024);
    write!(
        body,
        "{{\"apiVersion\":\"{}\",\"kind\":\"{}List\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[",
        kind.api_version(),
        kind.name(),
        revision
    )
    .expect("writing to a Vec cannot fail");
    let mut first = true;
    for obj in items.iter().filter(|o| filter.matches(o)) {
        if !first {
            body.push(b',');
        }
        first = false;
        obj.write_json(&mut body);
    }
    body.extend_from_slice(b"]}");
    Ok(json_bytes_response(StatusCode::OK, body))
}
