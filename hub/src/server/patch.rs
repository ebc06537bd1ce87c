//! PATCH with `application/merge-patch+json` (RFC 7386): the patch is merged into the
//! stored object's JSON, and the result goes through the same checks as a PUT. Other
//! patch types (JSON patch, strategic merge) answer 415.

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};
use skiff_api::Revision;

use super::AppState;
use super::body;
use super::objects::{defaulted_and_valid, from_json, place, write_with_retry};
use super::path::Target;
use super::status::{ApiError, object_response};

pub(crate) const MERGE_PATCH: &str = "application/merge-patch+json";

/// Applies a JSON merge patch (RFC 7386) to `target` in place.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(changes) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(fields) = target {
        for (name, change) in changes {
            if change.is_null() {
                fields.remove(name);
            } else {
                merge_patch(fields.entry(name.as_str()).or_insert(Value::Null), change);
            }
        }
    }
}

pub(crate) async fn patch(
    state: &AppState,
    target: &Target,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    match body::media_type(headers) {
        Some(t) if t == MERGE_PATCH => {}
        other => {
            return Err(ApiError::UnsupportedMediaType(
                other.unwrap_or_else(|| "(none)".into()),
            ));
        }
    }
    let bytes = body::read(headers, body, state.body_limit).await?;
    let patch = body::decode_json(&bytes)?;
    if !patch.is_object() {
        return Err(ApiError::Malformed(
            "a merge patch must be a JSON object".into(),
        ));
    }
    let Some(key) = target.key() else {
        return Err(ApiError::MethodNotAllowed("PATCH".into()));
    };
    // A resourceVersion in the patch is a precondition, as in Kubernetes.
    let expected =
        match patch.pointer("/metadata/resourceVersion") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_str().and_then(Revision::parse).ok_or_else(|| {
                ApiError::Malformed(format!("invalid metadata.resourceVersion {v}"))
            })?),
        };
    let written = write_with_retry(state, &key, expected, |current| {
        let mut doc = current.to_json();
        merge_patch(&mut doc, &patch);
        let mut patched = from_json(&doc)?;
        place(&mut patched, target)?;
        let next = if target.status {
            current.clone().with_status_of(&patched)
        } else {
            patched.with_status_of(current)
        };
        defaulted_and_valid(next)
    })
    .await?;
    Ok(object_response(StatusCode::OK, &written))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn rfc7386_examples() {
        // The examples of RFC 7386, appendix A.
        let cases = [
            (json!({"a":"b"}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"b"}), json!({"b":"c"}), json!({"a":"b","b":"c"})),
            (json!({"a":"b"}), json!({"a":null}), json!({})),
            (
                json!({"a":"b","b":"c"}),
                json!({"a":null}),
                json!({"b":"c"}),
            ),
            (json!({"a":["b"]}), json!({"a":"c"}), json!({"a":"c"})),
            (json!({"a":"c"}), json!({"a":["b"]}), json!({"a":["b"]})),
            (
                json!({"a":{"b":"c"}}),
                json!({"a":{"b":"d","c":null}}),
                json!({"a":{"b":"d"}}),
            ),
            (json!({"a":[{"b":"c"}]}), json!({"a":[1]}), json!({"a":[1]})),
            (json!(["a", "b"]), json!(["c", "d"]), json!(["c", "d"])),
            (json!({"a":"b"}), json!(["c"]), json!(["c"])),
            (json!({"a":"foo"}), json!(null), json!(null)),
            (json!({"a":"foo"}), json!("bar"), json!("bar")),
            (json!({"e":null}), json!({"a":1}), json!({"e":null,"a":1})),
            (json!([1, 2]), json!({"a":"b","c":null}), json!({"a":"b"})),
            (
                json!({}),
                json!({"a":{"bb":{"ccc":null}}}),
                json!({"a":{"bb":{}}}),
            ),
        ];
        for (mut doc, patch, want) in cases {
            merge_patch(&mut doc, &patch);
            assert_eq!(doc, want, "patch {patch}");
        }
    }
}
