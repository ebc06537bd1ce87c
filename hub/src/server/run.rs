//! Running the hub's API server as a process: the data directory, the admin token, the
//! listener and the startup line, the MQTT broker (embedded or external) with the link
//! to the agents, and SIGTERM/SIGINT as the graceful shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

use super::{AdminToken, ApiOptions, ApiServer, ServerError, TokenError};
use crate::clock::{Clock, SystemClock};
use crate::config::{BrokerMode, HubConfig};
use crate::controllers::Controllers;
use crate::dispatch::{
    BrokerError, BrokerLogin, Counters, DynSec, EmbeddedBroker, EmbeddedOptions, HubLink,
    LinkOptions, MqttDispatcher, metrics_routes,
};
use crate::join::{CREDENTIALS_DB, CredentialError, Credentials, JoinApi};
use crate::registry::{PullAuth, Registry, RegistryError, RegistryOptions};
use crate::scheduler::{Scheduler, SchedulerError, SchedulerOptions};
use crate::store::{SqliteStore, Store, StoreError, StoreOptions};

/// The database file inside the data directory.
pub const STATE_DB: &str = "state.db";

/// Why the hub could not run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("data directory {path}: {source}")]
    DataDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("admin token: {0}")]
    Token(#[from] TokenError),
    #[error("store: {0}")]
    Store(#[source] StoreError),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("installing the {signal} handler: {source}")]
    Signal {
        signal: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
    #[error("scheduler: {0}")]
    Scheduler(#[from] SchedulerError),
    #[error(transparent)]
    Credentials(#[from] CredentialError),
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("image registry: {0}")]
    Registry(#[from] RegistryError),
    #[error("the hub could not log into its embedded MQTT broker at {0}")]
    BrokerLogin(String),
}

/// The hub's client id on an external broker.
const EXTERNAL_CLIENT_ID: &str = "skiff-hub";

/// Creates the data directory with mode 0700 if it is missing.
pub fn prepare_data_dir(dir: &Path) -> Result<(), RunError> {
    let err = |source| RunError::DataDir {
        path: dir.to_path_buf(),
        source,
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            path = %dir.display(),
            mode = format!("{mode:o}"),
            "the data directory is accessible to other users; 0700 is recommended"
        );
    }
    Ok(())
}

/// Resolves on the first SIGTERM or SIGINT. The handlers are installed when this is
/// called, so a signal that arrives before the future is polled still counts.
pub fn termination_signal() -> Result<impl Future<Output = ()> + Send + 'static, RunError> {
    let mut term = signal(SignalKind::terminate()).map_err(|source| RunError::Signal {
        signal: "SIGTERM",
        source,
    })?;
    let mut int = signal(SignalKind::interrupt()).map_err(|source| RunError::Signal {
        signal: "SIGINT",
        source,
    })?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Serves the API over `store` until `shutdown` resolves: loads (or creates) the admin
/// token, creates the built-in namespaces, binds, prints one line saying where it
/// listens and where the token is, and returns once in-flight requests are done.
pub async fn serve(
    config: &HubConfig,
    store: Arc<dyn Store>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let token = AdminToken::load_or_create(&config.data_dir)?;
    let server = ApiServer::new(
        store.clone(),
        token.clone(),
        ApiOptions {
            body_limit: config.body_limit,
        },
    );
    server.bootstrap().await?;
    let credentials = Credentials::open(&config.data_dir.join(CREDENTIALS_DB))?;
    let registry = Registry::open(
        &config.data_dir,
        RegistryOptions {
            import_limit: config.image_import_limit,
        },
    )?;
    let registry_auth = PullAuth {
        admin: token.clone(),
        nodes: Some(credentials.clone()),
        anonymous_pull: config.registry_anonymous_pull,
    };

    // One shutdown signal fans out to the API server and the control loops.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let controllers =
        tokio::spawn(Controllers::new(store.clone(), clock.clone()).run(stopped(stop_rx.clone())));
    let scheduler = tokio::spawn(
        Scheduler::new(store.clone(), clock.clone(), SchedulerOptions::default())
            .run(stopped(stop_rx.clone())),
    );
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let (login, advertise, embedded) = match &config.broker {
        BrokerMode::Embedded { listen, advertise } => {
            let opts = EmbeddedOptions { listen: *listen };
            let creds = credentials.clone();
            let broker = tokio::task::spawn_blocking(move || EmbeddedBroker::start(&opts, creds))
                .await
                .map_err(|e| RunError::BrokerLogin(e.to_string()))??;
            let advertise = advertise
                .clone()
                .unwrap_or_else(|| format!("mqtt://{}", broker.addr()));
            (broker.hub_login(), advertise, true)
        }
        BrokerMode::External {
            url,
            username,
            password,
        } => (
            BrokerLogin {
                url: url.clone(),
                client_id: EXTERNAL_CLIENT_ID.into(),
                username: username.clone(),
                password: password.clone(),
            },
            url.to_string(),
            false,
        ),
    };
    let broker_desc = login.url.to_string();
    // With an external broker the hub manages per-node accounts and ACLs there when it
    // is Mosquitto with the dynamic security plugin; other brokers are the operator's.
    let broker_accounts = if embedded {
        None
    } else {
        match DynSec::connect(&login).await {
            Ok(dynsec) => {
                match dynsec
                    .ensure_hub(login.username.as_deref().unwrap_or_default())
                    .await
                {
                    Ok(()) => Some(Arc::new(dynsec)),
                    Err(e) => {
                        tracing::warn!(error = %e, "per-node broker accounts are not managed");
                        None
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "per-node broker accounts are not managed");
                None
            }
        }
    };
    let dispatcher = Arc::new(MqttDispatcher::start(login, stop_rx.clone()));
    if !dispatcher
        .wait_connected(std::time::Duration::from_secs(10))
        .await
    {
        if embedded {
            return Err(RunError::BrokerLogin(broker_desc));
        }
        // An external broker may come later; the client keeps trying.
        tracing::warn!(broker = %broker_desc, "the MQTT broker is not reachable yet; retrying in the background");
    }
    tracing::info!(broker = %broker_desc, advertise = %advertise, "MQTT link ready");
    let counters = Arc::new(Counters::default());
    let link = HubLink::new(
        store.clone(),
        dispatcher.clone(),
        credentials.clone(),
        counters.clone(),
        clock.clone(),
        LinkOptions {
            node_grace: config.node_grace,
            sent_file: Some(config.data_dir.join("dispatch-sent.json")),
        },
    );
    let streams = crate::stream::Streams::new(
        store.clone(),
        dispatcher.clone(),
        credentials.clone(),
        token.clone(),
    );
    let link = link.with_streams(streams.clone());
    let link = tokio::spawn(link.run(stopped(stop_rx.clone())));
    let join_api = Arc::new(JoinApi {
        credentials,
        admin: token.clone(),
        clock: clock.clone(),
        broker_url: advertise,
        broker_accounts,
    });
    let app = server.router().merge(
        crate::join::routes(join_api)
            .merge(metrics_routes(token, counters))
            .merge(crate::stream::routes(streams))
            .merge(registry.routes(registry_auth))
            .layer(axum::middleware::from_fn(super::trace::request_span)),
    );

    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Bind {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| RunError::Bind {
        addr: config.listen,
        source,
    })?;
    println!(
        "skiff-hub listening on http://{addr} (admin token in {})",
        AdminToken::path(&config.data_dir).display()
    );
    tracing::info!(%addr, data_dir = %config.data_dir.display(), "serving");
    let server = Arc::new(server);
    let stopping = server.clone();
    let rx = stop_rx.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            stopped(rx).await;
            tracing::info!("shutting down: no new connections, ending watches");
            stopping.shut_down();
        })
        .await
        .map_err(|e| RunError::Server(ServerError::Serve(e)))?;
    let _ = link.await;
    // The loops stop with the same signal; wait so none writes after the store closes.
    let _ = controllers.await;
    match scheduler.await {
        Ok(result) => result?,
        Err(e) => tracing::error!(error = %e, "scheduler task failed"),
    }
    Ok(())
}

/// Runs the hub until SIGTERM or SIGINT: prepares the data directory, opens the store at
/// `DATA_DIR/state.db`, serves, and after the last request shuts the store down
/// (queued writes finished, WAL checkpointed).
pub async fn run(config: HubConfig) -> Result<(), RunError> {
    // Installed first: a signal during startup must still mean a clean stop.
    let shutdown = termination_signal()?;
    prepare_data_dir(&config.data_dir)?;
    let options = StoreOptions {
        retained_revisions: config.history_retention,
        ..StoreOptions::default()
    };
    let store = Arc::new(
        SqliteStore::open(config.data_dir.join(STATE_DB), options).map_err(RunError::Store)?,
    );
    let served = serve(&config, store.clone(), shutdown).await;
    let closed = store.shutdown().await.map_err(RunError::Store);
    served?;
    closed?;
    tracing::info!("stopped");
    Ok(())
}
