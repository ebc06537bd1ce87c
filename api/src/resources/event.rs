//! Event.

use serde::{Deserialize, Serialize};

use crate::ObjectMeta;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Event {
    #[serde(default)]
    pub metadata: ObjectMeta,
}
