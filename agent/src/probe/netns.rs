//! Running a piece of blocking network code inside a pod's network namespace. A
//! namespace switch (`setns`) applies to the calling thread only, so each call gets a
//! thread of its own that enters the namespace, runs the code and ends: no pooled thread
//! (tokio's blocking pool included) is ever left in a pod's namespace. A thread costs
//! tens of microseconds, far below what one probe attempt costs anyway.

use std::fs::File;
use std::path::{Path, PathBuf};

use nix::sched::{CloneFlags, setns};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter { path: PathBuf, source: nix::Error },
    #[error("cannot start a thread for network namespace {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the probe thread for network namespace {path} panicked")]
    Panicked { path: PathBuf },
}

/// Runs `f` on a new thread inside the network namespace `path` (a `/run/netns/*` or
/// `/proc/<pid>/ns/net` file) and hands back its result.
pub async fn run_in<T, F>(path: &Path, f: F) -> Result<T, NetnsError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let owned = path.to_path_buf();
    std::thread::Builder::new()
        .name("probe-netns".into())
        .spawn(move || {
            let _ = tx.send(enter(&owned).map(|()| f()));
        })
        .map_err(|source| NetnsError::Spawn {
            path: path.to_path_buf(),
            source,
        })?;
    rx.await.map_err(|_| NetnsError::Panicked {
        path: path.to_path_buf(),
    })?
}

/// Moves the calling thread into the namespace.
fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.to_path_buf(),
        source,
    })
}
