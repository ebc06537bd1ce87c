//! The agent's end of the zygote, the helper that starts containers (see [`super::helper`]
//! for the other end), and the messages between them.
//!
//! The runtime executes the helper once, as `__container zygote`, with one end of a unix
//! sequenced-packet socket as its stdin. A start is one message on that socket: the
//! arguments of `run`, each ended by a NUL byte, with one end of a fresh socket pair
//! attached for the answer. The zygote forks a child for it, and the child answers on
//! that socket: `ok <pid>` with a pidfd of itself attached, or `err <message>`. Each
//! start has a socket of its own, so starts from several threads never read each
//! other's answers, and an answer never waits for the zygote's next request.
//!
//! The zygote ends when the runtime closes its end (or the agent dies): it sees the
//! socket hang up. A zygote that died (killed from outside) is replaced at the next
//! start.

use std::ffi::OsString;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use tracing::{debug, warn};

use super::helper::HELPER_ARG;
use super::sys;

/// The longest request (and answer) message, in bytes.
pub(crate) const REQUEST_MAX: usize = 64 * 1024;

/// A started container: its init pid and a pidfd of the process that started it (the
/// init process is that process's child until it exits).
pub(crate) type Started = (i32, Option<OwnedFd>);

/// The arguments of a request, each ended by a NUL byte.
pub(crate) fn encode_request(args: &[OsString]) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    let mut bytes = Vec::new();
    for a in args {
        bytes.extend_from_slice(a.as_bytes());
        bytes.push(0);
    }
    bytes
}

/// The arguments of a request, which must be UTF-8.
pub(crate) fn decode_request(bytes: &[u8]) -> Result<Vec<String>, String> {
    bytes
        .strip_suffix(b"\0")
        .unwrap_or(bytes)
        .split(|b| *b == 0)
        .map(|a| {
            String::from_utf8(a.to_vec())
                .map_err(|_| format!("{HELPER_ARG}: an argument is not UTF-8"))
        })
        .collect()
}

/// Answers a request on `sock`: the started container's pid (with a pidfd of the
/// calling process attached), or why it did not start.
pub(crate) fn answer(sock: BorrowedFd<'_>, started: Result<i32, String>) -> io::Result<()> {
    match started {
        Ok(pid) => {
            let me = sys::pidfd_open(std::process::id() as i32)?;
            sys::send_message(sock, format!("ok {pid}").as_bytes(), Some(me.as_fd()))
        }
        Err(message) => {
            let mut text = format!("err {message}").into_bytes();
            text.truncate(REQUEST_MAX);
            sys::send_message(sock, &text, None)
        }
    }
}

/// Reads an answer off `bytes` (and the descriptor that came with it).
fn parse_answer(bytes: &[u8], fd: Option<OwnedFd>) -> Result<Started, String> {
    let text = String::from_utf8_lossy(bytes);
    if let Some(pid) = text.strip_prefix("ok ") {
        return pid
            .trim()
            .parse::<i32>()
            .ok()
            .filter(|p| *p > 0)
            .map(|p| (p, fd))
            .ok_or_else(|| format!("the helper answered an invalid pid: {pid:?}"));
    }
    Err(match text.strip_prefix("err ") {
        Some(message) if !message.trim().is_empty() => message.trim().to_string(),
        Some(_) => "the helper failed and said nothing".to_string(),
        None => format!("the helper answered {text:?}"),
    })
}

/// A running zygote.
#[derive(Debug)]
struct Running {
    child: Child,
    control: OwnedFd,
}

impl Running {
    /// Hangs up on it and waits for its exit.
    fn end(mut self) {
        drop(self.control);
        let _ = self.child.wait();
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        self.end();
    }
}

/// The runtime's zygote, started when first needed and replaced when it dies.
#[derive(Debug)]
pub(crate) struct Zygote {
    helper: PathBuf,
    running: Mutex<Option<Running>>,
    /// Set once the runtime closes: no zygote is started any more.
    ended: AtomicBool,
}

impl Zygote {
    pub fn new(helper: &Path) -> Zygote {
        Zygote {
            helper: helper.to_path_buf(),
            running: Mutex::new(None),
            ended: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Running>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn spawn(&self) -> io::Result<Running> {
        if self.ended.load(Ordering::SeqCst) {
            return Err(io::Error::other("the runtime is closing"));
        }
        let (control, theirs) = sys::seqpacket_pair()?;
        let child = Command::new(&self.helper)
            .arg(HELPER_ARG)
            .arg("zygote")
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Running { child, control })
    }

    /// Starts the zygote now, so the first container start does not wait for it.
    pub fn warm_up(&self) {
        let mut running = self.lock();
        if running.is_none() {
            match self.spawn() {
                Ok(r) => *running = Some(r),
                Err(e) => {
                    warn!(error = %e, "cannot start the container helper; the first start tries again")
                }
            }
        }
    }

    /// Sends a request with `answer_to` attached, through a live zygote: one that died
    /// is replaced, and a send that fails is tried once more on a fresh one.
    fn send(&self, request: &[u8], answer_to: BorrowedFd<'_>) -> io::Result<()> {
        let mut running = self.lock();
        let mut tried = false;
        loop {
            let alive = match running.as_mut() {
                Some(r) => matches!(r.child.try_wait(), Ok(None)),
                None => false,
            };
            if !alive {
                if let Some(dead) = running.take() {
                    debug!("the container helper is gone; starting a new one");
                    dead.end();
                }
                *running = Some(self.spawn()?);
            }
            let r = running.as_ref().expect("just started");
            match sys::send_message(r.control.as_fd(), request, Some(answer_to)) {
                Ok(()) => return Ok(()),
                Err(e) if !tried => {
                    debug!(error = %e, "the container helper took no request; starting a new one");
                    tried = true;
                    if let Some(r) = running.take() {
                        r.kill();
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs one `run` request: the started container's init pid with a pidfd of the
    /// process that started it, or the helper's error message.
    pub fn run(&self, request: &[OsString]) -> io::Result<Result<Started, String>> {
        let bytes = encode_request(request);
        let (mine, theirs) = sys::seqpacket_pair()?;
        self.send(&bytes, theirs.as_fd())?;
        // Only the zygote (and then its child) holds the other end now: if they end
        // without answering, the read below sees the hang-up.
        drop(theirs);
        let mut buf = vec![0u8; REQUEST_MAX];
        let (n, fd) = sys::recv_message(mine.as_fd(), &mut buf)?;
        if n == 0 {
            return Ok(Err(
                "the helper ended without answering (its messages are in the agent's log)"
                    .to_string(),
            ));
        }
        Ok(parse_answer(&buf[..n], fd))
    }

    /// The zygote's pid, while one runs.
    pub fn pid(&self) -> Option<u32> {
        let mut running = self.lock();
        let r = running.as_mut()?;
        matches!(r.child.try_wait(), Ok(None)).then(|| r.child.id())
    }

    /// Ends the zygote for good.
    pub fn end(&self) {
        let running = {
            let mut running = self.lock();
            self.ended.store(true, Ordering::SeqCst);
            running.take()
        };
        if let Some(r) = running {
            r.end();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_must_be_utf8() {
        let args: Vec<OsString> = vec!["run".into(), "--id".into(), "a b".into(), "".into()];
        let bytes = encode_request(&args);
        assert_eq!(bytes, b"run\0--id\0a b\0\0");
        assert_eq!(decode_request(&bytes).unwrap(), ["run", "--id", "a b", ""]);
        assert!(decode_request(b"run\0\xff\0").is_err());
    }

    #[test]
    fn answers_carry_the_pid_and_the_pidfd_or_the_error() {
        let (a, b) = sys::seqpacket_pair().unwrap();
        answer(a.as_fd(), Ok(4242)).unwrap();
        let mut buf = vec![0u8; REQUEST_MAX];
        let (n, fd) = sys::recv_message(b.as_fd(), &mut buf).unwrap();
        let (pid, pidfd) = parse_answer(&buf[..n], fd).unwrap();
        assert_eq!(pid, 4242);
        // The pidfd is this process's own: not readable while it runs.
        let pidfd = pidfd.expect("a pidfd came along");
        assert_eq!(sys::poll_readable(&[pidfd.as_fd()], 0).unwrap(), [false]);

        answer(a.as_fd(), Err("no such image".into())).unwrap();
        let (n, fd) = sys::recv_message(b.as_fd(), &mut buf).unwrap();
        assert!(fd.is_none());
        assert_eq!(parse_answer(&buf[..n], fd).unwrap_err(), "no such image");

        for bad in [&b"ok -3"[..], b"ok x", b"hello", b"err  "] {
            assert!(parse_answer(bad, None).is_err(), "{bad:?}");
        }
        drop(a);
        let (n, fd) = sys::recv_message(b.as_fd(), &mut buf).unwrap();
        assert_eq!((n, fd.is_none()), (0, true), "hang-up");
    }

    #[test]
    fn a_message_longer_than_the_buffer_is_refused() {
        let (a, b) = sys::seqpacket_pair().unwrap();
        sys::send_message(a.as_fd(), &[7u8; 100], None).unwrap();
        let mut small = [0u8; 10];
        let e = sys::recv_message(b.as_fd(), &mut small).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn a_zygote_that_cannot_be_executed_fails_the_start_and_a_closed_one_starts_nothing() {
        let z = Zygote::new(Path::new("/nonexistent/skiff-agent"));
        z.warm_up();
        assert!(z.run(&["run".into()]).is_err());
        z.end();
        let e = z.run(&["run".into()]).unwrap_err();
        assert!(e.to_string().contains("closing"), "{e}");
    }
}
