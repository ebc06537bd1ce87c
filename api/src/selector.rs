//! Label and field selectors. (Skeleton.)

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FieldSelector;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid selector {0:?}")]
pub struct SelectorError(pub String);
