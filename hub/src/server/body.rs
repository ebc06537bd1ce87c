//! Request bodies: reading them under the size limit, and decoding objects from JSON or
//! YAML by `Content-Type`, with parse errors that say where the problem is.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde_json::Value;
use skiff_api::{Object, parse_manifests, parse_object_json};

use super::status::ApiError;

/// Reads the whole body, refusing anything over `limit` bytes with 413.
pub(crate) async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    // A declared length over the limit is refused before reading a byte of it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(ApiError::TooLarge { limit })
        }
        Err(e) => Err(ApiError::BodyRead(e.to_string())),
    }
}

/// The media type of the body, lower-cased, without parameters such as `charset`.
pub(crate) fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = v
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    (!essence.is_empty()).then_some(essence)
}

/// Decodes one object from a create or replace body: JSON (also when no type is given)
/// or YAML.
pub(crate) fn decode_object(headers: &HeaderMap, bytes: &[u8]) -> Result<Object, ApiError> {
    match media_type(headers).as_deref() {
        None | Some("application/json") => {
            parse_object_json(bytes).map_err(|e| ApiError::Malformed(e.to_string()))
        }
        Some("application/yaml" | "application/x-yaml" | "text/yaml") => {
            let text = std::str::from_utf8(bytes)
                .map_err(|e| ApiError::Malformed(format!("the body is not UTF-8: {e}")))?;
            let mut objects =
                parse_manifests(text).map_err(|e| ApiError::Malformed(e.to_string()))?;
            match objects.len() {
                1 => Ok(objects.remove(0)),
                n => Err(ApiError::Malformed(format!(
                    "expected exactly one object in the body, found {n}"
                ))),
            }
        }
        Some(other) => Err(ApiError::UnsupportedMediaType(other.to_string())),
    }
}

/// Parses a JSON document (a patch, delete options), keeping serde's line and column.
pub(crate) fn decode_json(bytes: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| ApiError::Malformed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn typed(t: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_str(t).unwrap());
        h
    }

    #[tokio::test]
    async fn size_limit_applies_with_and_without_content_length() {
        let small = read(&HeaderMap::new(), Body::from("12345"), 5)
            .await
            .unwrap();
        assert_eq!(&small[..], b"12345");
        let err = read(&HeaderMap::new(), Body::from("123456"), 5)
            .await
            .unwrap_err();
        assert!(matches!(err, ApiError::TooLarge { limit: 5 }));
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("1000"));
        let err = read(&h, Body::from("1"), 5).await.unwrap_err();
        assert!(matches!(err, ApiError::TooLarge { limit: 5 }));
    }

    #[test]
    fn media_types() {
        assert_eq!(
            media_type(&typed("Application/JSON; charset=utf-8")).as_deref(),
            Some("application/json")
        );
        assert_eq!(media_type(&HeaderMap::new()), None);
        let err = decode_object(&typed("text/plain"), b"{}").unwrap_err();
        assert!(matches!(err, ApiError::UnsupportedMediaType(t) if t == "text/plain"));
    }

    #[test]
    fn json_syntax_errors_carry_a_position() {
        let err = decode_json(b"{\n  \"a\": 1,\n  oops\n}").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("column"), "{msg}");
    }
}
