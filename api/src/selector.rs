//! Label and field selectors: the string form (`app=web,tier!=db,env in (prod,qa),!legacy`),
//! the manifest form (`matchLabels` / `matchExpressions`, node selector terms with Gt/Lt),
//! and matching.
//!
//! Contract: the manifest structs below are plain serde data used inside resource specs;
//! `Selector` is the compiled form every consumer matches with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `metav1.LabelSelector` as it appears in manifests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry: operator In, NotIn, Exists or DoesNotExist.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// One node selector term entry (`matchExpressions` / `matchFields` in node affinity):
/// operators In, NotIn, Exists, DoesNotExist, Gt, Lt.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub operator: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// The compiled selector: every requirement must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Selector;

impl Selector {
    /// Parses the string form, e.g. `app=web,tier!=db,env in (prod,qa),!legacy`.
    pub fn parse(_s: &str) -> Result<Selector, SelectorError> {
        Ok(Selector)
    }

    pub fn matches(&self, _labels: &BTreeMap<String, String>) -> bool {
        true
    }
}

/// A field selector (`metadata.name=web,status.phase!=Running`): `=`, `==`, `!=` only.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector;

impl FieldSelector {
    pub fn parse(_s: &str) -> Result<FieldSelector, SelectorError> {
        Ok(FieldSelector)
    }

    /// `get` returns the value of a field path for the object being tested
    /// (see `Object::field`); a missing field compares as the empty string.
    pub fn matches(&self, _get: impl Fn(&str) -> Option<String>) -> bool {
        true
    }

    /// The field paths this selector mentions, so a server can reject unsupported ones.
    pub fn fields(&self) -> Vec<&str> {
        Vec::new()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {0:?}")]
pub struct SelectorError(pub String);
