//! The node's credentials from joining the hub: `<state-dir>/credentials.json`, mode
//! 0600, written atomically (temporary file, fsync, rename, fsync of the directory) so a
//! power cut never leaves half a file. The format is the join answer itself:
//!
//! ```json
//! {"nodeName": "edge-1", "broker": "mqtt://hub:1883", "username": "edge-1",
//!  "password": "...", "key": "<64 hex digits>"}
//! ```

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use skiff_api::protocol::NodeKey;

pub(crate) const CREDENTIALS_FILE: &str = "credentials.json";

#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    #[error("cannot read credentials {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid credentials file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write credentials {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the hub hands a node when it joins.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Credentials {
    pub node_name: String,
    /// `mqtt://host:port`.
    pub broker: String,
    pub username: String,
    pub password: String,
    /// The node's [`NodeKey`] in hex.
    pub key: String,
    /// The hub's API URL the node joined through (also its image registry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the password or the key.
        f.debug_struct("Credentials")
            .field("node_name", &self.node_name)
            .field("broker", &self.broker)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    pub fn node_key(&self) -> Option<NodeKey> {
        NodeKey::from_hex(&self.key).ok()
    }

    /// The broker's host and port from `mqtt://host:port` (port 1883 when absent).
    pub fn broker_addr(&self) -> Option<(String, u16)> {
        let rest = self.broker.strip_prefix("mqtt://")?;
        let rest = rest.trim_end_matches('/');
        if let Some(stripped) = rest.strip_prefix('[') {
            // [v6]:port
            let (host, port) = stripped.split_once(']')?;
            let port = match port.strip_prefix(':') {
                Some(p) => p.parse().ok()?,
                None => 1883,
            };
            return Some((host.to_string(), port));
        }
        match rest.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => Some((host.to_string(), port.parse().ok()?)),
            Some(_) => None,
            None if !rest.is_empty() => Some((rest.to_string(), 1883)),
            None => None,
        }
    }

    /// Reads the credentials in `state_dir`; `Ok(None)` when the node has not joined.
    pub fn load(state_dir: &Path) -> Result<Option<Credentials>, CredentialsError> {
        let path = state_dir.join(CREDENTIALS_FILE);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(CredentialsError::Read { path, source }),
        };
        let creds: Credentials =
            serde_json::from_slice(&bytes).map_err(|e| CredentialsError::Invalid {
                path: path.clone(),
                message: e.to_string(),
            })?;
        creds.check().map_err(|message| CredentialsError::Invalid {
            path: path.clone(),
            message,
        })?;
        Ok(Some(creds))
    }

    /// Checks the fields the agent relies on.
    pub(crate) fn check(&self) -> Result<(), String> {
        if self.node_key().is_none() {
            return Err("key is not 64 hex digits".into());
        }
        if self.broker_addr().is_none() {
            return Err(format!(
                "broker {:?} is not mqtt://host:port (TLS brokers are not supported by this build)",
                self.broker
            ));
        }
        Ok(())
    }

    pub fn save(&self, state_dir: &Path) -> Result<(), CredentialsError> {
        let path = state_dir.join(CREDENTIALS_FILE);
        let tmp = state_dir.join(format!("{CREDENTIALS_FILE}.tmp"));
        let werr = |source| CredentialsError::Write {
            path: path.clone(),
            source,
        };
        let json = serde_json::to_vec_pretty(self).expect("credentials serialize");
        let _ = std::fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr)?;
        f.write_all(&json).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        drop(f);
        std::fs::rename(&tmp, &path).map_err(werr)?;
        File::open(state_dir)
            .and_then(|d| d.sync_all())
            .map_err(werr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn creds(broker: &str) -> Credentials {
        Credentials {
            hub: None,
            node_name: "n1".into(),
            broker: broker.into(),
            username: "n1".into(),
            password: "pw".into(),
            key: "ab".repeat(32),
        }
    }

    #[test]
    fn broker_urls() {
        assert_eq!(
            creds("mqtt://h:1884").broker_addr(),
            Some(("h".into(), 1884))
        );
        assert_eq!(creds("mqtt://h").broker_addr(), Some(("h".into(), 1883)));
        assert_eq!(
            creds("mqtt://[::1]:9").broker_addr(),
            Some(("::1".into(), 9))
        );
        assert_eq!(creds("mqtts://h:8883").broker_addr(), None);
        assert_eq!(creds("mqtt://:1").broker_addr(), None);
    }

    #[test]
    fn saved_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Credentials::load(dir.path()).unwrap().is_none());
        let c = creds("mqtt://127.0.0.1:1883");
        c.save(dir.path()).unwrap();
        c.save(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Credentials::load(dir.path()).unwrap(), Some(c));
        assert!(!format!("{:?}", creds("x")).contains("pw"));
        std::fs::write(dir.path().join(CREDENTIALS_FILE), b"{}").unwrap();
        assert!(matches!(
            Credentials::load(dir.path()),
            Err(CredentialsError::Invalid { .. })
        ));
    }
}
