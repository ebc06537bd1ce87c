//! [`Out`]: the sending side of one session. It numbers chunks, splits output at
//! [`CHUNK_SIZE`], waits while [`WINDOW`] chunks are unacknowledged, and retries while the
//! MQTT client's queue is full, so stream output takes only what the link can carry.

use std::sync::Arc;
use std::time::Duration;

use skiff_api::protocol::stream::{CHUNK_SIZE, Fd, WINDOW};
use skiff_api::protocol::{SCHEMA_VERSION, Up};
use tokio::sync::watch;
use tracing::debug;

use crate::sync::{HubLink, LinkError, Seq};

/// A session without an acknowledgement for this long is abandoned (the hub restarted,
/// or the client stopped reading).
const STALLED: Duration = Duration::from_secs(60);
/// How long to wait before trying a full MQTT queue again.
const BUSY_RETRY: Duration = Duration::from_millis(20);

/// Why output could not be sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OutError {
    #[error("the client went away")]
    Closed,
    #[error("the hub acknowledged nothing for {0:?}")]
    Stalled(Duration),
    #[error("cannot send to the hub: {0}")]
    Link(String),
}

#[derive(Debug)]
pub(crate) struct Out {
    link: Arc<dyn HubLink>,
    seq: Seq,
    session: u64,
    chunk: u64,
    acked: watch::Receiver<u64>,
    cancel: watch::Receiver<bool>,
}

impl Out {
    pub(crate) fn new(
        link: Arc<dyn HubLink>,
        seq: Seq,
        session: u64,
        acked: watch::Receiver<u64>,
        cancel: watch::Receiver<bool>,
    ) -> Out {
        Out {
            link,
            seq,
            session,
            chunk: 0,
            acked,
            cancel,
        }
    }

    /// Whether the client closed the session.
    pub(crate) fn cancelled(&self) -> bool {
        *self.cancel.borrow()
    }

    /// Resolves when the client closes the session.
    pub(crate) async fn closed(&mut self) {
        let _ = self.cancel.wait_for(|c| *c).await;
    }

    /// Chunk 0 without data: the session was accepted.
    pub(crate) async fn accept(&mut self) -> Result<(), OutError> {
        self.piece(Fd::Stdout, &[]).await
    }

    /// Tells the hub the command was handed the input pieces below `taken` (the input
    /// window: the hub sends at most [`WINDOW`] pieces beyond it). Not counted as a chunk.
    pub(crate) async fn input_taken(&mut self, taken: u64) -> Result<(), OutError> {
        let msg = Up::StreamInputAck {
            v: SCHEMA_VERSION,
            seq: self.seq.next(),
            session: self.session,
            taken,
        };
        self.publish(&msg).await
    }

    /// Sends `data` as one or more chunks.
    pub(crate) async fn data(&mut self, fd: Fd, data: &[u8]) -> Result<(), OutError> {
        for piece in data.chunks(CHUNK_SIZE) {
            self.piece(fd, piece).await?;
        }
        Ok(())
    }

    async fn piece(&mut self, fd: Fd, data: &[u8]) -> Result<(), OutError> {
        self.wait_window().await?;
        let msg = Up::StreamData {
            v: SCHEMA_VERSION,
            seq: self.seq.next(),
            session: self.session,
            chunk: self.chunk,
            fd,
            data: data.to_vec(),
        };
        self.publish(&msg).await?;
        self.chunk += 1;
        Ok(())
    }

    /// The last message of the session. Sent even after the client closed it, so the
    /// hub can forget the session at once.
    pub(crate) async fn end(mut self, exit_code: Option<i32>, error: Option<String>) {
        if let Some(e) = &error {
            debug!(error = %e, "stream ends with an error");
        }
        let msg = super::end_message(self.seq.next(), self.session, self.chunk, exit_code, error);
        // Only the window is waived for the end: it is one small message.
        let _ = self.publish_ignoring_cancel(&msg).await;
    }

    async fn wait_window(&mut self) -> Result<(), OutError> {
        loop {
            if self.cancelled() {
                return Err(OutError::Closed);
            }
            if self.chunk < *self.acked.borrow() + WINDOW {
                return Ok(());
            }
            tokio::select! {
                changed = self.acked.changed() => {
                    if changed.is_err() {
                        return Err(OutError::Closed);
                    }
                }
                _ = self.cancel.wait_for(|c| *c) => return Err(OutError::Closed),
                () = tokio::time::sleep(STALLED) => return Err(OutError::Stalled(STALLED)),
            }
        }
    }

    async fn publish(&mut self, msg: &Up) -> Result<(), OutError> {
        if self.cancelled() {
            return Err(OutError::Closed);
        }
        self.publish_ignoring_cancel(msg).await
    }

    async fn publish_ignoring_cancel(&mut self, msg: &Up) -> Result<(), OutError> {
        let deadline = tokio::time::Instant::now() + STALLED;
        loop {
            match self.link.send(msg) {
                Ok(()) => return Ok(()),
                Err(LinkError::Busy(_)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(BUSY_RETRY).await;
                }
                Err(e) => return Err(OutError::Link(e.to_string())),
            }
        }
    }
}
