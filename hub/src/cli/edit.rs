//! Small edits of live objects: `label`, `annotate` (merge patches of metadata),
//! `taint` (read, edit spec.taints, replace with the read resourceVersion, retry on
//! conflict) and `cordon` / `uncordon` (merge patch of spec.unschedulable).
//!
//! Argument parsing and the edits themselves are pure functions; the run functions only
//! fetch, call them and send the result.

use std::collections::BTreeSet;

use clap::Args;
use serde_json::{Map, Value, json};
use skiff_api::Kind;

use super::Ctx;
use super::args::{Targets, parse_targets};
use super::error::CliError;

/// How often `taint` rereads the node when someone else wrote it in between.
const TAINT_ATTEMPTS: usize = 5;

#[derive(Debug, Args)]
pub(crate) struct MetaArgs {
    /// KIND NAME... or KIND/NAME..., then KEY=VALUE to set and KEY- to remove
    #[arg(
        required = true,
        value_name = "KIND NAME | KIND/NAME, KEY=VALUE | KEY-"
    )]
    args: Vec<String>,
    /// Allow changing a key that already has a different value
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Args)]
pub(crate) struct TaintArgs {
    /// [node] NAME, then taints: KEY=VALUE:EFFECT, KEY:EFFECT, KEY:EFFECT-, KEY-
    #[arg(required = true, value_name = "[node] NAME TAINT")]
    args: Vec<String>,
    /// Allow replacing the value of a taint with the same key and effect
    #[arg(long)]
    overwrite: bool,
}

#[derive(Debug, Args)]
pub(crate) struct NodeArgs {
    /// Node name (or node/NAME)
    #[arg(value_name = "NAME")]
    name: String,
}

// ---- labels and annotations ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetaField {
    Labels,
    Annotations,
}

impl MetaField {
    fn key(self) -> &'static str {
        match self {
            MetaField::Labels => "labels",
            MetaField::Annotations => "annotations",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            MetaField::Labels => "label",
            MetaField::Annotations => "annotation",
        }
    }

    fn done(self) -> &'static str {
        match self {
            MetaField::Labels => "labeled",
            MetaField::Annotations => "annotated",
        }
    }
}

/// One requested change of a label or annotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum MetaChange {
    Set(String, String),
    Remove(String),
}

impl MetaChange {
    fn key(&self) -> &str {
        match self {
            MetaChange::Set(k, _) | MetaChange::Remove(k) => k,
        }
    }
}

fn is_change(arg: &str) -> bool {
    arg.contains('=') || arg.ends_with('-')
}

/// Parses `KEY=VALUE` and `KEY-` arguments, validating keys (and label values) as
/// Kubernetes does so a typo fails here rather than on the hub.
pub(crate) fn parse_meta_changes(
    field: MetaField,
    args: &[String],
) -> Result<Vec<MetaChange>, CliError> {
    let mut out = Vec::new();
    let mut seen = BTreeSet::new();
    for arg in args {
        let change = if let Some((k, v)) = arg.split_once('=') {
            if field == MetaField::Labels {
                check_label_value(v).map_err(|why| {
                    CliError::Usage(format!("invalid label value {v:?} in {arg:?}: {why}"))
                })?;
            }
            MetaChange::Set(k.to_string(), v.to_string())
        } else if let Some(k) = arg.strip_suffix('-') {
            MetaChange::Remove(k.to_string())
        } else {
            return Err(CliError::Usage(format!(
                "invalid {} change {arg:?}: expected KEY=VALUE or KEY-",
                field.noun()
            )));
        };
        check_qualified_name(change.key()).map_err(|why| {
            CliError::Usage(format!(
                "invalid {} key {:?}: {why}",
                field.noun(),
                change.key()
            ))
        })?;
        if !seen.insert(change.key().to_string()) {
            return Err(CliError::Usage(format!(
                "{} {:?} is changed more than once",
                field.noun(),
                change.key()
            )));
        }
        out.push(change);
    }
    Ok(out)
}

/// `[prefix/]name`: prefix a DNS subdomain, name up to 63 alphanumerics, `-`, `_`, `.`
/// starting and ending alphanumeric.
fn check_qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 {
            return Err("the prefix must be a DNS subdomain of at most 253 characters".into());
        }
        let ok = p.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
        if !ok {
            return Err("the prefix must be a lower-case DNS subdomain".into());
        }
    }
    if name.is_empty() {
        return Err("the name part must not be empty".into());
    }
    check_label_value(name)
}

fn check_label_value(v: &str) -> Result<(), String> {
    if v.len() > 63 {
        return Err("must be at most 63 characters".into());
    }
    if v.is_empty() {
        return Ok(());
    }
    let alnum = |c: char| c.is_ascii_alphanumeric();
    if !v.starts_with(alnum) || !v.ends_with(alnum) {
        return Err("must start and end with a letter or digit".into());
    }
    if !v.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.')) {
        return Err("may contain only letters, digits, '-', '_' and '.'".into());
    }
    Ok(())
}

/// The merge patch for `changes` against the live map, and the keys asked to be removed
/// that are not there. Changing an existing value needs `overwrite`, as in kubectl.
pub(crate) fn plan_meta(
    live: Option<&Map<String, Value>>,
    changes: &[MetaChange],
    overwrite: bool,
) -> Result<(Map<String, Value>, Vec<String>), CliError> {
    let empty = Map::new();
    let live = live.unwrap_or(&empty);
    let mut patch = Map::new();
    let mut missing = Vec::new();
    for c in changes {
        match c {
            MetaChange::Set(k, v) => match live.get(k).and_then(Value::as_str) {
                Some(old) if old == v => {}
                Some(old) if !overwrite => {
                    return Err(CliError::Refused(format!(
                        "'{k}' already has a value ({old}), and --overwrite is false"
                    )));
                }
                _ => {
                    patch.insert(k.clone(), Value::from(v.as_str()));
                }
            },
            MetaChange::Remove(k) => {
                if live.contains_key(k) {
                    patch.insert(k.clone(), Value::Null);
                } else {
                    missing.push(k.clone());
                }
            }
        }
    }
    Ok((patch, missing))
}

pub(crate) fn run_meta(ctx: &mut Ctx<'_>, field: MetaField, a: &MetaArgs) -> Result<(), CliError> {
    let split = a
        .args
        .iter()
        .position(|x| is_change(x))
        .unwrap_or(a.args.len());
    let (objects, changes) = a.args.split_at(split);
    if changes.is_empty() {
        return Err(CliError::Usage(format!(
            "at least one {} change is required (KEY=VALUE or KEY-)",
            field.noun()
        )));
    }
    let changes = parse_meta_changes(field, changes)?;
    let Targets::Named(pairs) = parse_targets(objects)? else {
        return Err(CliError::Usage(format!(
            "name the objects to {}, e.g. `pod web` or `pod/web`",
            field.noun()
        )));
    };
    for (kind, name) in pairs {
        let live = ctx.client.get(kind, &ctx.namespace, &name)?;
        let current = live
            .pointer(&format!("/metadata/{}", field.key()))
            .and_then(Value::as_object);
        let (patch, missing) = plan_meta(current, &changes, a.overwrite)?;
        for k in missing {
            writeln!(ctx.err, "{} {k:?} not found.", field.noun())?;
        }
        let shown = format!("{}/{name}", kind.qualified_singular());
        if patch.is_empty() {
            writeln!(ctx.out, "{shown} not {}", field.done())?;
            continue;
        }
        let body = json!({"metadata": {field.key(): Value::Object(patch)}});
        ctx.client.merge_patch(kind, &ctx.namespace, &name, &body)?;
        writeln!(ctx.out, "{shown} {}", field.done())?;
    }
    Ok(())
}

// ---- taints ----

const EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TaintChange {
    Add {
        key: String,
        value: String,
        effect: String,
    },
    /// Every taint with `key`, or only the one with `effect`.
    Remove { key: String, effect: Option<String> },
}

fn check_effect(effect: &str, spec: &str) -> Result<(), CliError> {
    if EFFECTS.contains(&effect) {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "invalid taint effect {effect:?} in {spec:?}: must be one of {}",
            EFFECTS.join(", ")
        )))
    }
}

/// `key=value:Effect`, `key:Effect` (add), `key:Effect-`, `key-` (remove).
pub(crate) fn parse_taint(spec: &str) -> Result<TaintChange, CliError> {
    let bad_key = |key: &str, why: String| {
        CliError::Usage(format!("invalid taint key {key:?} in {spec:?}: {why}"))
    };
    if let Some(body) = spec.strip_suffix('-') {
        let (key_part, effect) = match body.split_once(':') {
            Some((k, e)) => {
                check_effect(e, spec)?;
                (k, Some(e.to_string()))
            }
            None => (body, None),
        };
        // A value in a removal says nothing: taints are identified by key and effect.
        let key = key_part.split_once('=').map_or(key_part, |(k, _)| k);
        check_qualified_name(key).map_err(|why| bad_key(key, why))?;
        return Ok(TaintChange::Remove {
            key: key.to_string(),
            effect,
        });
    }
    let Some((left, effect)) = spec.split_once(':') else {
        return Err(CliError::Usage(format!(
            "invalid taint {spec:?}: expected KEY=VALUE:EFFECT, KEY:EFFECT, KEY:EFFECT- or KEY-"
        )));
    };
    check_effect(effect, spec)?;
    let (key, value) = left.split_once('=').unwrap_or((left, ""));
    check_qualified_name(key).map_err(|why| bad_key(key, why))?;
    check_label_value(value).map_err(|why| {
        CliError::Usage(format!("invalid taint value {value:?} in {spec:?}: {why}"))
    })?;
    Ok(TaintChange::Add {
        key: key.to_string(),
        value: value.to_string(),
        effect: effect.to_string(),
    })
}

/// What a taint edit did, for the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TaintOutcome {
    Tainted,
    Untainted,
    Modified,
}

impl TaintOutcome {
    fn word(self) -> &'static str {
        match self {
            TaintOutcome::Tainted => "tainted",
            TaintOutcome::Untainted => "untainted",
            TaintOutcome::Modified => "modified",
        }
    }
}

/// Applies taint changes to a node's taint list.
pub(crate) fn plan_taints(
    node: &str,
    current: &[Value],
    changes: &[TaintChange],
    overwrite: bool,
) -> Result<(Vec<Value>, TaintOutcome), CliError> {
    let key_of = |t: &Value| {
        t.get("key")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let effect_of = |t: &Value| {
        t.get("effect")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut taints = current.to_vec();
    let (mut adds, mut removes) = (0, 0);
    for c in changes {
        match c {
            TaintChange::Remove { key, effect } => {
                let before = taints.len();
                taints.retain(|t| {
                    !(key_of(t) == *key && effect.as_ref().is_none_or(|e| effect_of(t) == *e))
                });
                if taints.len() == before {
                    let shown = match effect {
                        Some(e) => format!("{key}:{e}"),
                        None => key.clone(),
                    };
                    return Err(CliError::Refused(format!(
                        "taint {shown:?} not found on node {node}"
                    )));
                }
                removes += 1;
            }
            TaintChange::Add { key, value, effect } => {
                let mut taint = Map::new();
                taint.insert("key".into(), Value::from(key.as_str()));
                if !value.is_empty() {
                    taint.insert("value".into(), Value::from(value.as_str()));
                }
                taint.insert("effect".into(), Value::from(effect.as_str()));
                match taints
                    .iter_mut()
                    .find(|t| key_of(t) == *key && effect_of(t) == *effect)
                {
                    Some(_) if !overwrite => {
                        return Err(CliError::Refused(format!(
                            "node {node} already has {key} taint(s) with same effect(s) and --overwrite is false"
                        )));
                    }
                    Some(existing) => *existing = Value::Object(taint),
                    None => taints.push(Value::Object(taint)),
                }
                adds += 1;
            }
        }
    }
    let outcome = match (adds, removes) {
        (_, 0) => TaintOutcome::Tainted,
        (0, _) => TaintOutcome::Untainted,
        _ => TaintOutcome::Modified,
    };
    Ok((taints, outcome))
}

/// Splits `[node] NAME TAINT...` / `node/NAME TAINT...` into the node name and specs.
pub(crate) fn taint_target(args: &[String]) -> Result<(String, &[String]), CliError> {
    let Some(first) = args.first() else {
        return Err(CliError::Usage("name the node to taint".to_string()));
    };
    if let Some((kind, name)) = first.split_once('/') {
        if kind.parse::<Kind>()? != Kind::Node {
            return Err(CliError::Usage("taints apply to nodes only".to_string()));
        }
        return Ok((name.to_string(), &args[1..]));
    }
    if args.len() >= 3
        && let Ok(kind) = first.parse::<Kind>()
    {
        if kind != Kind::Node {
            return Err(CliError::Usage("taints apply to nodes only".to_string()));
        }
        return Ok((args[1].clone(), &args[2..]));
    }
    Ok((first.clone(), &args[1..]))
}

pub(crate) fn run_taint(ctx: &mut Ctx<'_>, a: &TaintArgs) -> Result<(), CliError> {
    let (node, specs) = taint_target(&a.args)?;
    if specs.is_empty() {
        return Err(CliError::Usage(
            "at least one taint is required, e.g. dedicated=gpu:NoSchedule".to_string(),
        ));
    }
    let changes = specs
        .iter()
        .map(|s| parse_taint(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut live = ctx.client.get(Kind::Node, "", &node)?;
        let current = live
            .pointer("/spec/taints")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let (taints, outcome) = plan_taints(&node, &current, &changes, a.overwrite)?;
        let Some(obj) = live.as_object_mut() else {
            return Err(CliError::Refused(format!(
                "the hub returned node {node} as something other than an object"
            )));
        };
        let spec = obj
            .entry("spec")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(spec) = spec.as_object_mut() {
            if taints.is_empty() {
                spec.remove("taints");
            } else {
                spec.insert("taints".into(), Value::Array(taints));
            }
        }
        // The read resourceVersion stays in the body: the replace fails with a conflict
        // if the node changed since, and the edit is redone on the fresh copy.
        match ctx.client.replace(Kind::Node, "", &node, &live) {
            Ok(_) => {
                writeln!(ctx.out, "node/{node} {}", outcome.word())?;
                return Ok(());
            }
            Err(e) if e.is_conflict() && attempt < TAINT_ATTEMPTS => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

// ---- cordon ----

pub(crate) fn run_cordon(ctx: &mut Ctx<'_>, a: &NodeArgs, cordon: bool) -> Result<(), CliError> {
    let name = match a.name.split_once('/') {
        Some((kind, n)) => {
            if kind.parse::<Kind>()? != Kind::Node {
                return Err(CliError::Usage("only nodes can be cordoned".to_string()));
            }
            n.to_string()
        }
        None => a.name.clone(),
    };
    let live = ctx.client.get(Kind::Node, "", &name)?;
    let is_cordoned = live.pointer("/spec/unschedulable").and_then(Value::as_bool) == Some(true);
    let word = if cordon { "cordoned" } else { "uncordoned" };
    if is_cordoned == cordon {
        writeln!(ctx.out, "node/{name} already {word}")?;
        return Ok(());
    }
    // Uncordoning removes the field, so the node reads as it did before.
    let value = if cordon {
        Value::Bool(true)
    } else {
        Value::Null
    };
    let patch = json!({"spec": {"unschedulable": value}});
    ctx.client.merge_patch(Kind::Node, "", &name, &patch)?;
    writeln!(ctx.out, "node/{name} {word}")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn label_arguments_parse_and_validate() {
        let got = parse_meta_changes(
            MetaField::Labels,
            &strings(&["app=web", "tier-", "x.io/e="]),
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                MetaChange::Set("app".into(), "web".into()),
                MetaChange::Remove("tier".into()),
                MetaChange::Set("x.io/e".into(), String::new()),
            ]
        );
        for bad in [
            "=v",
            "a b=c",
            "app=has space",
            "-x=1",
            "Bad_Prefix/x=1",
            "a=b",
            "a-",
        ] {
            let args = if bad == "a=b" || bad == "a-" {
                strings(&["a=b", "a-"])
            } else {
                strings(&[bad])
            };
            assert!(
                matches!(
                    parse_meta_changes(MetaField::Labels, &args),
                    Err(CliError::Usage(_))
                ),
                "{bad}"
            );
        }
        // Annotation values are free text.
        assert!(
            parse_meta_changes(MetaField::Annotations, &strings(&["note=hello world"])).is_ok()
        );
        assert!(!is_change("web"));
        assert!(is_change("app=web") && is_change("app-"));
    }

    #[test]
    fn existing_values_need_overwrite() {
        let live: Map<String, Value> =
            serde_json::from_str(r#"{"app":"web","tier":"fe"}"#).unwrap();
        let changes = vec![
            MetaChange::Set("app".into(), "web".into()),
            MetaChange::Set("zone".into(), "north".into()),
            MetaChange::Remove("tier".into()),
            MetaChange::Remove("gone".into()),
        ];
        let (patch, missing) = plan_meta(Some(&live), &changes, false).unwrap();
        assert_eq!(Value::Object(patch), json!({"zone": "north", "tier": null}));
        assert_eq!(missing, vec!["gone"]);

        let change = vec![MetaChange::Set("app".into(), "api".into())];
        let e = plan_meta(Some(&live), &change, false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "'app' already has a value (web), and --overwrite is false"
        );
        let (patch, _) = plan_meta(Some(&live), &change, true).unwrap();
        assert_eq!(Value::Object(patch), json!({"app": "api"}));
        let (patch, _) = plan_meta(None, &change, false).unwrap();
        assert_eq!(Value::Object(patch), json!({"app": "api"}));
    }

    #[test]
    fn taint_specs_follow_kubectl_syntax() {
        assert_eq!(
            parse_taint("dedicated=gpu:NoSchedule").unwrap(),
            TaintChange::Add {
                key: "dedicated".into(),
                value: "gpu".into(),
                effect: "NoSchedule".into()
            }
        );
        assert_eq!(
            parse_taint("maint:NoExecute").unwrap(),
            TaintChange::Add {
                key: "maint".into(),
                value: String::new(),
                effect: "NoExecute".into()
            }
        );
        assert_eq!(
            parse_taint("dedicated-").unwrap(),
            TaintChange::Remove {
                key: "dedicated".into(),
                effect: None
            }
        );
        assert_eq!(
            parse_taint("dedicated:PreferNoSchedule-").unwrap(),
            TaintChange::Remove {
                key: "dedicated".into(),
                effect: Some("PreferNoSchedule".into())
            }
        );
        for bad in [
            "dedicated=gpu",
            "dedicated=gpu:Never",
            ":NoSchedule",
            "a b:NoSchedule",
            "k:Bogus-",
            "k=bad value:NoSchedule",
        ] {
            assert!(matches!(parse_taint(bad), Err(CliError::Usage(_))), "{bad}");
        }
    }

    #[test]
    fn taint_targets_accept_the_node_word_or_not() {
        let args = strings(&["node", "n1", "k:NoSchedule"]);
        let (n, specs) = taint_target(&args).unwrap();
        assert_eq!((n.as_str(), specs.len()), ("n1", 1));
        let args = strings(&["n1", "k:NoSchedule", "j-"]);
        let (n, specs) = taint_target(&args).unwrap();
        assert_eq!((n.as_str(), specs.len()), ("n1", 2));
        let args = strings(&["nodes/n1", "k-"]);
        assert_eq!(taint_target(&args).unwrap().0, "n1");
        let args = strings(&["pod", "p", "k:NoSchedule"]);
        assert!(matches!(taint_target(&args), Err(CliError::Usage(_))));
        // A node literally named like a kind word still works with two arguments.
        let args = strings(&["node", "k:NoSchedule"]);
        assert_eq!(taint_target(&args).unwrap().0, "node");
    }

    #[test]
    fn taint_plans_add_replace_and_remove() {
        let current = vec![
            json!({"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}),
            json!({"key": "dedicated", "effect": "NoExecute"}),
        ];
        let add = parse_taint("maint:NoExecute").unwrap();
        let (t, o) = plan_taints("n1", &current, std::slice::from_ref(&add), false).unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t[2], json!({"key": "maint", "effect": "NoExecute"}));
        assert_eq!(o, TaintOutcome::Tainted);

        let same = parse_taint("dedicated=cpu:NoSchedule").unwrap();
        let e = plan_taints("n1", &current, std::slice::from_ref(&same), false).unwrap_err();
        assert!(e.to_string().contains("--overwrite is false"), "{e}");
        let (t, _) = plan_taints("n1", &current, &[same], true).unwrap();
        assert_eq!(
            t[0],
            json!({"key": "dedicated", "value": "cpu", "effect": "NoSchedule"})
        );

        let one = parse_taint("dedicated:NoExecute-").unwrap();
        let (t, o) = plan_taints("n1", &current, &[one], false).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(o, TaintOutcome::Untainted);
        let all = parse_taint("dedicated-").unwrap();
        let (t, _) = plan_taints("n1", &current, &[all, add.clone()], false).unwrap();
        assert_eq!(t, vec![json!({"key": "maint", "effect": "NoExecute"})]);

        let missing = parse_taint("nope-").unwrap();
        assert!(matches!(
            plan_taints("n1", &current, &[missing], false),
            Err(CliError::Refused(_))
        ));
        let (_, o) = plan_taints(
            "n1",
            &current,
            &[parse_taint("dedicated:NoExecute-").unwrap(), add],
            false,
        )
        .unwrap();
        assert_eq!(o, TaintOutcome::Modified);
    }
}
