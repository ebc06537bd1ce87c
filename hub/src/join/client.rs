//! `skiff-hub token create`: asks the running hub for a join token over its REST API,
//! with the admin token read from the data directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::server::{AdminToken, TokenError};

/// Why a token could not be created.
#[derive(Debug, thiserror::Error)]
pub enum TokenClientError {
    #[error("reading the admin token: {0}")]
    Admin(#[from] TokenError),
    #[error("admin token {0} not found: is this the hub's data directory (--data-dir)?")]
    NoAdminToken(PathBuf),
    #[error("talking to the hub at {server}: {message}")]
    Http { server: String, message: String },
    #[error("the hub answered {code}: {message}")]
    Refused { code: u16, message: String },
}

/// A created token and its expiry (RFC 3339).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedToken {
    pub token: String,
    pub expires: String,
}

/// Calls `POST {server}/skiff/v1/tokens`.
pub fn create_token(
    server: &str,
    data_dir: &Path,
    ttl: Duration,
    uses: u32,
) -> Result<CreatedToken, TokenClientError> {
    let path = AdminToken::path(data_dir);
    if !path.exists() {
        return Err(TokenClientError::NoAdminToken(path));
    }
    // Loading never creates here: the file exists, so it is only read and checked.
    let admin = AdminToken::load_or_create(data_dir)?;
    let http = |message: String| TokenClientError::Http {
        server: server.to_string(),
        message,
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let body = serde_json::json!({ "ttlSeconds": ttl.as_secs().max(1), "uses": uses }).to_string();
    let mut resp = agent
        .post(&format!("{}/skiff/v1/tokens", server.trim_end_matches('/')))
        .header("Authorization", &format!("Bearer {}", admin.secret()))
        .header("Content-Type", "application/json")
        .send(body.as_bytes())
        .map_err(|e| http(e.to_string()))?;
    let code = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|e| http(e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| http(format!("unexpected answer: {e}")))?;
    if code != 201 {
        return Err(TokenClientError::Refused {
            code,
            message: value["message"].as_str().unwrap_or(&text).to_string(),
        });
    }
    match (value["token"].as_str(), value["expires"].as_str()) {
        (Some(t), Some(e)) => Ok(CreatedToken {
            token: t.to_string(),
            expires: e.to_string(),
        }),
        _ => Err(http(format!("unexpected answer: {text}"))),
    }
}
