//! Who may pull: the admin token (as a bearer token, or as the password of user
//! `admin` in Basic auth, which is how skopeo and docker send it), a node with its MQTT
//! password, or anyone when anonymous pulls are enabled.

use axum::http::{HeaderMap, header};

use crate::join::{Credentials, constant_time_eq};
use crate::server::AdminToken;

/// The Basic auth user that stands for the admin token.
pub const ADMIN_USER: &str = "admin";

/// Checks pull credentials.
#[derive(Debug, Clone)]
pub struct PullAuth {
    pub admin: AdminToken,
    /// Node logins; `None` where nodes have no credentials (tests, a hub without join).
    pub nodes: Option<Credentials>,
    pub anonymous_pull: bool,
}

/// Who a request was authenticated as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    Admin,
    Node(String),
    Anonymous,
}

impl PullAuth {
    /// Whether the admin token was presented as a bearer token (the import and removal
    /// endpoints accept nothing else).
    pub(crate) fn is_admin_bearer(&self, headers: &HeaderMap) -> bool {
        self.admin.check(headers).is_ok()
    }

    /// The identity behind the request's credentials, `None` if they are missing or
    /// wrong (and anonymous pulls are off).
    pub(crate) fn identify(&self, headers: &HeaderMap) -> Option<Identity> {
        let presented = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let found = presented.and_then(|v| self.check(v));
        match found {
            Some(id) => Some(id),
            // Wrong credentials are refused even when anonymous pulls are allowed: a
            // client that sends a stale password should hear about it.
            None if presented.is_none() && self.anonymous_pull => Some(Identity::Anonymous),
            None => None,
        }
    }

    fn check(&self, value: &str) -> Option<Identity> {
        let (scheme, rest) = value.trim().split_once(' ')?;
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self.admin_secret(rest).then_some(Identity::Admin);
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return None;
        }
        let decoded = String::from_utf8(decode_base64(rest)?).ok()?;
        let (user, password) = decoded.split_once(':')?;
        if user == ADMIN_USER {
            return self.admin_secret(password).then_some(Identity::Admin);
        }
        let nodes = self.nodes.as_ref()?;
        nodes
            .check_password(user, password)
            .then(|| Identity::Node(user.to_string()))
    }

    fn admin_secret(&self, presented: &str) -> bool {
        constant_time_eq(self.admin.secret().as_bytes(), presented.as_bytes())
    }
}

/// Decodes standard base64 (padding optional); `None` if it is not base64.
pub(crate) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    LENIENT.decode(s).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes() {
        assert_eq!(decode_base64("YWRtaW46czNjcmV0").unwrap(), b"admin:s3cret");
        assert_eq!(decode_base64("YQ==").unwrap(), b"a");
        assert_eq!(decode_base64("YWI=").unwrap(), b"ab");
        assert_eq!(decode_base64("YWJj").unwrap(), b"abc");
        assert_eq!(decode_base64("").unwrap(), b"");
        assert!(decode_base64("Y").is_none());
        assert!(decode_base64("Y*==").is_none());
    }
}
