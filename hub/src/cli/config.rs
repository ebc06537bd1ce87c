//! Where the CLI finds its hub and token: flags, then environment, then the config file,
//! then the built-in default. The environment and the file system reach this module only
//! through parameters, so the precedence is testable without touching the real `$HOME`.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub(crate) const DEFAULT_SERVER: &str = "http://127.0.0.1:6443";

/// What the global flags said, before the environment and the config file are consulted.
#[derive(Debug, Clone, Default)]
pub(crate) struct Flags {
    pub(crate) server: Option<String>,
    pub(crate) token: Option<String>,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) config: Option<PathBuf>,
}

/// The resolved connection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) server: String,
    pub(crate) token: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("cannot read token file {path}: {source}")]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} is empty")]
    EmptyToken { path: PathBuf },
    #[error(
        "invalid server URL {url:?}: only http:// is supported (give host:port or http://host:port)"
    )]
    BadServer { url: String },
}

/// `~/.config/skiff/config.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    server: Option<String>,
    token: Option<String>,
    #[serde(rename = "token-file", alias = "token_file")]
    token_file: Option<PathBuf>,
}

/// Resolves the settings. `env` looks a variable up (`SKIFF_SERVER`, `SKIFF_TOKEN`,
/// `SKIFF_TOKEN_FILE`, `SKIFF_CONFIG`, `XDG_CONFIG_HOME`, `HOME`).
pub(crate) fn resolve(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Settings, ConfigError> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let file = load_file(flags, &env)?;

    let server = flags
        .server
        .clone()
        .or_else(|| env("SKIFF_SERVER"))
        .or_else(|| file.server.clone())
        .unwrap_or_else(|| DEFAULT_SERVER.to_string());
    let server = normalize_server(&server)?;

    let token = if let Some(t) = &flags.token {
        Some(t.clone())
    } else if let Some(p) = &flags.token_file {
        Some(read_token(p)?)
    } else if let Some(t) = env("SKIFF_TOKEN") {
        Some(t)
    } else if let Some(p) = env("SKIFF_TOKEN_FILE") {
        Some(read_token(Path::new(&p))?)
    } else if let Some(t) = &file.token {
        Some(t.clone())
    } else if let Some(p) = &file.token_file {
        Some(read_token(p)?)
    } else {
        None
    };
    Ok(Settings { server, token })
}

/// An explicitly named config file must exist; the default one may be absent.
fn load_file(
    flags: &Flags,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<FileConfig, ConfigError> {
    let explicit = flags
        .config
        .clone()
        .or_else(|| env("SKIFF_CONFIG").map(PathBuf::from));
    let (path, required) = match explicit {
        Some(p) => (p, true),
        None => match default_config_path(env) {
            Some(p) => (p, false),
            None => return Ok(FileConfig::default()),
        },
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(FileConfig::default());
        }
        Err(source) => return Err(ConfigError::ReadConfig { path, source }),
    };
    toml::from_str(&text).map_err(|source| ConfigError::ParseConfig { path, source })
}

fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    if let Some(xdg) = env("XDG_CONFIG_HOME") {
        return Some(PathBuf::from(xdg).join("skiff").join("config.toml"));
    }
    env("HOME").map(|h| {
        PathBuf::from(h)
            .join(".config")
            .join("skiff")
            .join("config.toml")
    })
}

fn read_token(path: &Path) -> Result<String, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadToken {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::EmptyToken {
            path: path.to_path_buf(),
        });
    }
    Ok(token.to_string())
}

/// `host:port` becomes `http://host:port`; a trailing `/` is dropped. This build speaks
/// plain HTTP only, so any other scheme is refused up front rather than failing later.
fn normalize_server(url: &str) -> Result<String, ConfigError> {
    let url = url.trim();
    let bad = || ConfigError::BadServer {
        url: url.to_string(),
    };
    let authority = match url.split_once("://") {
        Some(("http", rest)) => rest,
        Some(_) => return Err(bad()),
        None => url,
    };
    let authority = authority.trim_end_matches('/');
    if authority.is_empty() || authority.contains(['/', '?', '#', ' ']) {
        return Err(bad());
    }
    Ok(format!("http://{authority}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn default_applies_when_nothing_is_set() {
        let home = tempfile::tempdir().unwrap();
        let env = env_of(&[("HOME", home.path().to_str().unwrap())]);
        let s = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(s.server, DEFAULT_SERVER);
        assert_eq!(s.token, None);
    }

    #[test]
    fn flag_beats_env_beats_file_beats_default() {
        let home = tempfile::tempdir().unwrap();
        write(
            home.path(),
            ".config/skiff/config.toml",
            "server = \"http://file:1\"\ntoken = \"file-token\"\n",
        );
        let h = home.path().to_str().unwrap();

        let only_file = resolve(&Flags::default(), &env_of(&[("HOME", h)])).unwrap();
        assert_eq!(only_file.server, "http://file:1");
        assert_eq!(only_file.token.as_deref(), Some("file-token"));

        let env = env_of(&[
            ("HOME", h),
            ("SKIFF_SERVER", "http://env:2/"),
            ("SKIFF_TOKEN", "env-token"),
        ]);
        let with_env = resolve(&Flags::default(), &env).unwrap();
        assert_eq!(with_env.server, "http://env:2");
        assert_eq!(with_env.token.as_deref(), Some("env-token"));

        let flags = Flags {
            server: Some("flag:3".into()),
            token: Some("flag-token".into()),
            ..Flags::default()
        };
        let with_flags = resolve(&flags, &env).unwrap();
        assert_eq!(with_flags.server, "http://flag:3");
        assert_eq!(with_flags.token.as_deref(), Some("flag-token"));
    }

    #[test]
    fn xdg_config_home_wins_over_home_and_explicit_path_wins_over_both() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "home/.config/skiff/config.toml",
            "server = \"h:1\"",
        );
        write(dir.path(), "xdg/skiff/config.toml", "server = \"x:2\"");
        let explicit = write(dir.path(), "other.toml", "server = \"o:3\"");
        let home = dir.path().join("home");
        let xdg = dir.path().join("xdg");
        let env = env_of(&[
            ("HOME", home.to_str().unwrap()),
            ("XDG_CONFIG_HOME", xdg.to_str().unwrap()),
        ]);
        assert_eq!(
            resolve(&Flags::default(), &env).unwrap().server,
            "http://x:2"
        );

        let env_cfg = env_of(&[
            ("HOME", home.to_str().unwrap()),
            ("SKIFF_CONFIG", explicit.to_str().unwrap()),
        ]);
        assert_eq!(
            resolve(&Flags::default(), &env_cfg).unwrap().server,
            "http://o:3"
        );
        let flags = Flags {
            config: Some(explicit.clone()),
            ..Flags::default()
        };
        assert_eq!(resolve(&flags, &env).unwrap().server, "http://o:3");
    }

    #[test]
    fn a_named_config_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let flags = Flags {
            config: Some(dir.path().join("missing.toml")),
            ..Flags::default()
        };
        assert!(matches!(
            resolve(&flags, &env_of(&[])),
            Err(ConfigError::ReadConfig { .. })
        ));
        let bad = write(dir.path(), "bad.toml", "servr = \"x\"");
        let flags = Flags {
            config: Some(bad),
            ..Flags::default()
        };
        let err = resolve(&flags, &env_of(&[])).unwrap_err();
        assert!(matches!(err, ConfigError::ParseConfig { .. }), "{err}");
        assert!(err.to_string().contains("servr"), "{err}");
    }

    #[test]
    fn token_files_are_read_and_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let tf = write(dir.path(), "tok", "  secret\n");
        let flags = Flags {
            token_file: Some(tf.clone()),
            ..Flags::default()
        };
        let env = env_of(&[("SKIFF_TOKEN", "env-token")]);
        assert_eq!(
            resolve(&flags, &env).unwrap().token.as_deref(),
            Some("secret")
        );
        let env = env_of(&[("SKIFF_TOKEN_FILE", tf.to_str().unwrap())]);
        assert_eq!(
            resolve(&Flags::default(), &env).unwrap().token.as_deref(),
            Some("secret")
        );
        let empty = write(dir.path(), "empty", "\n");
        let flags = Flags {
            token_file: Some(empty),
            ..Flags::default()
        };
        assert!(matches!(
            resolve(&flags, &env_of(&[])),
            Err(ConfigError::EmptyToken { .. })
        ));
    }

    #[test]
    fn server_urls_are_normalized_and_other_schemes_refused() {
        assert_eq!(
            normalize_server("10.0.0.1:6443").unwrap(),
            "http://10.0.0.1:6443"
        );
        assert_eq!(normalize_server("http://hub:80/").unwrap(), "http://hub:80");
        assert!(normalize_server("https://hub:6443").is_err());
        assert!(normalize_server("http://").is_err());
        assert!(normalize_server("http://hub/api").is_err());
    }
}
