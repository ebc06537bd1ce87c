//! POST (create), PUT (replace, and replace of `/status`) and DELETE.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use rand::Rng;
use skiff_api::{Object, Revision};

use super::AppState;
use super::body;
use super::namespaces;
use super::objects::{
    clear_server_fields, defaulted_and_valid, expected_revision, place, required_name,
    write_with_retry,
};
use super::params::Params;
use super::path::Target;
use super::status::{ApiError, deleted_status, json_response, object_response};
use crate::store::{Deleted, StoreError};

/// Names tried for a `generateName` before giving up on collisions.
const GENERATE_ATTEMPTS: usize = 3;
const GENERATED_SUFFIX_LEN: usize = 5;
const SUFFIX_ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

fn generated_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..GENERATED_SUFFIX_LEN)
        .map(|_| char::from(SUFFIX_ALPHABET[rng.random_range(0..SUFFIX_ALPHABET.len())]))
        .collect();
    format!("{prefix}{suffix}")
}

pub(crate) async fn create(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let bytes = body::read(headers, body, state.body_limit).await?;
    let mut obj = body::decode_object(headers, &bytes)?;
    place(&mut obj, target)?;
    clear_server_fields(&mut obj);
    let prefix = match obj.meta().generate_name.as_deref() {
        Some(p) if obj.meta().name.is_empty() && !p.is_empty() => Some(p.to_string()),
        _ if obj.meta().name.is_empty() => return Err(required_name(&obj)),
        _ => None,
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut candidate = obj.clone();
        if let Some(prefix) = &prefix {
            candidate.meta_mut().name = generated_name(prefix);
        }
        let candidate = defaulted_and_valid(candidate)?;
        if let Some(ns) = &target.namespace {
            namespaces::check_open(state, ns, &candidate)?;
        }
        match state.store.create(candidate).await {
            Ok(created) => return Ok(object_response(StatusCode::CREATED, &created)),
            Err(StoreError::AlreadyExists(_))
                if prefix.is_some() && attempt < GENERATE_ATTEMPTS => {}
            Err(e) => return Err(e.into()),
        }
    }
}

async fn decode_for_write(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Object, Option<Revision>), ApiError> {
    let bytes = body::read(headers, body, state.body_limit).await?;
    let mut obj = body::decode_object(headers, &bytes)?;
    place(&mut obj, target)?;
    let expected = expected_revision(&obj)?;
    Ok((obj, expected))
}

/// PUT of the object: everything but `status`, which is kept from the stored object.
pub(crate) async fn replace(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (obj, expected) = decode_for_write(state, target, headers, body).await?;
    let key = obj.key();
    let written = write_with_retry(state, &key, expected, |current| {
        defaulted_and_valid(obj.clone().with_status_of(current))
    })
    .await?;
    Ok(object_response(StatusCode::OK, &written))
}

/// PUT of `/status`: only the body's `status` is applied.
pub(crate) async fn replace_status(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let (obj, expected) = decode_for_write(state, target, headers, body).await?;
    let key = obj.key();
    let written = write_with_retry(state, &key, expected, |current| {
        defaulted_and_valid(current.clone().with_status_of(&obj))
    })
    .await?;
    Ok(object_response(StatusCode::OK, &written))
}

/// The `preconditions.resourceVersion` of a delete, from the query string or from a
/// `DeleteOptions` body.
async fn delete_precondition(
    state: &AppState,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Option<Revision>, ApiError> {
    const PARAM: &str = "preconditions.resourceVersion";
    if let Some(rev) = params.revision(PARAM)? {
        return Ok(Some(rev));
    }
    let bytes = body::read(headers, body, state.body_limit).await?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let options = body::decode_json(&bytes)?;
    match options.pointer("/preconditions/resourceVersion") {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => {
            let text = v.as_str().unwrap_or_default();
            Revision::parse(text)
                .map(Some)
                .ok_or_else(|| ApiError::BadQuery {
                    param: PARAM.into(),
                    value: v.to_string(),
                })
        }
    }
}

/// DELETE: 200 with the object when finalizers hold it (it is only marked), 200 with a
/// success `Status` when it is gone.
pub(crate) async fn delete(
    state: &Arc<AppState>,
    target: &Target,
    params: &Params,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let precondition = delete_precondition(state, params, headers, body).await?;
    let Some(key) = target.key() else {
        return Err(ApiError::MethodNotAllowed("DELETE".into()));
    };
    if key.kind == skiff_api::Kind::Namespace {
        return namespaces::delete(state, &key.name, precondition).await;
    }
    Ok(deleted_response(
        state.store.delete(&key, precondition).await?,
    ))
}

pub(crate) fn deleted_response(deleted: Deleted) -> Response {
    match deleted {
        Deleted::Removed(obj) => {
            let uid = obj.meta().uid.as_ref().map(|u| u.0.as_str());
            json_response(StatusCode::OK, &deleted_status(&obj.key(), uid))
        }
        Deleted::Marked(obj) => object_response(StatusCode::OK, &obj),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_append_five_lowercase_alphanumerics() {
        let a = generated_name("web-");
        assert_eq!(a.len(), 9);
        assert!(a.starts_with("web-"));
        assert!(a[4..].bytes().all(|b| SUFFIX_ALPHABET.contains(&b)));
        let many: std::collections::HashSet<_> = (0..50).map(|_| generated_name("x")).collect();
        assert!(many.len() > 45, "suffixes should vary");
    }
}
