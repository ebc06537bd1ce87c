//! Making one probe attempt: tcpSocket (a connection within the timeout), httpGet (a
//! status in 200..400 within the timeout) and exec (exit code 0 within the timeout, the
//! process killed otherwise). Sockets are opened from inside the pod's network namespace
//! when it has one. Everything here blocks: callers run it off the async threads.

use std::io::Read;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::fcntl::OFlag;

use super::http;
use super::netns;
use super::state::{Check, Outcome};
use crate::runtime::{ContainerRuntime, ExecRequest};

/// Output of an exec probe kept for the failure message; the rest is read and dropped.
pub const MAX_EXEC_OUTPUT: usize = 10 * 1024;

/// Makes one attempt of `check` against pod `uid`'s container `container`.
pub async fn attempt(
    runtime: Arc<dyn ContainerRuntime>,
    uid: String,
    container: String,
    check: Check,
    timeout: Duration,
) -> Outcome {
    match check {
        Check::Invalid(message) => Outcome::Failure(message),
        Check::Exec { command } => {
            let run = move || exec(runtime.as_ref(), &uid, &container, &command, timeout);
            tokio::task::spawn_blocking(run)
                .await
                .unwrap_or_else(|e| Outcome::Failure(format!("exec probe ended abruptly: {e}")))
        }
        Check::Tcp { host, port } => {
            let netns = runtime.netns_path(&uid);
            network(netns, move || tcp(&host, port, timeout)).await
        }
        Check::Http {
            host,
            port,
            path,
            headers,
            https,
        } => {
            let netns = runtime.netns_path(&uid);
            network(netns, move || {
                if https {
                    https_get(&host, port, &path, &headers, timeout)
                } else {
                    http_get(&host, port, &path, &headers, timeout)
                }
            })
            .await
        }
    }
}

/// Runs a socket check inside `netns`, or in the agent's own namespace.
async fn network<F>(netns: Option<PathBuf>, f: F) -> Outcome
where
    F: FnOnce() -> Outcome + Send + 'static,
{
    match netns {
        Some(path) => netns::run_in(&path, f)
            .await
            .unwrap_or_else(|e| Outcome::Failure(e.to_string())),
        None => tokio::task::spawn_blocking(f)
            .await
            .unwrap_or_else(|e| Outcome::Failure(format!("probe ended abruptly: {e}"))),
    }
}

fn remaining(deadline: Instant, timeout: Duration) -> Result<Duration, String> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("timeout: no answer within {timeout:?}"))
}

/// Connects to `host:port` before `deadline`, trying each address the host resolves to.
fn connect(
    host: &str,
    port: u16,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, String> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {host}: {e}"))?
        .collect();
    let mut last = format!("{host} resolves to no address");
    for addr in addrs {
        let left = remaining(deadline, timeout)?;
        match TcpStream::connect_timeout(&addr, left) {
            Ok(s) => return Ok(s),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(format!("dial tcp {addr}: timeout after {timeout:?}"));
            }
            Err(e) => last = format!("dial tcp {addr}: {e}"),
        }
    }
    Err(last)
}

/// A tcpSocket attempt: the port accepts a connection in time.
pub fn tcp(host: &str, port: u16, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    match connect(host, port, deadline, timeout) {
        Ok(_) => Outcome::Success,
        Err(m) => Outcome::Failure(m),
    }
}

/// An httpGet attempt: a status in 200..400 arrives in time.
pub fn http_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    get(host, port, path, headers, timeout, false)
}

/// An httpGet attempt with scheme HTTPS. As in Kubernetes, the server's certificate is
/// not verified: the probe asks whether the container answers, not who it is.
pub fn https_get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
) -> Outcome {
    get(host, port, path, headers, timeout, true)
}

fn get(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
    timeout: Duration,
    https: bool,
) -> Outcome {
    let deadline = Instant::now() + timeout;
    let request = match http::request(host, port, path, headers) {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(e.to_string()),
    };
    let scheme = if https { "https" } else { "http" };
    let url = format!("{scheme}://{host}:{port}{path}");
    let run = || -> Result<u16, String> {
        let stream = connect(host, port, deadline, timeout)?;
        // A server dribbling bytes could keep each read under the timeout: wrap the
        // stream so every read gets only what is left of the deadline.
        let mut bounded = Deadline { stream, deadline };
        let got = if https {
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            let conn = rustls::ClientConnection::new(tls::unverified(), name)
                .map_err(|e| format!("Get {url:?}: {e}"))?;
            let mut tls = rustls::StreamOwned::new(conn, bounded);
            http::get(&mut tls, &request)
        } else {
            http::get(&mut bounded, &request)
        };
        got.map_err(|e| match e {
            http::GetError::Io(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                format!("Get {url:?}: timeout: no answer within {timeout:?}")
            }
            e => format!("Get {url:?}: {e}"),
        })
    };
    match run() {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(m) => Outcome::Failure(m),
    }
}

/// A stream whose reads and writes all end by one deadline.
struct Deadline {
    stream: TcpStream,
    deadline: Instant,
}

impl Deadline {
    fn left(&self) -> std::io::Result<Duration> {
        self.deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut))
    }
}

impl Read for Deadline {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.stream.set_read_timeout(Some(left))?;
        self.stream.read(buf)
    }
}

impl std::io::Write for Deadline {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let left = self.left()?;
        self.stream.set_write_timeout(Some(left))?;
        self.stream.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.stream.flush()
    }
}

/// An exec attempt: the command exits 0 within the timeout; otherwise it is killed.
/// Its stdout and stderr (the first [`MAX_EXEC_OUTPUT`] bytes) go into the message.
pub fn exec(
    runtime: &dyn ContainerRuntime,
    uid: &str,
    container: &str,
    command: &[String],
    timeout: Duration,
) -> Outcome {
    let (read, write) = match nix::unistd::pipe2(OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => return Outcome::Failure(format!("cannot make a pipe for the probe: {e}")),
    };
    let stderr = match write.try_clone() {
        Ok(w) => w,
        Err(e) => return Outcome::Failure(format!("cannot make a pipe for the probe: {e}")),
    };
    let process: Arc<dyn crate::runtime::ExecProcess> = match runtime.exec(ExecRequest {
        uid,
        container,
        command,
        stdin: None,
        stdout: write,
        stderr,
    }) {
        Ok(p) => Arc::from(p),
        Err(e) => return Outcome::Failure(e.to_string()),
    };
    let deadline = Instant::now() + timeout;
    // The output is read on its own thread: its end (every writer gone) is how the
    // deadline wait learns the command finished, since `wait` itself cannot time out.
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::Builder::new()
        .name("probe-exec-output".into())
        .spawn(move || {
            let mut file = std::fs::File::from(read);
            let mut kept = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                match file.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let room = MAX_EXEC_OUTPUT.saturating_sub(kept.len());
                        kept.extend_from_slice(&buf[..n.min(room)]);
                    }
                }
            }
            let _ = tx.send(kept);
        });
    if let Err(e) = reader {
        let _ = process.kill();
        let _ = process.wait();
        return Outcome::Failure(format!("cannot read the probe's output: {e}"));
    }
    match rx.recv_timeout(timeout) {
        Ok(output) => match wait_until(&process, deadline) {
            Ok(0) => Outcome::Success,
            Ok(code) => {
                let text = String::from_utf8_lossy(&output);
                let text = text.trim_end();
                if text.is_empty() {
                    Outcome::Failure(format!("command {command:?} exited with code {code}"))
                } else {
                    Outcome::Failure(format!(
                        "command {command:?} exited with code {code}: {text}"
                    ))
                }
            }
            Err(e) => Outcome::Failure(format!("command {command:?}: {e}")),
        },
        Err(_) => {
            let killed = process.kill();
            let _ = process.wait();
            let mut m = format!("command {command:?} timed out after {timeout:?}");
            if let Err(e) = killed {
                m.push_str(&format!(" and could not be killed: {e}"));
            }
            Outcome::Failure(m)
        }
    }
}

/// The TLS client of HTTPS probes.
mod tls {
    use std::sync::{Arc, OnceLock};

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

    /// Accepts any certificate, but still checks that the server holds its key (the
    /// handshake signatures), so the connection is a real TLS session.
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    pub(super) fn unverified() -> Arc<ClientConfig> {
        static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                let config = ClientConfig::builder_with_provider(provider.clone())
                    .with_safe_default_protocol_versions()
                    .expect("ring supports the default protocol versions")
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                    .with_no_client_auth();
                Arc::new(config)
            })
            .clone()
    }
}

/// Waits for `process` until `deadline`, then kills it (a command can close its output
/// and run on).
fn wait_until(
    process: &Arc<dyn crate::runtime::ExecProcess>,
    deadline: Instant,
) -> Result<i32, crate::runtime::RuntimeError> {
    let (tx, rx) = mpsc::channel();
    let waiter = process.clone();
    std::thread::spawn(move || {
        let _ = tx.send(waiter.wait());
    });
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(code) => code,
        Err(_) => {
            process.kill()?;
            rx.recv().unwrap_or(Ok(137))
        }
    }
}
