//! Object validation. (Skeleton.)

use crate::Object;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid object")]
pub struct ValidationErrors(pub Vec<FieldError>);

pub fn validate(_obj: &Object) -> Result<(), ValidationErrors> {
    Ok(())
}
