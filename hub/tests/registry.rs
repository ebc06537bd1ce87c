//! The image registry in process: archives built here (OCI layouts, docker archives,
//! and broken ones) imported through `POST /skiff/v1/images/import`, read back over the
//! OCI distribution API with the real blob files and SQLite index underneath.

use std::io::Write;
use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use skiff_hub::join::Credentials;
use skiff_hub::registry::{PullAuth, Registry, RegistryOptions};
use skiff_hub::server::AdminToken;
use tower::ServiceExt;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A tar of `(path, content)` regular files. Paths are written into the header as
/// given, `..` included, so hostile archives can be made.
fn tar_of(entries: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        let name = path.as_bytes();
        h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, &data[..]).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A layer: an uncompressed tar holding one file.
fn layer(file: &str, content: &str) -> Vec<u8> {
    tar_of(&[(file.to_string(), content.as_bytes().to_vec())])
}

/// The files of an OCI image layout; tests edit them before packing.
struct Layout {
    files: Vec<(String, Vec<u8>)>,
}

struct Image {
    manifest: Vec<u8>,
    digest: String,
    layers: Vec<(String, Vec<u8>)>,
    config: Vec<u8>,
}

/// Builds an image manifest over gzip layers made of `layers`.
fn image(layers: &[Vec<u8>], created: &str) -> Image {
    let gz: Vec<Vec<u8>> = layers.iter().map(|l| gzip(l)).collect();
    let config = json!({
        "created": created,
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| sha(l)).collect::<Vec<_>>()},
    })
    .to_string()
    .into_bytes();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&config), "size": config.len()},
        "layers": gz.iter().map(|l| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": sha(l), "size": l.len()})).collect::<Vec<_>>(),
    })
    .to_string()
    .into_bytes();
    Image {
        digest: sha(&manifest),
        manifest,
        layers: gz.into_iter().map(|l| (sha(&l), l)).collect(),
        config,
    }
}

fn blob_name(digest: &str) -> String {
    format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))
}

impl Layout {
    /// A layout of `images`, each with an optional `org.opencontainers.image.ref.name`.
    fn new(images: &[(&Image, Option<&str>)]) -> Layout {
        let mut files = vec![(
            "oci-layout".to_string(),
            br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
        )];
        let mut descs = Vec::new();
        for (img, name) in images {
            let mut d = json!({
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": img.digest, "size": img.manifest.len()});
            if let Some(n) = name {
                d["annotations"] = json!({"org.opencontainers.image.ref.name": n});
            }
            descs.push(d);
            let mut add = |digest: &str, bytes: &[u8]| {
                let name = blob_name(digest);
                if !files.iter().any(|(n, _)| *n == name) {
                    files.push((name, bytes.to_vec()));
                }
            };
            add(&img.digest, &img.manifest);
            add(&sha(&img.config), &img.config);
            for (d, l) in &img.layers {
                add(d, l);
            }
        }
        files.push((
            "index.json".to_string(),
            json!({"schemaVersion": 2, "manifests": descs})
                .to_string()
                .into_bytes(),
        ));
        Layout { files }
    }

    fn tar(&self) -> Vec<u8> {
        tar_of(&self.files)
    }
}

struct Env {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    registry: Registry,
    router: Router,
    token: String,
    credentials: Credentials,
}

fn env_with(anonymous_pull: bool, limit: u64) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_path_buf();
    let admin = AdminToken::load_or_create(&data).unwrap();
    let token = std::fs::read_to_string(AdminToken::path(&data))
        .unwrap()
        .trim()
        .to_string();
    let credentials = Credentials::open(&data.join("credentials.db")).unwrap();
    let registry = Registry::open(
        &data,
        RegistryOptions {
            import_limit: limit,
        },
    )
    .unwrap();
    let router = registry.routes(PullAuth {
        admin,
        nodes: Some(credentials.clone()),
        anonymous_pull,
    });
    Env {
        _dir: dir,
        data,
        registry,
        router,
        token,
        credentials,
    }
}

fn env() -> Env {
    env_with(false, 1 << 30)
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Vec<u8>,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|_| {
            panic!(
                "not JSON ({}): {}",
                self.status,
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
    }
}

impl Env {
    async fn call(&self, method: &str, uri: &str, auth: Option<String>, body: Vec<u8>) -> Resp {
        self.call_with(method, uri, auth, body, &[]).await
    }

    async fn call_with(
        &self,
        method: &str,
        uri: &str,
        auth: Option<String>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .router
            .clone()
            .oneshot(req.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        Resp {
            status,
            headers,
            body,
        }
    }

    fn bearer(&self) -> Option<String> {
        Some(format!("Bearer {}", self.token))
    }

    async fn get(&self, uri: &str) -> Resp {
        self.call("GET", uri, self.bearer(), Vec::new()).await
    }

    async fn import(&self, archive: Vec<u8>, query: &str) -> Resp {
        self.call(
            "POST",
            &format!("/skiff/v1/images/import{query}"),
            self.bearer(),
            archive,
        )
        .await
    }

    async fn import_ok(&self, archive: Vec<u8>, query: &str) -> Value {
        let r = self.import(archive, query).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        r.json()["images"].clone()
    }

    fn blob_files(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.data.join("registry/blobs/sha256")) else {
            return Vec::new();
        };
        let mut v: Vec<String> = dir
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    fn staging_is_empty(&self) -> bool {
        std::fs::read_dir(self.data.join("registry/staging"))
            .map_or(true, |mut d| d.next().is_none())
    }

    /// Asserts a refused archive left nothing: no image, no blob, no staging.
    async fn assert_nothing_imported(&self) {
        let list = self.get("/skiff/v1/images").await.json();
        assert_eq!(list["images"], json!([]), "{list}");
        assert!(self.blob_files().is_empty(), "{:?}", self.blob_files());
        assert!(self.staging_is_empty());
        let cat = self.get("/v2/_catalog").await.json();
        assert_eq!(cat["repositories"], json!([]));
    }
}

fn hex_of(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oci_layout_is_imported_and_served() {
    let env = env();
    let img = image(
        &[layer("bin/hello", "hello"), layer("etc/x", "x")],
        "2024-01-01T00:00:00Z",
    );
    let layout = Layout::new(&[(&img, Some("library/busybox:1"))]);
    let imported = env.import_ok(gzip(&layout.tar()), "").await;
    assert_eq!(imported[0]["name"], "library/busybox");
    assert_eq!(imported[0]["tag"], "1");
    assert_eq!(imported[0]["digest"], img.digest);
    let total = img.manifest.len()
        + img.config.len()
        + img.layers.iter().map(|(_, l)| l.len()).sum::<usize>();
    assert_eq!(imported[0]["size"], total);

    let base = env.get("/v2/").await;
    assert_eq!(base.status, StatusCode::OK);
    assert_eq!(
        base.header("docker-distribution-api-version"),
        "registry/2.0"
    );

    for reference in ["1", img.digest.as_str()] {
        let m = env
            .get(&format!("/v2/library/busybox/manifests/{reference}"))
            .await;
        assert_eq!(m.status, StatusCode::OK);
        assert_eq!(m.body, img.manifest);
        assert_eq!(
            m.header("content-type"),
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(m.header("docker-content-digest"), img.digest);
        assert_eq!(m.header("content-length"), img.manifest.len().to_string());
    }
    let head = env
        .call(
            "HEAD",
            "/v2/library/busybox/manifests/1",
            env.bearer(),
            Vec::new(),
        )
        .await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        img.manifest.len().to_string()
    );
    assert_eq!(head.header("docker-content-digest"), img.digest);

    for (d, bytes) in img
        .layers
        .iter()
        .chain([(sha(&img.config), img.config.clone())].iter())
    {
        let b = env.get(&format!("/v2/library/busybox/blobs/{d}")).await;
        assert_eq!(b.status, StatusCode::OK);
        assert_eq!(&b.body, bytes);
        assert_eq!(b.header("docker-content-digest"), d);
        assert_eq!(b.header("content-length"), bytes.len().to_string());
    }
    let tags = env.get("/v2/library/busybox/tags/list").await.json();
    assert_eq!(tags, json!({"name": "library/busybox", "tags": ["1"]}));
    let cat = env.get("/v2/_catalog").await.json();
    assert_eq!(cat, json!({"repositories": ["library/busybox"]}));

    let list = env.get("/skiff/v1/images").await.json();
    let row = &list["images"][0];
    assert_eq!(row["name"], "library/busybox");
    assert_eq!(row["digest"], img.digest);
    assert_eq!(row["size"], total);
    assert_eq!(row["created"], "2024-01-01T00:00:00Z");

    // The blob files are exactly the image's blobs, each named by its content's digest.
    let mut expected: Vec<String> = [img.digest.clone(), sha(&img.config)]
        .into_iter()
        .chain(img.layers.iter().map(|(d, _)| d.clone()))
        .map(|d| hex_of(&d).to_string())
        .collect();
    expected.sort();
    assert_eq!(env.blob_files(), expected);
    for f in env.blob_files() {
        let bytes = std::fs::read(env.data.join("registry/blobs/sha256").join(&f)).unwrap();
        assert_eq!(hex_of(&sha(&bytes)), f);
    }
    assert!(env.staging_is_empty());

    // Another process opening the same data directory sees the same images.
    let reopened = Registry::open(&env.data, RegistryOptions::default()).unwrap();
    assert_eq!(reopened.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_things_get_oci_errors() {
    let env = env();
    let img = image(&[layer("a", "a")], "2024-01-01T00:00:00Z");
    let other = image(&[layer("b", "b")], "2024-01-01T00:00:00Z");
    env.import_ok(Layout::new(&[(&img, Some("one:1"))]).tar(), "")
        .await;
    env.import_ok(Layout::new(&[(&other, Some("two:1"))]).tar(), "")
        .await;
    let cases = [
        (
            "/v2/one/manifests/2",
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        (
            "/v2/nope/manifests/1",
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
        ),
        ("/v2/nope/tags/list", StatusCode::NOT_FOUND, "NAME_UNKNOWN"),
        ("/v2/Bad/tags/list", StatusCode::BAD_REQUEST, "NAME_INVALID"),
        (
            "/v2/one/blobs/sha256:zz",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
        (
            "/v2/one/manifests/sha256:12",
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
        ),
    ];
    for (uri, status, code) in cases {
        let r = env.get(uri).await;
        assert_eq!(r.status, status, "{uri}");
        assert_eq!(r.json()["errors"][0]["code"], code, "{uri}");
    }
    // A blob is served only under the repositories whose images use it.
    let (theirs, _) = &other.layers[0];
    let r = env.get(&format!("/v2/one/blobs/{theirs}")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UNKNOWN");
    let r = env
        .get(&format!("/v2/one/manifests/{}", other.digest))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Writes are refused.
    for (method, uri) in [
        ("PUT", "/v2/one/manifests/2"),
        ("POST", "/v2/one/blobs/uploads/"),
        ("PATCH", "/v2/one/blobs/uploads/x"),
        ("DELETE", "/v2/one/manifests/1"),
    ] {
        let r = env.call(method, uri, env.bearer(), b"{}".to_vec()).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(r.json()["errors"][0]["code"], "UNSUPPORTED");
    }
    assert_eq!(env.get("/v2/one/manifests/1").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blobs_are_served_in_ranges() {
    let env = env();
    let big: String = (0..20_000)
        .map(|i| char::from(b'a' + (i % 26) as u8))
        .collect();
    let img = image(&[layer("big", &big)], "2024-01-01T00:00:00Z");
    env.import_ok(Layout::new(&[(&img, Some("big:1"))]).tar(), "")
        .await;
    let (d, bytes) = &img.layers[0];
    let size = bytes.len();
    let uri = format!("/v2/big/blobs/{d}");
    let ranged = |r: &'static str| {
        let uri = uri.clone();
        let env = &env;
        async move {
            env.call_with("GET", &uri, env.bearer(), Vec::new(), &[("range", r)])
                .await
        }
    };
    let r = ranged("bytes=0-99").await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, bytes[..100]);
    assert_eq!(r.header("content-range"), format!("bytes 0-99/{size}"));
    assert_eq!(r.header("content-length"), "100");

    // Resuming: everything from an offset.
    let r = ranged("bytes=100-").await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(r.body, bytes[100..]);
    assert_eq!(
        r.header("content-range"),
        format!("bytes 100-{}/{size}", size - 1)
    );
    let mut joined = bytes[..100].to_vec();
    joined.extend_from_slice(&r.body);
    assert_eq!(sha(&joined), *d);

    let r = ranged("bytes=-10").await;
    assert_eq!(r.body, bytes[size - 10..]);

    let r = env
        .call_with(
            "GET",
            &uri,
            env.bearer(),
            Vec::new(),
            &[("range", &format!("bytes={size}-"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(r.header("content-range"), format!("bytes */{size}"));

    let head = env
        .call_with(
            "HEAD",
            &uri,
            env.bearer(),
            Vec::new(),
            &[("range", "bytes=5-9")],
        )
        .await;
    assert_eq!(head.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(head.header("content-length"), "5");
    assert!(head.body.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docker_archive_is_converted() {
    let env = env();
    let base = layer("bin/sh", "shell");
    let top = layer("app", "app");
    let config = json!({
        "architecture": "amd64", "os": "linux", "created": "2024-02-02T00:00:00Z",
        "config": {"Entrypoint": ["/app"], "Env": ["A=1"]},
        "container_config": {"Hostname": "x"}, "docker_version": "24",
        "rootfs": {"type": "layers", "diff_ids": [sha(&base), sha(&top)]},
    })
    .to_string()
    .into_bytes();
    let config_name = format!("{}.json", hex_of(&sha(&config)));
    let manifest = json!([{
        "Config": config_name,
        "RepoTags": ["app:2", "app:latest"],
        "Layers": ["aaa/layer.tar", "bbb/layer.tar"],
    }]);
    // `docker save` writes a repeated layer as a symlink to the first copy.
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, data).unwrap();
    };
    add("manifest.json", manifest.to_string().as_bytes());
    add(&config_name, &config);
    add("aaa/layer.tar", &base);
    add("ccc/layer.tar", &top);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    b.append_link(&mut h, "bbb/layer.tar", "../ccc/layer.tar")
        .unwrap();
    let archive = b.into_inner().unwrap();

    let imported = env.import_ok(archive, "").await;
    let tags: Vec<&str> = imported
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["tag"].as_str().unwrap())
        .collect();
    assert_eq!(tags, ["2", "latest"]);
    let m = env.get("/v2/app/manifests/2").await;
    assert_eq!(
        m.header("content-type"),
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(sha(&m.body), m.header("docker-content-digest"));
    let manifest = m.json();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    for (l, raw) in layers.iter().zip([&base, &top]) {
        assert_eq!(l["mediaType"], "application/vnd.oci.image.layer.v1.tar");
        assert_eq!(l["digest"], sha(raw));
        assert_eq!(l["size"], raw.len());
        let blob = env
            .get(&format!("/v2/app/blobs/{}", l["digest"].as_str().unwrap()))
            .await;
        assert_eq!(&blob.body, raw);
    }
    let cfg = env
        .get(&format!(
            "/v2/app/blobs/{}",
            manifest["config"]["digest"].as_str().unwrap()
        ))
        .await;
    assert_eq!(sha(&cfg.body), manifest["config"]["digest"]);
    let cfg = cfg.json();
    assert_eq!(cfg["config"]["Entrypoint"], json!(["/app"]));
    assert_eq!(cfg["rootfs"]["diff_ids"], json!([sha(&base), sha(&top)]));
    assert!(cfg.get("container_config").is_none(), "{cfg}");
    assert_eq!(
        env.get("/v2/app/tags/list").await.json()["tags"],
        json!(["2", "latest"])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_archives_are_refused_and_leave_nothing() {
    let env = env();
    let img = image(
        &[layer("a", "aaa"), layer("b", "bbb")],
        "2024-01-01T00:00:00Z",
    );
    let good = Layout::new(&[(&img, Some("x:1"))]);
    let layer_entry = blob_name(&img.layers[1].0);

    let mut wrong = Layout::new(&[(&img, Some("x:1"))]);
    for (n, data) in &mut wrong.files {
        if *n == layer_entry {
            data[5] ^= 0xff;
        }
    }
    let mut missing = Layout::new(&[(&img, Some("x:1"))]);
    missing.files.retain(|(n, _)| *n != layer_entry);
    let mut traversal = Layout::new(&[(&img, Some("x:1"))]);
    traversal
        .files
        .push(("../../etc/evil".to_string(), b"x".to_vec()));
    let mut absolute = Layout::new(&[(&img, Some("x:1"))]);
    absolute
        .files
        .insert(0, ("/etc/evil".to_string(), b"x".to_vec()));
    let mut no_index = Layout::new(&[(&img, Some("x:1"))]);
    no_index.files.retain(|(n, _)| n != "index.json");
    let mut bad_json = Layout::new(&[(&img, Some("x:1"))]);
    for (n, data) in &mut bad_json.files {
        if n == "index.json" {
            *data = b"{not json".to_vec();
        }
    }
    let full = good.tar();
    // Cut inside the last blob's data (the tar ends with two zero blocks).
    let truncated = full[..full.len() - 1024 - 700].to_vec();
    let gz = gzip(&full);
    let truncated_gz = gz[..gz.len() / 2].to_vec();

    let cases: Vec<(&str, Vec<u8>, String)> = vec![
        ("wrong digest", wrong.tar(), layer_entry.clone()),
        ("missing blob", missing.tar(), img.layers[1].0.clone()),
        ("path traversal", traversal.tar(), "../../etc/evil".into()),
        ("absolute path", absolute.tar(), "/etc/evil".into()),
        (
            "no index",
            no_index.tar(),
            "neither an OCI image layout".into(),
        ),
        ("bad index", bad_json.tar(), "index.json".into()),
        ("truncated", truncated, "unreadable".into()),
        ("truncated gzip", truncated_gz, "unreadable".into()),
        ("not an archive", b"hello, world".repeat(100), "".into()),
        ("empty", Vec::new(), "".into()),
    ];
    for (what, archive, needle) in cases {
        let r = env.import(archive, "").await;
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            String::from_utf8_lossy(&r.body)
        );
        let msg = r.json()["message"].as_str().unwrap().to_string();
        assert!(
            msg.contains(&needle),
            "{what}: {msg:?} should name {needle:?}"
        );
        env.assert_nothing_imported().await;
    }
    // The good archive still goes in afterwards.
    env.import_ok(full, "").await;
    assert_eq!(env.get("/v2/x/manifests/1").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_come_from_the_archive_or_the_query() {
    let env = env();
    let img = image(&[layer("a", "a")], "2024-01-01T00:00:00Z");
    let untagged = Layout::new(&[(&img, None)]).tar();
    let r = env.import(untagged.clone(), "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let msg = r.json()["message"].as_str().unwrap().to_string();
    assert!(msg.contains("no name") && msg.contains("--tag"), "{msg}");
    env.assert_nothing_imported().await;

    let bare = Layout::new(&[(&img, Some("7"))]).tar();
    let r = env.import(bare.clone(), "").await;
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .contains("no repository name")
    );
    let got = env.import_ok(bare, "?tag=tools").await;
    assert_eq!(
        (got[0]["name"].as_str(), got[0]["tag"].as_str()),
        (Some("tools"), Some("7"))
    );

    let got = env.import_ok(untagged, "?tag=library%2Ftools%3Av2").await;
    assert_eq!(
        (got[0]["name"].as_str(), got[0]["tag"].as_str()),
        (Some("library/tools"), Some("v2"))
    );
    // The override wins over the archive's own name.
    let named = Layout::new(&[(&img, Some("other:9"))]).tar();
    let got = env.import_ok(named, "?tag=mine:1").await;
    assert_eq!(got.as_array().unwrap().len(), 1);
    assert_eq!(got[0]["name"], "mine");

    let r = env
        .import(Layout::new(&[(&img, None)]).tar(), "?tag=Bad:1")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // Two images and one NAME:TAG is ambiguous.
    let second = image(&[layer("b", "b")], "2024-01-01T00:00:00Z");
    let two = Layout::new(&[(&img, None), (&second, None)]).tar();
    let r = env.import(two, "?tag=x:1").await;
    assert!(r.json()["message"].as_str().unwrap().contains("2 images"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_collects_only_unshared_blobs() {
    let env = env();
    let shared = layer("base", "shared base layer");
    let a = image(
        &[shared.clone(), layer("a", "only a")],
        "2024-01-01T00:00:00Z",
    );
    let b = image(&[shared, layer("b", "only b")], "2024-01-01T00:00:00Z");
    env.import_ok(Layout::new(&[(&a, Some("a:1"))]).tar(), "")
        .await;
    env.import_ok(Layout::new(&[(&b, Some("b:1"))]).tar(), "")
        .await;
    // The shared layer is stored once: 2 manifests, 2 configs, 3 layers.
    assert_eq!(env.blob_files().len(), 7);
    let shared_digest = &a.layers[0].0;
    assert_eq!(shared_digest, &b.layers[0].0);

    // A second tag of the same image keeps it alive when the first goes.
    env.import_ok(Layout::new(&[(&a, Some("a:also"))]).tar(), "")
        .await;
    let r = env
        .call("DELETE", "/skiff/v1/images/a:1", env.bearer(), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["blobsRemoved"], 0);
    assert_eq!(env.blob_files().len(), 7);
    let r = env
        .call(
            "DELETE",
            "/skiff/v1/images/a:also",
            env.bearer(),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["blobsRemoved"], 3);
    let files = env.blob_files();
    assert_eq!(files.len(), 4);
    assert!(files.contains(&hex_of(shared_digest).to_string()));
    assert!(!files.contains(&hex_of(&a.layers[1].0).to_string()));
    // b is whole.
    for (d, bytes) in &b.layers {
        assert_eq!(&env.get(&format!("/v2/b/blobs/{d}")).await.body, bytes);
    }
    assert_eq!(
        env.get("/v2/a/manifests/1").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        env.get("/v2/_catalog").await.json()["repositories"],
        json!(["b"])
    );

    let r = env
        .call("DELETE", "/skiff/v1/images/a:1", env.bearer(), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = env
        .call("DELETE", "/skiff/v1/images/b", env.bearer(), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = env
        .call("DELETE", "/skiff/v1/images/b:1", env.bearer(), Vec::new())
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(env.blob_files().is_empty());
    assert_eq!(env.registry.list().unwrap(), vec![]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_imports_and_removals_keep_shared_layers() {
    let env = std::sync::Arc::new(env());
    let shared = layer("base", "a base every image shares");
    let images: Vec<Image> = (0..6)
        .map(|i| {
            image(
                &[shared.clone(), layer("own", &format!("image {i}"))],
                "2024-01-01T00:00:00Z",
            )
        })
        .collect();
    // Image 0 is imported first; then the others go in while it is removed.
    env.import_ok(Layout::new(&[(&images[0], Some("img0:1"))]).tar(), "")
        .await;
    let mut tasks = Vec::new();
    for (i, img) in images.iter().enumerate().skip(1) {
        let env = env.clone();
        let archive = Layout::new(&[(img, Some(&format!("img{i}:1")))]).tar();
        tasks.push(tokio::spawn(async move {
            env.import_ok(archive, "").await;
        }));
    }
    let remover = {
        let env = env.clone();
        tokio::spawn(async move {
            let r = env
                .call(
                    "DELETE",
                    "/skiff/v1/images/img0:1",
                    env.bearer(),
                    Vec::new(),
                )
                .await;
            assert_eq!(r.status, StatusCode::OK);
        })
    };
    for t in tasks {
        t.await.unwrap();
    }
    remover.await.unwrap();
    // Every remaining image is whole, the shared layer among them.
    for (i, img) in images.iter().enumerate().skip(1) {
        for (d, bytes) in &img.layers {
            let b = env.get(&format!("/v2/img{i}/blobs/{d}")).await;
            assert_eq!(b.status, StatusCode::OK, "img{i} {d}");
            assert_eq!(&b.body, bytes);
        }
    }
    // 5 images: manifest, config and own layer each, plus the shared layer.
    assert_eq!(env.blob_files().len(), 5 * 3 + 1);
    assert!(env.staging_is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retagging_collects_the_old_image() {
    let env = env();
    let old = image(&[layer("v", "one")], "2024-01-01T00:00:00Z");
    let new = image(&[layer("v", "two")], "2024-01-01T00:00:00Z");
    env.import_ok(Layout::new(&[(&old, Some("app:latest"))]).tar(), "")
        .await;
    env.import_ok(Layout::new(&[(&new, Some("app:latest"))]).tar(), "")
        .await;
    let m = env.get("/v2/app/manifests/latest").await;
    assert_eq!(m.header("docker-content-digest"), new.digest);
    assert_eq!(
        env.get(&format!("/v2/app/manifests/{}", old.digest))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let files = env.blob_files();
    assert_eq!(files.len(), 3, "{files:?}");
    assert!(!files.contains(&hex_of(&old.layers[0].0).to_string()));
    // Importing the same archive again changes nothing.
    env.import_ok(Layout::new(&[(&new, Some("app:latest"))]).tar(), "")
        .await;
    assert_eq!(env.blob_files(), files);
    assert_eq!(env.registry.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_indexes_are_served() {
    let env = env();
    let img = image(&[layer("a", "a")], "2024-01-01T00:00:00Z");
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": img.digest, "size": img.manifest.len(),
            "platform": {"architecture": "amd64", "os": "linux"}}],
    })
    .to_string()
    .into_bytes();
    let mut layout = Layout::new(&[(&img, None)]);
    layout.files.retain(|(n, _)| n != "index.json");
    layout.files.push((blob_name(&sha(&index)), index.clone()));
    layout.files.push((
        "index.json".into(),
        json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": sha(&index), "size": index.len(),
            "annotations": {"org.opencontainers.image.ref.name": "multi:1"}}]})
        .to_string()
        .into_bytes(),
    ));
    env.import_ok(layout.tar(), "").await;
    let m = env.get("/v2/multi/manifests/1").await;
    assert_eq!(
        m.header("content-type"),
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(m.body, index);
    let child = env
        .get(&format!("/v2/multi/manifests/{}", img.digest))
        .await;
    assert_eq!(child.status, StatusCode::OK);
    assert_eq!(child.body, img.manifest);
    let r = env
        .call(
            "DELETE",
            "/skiff/v1/images/multi:1",
            env.bearer(),
            Vec::new(),
        )
        .await;
    assert_eq!(r.json()["blobsRemoved"], 4);
    assert!(env.blob_files().is_empty());
}

fn basic(user: &str, password: &str) -> Option<String> {
    use std::fmt::Write as _;
    // Standard base64, written out here so the test does not trust the hub's decoder.
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for c in input.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    let mut s = String::new();
    write!(s, "Basic {out}").unwrap();
    Some(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_need_credentials() {
    let env = env();
    let img = image(&[layer("a", "a")], "2024-01-01T00:00:00Z");
    env.import_ok(Layout::new(&[(&img, Some("x:1"))]).tar(), "")
        .await;
    let join = env.credentials.create_token(i64::MAX / 2, 1).unwrap();
    let issued = env.credentials.join(&join.reveal(), "edge-1", 0).unwrap();

    let uri = "/v2/x/manifests/1";
    let r = env.call("GET", uri, None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), "Basic realm=\"skiff\"");
    assert_eq!(r.json()["errors"][0]["code"], "UNAUTHORIZED");
    let r = env.call("GET", "/v2/", None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    let ok = [
        env.bearer(),
        basic("admin", &env.token),
        basic("edge-1", &issued.password),
    ];
    for auth in ok {
        let r = env.call("GET", uri, auth.clone(), Vec::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{auth:?}");
    }
    let refused = [
        Some("Bearer nope".to_string()),
        basic("admin", "nope"),
        basic("edge-1", &env.token),
        basic("edge-2", &issued.password),
        basic("root", &env.token),
        Some("Basic !!!".to_string()),
    ];
    for auth in refused {
        let r = env.call("GET", uri, auth.clone(), Vec::new()).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
    }
    // The admin endpoints take the admin bearer token only.
    for auth in [
        None,
        basic("admin", &env.token),
        basic("edge-1", &issued.password),
    ] {
        let r = env
            .call("GET", "/skiff/v1/images", auth.clone(), Vec::new())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let r = env
            .call("POST", "/skiff/v1/images/import", auth.clone(), Vec::new())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{auth:?}");
        let r = env
            .call("DELETE", "/skiff/v1/images/x:1", auth, Vec::new())
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(env.registry.list().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pulls_when_enabled() {
    let env = env_with(true, 1 << 30);
    let img = image(&[layer("a", "a")], "2024-01-01T00:00:00Z");
    env.import_ok(Layout::new(&[(&img, Some("x:1"))]).tar(), "")
        .await;
    let r = env.call("GET", "/v2/x/manifests/1", None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    // Wrong credentials are still wrong.
    let r = env
        .call(
            "GET",
            "/v2/x/manifests/1",
            basic("admin", "nope"),
            Vec::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r = env.call("GET", "/skiff/v1/images", None, Vec::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_archives_are_refused() {
    let env = env_with(false, 16 * 1024);
    // Pseudo-random letters: gzip cannot shrink them below the limit.
    let mut x: u32 = 1;
    let big: String = (0..60_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + ((x >> 16) % 26) as u8)
        })
        .collect();
    let img = image(&[layer("big", &big)], "2024-01-01T00:00:00Z");
    let r = env
        .import(Layout::new(&[(&img, Some("x:1"))]).tar(), "")
        .await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.json()["message"].as_str().unwrap().contains("16384"));
    // A small archive that unpacks past the limit (a gzip bomb) is refused too.
    let bomb = gzip(&tar_of(&[("zeros".into(), vec![0u8; 1 << 20])]));
    assert!(bomb.len() < 16 * 1024);
    let r = env.import(bomb, "").await;
    assert_eq!(
        r.status,
        StatusCode::PAYLOAD_TOO_LARGE,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    env.assert_nothing_imported().await;
}

#[test]
fn crash_leftovers_are_cleared_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::open(dir.path(), RegistryOptions::default()).unwrap();
    assert!(registry.list().unwrap().is_empty());
    drop(registry);
    // Nothing is created before the first import.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    // A blob renamed into place whose index transaction never committed, and a
    // staging directory of an import cut short.
    let orphan = b"orphan".to_vec();
    let blobs = dir.path().join("registry/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::write(blobs.join(hex_of(&sha(&orphan))), &orphan).unwrap();
    let staging = dir.path().join("registry/staging/abc");
    std::fs::create_dir_all(&staging).unwrap();
    std::fs::write(staging.join("1"), b"partial").unwrap();
    let registry = Registry::open(dir.path(), RegistryOptions::default()).unwrap();
    assert!(registry.blobs_present().unwrap().is_empty());
    assert!(!Path::new(&staging).exists());
}
