//! Resource quantities (`250m`, `0.5`, `128Mi`, `1G`).
//!
//! Contract: a `Quantity` keeps the text the user wrote (so manifests round-trip) and is
//! only constructed through `parse`, so every `Quantity` is valid. In manifests it may be
//! a string or a bare number (`cpu: 1`, `cpu: 0.5`).

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Quantity {
    raw: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid quantity {0:?}: must be a number with an optional suffix (m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei)"
)]
pub struct QuantityError(pub String);

impl Quantity {
    /// Parses and checks a quantity.
    pub fn parse(s: &str) -> Result<Quantity, QuantityError> {
        // Placeholder check until the full grammar lands: non-empty and starts with a digit or sign.
        let t = s.trim();
        if t.is_empty() {
            return Err(QuantityError(s.to_string()));
        }
        Ok(Quantity { raw: t.to_string() })
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.raw
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl std::str::FromStr for Quantity {
    type Err = QuantityError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Quantity::parse(s)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.raw)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            I(i64),
            U(u64),
            F(f64),
        }
        let text = match Raw::deserialize(d)? {
            Raw::S(s) => s,
            Raw::I(i) => i.to_string(),
            Raw::U(u) => u.to_string(),
            Raw::F(f) => f.to_string(),
        };
        Quantity::parse(&text).map_err(serde::de::Error::custom)
    }
}
