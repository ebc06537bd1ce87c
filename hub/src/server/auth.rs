//! The admin bearer token: generated once into `DATA_DIR/admin.token` (mode 0600, never
//! readable by others even briefly), read on later starts, and checked on every API
//! request in constant time.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::http::{HeaderMap, header};
use rand::TryRngCore;
use rand::rngs::OsRng;

use super::status::ApiError;

/// Bytes of randomness in a generated token.
const TOKEN_BYTES: usize = 32;
const TOKEN_FILE: &str = "admin.token";

/// The secret that grants full access to the API. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

/// Why the admin token could not be loaded or created.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is accessible to other users (mode {mode:o}); run `chmod 600 {path}` or remove it to generate a new token"
    )]
    Insecure { path: PathBuf, mode: u32 },
    #[error("{path} holds no token; remove it to generate a new one")]
    Empty { path: PathBuf },
    #[error("the operating system's random number generator failed: {0}")]
    Random(rand::rand_core::OsError),
}

impl AdminToken {
    /// Where the token of a hub with this data directory lives.
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(TOKEN_FILE)
    }

    /// Reads `DATA_DIR/admin.token`, creating it with a fresh random token on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<AdminToken, TokenError> {
        let path = AdminToken::path(data_dir);
        let io = |source| TokenError::Io {
            path: path.clone(),
            source,
        };
        // create_new with the mode set at open: the file never exists with looser
        // permissions, and two hubs racing on one data dir cannot clobber each other.
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                let token = AdminToken::generate()?;
                file.write_all(format!("{}\n", token.0).as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io)?;
                Ok(token)
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                let mut file = OpenOptions::new().read(true).open(&path).map_err(io)?;
                let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(TokenError::Insecure { path, mode });
                }
                let mut text = String::new();
                file.read_to_string(&mut text).map_err(io)?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(TokenError::Empty { path });
                }
                Ok(AdminToken(token.to_string()))
            }
            Err(e) => Err(io(e)),
        }
    }

    fn generate() -> Result<AdminToken, TokenError> {
        let mut bytes = [0u8; TOKEN_BYTES];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(TokenError::Random)?;
        Ok(AdminToken(
            bytes.iter().map(|b| format!("{b:02x}")).collect(),
        ))
    }

    /// A token with a known value, for tests that talk to an in-process server.
    #[cfg(any(test, feature = "test-util"))]
    pub fn from_secret(secret: impl Into<String>) -> AdminToken {
        AdminToken(secret.into())
    }

    /// The secret itself, for clients on this machine that read it from the data
    /// directory (`skiff-hub token create`).
    pub(crate) fn secret(&self) -> &str {
        &self.0
    }

    fn matches(&self, presented: &str) -> bool {
        constant_time_eq(self.0.as_bytes(), presented.as_bytes())
    }

    /// Checks `Authorization: Bearer <token>`.
    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(ApiError::Unauthorized)?;
        if self.matches(presented) {
            Ok(())
        } else {
            Err(ApiError::Unauthorized)
        }
    }
}

/// Compares without an early exit, so the time taken does not reveal how many leading
/// bytes of a guess were right. The length is not secret (tokens have a fixed size).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)));
    diff == 0
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn token_file_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = AdminToken::load_or_create(dir.path()).unwrap();
        assert_eq!(first.0.len(), 2 * TOKEN_BYTES);
        let meta = std::fs::metadata(AdminToken::path(dir.path())).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let again = AdminToken::load_or_create(dir.path()).unwrap();
        assert_eq!(first, again);
        let other = tempfile::tempdir().unwrap();
        assert_ne!(first, AdminToken::load_or_create(other.path()).unwrap());
    }

    #[test]
    fn readable_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        AdminToken::load_or_create(dir.path()).unwrap();
        let path = AdminToken::path(dir.path());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            AdminToken::load_or_create(dir.path()),
            Err(TokenError::Insecure { mode: 0o644, .. })
        ));
    }

    #[test]
    fn bearer_header_is_checked() {
        let token = AdminToken::from_secret("s3cret");
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
            h
        };
        assert!(token.check(&with("Bearer s3cret")).is_ok());
        assert!(token.check(&with("bearer s3cret")).is_ok());
        assert!(token.check(&with("Bearer s3cre")).is_err());
        assert!(token.check(&with("Bearer s3cret2")).is_err());
        assert!(token.check(&with("Basic s3cret")).is_err());
        assert!(token.check(&with("s3cret")).is_err());
        assert!(token.check(&HeaderMap::new()).is_err());
    }
}
