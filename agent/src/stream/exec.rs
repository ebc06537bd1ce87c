//! Serving an exec session: pipes for the command's standard streams, the runtime's
//! exec seam called off the async threads, output pumped up in chunks, input pumped
//! down, and the exit code as the session's end. Closing the session kills the command.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;

use nix::fcntl::OFlag;
use skiff_api::protocol::stream::{CHUNK_SIZE, Fd};
use tokio::sync::{mpsc, watch};
use tracing::{debug, warn};

use super::Input;
use super::out::{Out, OutError};
use crate::runtime::{ContainerRuntime, ExecProcess, ExecRequest};

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("cannot create a pipe: {e}"))
}

/// Reads one output of the command into `tx` until end-of-file, on its own thread.
fn pump_out(fd: Fd, read: OwnedFd, tx: mpsc::Sender<(Fd, Vec<u8>)>) {
    std::thread::spawn(move || {
        let mut f = File::from(read);
        let mut buf = vec![0u8; CHUNK_SIZE];
        loop {
            match f.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.blocking_send((fd, buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!(error = %e, "reading the command's output failed");
                    return;
                }
            }
        }
    });
}

/// Writes input into the command's standard input until `eof` or the session ends,
/// counting in `taken` the pieces handed over. Once the command stops reading (its end
/// of the pipe closed), later pieces are taken and dropped, so the client is not left
/// waiting on a window that never opens.
fn pump_in(write: OwnedFd, mut input: mpsc::Receiver<Input>, taken: watch::Sender<u64>) {
    std::thread::spawn(move || {
        let mut f = Some(File::from(write));
        while let Some(piece) = input.blocking_recv() {
            if let Some(w) = f.as_mut()
                && w.write_all(&piece.data).is_err()
            {
                f = None;
            }
            taken.send_modify(|t| *t += 1);
            if piece.eof {
                // Dropping the pipe is the command's end-of-file.
                f = None;
            }
        }
    });
}

/// Kills the command off the async threads: a command still being started is waited
/// for, so that it is the command that dies and not only its starter.
async fn kill(proc: &Arc<dyn ExecProcess>) {
    let proc = proc.clone();
    match tokio::task::spawn_blocking(move || proc.kill()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, "cannot kill the command"),
        Err(e) => warn!(error = %e, "killing the command failed"),
    }
}

/// Runs one exec session and ends it.
pub(crate) async fn serve(
    rt: Arc<dyn ContainerRuntime>,
    mut out: Out,
    uid: String,
    container: String,
    command: Vec<String>,
    input: Option<mpsc::Receiver<Input>>,
) {
    if command.is_empty() {
        out.end(None, Some("no command given".into())).await;
        return;
    }
    let pipes = (|| {
        let stdout = pipe()?;
        let stderr = pipe()?;
        let stdin = match input {
            Some(_) => Some(pipe()?),
            None => None,
        };
        Ok::<_, String>((stdout, stderr, stdin))
    })();
    let ((out_r, out_w), (err_r, err_w), stdin) = match pipes {
        Ok(p) => p,
        Err(e) => {
            out.end(None, Some(e)).await;
            return;
        }
    };
    let (stdin_r, stdin_w) = match stdin {
        Some((r, w)) => (Some(r), Some(w)),
        None => (None, None),
    };
    let started = tokio::task::spawn_blocking(move || {
        // The request owns the command's ends of the pipes; they close here once the
        // runtime has handed them to the process.
        rt.exec(ExecRequest {
            uid: &uid,
            container: &container,
            command: &command,
            stdin: stdin_r,
            stdout: out_w,
            stderr: err_w,
        })
    })
    .await;
    let proc: Arc<dyn ExecProcess> = match started {
        Ok(Ok(p)) => Arc::from(p),
        Ok(Err(e)) => {
            out.end(None, Some(e.to_string())).await;
            return;
        }
        Err(e) => {
            out.end(None, Some(format!("starting the command failed: {e}")))
                .await;
            return;
        }
    };
    // The input window is announced before the session is accepted, so the hub knows
    // it before it sends any input.
    let has_input = input.is_some();
    let started = async {
        if has_input {
            out.input_taken(0).await?;
        }
        out.accept().await
    }
    .await;
    if let Err(e) = started {
        kill(&proc).await;
        out.end(None, Some(e.to_string())).await;
        return;
    }
    let (tx, mut rx) = mpsc::channel(4);
    pump_out(Fd::Stdout, out_r, tx.clone());
    pump_out(Fd::Stderr, err_r, tx);
    let (taken_tx, mut taken) = watch::channel(0u64);
    if let (Some(w), Some(input)) = (stdin_w, input) {
        pump_in(w, input, taken_tx);
    }
    let mut failed: Option<OutError> = None;
    loop {
        let piece = tokio::select! {
            p = rx.recv() => p,
            Ok(()) = taken.changed(), if has_input => {
                let n = *taken.borrow_and_update();
                if let Err(e) = out.input_taken(n).await {
                    failed = Some(e);
                    break;
                }
                continue;
            }
            () = out.closed() => {
                failed = Some(OutError::Closed);
                None
            }
        };
        let Some((fd, data)) = piece else { break };
        if let Err(e) = out.data(fd, &data).await {
            failed = Some(e);
            break;
        }
    }
    if let Some(why) = &failed {
        debug!(reason = %why, "killing the command");
        kill(&proc).await;
    }
    // Both outputs are closed (or the command was killed). A command can close them
    // and keep running: closing the session still kills it.
    let waiter = {
        let proc = proc.clone();
        tokio::task::spawn_blocking(move || proc.wait())
    };
    tokio::pin!(waiter);
    let code = tokio::select! {
        code = &mut waiter => code,
        () = out.closed(), if failed.is_none() => {
            debug!("the session closed while the command runs on; killing it");
            kill(&proc).await;
            failed = Some(OutError::Closed);
            waiter.await
        }
    };
    match (code, failed) {
        (Ok(Ok(code)), None | Some(OutError::Closed)) => out.end(Some(code), None).await,
        (Ok(Ok(code)), Some(e)) => out.end(Some(code), Some(e.to_string())).await,
        (Ok(Err(e)), _) => out.end(None, Some(e.to_string())).await,
        (Err(e), _) => {
            out.end(None, Some(format!("waiting for the command failed: {e}")))
                .await
        }
    }
}
