//! `skiff apply` and the manifest reading it shares with `skiff delete -f`: files,
//! directories and standard input, parsed and checked locally so a bad manifest fails
//! before anything reaches the hub.

use std::path::{Path, PathBuf};

use serde_json::Value;
use skiff_api::{FieldError, FieldErrorKind, Kind, Object, ValidationErrors};

use super::Ctx;
use super::error::CliError;

/// One object read from a manifest, with where it came from.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) source: PathBuf,
    pub(crate) object: Object,
}

impl Manifest {
    pub(crate) fn kind(&self) -> Kind {
        self.object.kind()
    }

    pub(crate) fn name(&self) -> &str {
        &self.object.meta().name
    }
}

/// The files behind each `-f` argument: a file as is, a directory's `*.yaml`, `*.yml`
/// and `*.json` (not recursive) sorted by name, `-` for standard input.
fn expand(arg: &str) -> Result<Vec<PathBuf>, CliError> {
    if arg == "-" {
        return Ok(vec![PathBuf::from("-")]);
    }
    let path = PathBuf::from(arg);
    let meta = std::fs::metadata(&path).map_err(|source| CliError::ReadInput {
        path: path.clone(),
        source,
    })?;
    if !meta.is_dir() {
        return Ok(vec![path]);
    }
    let entries = std::fs::read_dir(&path).map_err(|source| CliError::ReadInput {
        path: path.clone(),
        source,
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| CliError::ReadInput {
            path: path.clone(),
            source,
        })?;
        let p = entry.path();
        let manifest_ext = p
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if manifest_ext && p.is_file() {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Reads and parses every manifest named by `args`, applying the namespace rules of
/// [`place`]. Nothing is sent anywhere.
pub(crate) fn read_manifests(
    ctx: &mut Ctx<'_>,
    args: &[String],
) -> Result<Vec<Manifest>, CliError> {
    let mut out = Vec::new();
    let mut stdin_read = false;
    for arg in args {
        for path in expand(arg)? {
            let text = if path == Path::new("-") {
                if stdin_read {
                    continue;
                }
                stdin_read = true;
                let mut s = String::new();
                ctx.stdin
                    .read_to_string(&mut s)
                    .map_err(|source| CliError::ReadInput {
                        path: PathBuf::from("<stdin>"),
                        source,
                    })?;
                s
            } else {
                std::fs::read_to_string(&path).map_err(|source| CliError::ReadInput {
                    path: path.clone(),
                    source,
                })?
            };
            let shown = if path == Path::new("-") {
                PathBuf::from("<stdin>")
            } else {
                path.clone()
            };
            let objects =
                skiff_api::parse_manifests(&text).map_err(|source| CliError::Manifest {
                    path: shown.clone(),
                    source,
                })?;
            for object in objects {
                let object = place(object, &ctx.namespace, ctx.namespace_explicit, &shown)?;
                out.push(Manifest {
                    source: shown.clone(),
                    object,
                });
            }
        }
    }
    if out.is_empty() {
        return Err(CliError::NoObjects {
            path: args
                .first()
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("-")),
        });
    }
    Ok(out)
}

/// Gives a namespaced object without a namespace the `-n` one, refuses a manifest
/// namespace that contradicts an explicit `-n`, and drops a namespace from a
/// cluster-scoped object (it has no meaning there).
fn place(
    mut object: Object,
    namespace: &str,
    explicit: bool,
    source: &Path,
) -> Result<Object, CliError> {
    let kind = object.kind();
    let meta = object.meta_mut();
    if !kind.namespaced() {
        meta.namespace = None;
        return Ok(object);
    }
    match meta.namespace.as_deref() {
        None | Some("") => meta.namespace = Some(namespace.to_string()),
        Some(ns) if explicit && ns != namespace => {
            return Err(CliError::Refused(format!(
                "{}: the namespace from the provided object {ns:?} does not match the namespace {namespace:?}; pass --namespace={ns} to apply it",
                source.display()
            )));
        }
        Some(_) => {}
    }
    Ok(object)
}

/// Namespaces first, then what pods refer to (service accounts, services), then the
/// rest in file order; deletion walks the same list backwards.
pub(crate) fn apply_rank(kind: Kind) -> u8 {
    match kind {
        Kind::Namespace => 0,
        Kind::Node => 1,
        Kind::ServiceAccount => 2,
        Kind::Service => 3,
        Kind::Endpoints => 4,
        _ => 5,
    }
}

/// Checks what the hub would check, on a defaulted copy, so no object of a batch is
/// sent when one of them is invalid. Apply also needs a name to find the live object.
fn check(m: &Manifest) -> Result<(), CliError> {
    let invalid = |errors: ValidationErrors| CliError::Invalid {
        path: m.source.clone(),
        object: format!("{} {:?}", m.kind(), m.name()),
        errors,
    };
    if m.name().is_empty() {
        return Err(invalid(ValidationErrors(vec![FieldError {
            path: "metadata.name".to_string(),
            kind: FieldErrorKind::Required,
            message: "Required value: apply needs a name".to_string(),
        }])));
    }
    let mut defaulted = m.object.clone();
    skiff_api::apply_defaults(&mut defaulted);
    skiff_api::validate(&defaulted).map_err(invalid)
}

/// The body sent for an object: the manifest as typed, without a resourceVersion so
/// the replace is unconditional.
fn body(object: &Object) -> Value {
    let mut v = object.to_json();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    v
}

fn resource_version(v: &Value) -> Option<&str> {
    v.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
}

pub(crate) fn run(ctx: &mut Ctx<'_>, files: &[String]) -> Result<(), CliError> {
    let mut manifests = read_manifests(ctx, files)?;
    for m in &manifests {
        check(m)?;
    }
    manifests.sort_by_key(|m| apply_rank(m.kind()));
    for m in &manifests {
        let kind = m.kind();
        let ns = m.object.meta().namespace_or_empty().to_string();
        let name = m.name().to_string();
        let body = body(&m.object);
        let verb = match ctx.client.get_opt(kind, &ns, &name)? {
            None => {
                ctx.client.create(kind, &ns, &body)?;
                "created"
            }
            Some(live) => {
                let updated = ctx.client.replace(kind, &ns, &name, &body)?;
                if resource_version(&updated) == resource_version(&live) {
                    "unchanged"
                } else {
                    "configured"
                }
            }
        };
        writeln!(ctx.out, "{}/{name} {verb}", kind.qualified_singular())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_api::resources::{Namespace, Node, Pod};

    fn pod(ns: Option<&str>) -> Object {
        let mut p = Pod::default();
        p.metadata.name = "web".into();
        p.metadata.namespace = ns.map(String::from);
        Object::from(p)
    }

    #[test]
    fn namespaced_objects_get_the_cli_namespace_only_when_they_have_none() {
        let src = Path::new("x.yaml");
        let o = place(pod(None), "prod", false, src).unwrap();
        assert_eq!(o.meta().namespace.as_deref(), Some("prod"));
        let o = place(pod(Some("qa")), "default", false, src).unwrap();
        assert_eq!(o.meta().namespace.as_deref(), Some("qa"));
        let e = place(pod(Some("qa")), "prod", true, src).unwrap_err();
        assert!(e.to_string().contains("--namespace=qa"), "{e}");
        assert!(place(pod(Some("prod")), "prod", true, src).is_ok());

        let mut n = Node::default();
        n.metadata.name = "n1".into();
        n.metadata.namespace = Some("default".into());
        let o = place(Object::from(n), "prod", true, src).unwrap();
        assert_eq!(o.meta().namespace, None);
    }

    #[test]
    fn namespaces_come_first_and_workloads_last() {
        let mut kinds = vec![Kind::Deployment, Kind::Pod, Kind::Service, Kind::Namespace];
        kinds.sort_by_key(|k| apply_rank(*k));
        assert_eq!(
            kinds,
            vec![Kind::Namespace, Kind::Service, Kind::Deployment, Kind::Pod]
        );
    }

    #[test]
    fn bodies_carry_type_but_no_resource_version() {
        let mut ns = Namespace::default();
        ns.metadata.name = "prod".into();
        ns.metadata.resource_version = Some("41".into());
        let b = body(&Object::from(ns));
        assert_eq!(b["apiVersion"], "v1");
        assert_eq!(b["kind"], "Namespace");
        assert_eq!(b.pointer("/metadata/name").unwrap(), "prod");
        assert!(b.pointer("/metadata/resourceVersion").is_none());
    }

    #[test]
    fn unnamed_objects_are_refused_before_sending() {
        let m = Manifest {
            source: PathBuf::from("a.yaml"),
            object: Object::from(Pod::default()),
        };
        let e = check(&m).unwrap_err();
        assert!(e.to_string().contains("a.yaml"), "{e}");
        assert!(e.to_string().contains("metadata.name"), "{e}");
    }

    #[test]
    fn directories_expand_to_sorted_manifest_files() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["b.yaml", "a.json", "c.yml", "notes.txt"] {
            std::fs::write(dir.path().join(f), "").unwrap();
        }
        std::fs::create_dir(dir.path().join("sub.yaml")).unwrap();
        let files = expand(dir.path().to_str().unwrap()).unwrap();
        let names: Vec<_> = files
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
            .collect();
        assert_eq!(names, vec!["a.json", "b.yaml", "c.yml"]);
        assert!(matches!(
            expand(dir.path().join("missing.yaml").to_str().unwrap()),
            Err(CliError::ReadInput { .. })
        ));
    }
}
