//! Namespace lifecycle: the namespaces every hub has (`default`, `kube-system`), refusing
//! new content in a missing or terminating namespace, and deletion.
//!
//! Deleting a namespace marks it `Terminating` (`status.phase`), deletes every namespaced
//! object in it, and removes it. When nothing in it has finalizers, all of that happens
//! before the DELETE answers (a success `Status`). Otherwise the DELETE answers with the
//! terminating namespace and a background task waits for the remaining objects to go,
//! then removes it; a hub that restarts meanwhile resumes that task at startup.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::Response;
use skiff_api::resources::Namespace;
use skiff_api::{Kind, Object, ObjectKey, Revision, apply_defaults};
use tracing::Instrument;

use super::AppState;
use super::objects::{with_status_field, write_with_retry};
use super::status::{ApiError, object_response};
use super::write::deleted_response;
use crate::store::{Deleted, Scope, StoreError, Write, Written};

/// Namespaces created at startup when missing.
const BUILTIN: [&str; 2] = ["default", "kube-system"];
const TERMINATING: &str = "Terminating";
/// How long a terminating namespace waits for news before looking again anyway.
const RECHECK: Duration = Duration::from_secs(5);

fn key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Namespace, "", name)
}

pub(crate) fn is_terminating(ns: &Object) -> bool {
    ns.meta().deletion_timestamp.is_some()
        || ns.field("status.phase").as_deref() == Some(TERMINATING)
}

/// New objects may only go into a namespace that exists and is not terminating.
pub(crate) fn check_open(state: &AppState, namespace: &str, obj: &Object) -> Result<(), ApiError> {
    let ns = state
        .store
        .get(&key(namespace))
        .ok_or_else(|| ApiError::NotFound(key(namespace)))?;
    if is_terminating(&ns) {
        return Err(ApiError::NamespaceTerminating {
            kind: obj.kind(),
            name: obj.meta().name.clone(),
            namespace: namespace.to_string(),
        });
    }
    Ok(())
}

/// Creates the built-in namespaces and resumes the removal of terminating ones.
pub(crate) async fn bootstrap(state: &Arc<AppState>) -> Result<(), StoreError> {
    for name in BUILTIN {
        if state.store.get(&key(name)).is_some() {
            continue;
        }
        let mut ns = Namespace::default();
        ns.metadata.name = name.to_string();
        let mut ns = Object::Namespace(ns);
        apply_defaults(&mut ns);
        match state.store.create(ns).await {
            Ok(_) | Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let (all, _) = state.store.list(&Scope::kind(Kind::Namespace));
    for ns in all.iter().filter(|ns| is_terminating(ns)) {
        spawn_finisher(state.clone(), ns.meta().name.clone());
    }
    Ok(())
}

pub(crate) async fn delete(
    state: &Arc<AppState>,
    name: &str,
    precondition: Option<Revision>,
) -> Result<Response, ApiError> {
    let marked = write_with_retry(state, &key(name), precondition, |current| {
        with_status_field(current, "phase", TERMINATING)
    })
    .await?;
    if purge(state, name).await? > 0 {
        spawn_finisher(state.clone(), name.to_string());
        return Ok(object_response(StatusCode::OK, &marked));
    }
    match state.store.delete(&key(name), None).await {
        Ok(deleted) => Ok(deleted_response(deleted)),
        // Someone else (a finisher from an earlier DELETE) got there first.
        Err(StoreError::NotFound(_)) => Ok(deleted_response(Deleted::Removed(marked))),
        Err(e) => Err(e.into()),
    }
}

/// Deletes every namespaced object in `namespace`; returns how many are still there
/// (held by finalizers).
async fn purge(state: &AppState, namespace: &str) -> Result<usize, StoreError> {
    let mut writes = Vec::new();
    for kind in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
        let (objects, _) = state.store.list(&Scope::in_namespace(kind, namespace));
        writes.extend(objects.iter().map(|o| Write::Delete {
            key: o.key(),
            precondition: None,
        }));
    }
    let mut remaining = 0;
    for result in state.store.write_batch(writes).await {
        match result {
            Ok(Written::Deleted(Deleted::Marked(_))) => remaining += 1,
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(remaining)
}

fn spawn_finisher(state: Arc<AppState>, name: String) {
    let span = tracing::info_span!("namespace_termination", namespace = %name);
    tokio::spawn(async move { finish(&state, &name).await }.instrument(span));
}

/// Purges until the namespace is empty, then removes it. Wakes on any change in the
/// namespace, or every `RECHECK`, and stops when the server shuts down.
async fn finish(state: &AppState, name: &str) {
    let mut shutdown = state.shutdown.clone();
    loop {
        match purge(state, name).await {
            Ok(0) => {
                match state.store.delete(&key(name), None).await {
                    Ok(_) | Err(StoreError::NotFound(_)) => {
                        tracing::info!(namespace = name, "namespace removed");
                    }
                    Err(e) => {
                        tracing::warn!(namespace = name, error = %e, "removing namespace failed")
                    }
                }
                return;
            }
            Ok(n) => tracing::debug!(namespace = name, remaining = n, "waiting for finalizers"),
            Err(StoreError::Closed) => return,
            Err(e) => tracing::warn!(namespace = name, error = %e, "purging namespace failed"),
        }
        let scope = Scope {
            kind: None,
            namespace: Some(name.to_string()),
        };
        let mut changes = state.store.watch(scope, state.store.revision()).ok();
        let changed = async {
            match changes.as_mut() {
                Some(w) => {
                    w.next().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = shutdown.wait_for(|stop| *stop) => return,
            () = tokio::time::sleep(RECHECK) => {}
            () = changed => {}
        }
    }
}
