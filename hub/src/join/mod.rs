//! Joining nodes: bootstrap tokens, the credentials each node receives when it joins
//! (its MQTT password and its `NodeKey`), and the REST endpoints that hand them out.
//!
//! Everything lives in `DATA_DIR/credentials.db`, apart from the state store: the store
//! holds an exclusive lock on `state.db`, and credentials are secrets that never belong
//! in lists, watches or backups of the cluster state. Node keys are stored as they are
//! (the hub must open every frame a node sends), so the data directory is as secret as
//! the keys themselves: mode 0700, owned by the hub's user.

mod client;
mod credentials;
mod http;
mod token;

pub use client::{CreatedToken, TokenClientError, create_token};
pub use credentials::{CredentialError, Credentials, Issued, JoinError};
pub use http::{DEFAULT_TOKEN_TTL_SECONDS, JoinApi, routes};
pub(crate) use http::{failure as status_failure, json as json_response, unauthorized};
pub(crate) use token::constant_time_eq;
pub use token::{JoinToken, TokenParseError};

/// The credentials database inside the data directory.
pub const CREDENTIALS_DB: &str = "credentials.db";

/// Whether `name` can be a node name: a DNS-1123 subdomain (lower-case letters, digits,
/// `-` and `.`, at most 253 characters, each label starting and ending alphanumeric).
/// That also keeps MQTT wildcards and `/` out of topics and broker user names.
pub fn valid_node_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_names() {
        for ok in ["edge-1", "a", "rack1.site-2", "0"] {
            assert!(valid_node_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Edge",
            "a/b",
            "a+b",
            "#",
            "-a",
            "a-",
            "a..b",
            "a_b",
            "_skiff-hub",
        ] {
            assert!(!valid_node_name(bad), "{bad}");
        }
        assert!(!valid_node_name(&"a".repeat(254)));
    }
}
