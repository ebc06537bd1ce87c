//! What the agent keeps on disk: its credentials and its database of desired state.

mod credentials;
mod db;

pub use credentials::{Credentials, CredentialsError};
pub use db::{Applied, DbError, StateDb};
