//! The smallest HTTP/1.1 client an httpGet probe needs: one GET written on a socket the
//! caller connected (possibly from inside a pod's network namespace, where no HTTP
//! library can reach), and the status code read back. The body is not read.

use std::io::{Read, Write};

/// What the probe sends as `User-Agent` (the kubelet's is `kube-probe/<version>`).
const USER_AGENT: &str = "skiff-probe/1";
/// A status line longer than this is not HTTP.
const MAX_STATUS_LINE: usize = 4096;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    #[error("{what} {value:?} holds a line break or control character")]
    BadField { what: &'static str, value: String },
    #[error("the answer is not HTTP: {0:?}")]
    NotHttp(String),
    #[error("the connection closed before a status line arrived")]
    Closed,
}

fn clean<'a>(what: &'static str, value: &'a str) -> Result<&'a str, HttpError> {
    // Control characters would let a header value start a new header or request.
    if value.chars().any(|c| c.is_control() && c != '\t') {
        return Err(HttpError::BadField {
            what,
            value: value.to_string(),
        });
    }
    Ok(value)
}

/// The request bytes: `GET path` with Host, User-Agent, Accept and `Connection: close`;
/// a header in `headers` replaces the default of the same name (as in Kubernetes).
pub fn request(
    host: &str,
    port: u16,
    path: &str,
    headers: &[(String, String)],
) -> Result<Vec<u8>, HttpError> {
    if path.contains(' ') {
        return Err(HttpError::BadField {
            what: "path",
            value: path.to_string(),
        });
    }
    let host_header = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let mut out = format!("GET {} HTTP/1.1\r\n", clean("path", path)?);
    let defaults = [
        ("Host", host_header.as_str()),
        ("User-Agent", USER_AGENT),
        ("Accept", "*/*"),
    ];
    for (name, value) in defaults {
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    for (name, value) in headers {
        if name.is_empty() || name.contains(':') {
            return Err(HttpError::BadField {
                what: "header name",
                value: name.clone(),
            });
        }
        out.push_str(&format!(
            "{}: {}\r\n",
            clean("header name", name)?,
            clean("header value", value)?
        ));
    }
    out.push_str("Connection: close\r\n\r\n");
    Ok(out.into_bytes())
}

/// Parses a status line (`HTTP/1.1 200 OK`) into its code.
pub fn status_code(line: &str) -> Result<u16, HttpError> {
    let not_http = || HttpError::NotHttp(line.chars().take(80).collect());
    let mut parts = line.trim_end_matches(['\r', '\n']).splitn(3, ' ');
    let version = parts.next().ok_or_else(not_http)?;
    if !version.starts_with("HTTP/1.") {
        return Err(not_http());
    }
    let code = parts.next().ok_or_else(not_http)?;
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_http());
    }
    code.parse().map_err(|_| not_http())
}

/// Sends the request and reads the status code. Timeouts are the stream's own (the
/// caller sets them): an expired one surfaces as an I/O error.
pub fn get<S: Read + Write>(stream: &mut S, request: &[u8]) -> Result<u16, GetError> {
    stream.write_all(request).map_err(GetError::Io)?;
    stream.flush().map_err(GetError::Io)?;
    let mut line = Vec::with_capacity(64);
    let mut buf = [0u8; 512];
    loop {
        let n = stream.read(&mut buf).map_err(GetError::Io)?;
        if n == 0 {
            return Err(GetError::Http(HttpError::Closed));
        }
        line.extend_from_slice(&buf[..n]);
        if let Some(end) = line.iter().position(|b| *b == b'\n') {
            let text = String::from_utf8_lossy(&line[..end]);
            return status_code(&text).map_err(GetError::Http);
        }
        if line.len() > MAX_STATUS_LINE {
            let text = String::from_utf8_lossy(&line[..80]).into_owned();
            return Err(GetError::Http(HttpError::NotHttp(text)));
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GetError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error("{0}")]
    Io(std::io::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_has_defaults_and_custom_headers() {
        let got = request(
            "10.0.0.5",
            8080,
            "/healthz?x=1",
            &[("X-Token".into(), "abc".into())],
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            "GET /healthz?x=1 HTTP/1.1\r\nHost: 10.0.0.5:8080\r\nUser-Agent: skiff-probe/1\r\n\
             Accept: */*\r\nX-Token: abc\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn a_custom_header_replaces_the_default() {
        let got = request(
            "::1",
            80,
            "/",
            &[
                ("host".into(), "example.org".into()),
                ("User-Agent".into(), "mine".into()),
            ],
        )
        .unwrap();
        let text = String::from_utf8(got).unwrap();
        assert!(!text.contains("[::1]:80"), "{text}");
        assert!(!text.contains("skiff-probe"), "{text}");
        assert!(text.contains("host: example.org\r\n"), "{text}");
        assert!(text.contains("User-Agent: mine\r\n"), "{text}");
        let v6 = String::from_utf8(request("::1", 80, "/", &[]).unwrap()).unwrap();
        assert!(v6.contains("Host: [::1]:80\r\n"), "{v6}");
    }

    #[test]
    fn injection_is_refused() {
        for path in ["/a\r\nX: y", "/a b", "/\u{7f}"] {
            match request("h", 1, path, &[]) {
                Err(HttpError::BadField { what, .. }) => assert_eq!(what, "path", "{path:?}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
        let bad_value = [("X".to_string(), "a\r\nEvil: 1".to_string())];
        assert!(matches!(
            request("h", 1, "/", &bad_value),
            Err(HttpError::BadField {
                what: "header value",
                ..
            })
        ));
        let bad_name = [("X: y".to_string(), "1".to_string())];
        assert!(matches!(
            request("h", 1, "/", &bad_name),
            Err(HttpError::BadField {
                what: "header name",
                ..
            })
        ));
    }

    #[test]
    fn status_lines() {
        let cases = [
            ("HTTP/1.1 200 OK\r\n", Ok(200)),
            ("HTTP/1.0 503 Service Unavailable", Ok(503)),
            ("HTTP/1.1 302", Ok(302)),
            (
                "SSH-2.0-OpenSSH_9.6",
                Err(HttpError::NotHttp("SSH-2.0-OpenSSH_9.6".into())),
            ),
            (
                "HTTP/1.1 20 OK",
                Err(HttpError::NotHttp("HTTP/1.1 20 OK".into())),
            ),
            ("HTTP/2 200", Err(HttpError::NotHttp("HTTP/2 200".into()))),
        ];
        for (line, want) in cases {
            assert_eq!(status_code(line), want, "{line:?}");
        }
    }

    #[test]
    fn get_reads_a_status_line_split_over_reads() {
        /// Answers one byte per read, so the status line arrives in pieces.
        struct Trickle {
            answer: &'static [u8],
            at: usize,
            sent: Vec<u8>,
        }
        impl Read for Trickle {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.at == self.answer.len() {
                    return Ok(0);
                }
                buf[0] = self.answer[self.at];
                self.at += 1;
                Ok(1)
            }
        }
        impl Write for Trickle {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.sent.extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut s = Trickle {
            answer: b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            at: 0,
            sent: vec![],
        };
        assert_eq!(get(&mut s, b"GET / HTTP/1.1\r\n\r\n").unwrap(), 404);
        assert_eq!(s.sent, b"GET / HTTP/1.1\r\n\r\n");
        let mut closed = Trickle {
            answer: b"HTTP/1.1",
            at: 0,
            sent: vec![],
        };
        assert!(matches!(
            get(&mut closed, b"x"),
            Err(GetError::Http(HttpError::Closed))
        ));
    }
}
