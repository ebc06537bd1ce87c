//! Query parameters of list, watch and delete requests.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::Uri;
use skiff_api::Revision;

use super::status::ApiError;

/// The decoded query string. Unknown parameters are ignored, as Kubernetes does.
#[derive(Debug, Default)]
pub(crate) struct Params(HashMap<String, String>);

impl Params {
    pub(crate) fn from_uri(uri: &Uri) -> Result<Params, ApiError> {
        axum::extract::Query::<HashMap<String, String>>::try_from_uri(uri)
            .map(|q| Params(q.0))
            .map_err(|_| ApiError::BadQuery {
                param: "query string".into(),
                value: uri.query().unwrap_or("").to_string(),
            })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn bad(&self, name: &str) -> ApiError {
        ApiError::BadQuery {
            param: name.to_string(),
            value: self.get(name).unwrap_or("").to_string(),
        }
    }

    /// `watch=true|1` (also `false|0|` for off).
    pub(crate) fn watch(&self) -> Result<bool, ApiError> {
        match self.get("watch") {
            None | Some("" | "false" | "0") => Ok(false),
            Some("true" | "1") => Ok(true),
            Some(_) => Err(self.bad("watch")),
        }
    }

    /// A revision parameter; `""` counts as absent.
    pub(crate) fn revision(&self, name: &str) -> Result<Option<Revision>, ApiError> {
        match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => Revision::parse(v).map(Some).ok_or_else(|| self.bad(name)),
        }
    }

    /// `timeoutSeconds` of a watch.
    pub(crate) fn timeout(&self) -> Result<Option<Duration>, ApiError> {
        match self.get("timeoutSeconds") {
            None | Some("") => Ok(None),
            Some(v) => v
                .parse::<u64>()
                .map(|s| Some(Duration::from_secs(s)))
                .map_err(|_| self.bad("timeoutSeconds")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::from_uri(&format!("/x?{q}").parse().unwrap()).unwrap()
    }

    #[test]
    fn decodes_percent_escapes_and_flags() {
        let p = params("labelSelector=app%3Dweb%2Ctier%20in%20(a)&watch=1&resourceVersion=7");
        assert_eq!(p.get("labelSelector"), Some("app=web,tier in (a)"));
        assert!(p.watch().unwrap());
        assert_eq!(p.revision("resourceVersion").unwrap(), Some(Revision(7)));
        assert!(!params("").watch().unwrap());
        assert!(params("watch=yes").watch().is_err());
        assert!(
            params("resourceVersion=abc")
                .revision("resourceVersion")
                .is_err()
        );
        assert_eq!(
            params("timeoutSeconds=3").timeout().unwrap(),
            Some(Duration::from_secs(3))
        );
    }
}
