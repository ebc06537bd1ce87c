//! Which objects a list or watch returns: `labelSelector` and `fieldSelector` from the
//! query string, restricted to the field paths the hub can answer.

use skiff_api::{FieldSelector, Object, Selector};

use super::params::Params;
use super::status::ApiError;

/// Field paths a `fieldSelector` may name (see `Object::field`).
const SUPPORTED_FIELDS: [&str; 4] = [
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "status.phase",
];

/// A compiled list/watch filter. The default matches everything.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    labels: Option<Selector>,
    fields: Option<FieldSelector>,
}

impl Filter {
    pub(crate) fn from_params(params: &Params) -> Result<Filter, ApiError> {
        let labels = match params.get("labelSelector").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) => Some(Selector::parse(s).map_err(|source| ApiError::BadSelector {
                param: "labelSelector",
                source,
            })?),
        };
        let fields = match params.get("fieldSelector").filter(|s| !s.trim().is_empty()) {
            None => None,
            Some(s) => {
                let sel = FieldSelector::parse(s).map_err(|source| ApiError::BadSelector {
                    param: "fieldSelector",
                    source,
                })?;
                if let Some(bad) = sel
                    .fields()
                    .into_iter()
                    .find(|f| !SUPPORTED_FIELDS.contains(f))
                {
                    return Err(ApiError::UnsupportedField(bad.to_string()));
                }
                Some(sel)
            }
        };
        Ok(Filter { labels, fields })
    }

    pub(crate) fn matches(&self, obj: &Object) -> bool {
        self.labels
            .as_ref()
            .is_none_or(|s| s.matches(&obj.meta().labels))
            && self
                .fields
                .as_ref()
                .is_none_or(|s| s.matches(|path| obj.field(path)))
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::Pod;

    use super::*;

    fn params(q: &str) -> Params {
        Params::from_uri(&format!("/x?{q}").parse().unwrap()).unwrap()
    }

    fn pod(name: &str, app: &str) -> Object {
        let mut p = Pod::default();
        p.metadata.name = name.into();
        p.metadata.namespace = Some("default".into());
        p.metadata.labels.insert("app".into(), app.into());
        Object::Pod(p)
    }

    #[test]
    fn label_and_field_selectors_filter() {
        let f = Filter::from_params(&params("labelSelector=app%3Dweb")).unwrap();
        assert!(f.matches(&pod("a", "web")));
        assert!(!f.matches(&pod("a", "db")));

        let f = Filter::from_params(&params(
            "labelSelector=app%20in%20(web,db)&fieldSelector=metadata.name%3Da",
        ))
        .unwrap();
        assert!(f.matches(&pod("a", "db")));
        assert!(!f.matches(&pod("b", "db")));
        assert!(!f.matches(&pod("a", "cache")));

        assert!(Filter::default().matches(&pod("x", "y")));
    }

    #[test]
    fn unsupported_fields_and_bad_syntax_are_refused() {
        let err = Filter::from_params(&params("fieldSelector=spec.replicas%3D3")).unwrap_err();
        assert!(matches!(err, ApiError::UnsupportedField(f) if f == "spec.replicas"));
        let err = Filter::from_params(&params("labelSelector=app%20in%20(web")).unwrap_err();
        assert!(matches!(
            err,
            ApiError::BadSelector {
                param: "labelSelector",
                ..
            }
        ));
    }
}
