//! Pulling images over real HTTP from a small OCI distribution server run by the test: a
//! registry serving blobs and manifests from memory with Range support, optional Basic or
//! Bearer auth, and faults (a connection cut after N bytes of a blob, a corrupted blob).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

mod common;

use serde_json::json;
use sha2::Digest;
use skiff_agent::image::{
    HubRegistry, ImageError, ImageStore, OciImageStore, OciStoreConfig, Platform, PullPolicy,
    PullProgress, RegistryConfig,
};

// ---------------------------------------------------------------- the test registry

#[derive(Debug, Clone)]
struct Logged {
    path: String,
    range: Option<String>,
}

#[derive(Default)]
struct State {
    /// digest → (bytes, media type)
    blobs: Mutex<HashMap<String, (Vec<u8>, String)>>,
    /// "repo:tag" → manifest digest
    tags: Mutex<HashMap<String, String>>,
    log: Mutex<Vec<Logged>>,
    /// Body bytes sent per blob digest.
    sent: Mutex<HashMap<String, u64>>,
    /// Cut the connection after this many body bytes of this blob, once.
    cut: Mutex<Option<(String, u64)>>,
    corrupt: Mutex<HashSet<String>>,
    ignore_range: AtomicBool,
    basic: Option<String>,
    bearer: AtomicBool,
}

struct TestRegistry {
    host: String,
    state: Arc<State>,
}

fn digest_of(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(b)))
}

impl TestRegistry {
    fn start(basic: Option<(&str, &str)>) -> TestRegistry {
        use base64::Engine;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let state = Arc::new(State {
            basic: basic.map(|(u, p)| {
                format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                )
            }),
            ..State::default()
        });
        let s = state.clone();
        let h = host.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let s = s.clone();
                let h = h.clone();
                std::thread::spawn(move || {
                    let _ = serve(conn, &s, &h);
                });
            }
        });
        TestRegistry { host, state }
    }

    fn put_blob(&self, bytes: Vec<u8>, media: &str) -> String {
        let d = digest_of(&bytes);
        self.state
            .blobs
            .lock()
            .unwrap()
            .insert(d.clone(), (bytes, media.to_string()));
        d
    }

    fn tag(&self, repo: &str, tag: &str, digest: &str) {
        self.state
            .tags
            .lock()
            .unwrap()
            .insert(format!("{repo}:{tag}"), digest.to_string());
    }

    fn log(&self) -> Vec<Logged> {
        self.state.log.lock().unwrap().clone()
    }

    fn blob_gets(&self, digest: &str) -> Vec<Logged> {
        self.log()
            .into_iter()
            .filter(|l| l.path.ends_with(&format!("/blobs/{digest}")))
            .collect()
    }

    fn manifest_gets(&self) -> usize {
        self.log()
            .iter()
            .filter(|l| l.path.contains("/manifests/"))
            .count()
    }
}

fn respond(conn: &mut TcpStream, status: &str, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
}

fn serve(mut conn: TcpStream, s: &State, host: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        if h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let range = headers.get("range").cloned();
    s.log.lock().unwrap().push(Logged {
        path: path.clone(),
        range: range.clone(),
    });
    if path.starts_with("/token") {
        respond(&mut conn, "200 OK", &[], br#"{"token":"tok-123"}"#);
        return Ok(());
    }
    let auth = headers.get("authorization");
    if let Some(want) = &s.basic
        && auth != Some(want)
    {
        let h = vec![("WWW-Authenticate".into(), "Basic realm=\"hub\"".into())];
        respond(&mut conn, "401 Unauthorized", &h, b"{}");
        return Ok(());
    }
    if s.bearer.load(Ordering::SeqCst) && auth.map(String::as_str) != Some("Bearer tok-123") {
        let repo = path
            .trim_start_matches("/v2/")
            .split("/manifests/")
            .next()
            .unwrap_or("")
            .split("/blobs/")
            .next()
            .unwrap_or("")
            .to_string();
        let h = vec![(
            "WWW-Authenticate".into(),
            format!(
                "Bearer realm=\"http://{host}/token\",service=\"test\",scope=\"repository:{repo}:pull\""
            ),
        )];
        respond(&mut conn, "401 Unauthorized", &h, b"{}");
        return Ok(());
    }
    let rest = path.trim_start_matches("/v2/");
    if let Some((repo, reference)) = rest.rsplit_once("/manifests/") {
        let digest = if reference.starts_with("sha256:") {
            Some(reference.to_string())
        } else {
            s.tags
                .lock()
                .unwrap()
                .get(&format!("{repo}:{reference}"))
                .cloned()
        };
        let found = digest.and_then(|d| s.blobs.lock().unwrap().get(&d).cloned().map(|b| (d, b)));
        match found {
            Some((d, (bytes, media))) => respond(
                &mut conn,
                "200 OK",
                &[
                    ("Content-Type".into(), media),
                    ("Docker-Content-Digest".into(), d),
                ],
                &bytes,
            ),
            None => respond(&mut conn, "404 Not Found", &[], b"{}"),
        }
        return Ok(());
    }
    if let Some((_, digest)) = rest.rsplit_once("/blobs/") {
        let Some((mut bytes, _)) = s.blobs.lock().unwrap().get(digest).cloned() else {
            respond(&mut conn, "404 Not Found", &[], b"{}");
            return Ok(());
        };
        if s.corrupt.lock().unwrap().contains(digest) {
            let mid = bytes.len() / 2;
            bytes[mid] ^= 0x55;
        }
        let total = bytes.len() as u64;
        let from = range
            .as_deref()
            .and_then(|r| r.strip_prefix("bytes="))
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|_| !s.ignore_range.load(Ordering::SeqCst));
        let (status, body, mut hdrs) = match from {
            Some(n) if n < total => (
                "206 Partial Content",
                &bytes[n as usize..],
                vec![(
                    "Content-Range".to_string(),
                    format!("bytes {n}-{}/{total}", total - 1),
                )],
            ),
            _ => ("200 OK", &bytes[..], vec![]),
        };
        hdrs.push(("Content-Type".into(), "application/octet-stream".into()));
        let cut = {
            let mut c = s.cut.lock().unwrap();
            match c.as_ref() {
                Some((d, n)) if d == digest => {
                    let n = *n;
                    *c = None;
                    Some(n)
                }
                _ => None,
            }
        };
        let send = cut.map_or(body.len(), |n| (n as usize).min(body.len()));
        let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
        for (k, v) in &hdrs {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        conn.write_all(head.as_bytes())?;
        conn.write_all(&body[..send])?;
        conn.flush()?;
        *s.sent
            .lock()
            .unwrap()
            .entry(digest.to_string())
            .or_default() += send as u64;
        if cut.is_some() {
            conn.shutdown(std::net::Shutdown::Both)?;
        }
        return Ok(());
    }
    if path == "/v2/" {
        respond(&mut conn, "200 OK", &[], b"{}");
    } else {
        respond(&mut conn, "404 Not Found", &[], b"{}");
    }
    Ok(())
}

// ---------------------------------------------------------------- https in front of it

/// A CA and a server certificate for 127.0.0.1 signed by it, made with the openssl CLI.
struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| common::openssl(dir.path(), args);
        std::fs::write(
            dir.path().join("san.ext"),
            "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )
        .unwrap();
        common::self_signed(dir.path(), "ca.key", "ca.pem", "/CN=Skiff test CA");
        run(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ]);
        TestPki { dir }
    }

    fn ca(&self) -> std::path::PathBuf {
        self.dir.path().join("ca.pem")
    }
}

/// Terminates TLS on its own port and hands each request to `reg` over plain TCP (the
/// test registry answers one request per connection and closes it).
fn https_front(pki: &TestPki, reg: &TestRegistry) -> String {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki.dir.path().join("server.pem"))
            .unwrap()
            .map(Result::unwrap)
            .collect();
    let key = PrivateKeyDer::from_pem_file(pki.dir.path().join("server.key")).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let config = Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let backend = reg.host.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let (config, backend) = (config.clone(), backend.clone());
            std::thread::spawn(move || {
                let Ok(server) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(server, conn);
                // The request head (GET only: no body).
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match std::io::Read::read(&mut tls, &mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let Ok(mut plain) = TcpStream::connect(&backend) else {
                    return;
                };
                if plain.write_all(&head).is_err() {
                    return;
                }
                let mut answer = Vec::new();
                let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
                let _ = tls.write_all(&answer);
                let _ = tls.flush();
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    host
}

// ---------------------------------------------------------------- building images

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Clone, Copy, PartialEq)]
enum Comp {
    Plain,
    Gzip,
    Zstd,
}

/// A layer tar holding `files` (path, content, mode).
fn layer_tar(files: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data, mode) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_entry_type(tar::EntryType::Regular);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

struct Layer {
    blob: Vec<u8>,
    diff_id: String,
    media: &'static str,
}

fn compress(tar: Vec<u8>, c: Comp) -> Layer {
    let diff_id = digest_of(&tar);
    let (blob, media) = match c {
        Comp::Plain => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(&tar).unwrap();
            (
                gz.finish().unwrap(),
                "application/vnd.oci.image.layer.v1.tar+gzip",
            )
        }
        Comp::Zstd => (
            zstd::encode_all(&tar[..], 3).unwrap(),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    };
    Layer {
        blob,
        diff_id,
        media,
    }
}

/// Pushes an image and returns its manifest digest and each layer blob's digest.
fn push_image(
    reg: &TestRegistry,
    layers: &[&Layer],
    cmd: &[&str],
    arch: &str,
    docker: bool,
) -> (String, Vec<String>) {
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/sh", "-c"],
            "Cmd": cmd,
            "Env": ["PATH=/bin", "GREETING=hi"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
        },
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()},
    });
    let config = serde_json::to_vec(&config).unwrap();
    let config_size = config.len();
    let config_digest = reg.put_blob(config, OCI_CONFIG);
    let mut digests = Vec::new();
    let descs: Vec<_> = layers
        .iter()
        .map(|l| {
            let d = reg.put_blob(l.blob.clone(), l.media);
            digests.push(d.clone());
            let media = if docker && l.media.ends_with("gzip") {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            } else {
                l.media
            };
            json!({"mediaType": media, "digest": d, "size": l.blob.len()})
        })
        .collect();
    let media = if docker {
        DOCKER_MANIFEST
    } else {
        OCI_MANIFEST
    };
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media,
        "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": descs,
    });
    (
        reg.put_blob(serde_json::to_vec(&manifest).unwrap(), media),
        digests,
    )
}

fn store(dir: &Path, reg: &TestRegistry, platform: Option<Platform>) -> OciImageStore {
    let mut c = OciStoreConfig::new(dir.to_path_buf());
    c.registry = RegistryConfig {
        hub: Some(HubRegistry {
            url: format!("http://{}", reg.host),
            username: "edge-1".into(),
            password: "node-secret".into(),
        }),
        ..RegistryConfig::default()
    };
    if let Some(p) = platform {
        c.platform = p;
    }
    OciImageStore::open(c).unwrap()
}

fn no_progress(_: PullProgress) {}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

// ---------------------------------------------------------------- tests

#[test]
fn pulls_gzip_zstd_and_plain_layers_from_the_hub_with_basic_auth() {
    let reg = TestRegistry::start(Some(("edge-1", "node-secret")));
    let busybox = std::fs::read("/bin/busybox").expect("apt-get install busybox-static");
    let l1 = compress(layer_tar(&[("bin/busybox", &busybox, 0o755)]), Comp::Gzip);
    let l2 = compress(
        layer_tar(&[("etc/motd", b"zstd layer\n", 0o644)]),
        Comp::Zstd,
    );
    let l3 = compress(
        layer_tar(&[("srv/app.sh", b"echo plain\n", 0o700)]),
        Comp::Plain,
    );
    let (digest, _) = push_image(&reg, &[&l1, &l2, &l3], &["echo hi"], "amd64", false);
    reg.tag("app", "1", &digest);

    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let seen = Mutex::new(Vec::new());
    let reference = format!("{}/app:1", reg.host);
    let img = s
        .ensure(&reference, PullPolicy::IfNotPresent, &|p| {
            seen.lock().unwrap().push(p)
        })
        .unwrap();
    assert_eq!(img.reference, reference);
    assert_eq!(img.digest, digest);
    assert_eq!(img.layers.len(), 3);
    assert_eq!(
        std::fs::read(img.layers[0].join("bin/busybox")).unwrap(),
        busybox
    );
    assert_eq!(
        std::fs::read(img.layers[1].join("etc/motd")).unwrap(),
        b"zstd layer\n"
    );
    assert_eq!(
        std::fs::read(img.layers[2].join("srv/app.sh")).unwrap(),
        b"echo plain\n"
    );
    assert_eq!(img.config.entrypoint, ["/bin/sh", "-c"]);
    assert_eq!(img.config.cmd, ["echo hi"]);
    assert_eq!(img.config.env, ["PATH=/bin", "GREETING=hi"]);
    assert_eq!(img.config.working_dir.as_deref(), Some("/srv"));
    assert_eq!(img.config.user.as_deref(), Some("1000:1000"));
    let seen = seen.into_inner().unwrap();
    let last = seen.last().unwrap();
    assert_eq!(last.done_bytes, last.total_bytes);
    assert!(last.total_bytes > busybox.len() as u64 / 3);
    assert!(seen.len() >= 3, "progress reported {} times", seen.len());

    // Wrong credentials: the hub refuses, and the error says so.
    let tmp2 = tempfile::tempdir().unwrap();
    let mut c = OciStoreConfig::new(tmp2.path().to_path_buf());
    c.registry.hub = Some(HubRegistry {
        url: format!("http://{}", reg.host),
        username: "edge-1".into(),
        password: "wrong".into(),
    });
    let bad = OciImageStore::open(c).unwrap();
    assert!(matches!(
        bad.ensure(&reference, PullPolicy::IfNotPresent, &no_progress),
        Err(ImageError::Unauthorized { status: 401, .. })
    ));
}

#[test]
fn interrupted_blob_download_resumes_where_it_stopped() {
    let reg = TestRegistry::start(None);
    let payload = random_bytes(3 << 20, 7);
    let layer = compress(layer_tar(&[("data.bin", &payload, 0o644)]), Comp::Plain);
    let size = layer.blob.len() as u64;
    let (digest, blobs) = push_image(&reg, &[&layer], &["true"], "amd64", false);
    reg.tag("big", "v1", &digest);
    let cut_at = 1_234_567u64;
    *reg.state.cut.lock().unwrap() = Some((blobs[0].clone(), cut_at));

    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let reference = format!("{}/big:v1", reg.host);
    let first = s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress);
    assert!(matches!(first, Err(ImageError::Fetch { .. })), "{first:?}");
    // Nothing recorded as complete after the failed pull.
    assert!(matches!(
        s.ensure(&reference, PullPolicy::Never, &no_progress),
        Err(ImageError::NotPresent { .. })
    ));
    let partial = tmp.path().join("blobs/sha256").join(format!(
        "{}.partial",
        blobs[0].trim_start_matches("sha256:")
    ));
    assert_eq!(std::fs::metadata(&partial).unwrap().len(), cut_at);

    let img = s
        .ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("data.bin")).unwrap(),
        payload
    );
    let gets = reg.blob_gets(&blobs[0]);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(
        gets[1].range.as_deref(),
        Some(format!("bytes={cut_at}-").as_str())
    );
    let sent = reg.state.sent.lock().unwrap()[&blobs[0]];
    assert_eq!(
        sent, size,
        "bytes transferred for the blob over both attempts"
    );
    assert!(!partial.exists());
}

#[test]
fn a_server_ignoring_range_makes_the_download_start_over() {
    let reg = TestRegistry::start(None);
    let payload = random_bytes(1 << 20, 9);
    let layer = compress(layer_tar(&[("data.bin", &payload, 0o644)]), Comp::Plain);
    let size = layer.blob.len() as u64;
    let (digest, blobs) = push_image(&reg, &[&layer], &["true"], "amd64", false);
    reg.tag("big", "v1", &digest);
    *reg.state.cut.lock().unwrap() = Some((blobs[0].clone(), 300_000));
    reg.state.ignore_range.store(true, Ordering::SeqCst);

    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let reference = format!("{}/big:v1", reg.host);
    assert!(
        s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
            .is_err()
    );
    let img = s
        .ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();
    assert_eq!(
        std::fs::read(img.layers[0].join("data.bin")).unwrap(),
        payload
    );
    assert_eq!(
        reg.blob_gets(&blobs[0])[1].range.as_deref(),
        Some("bytes=300000-")
    );
    assert_eq!(reg.state.sent.lock().unwrap()[&blobs[0]], 300_000 + size);
}

#[test]
fn a_corrupted_blob_is_a_digest_mismatch_and_nothing_is_kept() {
    let reg = TestRegistry::start(None);
    let layer = compress(layer_tar(&[("f", b"content", 0o644)]), Comp::Gzip);
    let (digest, blobs) = push_image(&reg, &[&layer], &["true"], "amd64", false);
    reg.tag("app", "1", &digest);
    reg.state.corrupt.lock().unwrap().insert(blobs[0].clone());

    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let reference = format!("{}/app:1", reg.host);
    match s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress) {
        Err(ImageError::DigestMismatch { expected, .. }) => assert_eq!(expected, blobs[0]),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    let hex = blobs[0].trim_start_matches("sha256:");
    let dir = tmp.path().join("blobs/sha256");
    assert!(!dir.join(hex).exists());
    assert!(!dir.join(format!("{hex}.partial")).exists());
    assert!(
        std::fs::read_dir(tmp.path().join("layers"))
            .unwrap()
            .next()
            .is_none()
    );
    assert!(matches!(
        s.ensure(&reference, PullPolicy::Never, &no_progress),
        Err(ImageError::NotPresent { .. })
    ));

    // A manifest whose bytes do not match the digest asked for is refused too.
    let pinned = format!("{}/app@{}", reg.host, blobs[0]);
    assert!(matches!(
        s.ensure(&pinned, PullPolicy::IfNotPresent, &no_progress),
        Err(ImageError::DigestMismatch { .. }) | Err(ImageError::Unsupported { .. })
    ));

    reg.state.corrupt.lock().unwrap().clear();
    s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();
}

#[test]
fn manifest_lists_pick_linux_and_the_agent_architecture() {
    let reg = TestRegistry::start(None);
    let mut entries = Vec::new();
    for (arch, variant) in [
        ("amd64", None),
        ("arm64", Some("v8")),
        ("arm", Some("v7")),
        ("arm", Some("v6")),
    ] {
        let name = format!("{arch}{}", variant.unwrap_or(""));
        let l = compress(layer_tar(&[("arch", name.as_bytes(), 0o644)]), Comp::Gzip);
        let (d, _) = push_image(&reg, &[&l], &["true"], arch, true);
        let size = reg.state.blobs.lock().unwrap()[&d].0.len();
        let mut platform = json!({"architecture": arch, "os": "linux"});
        if let Some(v) = variant {
            platform["variant"] = json!(v);
        }
        entries.push(
            json!({"mediaType": DOCKER_MANIFEST, "digest": d, "size": size, "platform": platform}),
        );
    }
    // A windows entry first must not be picked.
    let wl = compress(layer_tar(&[("arch", b"windows", 0o644)]), Comp::Gzip);
    let (wd, _) = push_image(&reg, &[&wl], &["true"], "amd64", true);
    let wsize = reg.state.blobs.lock().unwrap()[&wd].0.len();
    entries.insert(0, json!({"mediaType": DOCKER_MANIFEST, "digest": wd, "size": wsize, "platform": {"architecture": "amd64", "os": "windows"}}));
    let list = json!({"schemaVersion": 2, "mediaType": DOCKER_LIST, "manifests": entries});
    let ld = reg.put_blob(serde_json::to_vec(&list).unwrap(), DOCKER_LIST);
    reg.tag("multi", "latest", &ld);

    let host = Platform::host();
    let host_name = format!(
        "{}{}",
        host.architecture,
        if host.architecture == "arm" {
            "v7"
        } else if host.architecture == "arm64" {
            "v8"
        } else {
            ""
        }
    );
    for (platform, want) in [
        (None, host_name.as_str()),
        (
            Some(Platform {
                architecture: "arm64".into(),
                variant: None,
            }),
            "arm64v8",
        ),
        (
            Some(Platform {
                architecture: "arm".into(),
                variant: Some("v7".into()),
            }),
            "armv7",
        ),
        (
            Some(Platform {
                architecture: "amd64".into(),
                variant: None,
            }),
            "amd64",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let s = store(tmp.path(), &reg, platform);
        let img = s
            .ensure(
                &format!("{}/multi", reg.host),
                PullPolicy::IfNotPresent,
                &no_progress,
            )
            .unwrap();
        assert_eq!(
            std::fs::read(img.layers[0].join("arch")).unwrap(),
            want.as_bytes()
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let s = store(
        tmp.path(),
        &reg,
        Some(Platform {
            architecture: "riscv64".into(),
            variant: None,
        }),
    );
    assert!(matches!(
        s.ensure(
            &format!("{}/multi", reg.host),
            PullPolicy::IfNotPresent,
            &no_progress
        ),
        Err(ImageError::Unsupported {
            what: "platform",
            ..
        })
    ));
}

#[test]
fn shared_layers_are_fetched_and_unpacked_once() {
    let reg = TestRegistry::start(None);
    let base = compress(layer_tar(&[("base", b"shared", 0o644)]), Comp::Gzip);
    let a = compress(layer_tar(&[("top", b"a", 0o644)]), Comp::Zstd);
    let b = compress(layer_tar(&[("top", b"b", 0o644)]), Comp::Plain);
    let (da, blobs_a) = push_image(&reg, &[&base, &a], &["a"], "amd64", false);
    let (db, _) = push_image(&reg, &[&base, &b], &["b"], "amd64", false);
    reg.tag("a", "1", &da);
    reg.tag("b", "1", &db);

    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let ia = s
        .ensure(
            &format!("{}/a:1", reg.host),
            PullPolicy::IfNotPresent,
            &no_progress,
        )
        .unwrap();
    let ib = s
        .ensure(
            &format!("{}/b:1", reg.host),
            PullPolicy::IfNotPresent,
            &no_progress,
        )
        .unwrap();
    assert_eq!(ia.layers[0], ib.layers[0]);
    assert_ne!(ia.layers[1], ib.layers[1]);
    assert_eq!(reg.blob_gets(&blobs_a[0]).len(), 1);
    assert_eq!(
        std::fs::read_dir(tmp.path().join("layers"))
            .unwrap()
            .count(),
        3
    );
    assert_eq!(std::fs::read(ib.layers[1].join("top")).unwrap(), b"b");
}

#[test]
fn concurrent_ensures_of_one_image_share_one_download() {
    let reg = TestRegistry::start(None);
    let l = compress(
        layer_tar(&[("data", &random_bytes(2 << 20, 3), 0o644)]),
        Comp::Gzip,
    );
    let (d, blobs) = push_image(&reg, &[&l], &["x"], "amd64", false);
    reg.tag("c", "1", &d);
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let reference = format!("{}/c:1", reg.host);
    let results: Vec<_> = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress)))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for r in &results {
        assert_eq!(r.as_ref().unwrap().digest, d);
    }
    assert_eq!(reg.blob_gets(&blobs[0]).len(), 1);
    assert_eq!(reg.manifest_gets(), 1);
}

#[test]
fn pull_policies() {
    let reg = TestRegistry::start(None);
    let l1 = compress(layer_tar(&[("v", b"1", 0o644)]), Comp::Gzip);
    let (d1, _) = push_image(&reg, &[&l1], &["one"], "amd64", false);
    reg.tag("p", "latest", &d1);
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let reference = format!("{}/p", reg.host);

    assert!(matches!(
        s.ensure(&reference, PullPolicy::Never, &no_progress),
        Err(ImageError::NotPresent { .. })
    ));
    assert!(reg.log().is_empty(), "Never must not touch the registry");
    s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();
    let after_pull = reg.log().len();
    // The same image under its fully written name is the same record.
    let again = s
        .ensure(
            &format!("{}/p:latest", reg.host),
            PullPolicy::IfNotPresent,
            &no_progress,
        )
        .unwrap();
    assert_eq!(again.digest, d1);
    assert_eq!(
        s.ensure(&reference, PullPolicy::Never, &no_progress)
            .unwrap()
            .digest,
        d1
    );
    assert_eq!(
        reg.log().len(),
        after_pull,
        "a present image is not pulled again"
    );

    // Always re-resolves the manifest but fetches no blob it already has.
    let img = s
        .ensure(&reference, PullPolicy::Always, &no_progress)
        .unwrap();
    assert_eq!(img.digest, d1);
    let new: Vec<_> = reg.log()[after_pull..].to_vec();
    assert!(
        new.iter().any(|l| l.path.contains("/manifests/")),
        "{new:?}"
    );
    assert!(!new.iter().any(|l| l.path.contains("/blobs/")), "{new:?}");

    // The tag moves: IfNotPresent keeps the local copy, Always follows.
    let l2 = compress(layer_tar(&[("v", b"2", 0o644)]), Comp::Gzip);
    let (d2, _) = push_image(&reg, &[&l2], &["two"], "amd64", false);
    reg.tag("p", "latest", &d2);
    assert_eq!(
        s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
            .unwrap()
            .digest,
        d1
    );
    let moved = s
        .ensure(&reference, PullPolicy::Always, &no_progress)
        .unwrap();
    assert_eq!(moved.digest, d2);
    assert_eq!(moved.config.cmd, ["two"]);
    assert_eq!(std::fs::read(moved.layers[0].join("v")).unwrap(), b"2");

    assert!(matches!(
        s.ensure("Not A Reference", PullPolicy::IfNotPresent, &no_progress),
        Err(ImageError::BadReference { .. })
    ));
    assert!(matches!(
        s.ensure(
            &format!("{}/absent:1", reg.host),
            PullPolicy::IfNotPresent,
            &no_progress
        ),
        Err(ImageError::NotFound { .. })
    ));
}

#[test]
fn gc_keeps_what_is_in_use_and_frees_the_rest() {
    let reg = TestRegistry::start(None);
    let base = compress(
        layer_tar(&[("base", &random_bytes(100_000, 1), 0o644)]),
        Comp::Gzip,
    );
    let a = compress(layer_tar(&[("a", b"a", 0o644)]), Comp::Gzip);
    let b = compress(
        layer_tar(&[("b", &random_bytes(200_000, 2), 0o644)]),
        Comp::Gzip,
    );
    let (da, _) = push_image(&reg, &[&base, &a], &["a"], "amd64", false);
    let (db, _) = push_image(&reg, &[&base, &b], &["b"], "amd64", false);
    reg.tag("a", "1", &da);
    reg.tag("b", "1", &db);
    let tmp = tempfile::tempdir().unwrap();
    let s = store(tmp.path(), &reg, None);
    let ra = format!("{}/a:1", reg.host);
    let rb = format!("{}/b:1", reg.host);
    let ia = s
        .ensure(&ra, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();
    let ib = s
        .ensure(&rb, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();

    let nothing = s.gc(&BTreeSet::from([ra.clone(), rb.clone()])).unwrap();
    assert_eq!((nothing.images, nothing.layers, nothing.bytes), (0, 0, 0));

    let report = s.gc(&BTreeSet::from([ra.clone()])).unwrap();
    assert_eq!(report.images, 1);
    assert_eq!(report.layers, 1);
    assert!(report.bytes >= 200_000, "{report:?}");
    assert!(!ib.layers[1].exists());
    assert!(ia.layers.iter().all(|l| l.is_dir()));
    assert_eq!(
        s.ensure(&ra, PullPolicy::Never, &no_progress)
            .unwrap()
            .digest,
        da
    );
    assert!(matches!(
        s.ensure(&rb, PullPolicy::Never, &no_progress),
        Err(ImageError::NotPresent { .. })
    ));

    let all = s.gc(&BTreeSet::new()).unwrap();
    assert_eq!((all.images, all.layers), (1, 2));
    assert_eq!(
        std::fs::read_dir(tmp.path().join("layers"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(tmp.path().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn anonymous_bearer_tokens_and_mirrors() {
    let reg = TestRegistry::start(None);
    reg.state.bearer.store(true, Ordering::SeqCst);
    let l = compress(layer_tar(&[("t", b"token", 0o644)]), Comp::Gzip);
    let (d, _) = push_image(&reg, &[&l], &["x"], "amd64", false);
    reg.tag("library/tok", "1", &d);
    let empty = TestRegistry::start(None);

    // The reference names a registry nobody listens on; its mirrors serve it, the first
    // one answering 404.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = OciStoreConfig::new(tmp.path().to_path_buf());
    c.registry.plain_http = BTreeSet::from(["127.0.0.1:9".to_string()]);
    c.registry.mirrors.insert(
        "127.0.0.1:9".into(),
        vec![
            format!("http://{}", empty.host),
            format!("http://{}/", reg.host),
        ],
    );
    let s = OciImageStore::open(c).unwrap();
    let img = s
        .ensure(
            "127.0.0.1:9/library/tok:1",
            PullPolicy::IfNotPresent,
            &no_progress,
        )
        .unwrap();
    assert_eq!(img.digest, d);
    assert_eq!(std::fs::read(img.layers[0].join("t")).unwrap(), b"token");
    let tokens: Vec<_> = reg
        .log()
        .into_iter()
        .filter(|l| l.path.starts_with("/token"))
        .collect();
    assert_eq!(tokens.len(), 1, "one token, reused: {tokens:?}");
    assert!(
        tokens[0]
            .path
            .contains("scope=repository%3Alibrary%2Ftok%3Apull"),
        "{tokens:?}"
    );
    assert!(!empty.log().is_empty());
}

#[test]
fn a_crash_mid_unpack_leaves_no_image_and_no_temp_dirs() {
    let reg = TestRegistry::start(None);
    let l = compress(layer_tar(&[("f", b"x", 0o644)]), Comp::Gzip);
    let (d, _) = push_image(&reg, &[&l], &["x"], "amd64", false);
    reg.tag("app", "1", &d);
    let tmp = tempfile::tempdir().unwrap();
    // What a crash between unpacking and renaming leaves behind.
    std::fs::create_dir_all(tmp.path().join("layers/.tmp-deadbeef-1-0/etc")).unwrap();
    let s = store(tmp.path(), &reg, None);
    assert!(!tmp.path().join("layers/.tmp-deadbeef-1-0").exists());
    let img = s
        .ensure(
            &format!("{}/app:1", reg.host),
            PullPolicy::IfNotPresent,
            &no_progress,
        )
        .unwrap();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("index.json")).unwrap()).unwrap();
    assert_eq!(
        index["images"][format!("{}/app:1", reg.host)]["digest"],
        img.digest
    );
    let mut names = Vec::new();
    for e in std::fs::read_dir(tmp.path()).unwrap() {
        names.push(e.unwrap().file_name().to_string_lossy().into_owned());
    }
    names.sort();
    assert_eq!(names, ["blobs", "index.json", "layers"]);
}

#[test]
fn pulls_over_https_trusting_the_configured_ca_and_refuses_an_unknown_issuer() {
    let reg = TestRegistry::start(None);
    let l = compress(layer_tar(&[("tls", b"over https", 0o644)]), Comp::Gzip);
    let (d, _) = push_image(&reg, &[&l], &["x"], "amd64", false);
    reg.tag("edge/app", "1", &d);
    let pki = TestPki::new();
    let front = https_front(&pki, &reg);
    let reference = format!("{front}/edge/app:1");

    // Trusting the registry's CA: the pull goes over https and verifies like any other.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = OciStoreConfig::new(tmp.path().to_path_buf());
    c.registry.ca_certs = skiff_agent::image::load_ca_file(&pki.ca()).unwrap();
    assert_eq!(c.registry.ca_certs.len(), 1);
    let s = OciImageStore::open(c).unwrap();
    let img = s
        .ensure(&reference, PullPolicy::IfNotPresent, &no_progress)
        .unwrap();
    assert_eq!(img.digest, d);
    assert_eq!(
        std::fs::read(img.layers[0].join("tls")).unwrap(),
        b"over https"
    );
    assert!(
        reg.log().iter().any(|l| l.path.contains("/blobs/")),
        "the blobs came through the https front"
    );

    // With the system's roots only, the test CA is unknown: a clear fetch error naming
    // the certificate problem, and nothing stored.
    let tmp = tempfile::tempdir().unwrap();
    let mut c = OciStoreConfig::new(tmp.path().to_path_buf());
    c.registry.ca_certs = skiff_agent::image::system_roots();
    assert!(
        !c.registry.ca_certs.is_empty(),
        "this test needs the system CA bundle ({}; Debian package ca-certificates)",
        skiff_agent::image::SYSTEM_CA_BUNDLE
    );
    let s = OciImageStore::open(c).unwrap();
    match s.ensure(&reference, PullPolicy::IfNotPresent, &no_progress) {
        Err(ImageError::Fetch { message, .. }) => assert!(
            message.to_ascii_lowercase().contains("certificate")
                || message.contains("UnknownIssuer"),
            "{message}"
        ),
        other => panic!("expected a certificate error, got {other:?}"),
    }
    assert!(matches!(
        s.ensure(&reference, PullPolicy::Never, &no_progress),
        Err(ImageError::NotPresent { .. })
    ));

    // A CA file that holds no certificate is refused when it is loaded.
    let bad = tmp.path().join("empty.pem");
    std::fs::write(&bad, "not a certificate\n").unwrap();
    let e = skiff_agent::image::load_ca_file(&bad).unwrap_err();
    assert!(e.contains("no PEM certificate"), "{e}");
}
