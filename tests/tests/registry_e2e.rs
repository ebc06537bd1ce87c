//! The hub's registry end to end: the real `skiff-hub` and `skiff` binaries import the
//! busybox test image, and skopeo (a standard OCI client) reads it back over the
//! distribution API and copies it into an OCI layout with the same manifest digest.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use skiff_tests::Hub;
use skiff_tests::image::{Compression, TestImage};

const SKOPEO: &str = "/usr/bin/skopeo";

/// Runs `skopeo COMMAND` against the hub over plain HTTP, with the admin credentials
/// or explicitly none; `args` follow the command's own flags.
fn skopeo(hub: &Hub, creds: bool, args: &[&str]) -> Output {
    let admin = format!("admin:{}", hub.token());
    skopeo_as(hub, creds.then_some(admin.as_str()), args)
}

/// Runs `skopeo COMMAND` with `USER:PASSWORD` credentials, or explicitly none.
fn skopeo_as(hub: &Hub, creds: Option<&str>, args: &[&str]) -> Output {
    assert!(
        Path::new(SKOPEO).exists(),
        "{SKOPEO} is missing: scripts/deps.sh installs it (apt-get install skopeo)"
    );
    let (command, rest) = args.split_first().expect("a skopeo command");
    // `copy` names its flags for the source side.
    let side = if *command == "copy" { "src-" } else { "" };
    let mut flags = vec![format!("--{side}tls-verify=false")];
    if let Some(c) = creds {
        flags.push(format!("--{side}creds={c}"));
    } else {
        flags.push(format!("--{side}no-creds"));
    }
    Command::new(SKOPEO)
        // No system policy file is assumed; these tests check transport, not policy.
        .arg("--insecure-policy")
        .arg(command)
        .args(&flags)
        .args(rest)
        .env("HOME", hub.scratch())
        .output()
        .expect("running skopeo")
}

fn host(hub: &Hub) -> String {
    hub.url().trim_start_matches("http://").to_string()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn skopeo_reads_back_an_imported_oci_image() {
    let hub = Hub::start();
    let archive = hub.scratch().join("busybox.tar");
    let info = TestImage::busybox()
        .reference("library/busybox:1")
        .entrypoint(&["/bin/sh", "-c"])
        .cmd(&["echo hello"])
        .layers(2)
        .write_oci_layout_tar(&archive)
        .expect("building the busybox image");
    let digest = info.manifest_digest.clone().unwrap();

    let out = hub.skiff(&["image", "import", archive.to_str().unwrap()]);
    let stdout = ok(&out, "skiff image import");
    assert_eq!(
        stdout.trim(),
        format!("imported library/busybox:1 {digest} ({})", human(&info))
    );
    // stderr is not a terminal here: plain progress lines, ending at 100%.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.lines().last().unwrap_or("").ends_with("(100%)"),
        "{stderr}"
    );

    let ls = hub.skiff_ok(&["image", "ls"]);
    let lines: Vec<Vec<&str>> = ls.lines().map(|l| l.split_whitespace().collect()).collect();
    assert_eq!(
        lines[0],
        ["NAME", "TAG", "DIGEST", "SIZE", "CREATED", "IMPORTED"]
    );
    assert_eq!(lines.len(), 2, "{ls}");
    assert_eq!(lines[1][..3], ["library/busybox", "1", &digest[..19]]);

    let reference = format!("docker://{}/library/busybox:1", host(&hub));
    let inspect: Value = serde_json::from_str(&ok(
        &skopeo(&hub, true, &["inspect", &reference]),
        "skopeo inspect",
    ))
    .expect("skopeo inspect prints JSON");
    assert_eq!(inspect["Digest"], digest);
    let layers: Vec<&str> = inspect["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let expected: Vec<&str> = info.layers.iter().map(|l| l.digest.as_str()).collect();
    assert_eq!(layers, expected);
    let raw: Value = serde_json::from_str(&ok(
        &skopeo(&hub, true, &["inspect", "--config", &reference]),
        "skopeo inspect --config",
    ))
    .unwrap();
    assert_eq!(raw["config"]["Entrypoint"][0], "/bin/sh");
    assert_eq!(raw["config"]["Cmd"][0], "echo hello");

    let dest = hub.scratch().join("copy");
    let target = format!("oci:{}:copied", dest.display());
    ok(
        &skopeo(&hub, true, &["copy", &reference, &target]),
        "skopeo copy",
    );
    let index: Value =
        serde_json::from_slice(&std::fs::read(dest.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], digest);
    for l in &info.layers {
        let blob = dest
            .join("blobs/sha256")
            .join(l.digest.trim_start_matches("sha256:"));
        let bytes = std::fs::read(&blob).unwrap();
        assert_eq!(skiff_tests::image::sha256_digest(&bytes), l.digest);
    }

    // Without credentials the registry refuses.
    let denied = skopeo(&hub, false, &["inspect", &reference]);
    assert!(!denied.status.success());
    let err = String::from_utf8_lossy(&denied.stderr).to_lowercase();
    assert!(
        err.contains("unauthorized") || err.contains("authentication required"),
        "{err}"
    );

    // Removal: the tag goes, and so does the image for skopeo.
    let rm = hub.skiff_ok(&["image", "rm", "library/busybox:1"]);
    assert!(rm.starts_with("deleted library/busybox:1 ("), "{rm}");
    let gone = skopeo(&hub, true, &["inspect", &reference]);
    assert!(!gone.status.success());
    let out = hub.skiff(&["image", "ls"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("No images found."));
    let blobs = std::fs::read_dir(hub.data_dir().join("registry/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!(blobs, 0);
}

fn human(info: &skiff_tests::image::ImageInfo) -> String {
    let total = info.manifest.as_ref().map_or(0, |m| m.len() as u64)
        + info.config.len() as u64
        + info.layers.iter().map(|l| l.size).sum::<u64>();
    let mut v = total as f64;
    let units = ["B", "KiB", "MiB", "GiB"];
    let mut u = 0;
    while v >= 1024.0 && u < units.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{total} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

#[test]
fn docker_archives_and_zstd_layers_import_through_the_cli() {
    let hub = Hub::start();
    let archive = hub.scratch().join("docker.tar");
    let info = TestImage::busybox()
        .reference("busybox:old")
        .write_docker_archive(&archive)
        .unwrap();
    // --tag overrides the archive's RepoTags.
    let stdout = hub.skiff_ok(&[
        "image",
        "import",
        archive.to_str().unwrap(),
        "--tag",
        "tools/busybox:2",
    ]);
    assert!(
        stdout.starts_with("imported tools/busybox:2 sha256:"),
        "{stdout}"
    );
    let reference = format!("docker://{}/tools/busybox:2", host(&hub));
    let inspect: Value = serde_json::from_str(&ok(
        &skopeo(&hub, true, &["inspect", &reference]),
        "skopeo inspect",
    ))
    .unwrap();
    assert_eq!(inspect["Layers"][0], info.layers[0].digest);

    let zstd = hub.scratch().join("zstd.tar");
    let z = TestImage::busybox()
        .reference("busybox:zstd")
        .compression(Compression::Zstd)
        .write_oci_layout_tar(&zstd)
        .unwrap();
    // From standard input, as `docker save ... | skiff image import -` does.
    let mut cmd = hub.skiff_command();
    let out = cmd
        .args(["image", "import", "-"])
        .stdin(std::fs::File::open(&zstd).unwrap())
        .output()
        .unwrap();
    ok(&out, "skiff image import -");
    let reference = format!("docker://{}/busybox:zstd", host(&hub));
    let inspect: Value = serde_json::from_str(&ok(
        &skopeo(&hub, true, &["inspect", "--raw", &reference]),
        "skopeo inspect --raw",
    ))
    .unwrap();
    assert_eq!(
        inspect["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(inspect["layers"][0]["digest"], z.layers[0].digest);
}

#[test]
fn bad_imports_fail_with_a_clear_message() {
    let hub = Hub::start();
    let junk = hub.scratch().join("junk.tar");
    std::fs::write(&junk, b"this is not a tar archive at all".repeat(40)).unwrap();
    let out = hub.skiff(&["image", "import", junk.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("Error from server (BadRequest)"), "{err}");

    // A docker archive whose RepoTags entry has no tag is refused, naming it.
    let untagged = hub.scratch().join("untagged.tar");
    TestImage::busybox()
        .reference("busybox")
        .write_docker_archive(&untagged)
        .unwrap();
    let out = hub.skiff(&["image", "import", untagged.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("\"busybox\" has no tag"), "{err}");
    assert!(hub.skiff_ok(&["image", "ls"]).is_empty());

    let out = hub.skiff(&["image", "import", "/nonexistent/x.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.tar"));
    let out = hub.skiff(&["image", "import", junk.to_str().unwrap(), "--tag", "Bad:1"]);
    assert_eq!(out.status.code(), Some(2));
    let out = hub.skiff(&["image", "rm", "busybox:1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("image busybox:1 not found"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn nodes_pull_with_their_login_and_anonymous_pulls_are_opt_in() {
    let hub = Hub::start();
    let archive = hub.scratch().join("busybox.tar");
    let info = TestImage::busybox().write_oci_layout_tar(&archive).unwrap();
    hub.skiff_ok(&["image", "import", archive.to_str().unwrap()]);
    let reference = format!("docker://{}/busybox:1", host(&hub));

    // A joined node's MQTT login is a registry login too.
    let (token, _) = hub.create_token(600, 1);
    let (code, joined) = hub.request(
        "POST",
        "/skiff/v1/join",
        Some(&serde_json::json!({"token": token, "nodeName": "edge-1"})),
        false,
    );
    assert_eq!(code, 200, "{joined}");
    let login = format!("edge-1:{}", joined["password"].as_str().unwrap());
    let inspect: Value = serde_json::from_str(&ok(
        &skopeo_as(&hub, Some(&login), &["inspect", &reference]),
        "skopeo inspect as a node",
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], info.manifest_digest.clone().unwrap());
    let wrong = skopeo_as(&hub, Some("edge-1:wrong"), &["inspect", &reference]);
    assert!(!wrong.status.success());
    assert!(
        !skopeo(&hub, false, &["inspect", &reference])
            .status
            .success()
    );

    // With --registry-anonymous-pull, no credentials are needed.
    let open = Hub::start_with(&["--registry-anonymous-pull"]);
    open.skiff_ok(&["image", "import", archive.to_str().unwrap()]);
    let reference = format!("docker://{}/busybox:1", host(&open));
    let inspect: Value = serde_json::from_str(&ok(
        &skopeo(&open, false, &["inspect", &reference]),
        "anonymous skopeo inspect",
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], info.manifest_digest.unwrap());
    // Importing still needs the admin token.
    let out = open
        .skiff_command()
        .env_remove("SKIFF_TOKEN")
        .args(["image", "import", archive.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("did not accept a request without a token"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn archives_over_the_limit_are_refused_with_a_hint() {
    let hub = Hub::start_with(&["--image-import-limit", "64Ki"]);
    let archive = hub.scratch().join("busybox.tar");
    TestImage::busybox().write_oci_layout_tar(&archive).unwrap();
    assert!(std::fs::metadata(&archive).unwrap().len() > 64 * 1024);
    let out = hub.skiff(&["image", "import", archive.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--image-import-limit"), "{err}");
    assert!(hub.skiff_ok(&["image", "ls"]).is_empty());
    assert!(hub.log().contains("over the size limit"), "{}", hub.log());
}
