//! Bootstrap tokens: `<6-char id>.<16-char secret>` (lower-case letters and digits), as
//! kubeadm spells them. The id finds the row; only a SHA-256 of the secret is stored.

use std::fmt;

use rand::Rng;
use sha2::{Digest, Sha256};

const ID_LEN: usize = 6;
const SECRET_LEN: usize = 16;
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A join token as handed to an operator. `Debug` hides the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    id: String,
    secret: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a join token looks like abcdef.0123456789abcdef")]
pub struct TokenParseError;

impl JoinToken {
    pub(crate) fn generate() -> JoinToken {
        let mut rng = rand::rng();
        let mut pick = |n: usize| -> String {
            (0..n)
                .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
                .collect()
        };
        JoinToken {
            id: pick(ID_LEN),
            secret: pick(SECRET_LEN),
        }
    }

    pub fn parse(s: &str) -> Result<JoinToken, TokenParseError> {
        let (id, secret) = s.trim().split_once('.').ok_or(TokenParseError)?;
        let ok = |part: &str, len: usize| {
            part.len() == len && part.bytes().all(|b| ALPHABET.contains(&b))
        };
        if !ok(id, ID_LEN) || !ok(secret, SECRET_LEN) {
            return Err(TokenParseError);
        }
        Ok(JoinToken {
            id: id.to_string(),
            secret: secret.to_string(),
        })
    }

    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    pub(crate) fn secret_hash(&self) -> [u8; 32] {
        sha256(self.secret.as_bytes())
    }

    /// The full token, for printing once to whoever created it.
    pub fn reveal(&self) -> String {
        format!("{}.{}", self.id, self.secret)
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "JoinToken({}.<redacted>)", self.id)
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Compares without an early exit, so timing does not reveal matching prefixes.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .fold(0u8, |acc, (x, y)| std::hint::black_box(acc | (x ^ y)))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_parse_back_and_differ() {
        let a = JoinToken::generate();
        let b = JoinToken::generate();
        assert_ne!(a, b);
        assert_eq!(JoinToken::parse(&a.reveal()).unwrap(), a);
        assert!(!format!("{a:?}").contains(&a.secret));
        for bad in [
            "",
            "abcdef",
            "abcdef.0123",
            "ABCDEF.0123456789abcdef",
            "abcdef.0123456789abcdef0",
        ] {
            assert_eq!(JoinToken::parse(bad), Err(TokenParseError), "{bad}");
        }
        assert!(constant_time_eq(b"ab", b"ab"));
        assert!(!constant_time_eq(b"ab", b"ac"));
        assert!(!constant_time_eq(b"ab", b"abc"));
    }
}
