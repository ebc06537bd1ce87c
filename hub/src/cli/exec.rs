//! `skiff exec POD [-c C] [-i] -- CMD...`: runs a command in a pod's container through
//! the hub. The request is upgraded to a raw stream (`Upgrade: skiff-exec.v1`) on a plain
//! TCP connection, then frames flow both ways: standard input from a thread (with
//! `-i`), output to stdout and stderr here, and the command's exit code becomes ours.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use super::Ctx;
use super::client::{ApiError, parse_status};
use super::error::CliError;
use super::logs::pod_name;
use crate::stream::exec::{CLOSE_STDIN, END, STDERR, STDIN, STDOUT, UPGRADE, frame};

/// The largest frame the hub sends (one chunk) with room to spare.
const MAX_FRAME: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub(crate) struct ExecArgs {
    /// The pod (NAME or pod/NAME)
    pod: String,
    /// The container, when the pod has several
    #[arg(short = 'c', long)]
    container: Option<String>,
    /// Pass standard input to the command
    #[arg(short = 'i', long)]
    stdin: bool,
    /// The command and its arguments, after `--`
    #[arg(last = true, required = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Percent-encodes a query value (everything but RFC 3986 unreserved characters).
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `host:port` of an `http://` server URL.
fn authority(server: &str) -> Result<String, CliError> {
    let rest = server.strip_prefix("http://").ok_or_else(|| {
        CliError::Usage(format!(
            "skiff exec connects over plain HTTP; the server {server:?} is not an http:// URL"
        ))
    })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(CliError::Usage(format!(
            "the server {server:?} names no host"
        )));
    }
    Ok(
        if host
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            host.to_string()
        } else {
            format!("{host}:80")
        },
    )
}

fn broken(what: &str, source: std::io::Error) -> CliError {
    CliError::Stream {
        what: what.to_string(),
        source,
    }
}

pub(crate) fn run(ctx: &mut Ctx<'_>, args: &ExecArgs) -> Result<(), CliError> {
    let name = pod_name(&args.pod)?;
    let (server, token) = ctx.client.endpoint();
    let server = server.to_string();
    let token = token.map(str::to_string);
    let addr = authority(&server)?;
    let mut query = Vec::new();
    if let Some(c) = &args.container {
        query.push(format!("container={}", encode(c)));
    }
    for c in &args.command {
        query.push(format!("command={}", encode(c)));
    }
    if args.stdin {
        query.push("stdin=true".to_string());
    }
    let path = format!(
        "/api/v1/namespaces/{}/pods/{}/exec?{}",
        encode(&ctx.namespace),
        encode(name),
        query.join("&")
    );
    let mut conn = TcpStream::connect(&addr).map_err(|e| {
        CliError::Api(ApiError::Unreachable {
            server: server.clone(),
            reason: e.to_string(),
        })
    })?;
    let _ = conn.set_nodelay(true);
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: {UPGRADE}\r\nContent-Length: 0\r\nUser-Agent: skiff/{}\r\n",
        env!("CARGO_PKG_VERSION")
    );
    if let Some(t) = &token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())
        .map_err(|e| broken("sending the exec request", e))?;
    let mut reader = BufReader::new(
        conn.try_clone()
            .map_err(|e| broken("setting up the exec stream", e))?,
    );
    // The agent has 10 s to start the command; the hub answers within that.
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let (code, length) = read_head(&mut reader)?;
    let _ = conn.set_read_timeout(None);
    if code != 101 {
        let mut body = vec![0u8; length.min(MAX_FRAME)];
        reader
            .read_exact(&mut body)
            .map_err(|e| broken("reading the hub's answer", e))?;
        return Err(CliError::Api(ApiError::Status(parse_status(code, &body))));
    }
    if args.stdin {
        let mut up = conn;
        std::thread::spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        if up.write_all(&frame(STDIN, &buf[..n])).is_err() {
                            return;
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = up.write_all(&frame(CLOSE_STDIN, &[]));
        });
    }
    loop {
        let mut h = [0u8; 5];
        if let Err(e) = reader.read_exact(&mut h) {
            return Err(broken(
                "the hub closed the exec stream before the command ended",
                e,
            ));
        }
        let len = u32::from_be_bytes([h[1], h[2], h[3], h[4]]) as usize;
        if len > MAX_FRAME {
            return Err(broken(
                "the exec stream",
                std::io::Error::other(format!("a frame of {len} bytes is too large")),
            ));
        }
        let mut payload = vec![0u8; len];
        reader
            .read_exact(&mut payload)
            .map_err(|e| broken("the exec stream broke off", e))?;
        match h[0] {
            STDOUT => {
                ctx.out.write_all(&payload)?;
                ctx.out.flush()?;
            }
            STDERR => {
                ctx.err.write_all(&payload)?;
                ctx.err.flush()?;
            }
            END => {
                let v: Value = serde_json::from_slice(&payload).unwrap_or(Value::Null);
                if let Some(e) = v["error"].as_str() {
                    return Err(CliError::Refused(e.to_string()));
                }
                return match v["exitCode"].as_i64() {
                    Some(0) => Ok(()),
                    Some(code) => Err(CliError::RemoteExit(code as i32)),
                    None => Err(CliError::Refused(
                        "the command ended without an exit code".into(),
                    )),
                };
            }
            _ => {}
        }
    }
}

/// Reads the response head; returns the status code and `Content-Length`.
fn read_head(r: &mut impl BufRead) -> Result<(u16, usize), CliError> {
    let mut line = String::new();
    let mut code = 0;
    let mut length = 0;
    let mut first = true;
    loop {
        line.clear();
        let n = r
            .read_line(&mut line)
            .map_err(|e| broken("reading the hub's answer", e))?;
        if n == 0 {
            return Err(broken(
                "reading the hub's answer",
                std::io::Error::from(std::io::ErrorKind::UnexpectedEof),
            ));
        }
        let l = line.trim_end();
        if first {
            first = false;
            code = l
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| {
                    broken(
                        "reading the hub's answer",
                        std::io::Error::other(format!("not an HTTP status line: {l:?}")),
                    )
                })?;
            continue;
        }
        if l.is_empty() {
            return Ok((code, length));
        }
        if let Some((k, v)) = l.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse().unwrap_or(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_queries_are_spelled_for_a_raw_request() {
        assert_eq!(authority("http://hub:6443").unwrap(), "hub:6443");
        assert_eq!(authority("http://127.0.0.1:8/x").unwrap(), "127.0.0.1:8");
        assert_eq!(authority("http://hub").unwrap(), "hub:80");
        assert!(authority("https://hub:6443").is_err());
        assert_eq!(encode("ls -l /tmp&x=y"), "ls%20-l%20%2Ftmp%26x%3Dy");
        let mut r = &b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\n{\"code\":400}"[..];
        assert_eq!(read_head(&mut r).unwrap(), (400, 12));
        assert_eq!(r, b"{\"code\":400}");
    }
}
