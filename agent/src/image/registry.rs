//! Talking to OCI distribution registries over HTTP: which base URLs serve a registry
//! host (its mirrors first, then the host itself), Basic credentials for the hub, and the
//! anonymous `WWW-Authenticate: Bearer` token dance public registries ask for.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Read;
use std::sync::Mutex;
use std::time::Duration;

use super::ImageError;
use super::reference::{DOCKER_HUB, Reference};

/// The hub's registry: its base URL and this node's credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct HubRegistry {
    /// `http://hub:6443`: references naming this host are pulled from it with Basic auth.
    pub url: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for HubRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubRegistry")
            .field("url", &self.url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Where and how to reach registries.
#[derive(Debug, Clone, Default)]
pub struct RegistryConfig {
    pub hub: Option<HubRegistry>,
    /// Registry host → mirror base URLs (`http://10.0.0.2:5000`), tried in order before
    /// the host itself.
    pub mirrors: BTreeMap<String, Vec<String>>,
    /// Registry hosts reached over plain http instead of https.
    pub plain_http: BTreeSet<String>,
    /// DER CA certificates trusted for https (see [`system_roots`]).
    pub ca_certs: Vec<Vec<u8>>,
}

/// Where Debian, Ubuntu, Alpine, Buildroot and Yocto images keep the system's CA bundle.
pub const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The system's CA certificates: the file named by `SSL_CERT_FILE`, else
/// [`SYSTEM_CA_BUNDLE`]. Empty when there is none (https registries then fail with a
/// reason until one is installed or given with `--registry-ca`).
pub fn system_roots() -> Vec<Vec<u8>> {
    let path = std::env::var_os("SSL_CERT_FILE")
        .map_or_else(|| std::path::PathBuf::from(SYSTEM_CA_BUNDLE), Into::into);
    load_ca_file(&path).unwrap_or_default()
}

/// The CA certificates of a PEM file, DER-encoded; an error when it holds none or one
/// cannot be read.
pub fn load_ca_file(path: &std::path::Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| e.to_string())?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item.map_err(|e| format!("unreadable PEM: {e}"))? {
            ureq::tls::PemItem::Certificate(c) => certs.push(c.der().to_vec()),
            _ => continue,
        }
    }
    if certs.is_empty() {
        return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in the file".into());
    }
    Ok(certs)
}

/// One base URL to try for a registry host.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub base: String,
    pub basic: Option<(String, String)>,
}

pub(crate) struct Registry {
    agent: ureq::Agent,
    config: RegistryConfig,
    /// Bearer tokens by (base URL, scope).
    tokens: Mutex<HashMap<(String, String), String>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A response with a 2xx status.
pub(crate) struct Fetched {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: ureq::Body,
}

fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// Percent-encodes a query value (scopes carry `:` and `/`).
fn encode(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses `Bearer realm="...",service="...",scope="..."` into its parameters.
fn parse_challenge(h: &str) -> Option<(String, BTreeMap<String, String>)> {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = BTreeMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
    Some((scheme.to_ascii_lowercase(), params))
}

fn basic_header(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Registry {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let roots: RootCerts = config
            .ca_certs
            .iter()
            .map(|der| Certificate::from_der(der).to_owned())
            .into();
        let tls = TlsConfig::builder()
            .unversioned_rustls_crypto_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .root_certs(roots)
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .tls_config(tls)
            .timeout_connect(Some(Duration::from_secs(15)))
            .timeout_recv_response(Some(Duration::from_secs(60)))
            .timeout_per_read(Some(Duration::from_secs(60)))
            .build()
            .into();
        Registry {
            agent,
            config,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Base URLs for `r`'s registry, in the order to try them.
    pub fn endpoints(&self, r: &Reference) -> Result<Vec<Endpoint>, ImageError> {
        let mut out: Vec<Endpoint> = self
            .config
            .mirrors
            .get(&r.registry)
            .into_iter()
            .flatten()
            .map(|m| Endpoint {
                base: m.trim_end_matches('/').to_string(),
                basic: None,
            })
            .collect();
        let hub = self
            .config
            .hub
            .as_ref()
            .filter(|h| host_of(&h.url) == r.registry);
        let own = match hub {
            Some(h) => Endpoint {
                base: h.url.trim_end_matches('/').to_string(),
                basic: Some((h.username.clone(), h.password.clone())),
            },
            None if self.config.plain_http.contains(&r.registry) => Endpoint {
                base: format!("http://{}", r.registry),
                basic: None,
            },
            None => {
                let host = if r.registry == DOCKER_HUB {
                    "registry-1.docker.io"
                } else {
                    &r.registry
                };
                Endpoint {
                    base: format!("https://{host}"),
                    basic: None,
                }
            }
        };
        out.push(own);
        Ok(out)
    }

    /// GET `path` from `ep`, answering auth challenges once. Non-2xx answers become errors
    /// (401/403 Unauthorized, 404 NotFound), except 416 which the caller handles.
    pub fn get(
        &self,
        ep: &Endpoint,
        r: &Reference,
        path: &str,
        accept: &[&str],
        range_from: Option<u64>,
        what: &str,
    ) -> Result<Fetched, ImageError> {
        let url = format!("{}{}", ep.base, path);
        let scope = format!("repository:{}:pull", r.repository);
        let fetch_err = |message: String| ImageError::Fetch {
            reference: r.to_string(),
            registry: ep.base.clone(),
            what: what.to_string(),
            message,
        };
        let mut authorization = self
            .tokens
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(ep.base.clone(), scope.clone()))
            .map(|t| format!("Bearer {t}"))
            .or_else(|| ep.basic.as_ref().map(|(u, p)| basic_header(u, p)));
        for attempt in 0..2 {
            let mut req = self.agent.get(&url);
            if !accept.is_empty() {
                req = req.header("Accept", accept.join(", "));
            }
            if let Some(from) = range_from {
                req = req.header("Range", format!("bytes={from}-"));
            }
            if let Some(a) = &authorization {
                req = req.header("Authorization", a);
            }
            let resp = req.call().map_err(|e| fetch_err(e.to_string()))?;
            let status = resp.status().as_u16();
            let headers: HashMap<String, String> = resp
                .headers()
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        k.as_str().to_ascii_lowercase(),
                        v.to_str().ok()?.to_string(),
                    ))
                })
                .collect();
            match status {
                200..=299 | 416 => {
                    return Ok(Fetched {
                        status,
                        headers,
                        body: resp.into_body(),
                    });
                }
                401 if attempt == 0 => {
                    let challenge = headers
                        .get("www-authenticate")
                        .and_then(|h| parse_challenge(h));
                    match challenge {
                        Some((scheme, params)) if scheme == "bearer" => {
                            let token = self.token(ep, r, &params, &scope, what)?;
                            self.tokens
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .insert((ep.base.clone(), scope.clone()), token.clone());
                            authorization = Some(format!("Bearer {token}"));
                        }
                        _ => break,
                    }
                }
                401 | 403 => {
                    return Err(ImageError::Unauthorized {
                        reference: r.to_string(),
                        registry: ep.base.clone(),
                        status,
                    });
                }
                404 => {
                    return Err(ImageError::NotFound {
                        reference: r.to_string(),
                        registry: ep.base.clone(),
                    });
                }
                s => return Err(fetch_err(format!("HTTP status {s}"))),
            }
        }
        Err(ImageError::Unauthorized {
            reference: r.to_string(),
            registry: ep.base.clone(),
            status: 401,
        })
    }

    /// Gets a pull token from the challenge's realm (with Basic credentials when this
    /// endpoint has them, anonymously otherwise).
    fn token(
        &self,
        ep: &Endpoint,
        r: &Reference,
        params: &BTreeMap<String, String>,
        scope: &str,
        what: &str,
    ) -> Result<String, ImageError> {
        let err = |message: String| ImageError::Fetch {
            reference: r.to_string(),
            registry: ep.base.clone(),
            what: format!("a pull token for {what}"),
            message,
        };
        let realm = params
            .get("realm")
            .ok_or_else(|| err("Bearer challenge without a realm".to_string()))?;
        if !realm.starts_with("http://") && !realm.starts_with("https://") {
            return Err(err(format!("token realm {realm} is not an http(s) URL")));
        }
        let scope = params.get("scope").map_or(scope, String::as_str);
        let mut url = format!("{realm}?scope={}", encode(scope));
        if let Some(service) = params.get("service") {
            url.push_str(&format!("&service={}", encode(service)));
        }
        let mut req = self.agent.get(&url);
        // Node credentials go only to the registry's own host, never to a realm elsewhere.
        if let Some((u, p)) = &ep.basic
            && host_of(realm) == host_of(&ep.base)
        {
            req = req.header("Authorization", basic_header(u, p));
        }
        let mut resp = req.call().map_err(|e| err(e.to_string()))?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(ImageError::Unauthorized {
                reference: r.to_string(),
                registry: realm.clone(),
                status,
            });
        }
        if !(200..300).contains(&status) {
            return Err(err(format!("token endpoint answered HTTP {status}")));
        }
        let mut body = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(1 << 20)
            .read_to_end(&mut body)
            .map_err(|e| err(e.to_string()))?;
        #[derive(serde::Deserialize)]
        struct Token {
            token: Option<String>,
            access_token: Option<String>,
        }
        let t: Token =
            serde_json::from_slice(&body).map_err(|e| err(format!("token answer: {e}")))?;
        t.token
            .or(t.access_token)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| err("token answer has no token".to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenge() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        )
        .unwrap();
        assert_eq!(s, "bearer");
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
    }

    #[test]
    fn hub_and_mirrors_order() {
        let reg = Registry::new(RegistryConfig {
            hub: Some(HubRegistry {
                url: "http://10.1.0.1:6443/".into(),
                username: "edge-1".into(),
                password: "pw".into(),
            }),
            mirrors: [(
                "docker.io".to_string(),
                vec!["http://m1:5000".to_string(), "https://m2".into()],
            )]
            .into(),
            plain_http: BTreeSet::new(),
            ca_certs: Vec::new(),
        });
        let hub = reg
            .endpoints(&Reference::parse("10.1.0.1:6443/app:1").unwrap())
            .unwrap();
        assert_eq!(hub.len(), 1);
        assert_eq!(hub[0].base, "http://10.1.0.1:6443");
        assert!(hub[0].basic.is_some());
        let dh = reg
            .endpoints(&Reference::parse("busybox").unwrap())
            .unwrap();
        assert_eq!(
            dh.iter().map(|e| e.base.as_str()).collect::<Vec<_>>(),
            [
                "http://m1:5000",
                "https://m2",
                "https://registry-1.docker.io"
            ]
        );
        let quay = reg
            .endpoints(&Reference::parse("quay.io/x/y").unwrap())
            .unwrap();
        assert_eq!(quay[0].base, "https://quay.io");
    }
}
