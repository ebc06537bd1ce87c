//! The hub's REST API: Kubernetes-style paths, JSON/YAML bodies, `Status` errors, bearer
//! token auth, watches as streamed JSON lines, and graceful shutdown.
//!
//! `ApiServer` is built from a [`Store`] and an [`AdminToken`]; `router()` gives the axum
//! router (tests drive it in-process) and `serve()` runs it on a listener until a
//! shutdown signal, ending open watches so in-flight requests can finish.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;

use crate::store::{Store, StoreError};

mod auth;
mod body;
mod filter;
mod namespaces;
mod objects;
mod params;
mod patch;
mod path;
mod read;
mod router;
mod run;
mod status;
mod trace;
mod watch;
mod write;

#[cfg(test)]
mod tests;

pub use auth::{AdminToken, TokenError};
pub use run::{RunError, STATE_DB, prepare_data_dir, run, serve, termination_signal};

/// Default cap on request bodies, as in Kubernetes.
pub const DEFAULT_BODY_LIMIT: usize = 3 * 1024 * 1024;

/// Settings of the API server itself.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
}

impl Default for ApiOptions {
    fn default() -> Self {
        ApiOptions {
            body_limit: DEFAULT_BODY_LIMIT,
        }
    }
}

/// What every handler shares.
#[derive(Debug)]
pub(crate) struct AppState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) token: AdminToken,
    pub(crate) body_limit: usize,
    /// Turns `true` when the server shuts down: watches and background tasks end.
    pub(crate) shutdown: signal::Receiver<bool>,
}

/// The REST API server.
#[derive(Debug)]
pub struct ApiServer {
    state: Arc<AppState>,
    stop: signal::Sender<bool>,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("preparing the built-in namespaces: {0}")]
    Bootstrap(#[source] StoreError),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

impl ApiServer {
    pub fn new(store: Arc<dyn Store>, token: AdminToken, options: ApiOptions) -> ApiServer {
        let (stop, shutdown) = signal::channel(false);
        ApiServer {
            state: Arc::new(AppState {
                store,
                token,
                body_limit: options.body_limit,
                shutdown,
            }),
            stop,
        }
    }

    /// Creates the `default` and `kube-system` namespaces if missing, and resumes the
    /// removal of namespaces a previous run left terminating.
    pub async fn bootstrap(&self) -> Result<(), ServerError> {
        namespaces::bootstrap(&self.state)
            .await
            .map_err(ServerError::Bootstrap)
    }

    /// The axum router serving the whole API.
    pub fn router(&self) -> Router {
        router::build(self.state.clone())
    }

    /// Ends every open watch and background task; requests still in flight finish.
    pub fn shut_down(&self) {
        self.stop.send_replace(true);
    }

    /// Serves on `listener` until `shutdown` completes, then stops accepting, ends open
    /// watches and waits for in-flight requests.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let stop = self.stop.clone();
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move {
                shutdown.await;
                tracing::info!("shutting down: no new connections, ending watches");
                stop.send_replace(true);
            })
            .await
            .map_err(ServerError::Serve)
    }
}
