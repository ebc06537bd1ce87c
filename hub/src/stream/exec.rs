//! `POST /api/v1/namespaces/{ns}/pods/{name}/exec?container=&command=…&stdin=true`:
//! once the agent has started the command, the connection is upgraded
//! (`Upgrade: skiff-exec.v1`, 101 Switching Protocols) to a raw stream of frames both
//! ways: `[channel: u8][length: u32, big-endian][payload]`, channel 0 stdin, 1 stdout,
//! 2 stderr, 3 the end (JSON `{"exitCode": n}` or `{"error": "…"}`), 4 close stdin.
//! Stdin frames carry at most [`MAX_INPUT`] bytes; a larger one ends the session.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use serde_json::json;
use skiff_api::protocol::stream::{Fd, MAX_INPUT, StreamKind, WINDOW};
use skiff_api::protocol::{Down, SCHEMA_VERSION};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use super::http::{Refusal, bad_request, bool_param, open_session, param, parse_query, target};
use super::registry::Event;
use super::{Session, Streams};

/// The protocol named in `Upgrade`.
pub const UPGRADE: &str = "skiff-exec.v1";

/// Frame channels.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
pub const END: u8 = 3;
pub const CLOSE_STDIN: u8 = 4;

/// One frame's bytes.
pub fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + payload.len());
    f.push(channel);
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// Why reading a frame stopped.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("the connection closed")]
    Closed,
    #[error("a frame of {size} bytes is larger than the {max} allowed")]
    TooLarge { size: usize, max: usize },
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads one frame, refusing payloads over `max` bytes before reading them.
pub async fn read_frame<R: AsyncRead + Unpin>(
    r: &mut R,
    max: usize,
) -> Result<(u8, Vec<u8>), FrameError> {
    let mut head = [0u8; 5];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            return Err(FrameError::Closed);
        }
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let mut payload = vec![0u8; size];
    r.read_exact(&mut payload).await?;
    Ok((head[0], payload))
}

fn header_has(req: &Request, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case(token))
}

pub(super) async fn exec(
    State(streams): State<Arc<Streams>>,
    Path((namespace, name)): Path<(String, String)>,
    RawQuery(query): RawQuery,
    mut req: Request,
) -> Result<Response, Refusal> {
    let q = parse_query(query.as_deref()).map_err(|e| bad_request(&e))?;
    let t = target(
        &streams,
        req.headers(),
        &namespace,
        &name,
        param(&q, "container"),
    )?;
    let command: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "command")
        .map(|(_, v)| v.clone())
        .collect();
    if command.is_empty() {
        return Err(bad_request(
            "you must specify at least one command for the container",
        ));
    }
    let stdin = bool_param(&q, "stdin")?;
    if !header_has(&req, header::CONNECTION, "upgrade")
        || !header_has(&req, header::UPGRADE, UPGRADE)
    {
        return Err(bad_request(&format!(
            "exec needs an HTTP/1.1 upgrade: send `Connection: Upgrade` and `Upgrade: {UPGRADE}`"
        )));
    }
    let upgrade = hyper::upgrade::on(&mut req);
    let session = open_session(&streams, &t, StreamKind::Exec { command, stdin }).await?;
    tokio::spawn(async move {
        match upgrade.await {
            Ok(io) => pump(TokioIo::new(io), session, stdin).await,
            Err(e) => debug!(error = %e, "exec upgrade failed; closing the session"),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE));
    Ok(resp)
}

/// Carries frames between the client and the session until either ends.
async fn pump<IO: AsyncRead + AsyncWrite + Send>(io: IO, mut session: Session, stdin: bool) {
    let (mut rd, mut wr) = tokio::io::split(io);
    let streams: Arc<Streams> = session.streams.clone();
    let node = session.node.clone();
    let id = session.id;
    let mut taken = session.input_taken.clone();
    let input = async {
        let mut seq = 0u64;
        loop {
            // An agent that keeps an input window gets at most WINDOW pieces beyond what
            // it handed the command: a command that reads slowly slows the client, and
            // nothing piles up on the device. (The session was accepted before this
            // runs, and the agent announces its window before it accepts.)
            let windowed = taken.borrow().is_some();
            if windowed
                && taken
                    .wait_for(|t| t.is_none_or(|t| seq < t + WINDOW))
                    .await
                    .is_err()
            {
                return Ok(());
            }
            let (channel, data) = read_frame(&mut rd, MAX_INPUT).await?;
            let eof = match channel {
                STDIN => false,
                CLOSE_STDIN => true,
                _ => continue,
            };
            if !stdin {
                continue;
            }
            let msg = Down::StreamInput {
                v: SCHEMA_VERSION,
                session: id,
                seq,
                data,
                eof,
            };
            seq += 1;
            streams.send(&node, &msg).await;
        }
    };
    let output = async {
        while let Some(ev) = session.next().await {
            let f = match ev {
                Event::Data(_, d) if d.is_empty() => continue,
                Event::Data(Fd::Stdout, d) => frame(STDOUT, &d),
                Event::Data(Fd::Stderr, d) => frame(STDERR, &d),
                Event::End { exit_code, error } => {
                    let body = match (exit_code, error) {
                        (code, Some(e)) => json!({"exitCode": code, "error": e}),
                        (code, None) => json!({"exitCode": code}),
                    };
                    frame(END, body.to_string().as_bytes())
                }
            };
            if wr.write_all(&f).await.is_err() {
                return;
            }
        }
    };
    let stopped: Option<FrameError> = tokio::select! {
        r = input => {
            let r: Result<(), FrameError> = r;
            r.err()
        }
        () = output => None,
    };
    if let Some(e @ FrameError::TooLarge { .. }) = &stopped {
        let body = json!({"error": format!("stdin {e}")}).to_string();
        let _ = wr.write_all(&frame(END, body.as_bytes())).await;
    }
    let _ = wr.shutdown().await;
    // Dropping the session closes it on the node unless the agent ended it.
    drop(session);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_ones_are_refused() {
        let mut bytes = frame(STDIN, b"hello");
        bytes.extend(frame(CLOSE_STDIN, b""));
        bytes.extend(frame(STDOUT, &vec![7u8; MAX_INPUT + 1]));
        let mut r = &bytes[..];
        assert_eq!(
            read_frame(&mut r, MAX_INPUT).await.unwrap(),
            (STDIN, b"hello".to_vec())
        );
        assert_eq!(
            read_frame(&mut r, MAX_INPUT).await.unwrap(),
            (CLOSE_STDIN, Vec::new())
        );
        assert!(matches!(
            read_frame(&mut r, MAX_INPUT).await,
            Err(FrameError::TooLarge { size, .. }) if size == MAX_INPUT + 1
        ));
        let mut empty: &[u8] = &[];
        assert!(matches!(
            read_frame(&mut empty, MAX_INPUT).await,
            Err(FrameError::Closed)
        ));
        let mut cut: &[u8] = &[1, 0, 0, 0, 9, 1, 2];
        assert!(matches!(
            read_frame(&mut cut, MAX_INPUT).await,
            Err(FrameError::Io(_))
        ));
    }
}
