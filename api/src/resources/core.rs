//! Types shared by several kinds: `IntOrString`, object references, protocols, condition
//! status and taint effects, plus the closed-set string enum macro and the serde
//! "skip when empty" predicates every resource file uses.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Uid;

/// Declares a closed set of strings as an enum whose serde spelling is exactly the
/// Kubernetes one, with `as_str`, `Display` and the list of accepted values (used in
/// error messages).
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize,
        )]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $text)] $variant,)+
        }

        impl $name {
            /// Every accepted spelling, in declaration order.
            pub const VALUES: &'static [&'static str] = &[$($text),+];

            /// The Kubernetes spelling.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
pub(crate) use string_enum;

// Predicates for `skip_serializing_if`, so output carries only what is set, as
// Kubernetes' `omitempty` does.
pub(crate) fn is_false(b: &bool) -> bool {
    !*b
}

pub(crate) fn is_zero_i32(n: &i32) -> bool {
    *n == 0
}

pub(crate) fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

pub(crate) fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

string_enum! {
    /// Network protocol of a port.
    pub enum Protocol {
        Tcp = "TCP",
        Udp = "UDP",
        Sctp = "SCTP",
    }
}

string_enum! {
    /// Status of a condition.
    #[derive(Default)]
    pub enum ConditionStatus {
        True = "True",
        False = "False",
        #[default]
        Unknown = "Unknown",
    }
}

impl ConditionStatus {
    pub fn is_true(self) -> bool {
        self == ConditionStatus::True
    }
}

string_enum! {
    /// What a taint does to pods that do not tolerate it.
    pub enum TaintEffect {
        NoSchedule = "NoSchedule",
        PreferNoSchedule = "PreferNoSchedule",
        NoExecute = "NoExecute",
    }
}

/// A value that may be an integer or a string: a port number or a port name, a count
/// or a percentage (`25%`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl IntOrString {
    /// The percentage in a string like `25%`, if this is one.
    pub fn percent(&self) -> Option<i32> {
        match self {
            IntOrString::String(s) => {
                let digits = s.strip_suffix('%')?;
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                digits.parse().ok()
            }
            IntOrString::Int(_) => None,
        }
    }

    /// Resolves an absolute count or a percentage of `total`, rounding a percentage up
    /// or down (Deployments round `maxSurge` up and `maxUnavailable` down). `None` when
    /// the value is a string that is not a percentage.
    pub fn scaled_value(&self, total: i32, round_up: bool) -> Option<i32> {
        match self {
            IntOrString::Int(n) => Some(*n),
            IntOrString::String(_) => {
                let pct = i64::from(self.percent()?);
                let product = pct * i64::from(total);
                let value = if round_up {
                    (product + 99).div_euclid(100)
                } else {
                    product.div_euclid(100)
                };
                i32::try_from(value).ok()
            }
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl From<i32> for IntOrString {
    fn from(n: i32) -> Self {
        IntOrString::Int(n)
    }
}

impl From<&str> for IntOrString {
    fn from(s: &str) -> Self {
        IntOrString::String(s.to_string())
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => s.serialize_i32(*n),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<IntOrString, E> {
                i32::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(n), &"a 32-bit integer"))
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<IntOrString, E> {
                i32::try_from(n)
                    .map(IntOrString::Int)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(n), &"a 32-bit integer"))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(s.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A reference to another object (Kubernetes `ObjectReference`), as used by events and
/// endpoints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectReference {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<Uid>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub field_path: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_or_string_serde() {
        let v: IntOrString = serde_json::from_str("8080").unwrap();
        assert_eq!(v, IntOrString::Int(8080));
        let v: IntOrString = serde_json::from_str("\"http\"").unwrap();
        assert_eq!(v, IntOrString::String("http".into()));
        assert!(serde_json::from_str::<IntOrString>("1.5").is_err());
        assert!(serde_json::from_str::<IntOrString>("99999999999").is_err());
        assert_eq!(serde_json::to_string(&IntOrString::Int(3)).unwrap(), "3");
        assert_eq!(
            serde_json::to_string(&IntOrString::from("25%")).unwrap(),
            "\"25%\""
        );
    }

    #[test]
    fn int_or_string_scaling() {
        let p = IntOrString::from("25%");
        assert_eq!(p.percent(), Some(25));
        assert_eq!(p.scaled_value(10, true), Some(3));
        assert_eq!(p.scaled_value(10, false), Some(2));
        assert_eq!(p.scaled_value(4, true), Some(1));
        assert_eq!(IntOrString::Int(2).scaled_value(10, true), Some(2));
        assert_eq!(IntOrString::from("abc").scaled_value(10, true), None);
        assert_eq!(IntOrString::from("%").percent(), None);
        assert_eq!(IntOrString::from("-5%").percent(), None);
    }

    #[test]
    fn string_enums_use_kubernetes_spelling() {
        assert_eq!(serde_json::to_string(&Protocol::Tcp).unwrap(), "\"TCP\"");
        assert_eq!(
            serde_json::from_str::<TaintEffect>("\"NoExecute\"").unwrap(),
            TaintEffect::NoExecute
        );
        assert_eq!(Protocol::VALUES, &["TCP", "UDP", "SCTP"]);
        assert_eq!(ConditionStatus::True.to_string(), "True");
    }
}
