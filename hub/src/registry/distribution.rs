//! The OCI distribution API, pull side: `/v2/`, manifests and blobs (GET and HEAD,
//! blobs with byte ranges, streamed from disk), tag lists and the catalog. Errors use
//! the spec's JSON error format; writes are refused with `UNSUPPORTED`.

use std::io::SeekFrom;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::digest::Digest;
use super::names::{valid_name, valid_tag};
use super::range::{Span, span};
use super::{IndexError, Served};

const API_VERSION: &str = "registry/2.0";
const CHUNK: usize = 64 * 1024;
/// Most entries in one page of tags or catalog when the client asks for none.
const DEFAULT_PAGE: usize = 1000;

/// A distribution API error: status, spec code, message.
#[derive(Debug)]
pub(crate) struct OciError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl OciError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> OciError {
        OciError {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<IndexError> for OciError {
    fn from(e: IndexError) -> OciError {
        tracing::error!(error = %e, "registry index failed");
        OciError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "UNKNOWN",
            "the registry index failed",
        )
    }
}

impl IntoResponse for OciError {
    fn into_response(self) -> Response {
        let body =
            json!({"errors": [{"code": self.code, "message": self.message, "detail": null}]});
        let mut resp = (
            self.status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (
                    header::HeaderName::from_static("docker-distribution-api-version"),
                    API_VERSION,
                ),
            ],
            body.to_string(),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"skiff\""),
            );
        }
        resp
    }
}

pub(crate) fn routes(state: Arc<Served>) -> Router {
    Router::new()
        .route("/v2", any(handle))
        .route("/v2/", any(handle))
        .route("/v2/{*rest}", any(handle))
        .with_state(state)
}

/// What a `/v2/...` path asks for.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Base,
    Catalog,
    Tags(String),
    Manifest(String, String),
    Blob(String, String),
}

/// Splits a path after `/v2/`. Repository names contain slashes, so the operation is
/// found from the end.
fn parse_target(rest: &str) -> Option<Target> {
    if rest.is_empty() {
        return Some(Target::Base);
    }
    if rest == "_catalog" {
        return Some(Target::Catalog);
    }
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Target::Tags(name.to_string()));
    }
    for (marker, make) in [
        (
            "/manifests/",
            Target::Manifest as fn(String, String) -> Target,
        ),
        ("/blobs/", Target::Blob),
    ] {
        if let Some(i) = rest.rfind(marker) {
            let name = &rest[..i];
            let reference = &rest[i + marker.len()..];
            if !reference.is_empty() && !reference.contains('/') {
                return Some(make(name.to_string(), reference.to_string()));
            }
        }
    }
    None
}

async fn handle(State(state): State<Arc<Served>>, req: Request) -> Response {
    match serve(&state, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn serve(state: &Served, req: Request) -> Result<Response, OciError> {
    let (parts, _body) = req.into_parts();
    let identity = state.auth.identify(&parts.headers).ok_or_else(|| {
        OciError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHORIZED",
            "authentication required",
        )
    })?;
    let head = parts.method == Method::HEAD;
    if parts.method != Method::GET && !head {
        return Err(OciError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "UNSUPPORTED",
            "this registry is read-only; import images with `skiff image import`",
        ));
    }
    let path = parts.uri.path();
    let rest = path
        .strip_prefix("/v2")
        .unwrap_or_default()
        .trim_start_matches('/');
    let target = parse_target(rest)
        .ok_or_else(|| OciError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "unknown path"))?;
    let query = parts.uri.query().unwrap_or_default();
    tracing::debug!(?identity, %path, "registry read");
    match target {
        Target::Base => Ok(with_version(
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                "{}",
            )
                .into_response(),
        )),
        Target::Catalog => catalog(state, query).await,
        Target::Tags(name) => tags(state, &name, query).await,
        Target::Manifest(name, reference) => manifest(state, &name, &reference, head).await,
        Target::Blob(name, digest) => blob(state, &name, &digest, &parts.headers, head).await,
    }
}

fn with_version(mut resp: Response) -> Response {
    resp.headers_mut().insert(
        header::HeaderName::from_static("docker-distribution-api-version"),
        HeaderValue::from_static(API_VERSION),
    );
    resp
}

fn check_name(name: &str) -> Result<(), OciError> {
    if valid_name(name) {
        Ok(())
    } else {
        Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
            format!("{name:?} is not a repository name"),
        ))
    }
}

/// Runs index lookups off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, IndexError> + Send + 'static,
) -> Result<T, OciError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => {
            tracing::error!(error = %e, "registry task failed");
            Err(OciError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "UNKNOWN",
                "internal error",
            ))
        }
    }
}

/// `n` and `last` of a paged list.
fn page(query: &str) -> (usize, Option<String>) {
    let mut n = DEFAULT_PAGE;
    let mut last = None;
    for pair in query.split('&') {
        match pair.split_once('=') {
            Some(("n", v)) => n = v.parse().unwrap_or(DEFAULT_PAGE),
            Some(("last", v)) => last = Some(v.to_string()),
            _ => {}
        }
    }
    (n, last)
}

/// Applies `n`/`last` to a sorted list; the `Link` header points at the next page.
fn paged(items: Vec<String>, query: &str, base: &str) -> (Vec<String>, Option<String>) {
    let (n, last) = page(query);
    let rest: Vec<String> = items
        .into_iter()
        .filter(|i| last.as_ref().is_none_or(|l| i > l))
        .collect();
    if rest.len() > n {
        let shown = rest[..n].to_vec();
        let link = shown
            .last()
            .map(|l| format!("<{base}?n={n}&last={l}>; rel=\"next\""));
        (shown, link)
    } else {
        (rest, None)
    }
}

fn json_page(body: serde_json::Value, link: Option<String>) -> Response {
    let mut resp = with_version(
        (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response(),
    );
    if let Some(link) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        resp.headers_mut().insert(header::LINK, link);
    }
    resp
}

async fn catalog(state: &Served, query: &str) -> Result<Response, OciError> {
    let reg = state.registry.clone();
    let repos = blocking(move || reg.inner.index.repos()).await?;
    let (repos, link) = paged(repos, query, "/v2/_catalog");
    Ok(json_page(json!({"repositories": repos}), link))
}

async fn tags(state: &Served, name: &str, query: &str) -> Result<Response, OciError> {
    check_name(name)?;
    let reg = state.registry.clone();
    let repo = name.to_string();
    let (exists, tags) = blocking(move || {
        Ok((
            reg.inner.index.repo_exists(&repo)?,
            reg.inner.index.tags(&repo)?,
        ))
    })
    .await?;
    if !exists {
        return Err(OciError::new(
            StatusCode::NOT_FOUND,
            "NAME_UNKNOWN",
            format!("repository {name} is not known to this registry"),
        ));
    }
    let (tags, link) = paged(tags, query, &format!("/v2/{name}/tags/list"));
    Ok(json_page(json!({"name": name, "tags": tags}), link))
}

async fn manifest(
    state: &Served,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response, OciError> {
    check_name(name)?;
    let unknown = || {
        OciError::new(
            StatusCode::NOT_FOUND,
            "MANIFEST_UNKNOWN",
            format!("manifest {name}:{reference} is not known to this registry"),
        )
    };
    let by_digest = reference.contains(':');
    if by_digest && Digest::parse(reference).is_none() {
        return Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("{reference:?} is not a sha256 digest"),
        ));
    }
    if !by_digest && !valid_tag(reference) {
        return Err(OciError::new(
            StatusCode::BAD_REQUEST,
            "TAG_INVALID",
            format!("{reference:?} is not a tag"),
        ));
    }
    let reg = state.registry.clone();
    let (repo, reference) = (name.to_string(), reference.to_string());
    let found = blocking(move || {
        let digest = match Digest::parse(&reference) {
            Some(d) => d,
            None => match reg.inner.index.tag(&repo, &reference)? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        Ok(reg
            .inner
            .index
            .manifest(&repo, &digest)?
            .map(|m| (digest, m)))
    })
    .await?;
    let (digest, row) = found.ok_or_else(unknown)?;
    let path = state.registry.blob_path(&digest);
    // Manifests are small (the import caps them); read whole.
    let bytes = if head {
        Vec::new()
    } else {
        tokio::fs::read(&path)
            .await
            .map_err(|e| missing_file(&digest, e))?
    };
    let mut resp = Response::new(Body::from(bytes));
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, &row.media_type);
    set(h, header::CONTENT_LENGTH, &row.size.to_string());
    set(
        h,
        header::HeaderName::from_static("docker-content-digest"),
        digest.as_str(),
    );
    set(h, header::ETAG, &format!("\"{digest}\""));
    Ok(with_version(resp))
}

fn set(h: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

fn missing_file(digest: &Digest, e: std::io::Error) -> OciError {
    tracing::error!(%digest, error = %e, "an indexed blob cannot be read");
    OciError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "UNKNOWN",
        format!("blob {digest} is indexed but cannot be read"),
    )
}

async fn blob(
    state: &Served,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response, OciError> {
    check_name(name)?;
    let digest = Digest::parse(digest).ok_or_else(|| {
        OciError::new(
            StatusCode::BAD_REQUEST,
            "DIGEST_INVALID",
            format!("{digest:?} is not a sha256 digest"),
        )
    })?;
    let reg = state.registry.clone();
    let (repo, d) = (name.to_string(), digest.clone());
    let size = blocking(move || reg.inner.index.blob_in_repo(&repo, &d))
        .await?
        .ok_or_else(|| {
            OciError::new(
                StatusCode::NOT_FOUND,
                "BLOB_UNKNOWN",
                format!("blob {digest} is not known in repository {name}"),
            )
        })?;
    let range = span(
        headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
        size,
    );
    let (status, start, len) = match range {
        Span::Full => (StatusCode::OK, 0, size),
        Span::Part { start, end } => (StatusCode::PARTIAL_CONTENT, start, end - start + 1),
        Span::Unsatisfiable => {
            let mut resp = OciError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "RANGE_INVALID",
                format!("the range is outside the blob's {size} bytes"),
            )
            .into_response();
            set(
                resp.headers_mut(),
                header::CONTENT_RANGE,
                &format!("bytes */{size}"),
            );
            return Ok(resp);
        }
    };
    let body = if head {
        Body::empty()
    } else {
        let path = state.registry.blob_path(&digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| missing_file(&digest, e))?;
        if start > 0 {
            file.seek(SeekFrom::Start(start))
                .await
                .map_err(|e| missing_file(&digest, e))?;
        }
        Body::from_stream(stream_file(file, len))
    };
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    set(h, header::CONTENT_TYPE, "application/octet-stream");
    set(h, header::CONTENT_LENGTH, &len.to_string());
    set(h, header::ACCEPT_RANGES, "bytes");
    set(
        h,
        header::HeaderName::from_static("docker-content-digest"),
        digest.as_str(),
    );
    set(h, header::ETAG, &format!("\"{digest}\""));
    if status == StatusCode::PARTIAL_CONTENT {
        set(
            h,
            header::CONTENT_RANGE,
            &format!("bytes {start}-{}/{size}", start + len - 1),
        );
    }
    Ok(with_version(resp))
}

/// Reads `len` bytes of `file` in chunks, never holding more than one in memory.
fn stream_file(
    file: tokio::fs::File,
    len: u64,
) -> impl futures::Stream<Item = Result<axum::body::Bytes, std::io::Error>> + Send {
    futures::stream::try_unfold((file, len), |(mut file, left)| async move {
        if left == 0 {
            return Ok(None);
        }
        let want = (left as usize).min(CHUNK);
        let mut buf = vec![0u8; want];
        let n = file.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "blob file shorter than indexed",
            ));
        }
        buf.truncate(n);
        Ok(Some((
            axum::body::Bytes::from(buf),
            (file, left - n as u64),
        )))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(parse_target(""), Some(Target::Base));
        assert_eq!(parse_target("_catalog"), Some(Target::Catalog));
        assert_eq!(
            parse_target("library/busybox/tags/list"),
            Some(Target::Tags("library/busybox".into()))
        );
        assert_eq!(
            parse_target("library/busybox/manifests/1"),
            Some(Target::Manifest("library/busybox".into(), "1".into()))
        );
        assert_eq!(
            parse_target("a/blobs/b/blobs/sha256:ab"),
            Some(Target::Blob("a/blobs/b".into(), "sha256:ab".into()))
        );
        assert_eq!(parse_target("busybox/manifests/"), None);
        assert_eq!(parse_target("busybox"), None);
    }

    #[test]
    fn pages() {
        let items: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        assert_eq!(paged(items.clone(), "", "/x").0, items);
        let (p, link) = paged(items.clone(), "n=2", "/x");
        assert_eq!(p, ["a", "b"]);
        assert_eq!(link.unwrap(), "</x?n=2&last=b>; rel=\"next\"");
        assert_eq!(paged(items, "n=2&last=b", "/x").0, ["c"]);
    }
}
