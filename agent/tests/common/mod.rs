//! Helpers shared by the agent's integration tests that need certificates.

use std::path::Path;

/// Runs `openssl ARGS` in `dir`; panics with its output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl (Debian package openssl) is needed for the TLS tests");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
}

/// A new P-256 key in `key` and a self-signed certificate for it in `cert` (a CA
/// certificate, as `openssl req -x509` makes), in `dir`.
pub fn self_signed(dir: &Path, key: &str, cert: &str, subject: &str) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            key,
            "-out",
            cert,
            "-days",
            "2",
            "-subj",
            subject,
        ],
    );
}
