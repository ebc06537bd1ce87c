//! Joining the hub: trading a join token for the node's credentials over HTTP
//! (`POST {hub}/skiff/v1/join`). Blocking; callers on an async runtime run it on a
//! blocking thread.

use std::time::Duration;

use serde::Deserialize;

use crate::state::Credentials;

const JOIN_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// The hub refused: its Status message is shown as it is.
    #[error("the hub refused to join node {node} (HTTP {code}): {message}")]
    Refused {
        node: String,
        code: u16,
        message: String,
    },
    #[error("cannot reach the hub at {url}: {source}")]
    Transport {
        url: String,
        source: Box<ureq::Error>,
    },
    #[error("the hub's join answer is invalid: {0}")]
    BadAnswer(String),
    #[error("the node is not joined yet and no --token was given")]
    NoToken,
    #[error("the node is not joined yet and no --hub URL was given")]
    NoHub,
}

/// The error body the hub sends (a Kubernetes Status); only the message matters here.
#[derive(Deserialize)]
struct StatusBody {
    #[serde(default)]
    message: String,
}

/// Asks the hub at `hub` to admit `node` with `token`.
pub fn join(hub: &str, token: &str, node: &str) -> Result<Credentials, JoinError> {
    let url = format!("{}/skiff/v1/join", hub.trim_end_matches('/'));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(JOIN_TIMEOUT))
        .build()
        .into();
    let body = serde_json::json!({ "token": token, "nodeName": node }).to_string();
    let mut resp = agent
        .post(&url)
        .header("content-type", "application/json")
        .send(body)
        .map_err(|source| JoinError::Transport {
            url: url.clone(),
            source: Box::new(source),
        })?;
    let code = resp.status().as_u16();
    let text = resp
        .body_mut()
        .read_to_string()
        .map_err(|source| JoinError::Transport {
            url: url.clone(),
            source: Box::new(source),
        })?;
    if !(200..300).contains(&code) {
        let message = serde_json::from_str::<StatusBody>(&text)
            .map(|s| s.message)
            .ok()
            .filter(|m| !m.is_empty())
            .unwrap_or(text);
        return Err(JoinError::Refused {
            node: node.to_string(),
            code,
            message,
        });
    }
    let creds: Credentials =
        serde_json::from_str(&text).map_err(|e| JoinError::BadAnswer(e.to_string()))?;
    creds.check().map_err(JoinError::BadAnswer)?;
    if creds.node_name != node {
        return Err(JoinError::BadAnswer(format!(
            "asked to join as {node}, admitted as {}",
            creds.node_name
        )));
    }
    Ok(creds)
}
