//! Resource quantities (`250m`, `0.5`, `128Mi`, `1G`). (Skeleton.)

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quantity(pub String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid quantity {0:?}")]
pub struct QuantityError(pub String);
