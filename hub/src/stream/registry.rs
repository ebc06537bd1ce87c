//! The table of open stream sessions: who owns each one (NodeRestriction: only the node a
//! session was opened on may feed it), and the reassembly of its chunks in order. Pure:
//! delivery goes into each session's channel, sized so that an agent keeping to the
//! credit window never finds it full.

use std::collections::HashMap;

use skiff_api::protocol::stream::{Fd, Reorder, ReorderError, WINDOW};
use tokio::sync::{mpsc, watch};

/// One piece of a session's output, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    Data(Fd, Vec<u8>),
    End {
        exit_code: Option<i32>,
        error: Option<String>,
    },
}

/// What became of one incoming piece.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Taken; this many pieces were delivered (0 when it waits for an earlier one).
    Delivered(usize),
    /// No such session (ended, timed out, or never opened).
    Unknown,
    /// The session belongs to another node: dropped.
    Foreign,
    /// A QoS 1 redelivery.
    Duplicate,
    /// Beyond the window: the session is ended.
    Violation,
}

#[derive(Debug)]
struct Session {
    node: String,
    order: Reorder<Event>,
    tx: mpsc::Sender<Event>,
    /// The standard input pieces the agent has taken (`None`: it keeps no input window).
    input_taken: watch::Sender<Option<u64>>,
}

/// The receiving ends of an open session: its output in order, and how much of its input
/// the agent has taken.
pub(crate) type Opened = (u64, mpsc::Receiver<Event>, watch::Receiver<Option<u64>>);

/// Why a session could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OpenError {
    #[error("node {node} already serves {max} streams; try again when one ends")]
    TooMany { node: String, max: usize },
}

#[derive(Debug, Default)]
pub(crate) struct Registry {
    sessions: HashMap<u64, Session>,
}

impl Registry {
    /// Opens a session on `node` with a fresh random id; the receiver gets its pieces.
    pub(crate) fn open(&mut self, node: &str, max_per_node: usize) -> Result<Opened, OpenError> {
        let open = self.sessions.values().filter(|s| s.node == node).count();
        if open >= max_per_node {
            return Err(OpenError::TooMany {
                node: node.to_string(),
                max: max_per_node,
            });
        }
        let mut id = rand::random::<u64>();
        while id == 0 || self.sessions.contains_key(&id) {
            id = rand::random();
        }
        // Room for a full window plus the end.
        let (tx, rx) = mpsc::channel(WINDOW as usize + 1);
        let (input_taken, taken_rx) = watch::channel(None);
        self.sessions.insert(
            id,
            Session {
                node: node.to_string(),
                order: Reorder::new(WINDOW + 1),
                tx,
                input_taken,
            },
        );
        Ok((id, rx, taken_rx))
    }

    /// Records that `node` has taken the input pieces of `session` below `taken`.
    pub(crate) fn input_taken(&mut self, node: &str, session: u64, taken: u64) -> Outcome {
        let Some(s) = self.sessions.get(&session) else {
            return Outcome::Unknown;
        };
        if s.node != node {
            return Outcome::Foreign;
        }
        s.input_taken.send_if_modified(|t| {
            let newer = t.is_none_or(|t| taken > t);
            if newer {
                *t = Some(taken);
            }
            newer
        });
        Outcome::Delivered(0)
    }

    /// Takes piece `chunk` of `session` from `node`.
    pub(crate) fn incoming(
        &mut self,
        node: &str,
        session: u64,
        chunk: u64,
        event: Event,
    ) -> Outcome {
        let Some(s) = self.sessions.get_mut(&session) else {
            return Outcome::Unknown;
        };
        if s.node != node {
            return Outcome::Foreign;
        }
        match s.order.push(chunk, event) {
            Ok(ready) => {
                let n = ready.len();
                for ev in ready {
                    if s.tx.try_send(ev).is_err() {
                        // Full (the agent ignored the window) or the client is gone.
                        self.sessions.remove(&session);
                        return Outcome::Violation;
                    }
                }
                Outcome::Delivered(n)
            }
            Err(ReorderError::Duplicate) => Outcome::Duplicate,
            Err(ReorderError::TooFarAhead) => {
                self.sessions.remove(&session);
                Outcome::Violation
            }
        }
    }

    /// Forgets a session; true when it was open.
    pub(crate) fn remove(&mut self, session: u64) -> bool {
        self.sessions.remove(&session).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(s: &str) -> Event {
        Event::Data(Fd::Stdout, s.as_bytes().to_vec())
    }

    #[test]
    fn pieces_arrive_in_order_only_from_the_owner() {
        let mut r = Registry::default();
        let (id, mut rx, _) = r.open("a", 2).unwrap();
        assert_eq!(r.incoming("b", id, 0, data("evil")), Outcome::Foreign);
        assert_eq!(r.incoming("a", id + 1, 0, data("x")), Outcome::Unknown);
        assert_eq!(r.incoming("a", id, 1, data("two")), Outcome::Delivered(0));
        assert_eq!(r.incoming("a", id, 0, data("one")), Outcome::Delivered(2));
        assert_eq!(r.incoming("a", id, 0, data("one")), Outcome::Duplicate);
        let end = Event::End {
            exit_code: Some(3),
            error: None,
        };
        assert_eq!(r.incoming("a", id, 2, end.clone()), Outcome::Delivered(1));
        assert_eq!(rx.try_recv().unwrap(), data("one"));
        assert_eq!(rx.try_recv().unwrap(), data("two"));
        assert_eq!(rx.try_recv().unwrap(), end);
        assert!(rx.try_recv().is_err());
        assert!(r.remove(id));
        assert!(!r.remove(id));
    }

    #[test]
    fn sessions_per_node_are_capped_and_the_window_enforced() {
        let mut r = Registry::default();
        let (a1, _rx1, _) = r.open("a", 2).unwrap();
        let (_a2, _rx2, _) = r.open("a", 2).unwrap();
        assert!(matches!(r.open("a", 2), Err(OpenError::TooMany { .. })));
        assert!(r.open("b", 2).is_ok());
        r.remove(a1);
        let (a3, _rx3, _) = r.open("a", 2).unwrap();
        assert_eq!(
            r.incoming("a", a3, WINDOW + 1, data("far")),
            Outcome::Violation
        );
        assert_eq!(r.incoming("a", a3, 0, data("x")), Outcome::Unknown);
        // An agent sending more than the window without acks overflows the channel.
        let (a4, _rx4, _) = r.open("a", 2).unwrap();
        for c in 0..=WINDOW {
            assert_eq!(r.incoming("a", a4, c, data("x")), Outcome::Delivered(1));
        }
        assert_eq!(
            r.incoming("a", a4, WINDOW + 1, data("x")),
            Outcome::Violation
        );
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn input_windows_move_forward_only_for_the_owner() {
        let mut r = Registry::default();
        let (id, _rx, taken) = r.open("a", 2).unwrap();
        assert_eq!(
            *taken.borrow(),
            None,
            "no window until the agent announces one"
        );
        assert_eq!(r.input_taken("a", id, 0), Outcome::Delivered(0));
        assert_eq!(*taken.borrow(), Some(0));
        r.input_taken("a", id, 5);
        r.input_taken("a", id, 3);
        assert_eq!(
            *taken.borrow(),
            Some(5),
            "an older ack does not move it back"
        );
        assert_eq!(r.input_taken("b", id, 50), Outcome::Foreign);
        assert_eq!(*taken.borrow(), Some(5));
        assert_eq!(r.input_taken("a", 12345, 1), Outcome::Unknown);
    }
}
