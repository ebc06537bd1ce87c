//! GET of one object and of collections (`PodList`, `DeploymentList`, ...).

use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{Value, json};
use skiff_api::{Kind, ObjectKey};

use super::AppState;
use super::filter::Filter;
use super::status::{ApiError, json_response};
use crate::store::Scope;

pub(crate) fn get(state: &AppState, key: &ObjectKey) -> Result<Response, ApiError> {
    let obj = state
        .store
        .get(key)
        .ok_or_else(|| ApiError::NotFound(key.clone()))?;
    Ok(json_response(StatusCode::OK, &obj.to_json()))
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
    let items: Vec<Value> = items
        .iter()
        .filter(|o| filter.matches(o))
        .map(|o| o.to_json())
        .collect();
    let body = json!({
        "apiVersion": kind.api_version(),
        "kind": format!("{}List", kind.name()),
        "metadata": {"resourceVersion": revision.to_string()},
        "items": items,
    });
    Ok(json_response(StatusCode::OK, &body))
}
