//! Skiff's API: the resource types and their manifests, validation, label selectors,
//! quantities and the wire formats shared by the hub, the agent and the CLI.
//!
//! Everything here is pure: no I/O, no clocks, no unsafe.
#![forbid(unsafe_code)]

mod defaults;
mod kind;
mod manifest;
mod meta;
mod object;
pub mod protocol;
mod quantity;
pub mod resources;
mod selector;
mod time;
mod validation;

pub use defaults::{apply_defaults, default_pull_policy};
pub use kind::{Kind, UnknownKind};
pub use manifest::{ManifestError, parse_manifests, parse_object_json};
pub use meta::{ObjectMeta, OwnerReference, Revision, Uid};
pub use object::{Object, ObjectKey};
pub use quantity::{Quantity, QuantityError};
pub use selector::{
    FieldSelector, LabelSelector, LabelSelectorRequirement, NodeSelectorRequirement, Operator,
    Requirement, Selector, SelectorError, SelectorProblem,
};
pub use time::Time;
pub use validation::{FieldError, FieldErrorKind, ValidationErrors, validate};
