//! Manifest parsing: multi-document YAML or JSON into typed objects. (Skeleton; the
//! resource-model work replaces this with the full parser.)

use crate::{Kind, Object};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("document {doc}: {message}")]
    Syntax { doc: usize, message: String },
    #[error("document {doc}: unknown kind {api_version}/{kind}")]
    UnknownKind {
        doc: usize,
        api_version: String,
        kind: String,
    },
    #[error("document {doc}: {path}: {message}")]
    Field {
        doc: usize,
        path: String,
        message: String,
    },
}

pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| ManifestError::Syntax {
        doc: 1,
        message: e.to_string(),
    })?;
    Ok(vec![parse_value(1, v)?])
}

pub fn parse_object_json(bytes: &[u8]) -> Result<Object, ManifestError> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Syntax {
            doc: 1,
            message: e.to_string(),
        })?;
    parse_value(1, v)
}

fn parse_value(doc: usize, mut v: serde_json::Value) -> Result<Object, ManifestError> {
    let obj = v.as_object_mut().ok_or(ManifestError::Syntax {
        doc,
        message: "not an object".into(),
    })?;
    let api_version = obj
        .remove("apiVersion")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let kind_name = obj
        .remove("kind")
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let kind = Kind::from_api_version_kind(&api_version, &kind_name).ok_or(
        ManifestError::UnknownKind {
            doc,
            api_version,
            kind: kind_name,
        },
    )?;
    Object::from_body(kind, v).map_err(|e| ManifestError::Field {
        doc,
        path: e.path().to_string(),
        message: e.inner().to_string(),
    })
}
