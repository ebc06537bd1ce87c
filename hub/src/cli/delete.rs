//! `skiff delete`: by name, by selector, every object of a kind, or the objects of
//! manifest files; optionally waiting until they are really gone.

use std::time::Duration;

use clap::Args;
use serde_json::Value;
use skiff_api::Kind;

use super::args::{Targets, parse_duration, parse_targets};
use super::client::ListOptions;
use super::error::{CliError, Failures};
use super::get::{items_of, no_resources};
use super::{Ctx, apply, poll_until, printers};

#[derive(Debug, Args)]
pub(crate) struct DeleteArgs {
    /// KIND NAME..., KIND/NAME..., or KIND with -l or --all
    #[arg(value_name = "KIND [NAME...] | KIND/NAME")]
    resources: Vec<String>,
    /// Delete the objects of these manifests (file, directory or `-`; repeatable)
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR|-", conflicts_with_all = ["selector", "all"])]
    files: Vec<String>,
    /// Delete the objects of KIND matching this label selector
    #[arg(
        short = 'l',
        long = "selector",
        value_name = "SELECTOR",
        conflicts_with = "all"
    )]
    selector: Option<String>,
    /// Delete every object of KIND in the namespace
    #[arg(long)]
    all: bool,
    /// Wait until the objects are gone (finalizers done)
    #[arg(long)]
    wait: bool,
    /// How long --wait waits, e.g. 30s, 2m
    #[arg(long, default_value = "60s", value_parser = parse_duration, value_name = "DURATION")]
    timeout: Duration,
    /// Treat objects that do not exist as deleted
    #[arg(long)]
    ignore_not_found: bool,
}

/// An object a delete was sent for, to wait on.
struct Pending {
    kind: Kind,
    namespace: String,
    name: String,
    /// The deleted object's UID, so a new object with the same name counts as gone.
    uid: Option<String>,
}

pub(crate) fn run(ctx: &mut Ctx<'_>, a: &DeleteArgs) -> Result<(), CliError> {
    let targets = select(ctx, a)?;
    if targets.is_empty() {
        return Ok(());
    }
    let mut failures = Failures::default();
    let mut pending = Vec::new();
    for (kind, ns, name) in targets {
        match ctx.client.delete(kind, &ns, &name) {
            Ok(resp) => {
                writeln!(ctx.out, "{} \"{name}\" deleted", kind.qualified_singular())?;
                pending.push(Pending {
                    kind,
                    namespace: ns,
                    name,
                    uid: deleted_uid(&resp),
                });
            }
            Err(e) if e.is_not_found() && a.ignore_not_found => {}
            Err(e) => failures.push_api(ctx.err, e)?,
        }
    }
    ctx.out.flush()?;
    if a.wait {
        for p in &pending {
            wait_gone(ctx, p, a.timeout)?;
        }
    }
    failures.finish(ctx.err)
}

/// The (kind, namespace, name) of every object the arguments name, in delete order.
fn select(ctx: &mut Ctx<'_>, a: &DeleteArgs) -> Result<Vec<(Kind, String, String)>, CliError> {
    if !a.files.is_empty() {
        if !a.resources.is_empty() {
            return Err(CliError::Usage(
                "give either -f FILE or resources to delete, not both".to_string(),
            ));
        }
        let mut manifests = apply::read_manifests(ctx, &a.files)?;
        // The reverse of apply's order: contents before their namespace.
        manifests.sort_by_key(|m| std::cmp::Reverse(apply::apply_rank(m.kind())));
        return Ok(manifests
            .into_iter()
            .map(|m| {
                let ns = m.object.meta().namespace_or_empty().to_string();
                (m.kind(), ns, m.name().to_string())
            })
            .collect());
    }
    if a.resources.is_empty() {
        return Err(CliError::Usage(
            "specify what to delete: KIND NAME, KIND/NAME, KIND -l SELECTOR, KIND --all or -f FILE"
                .to_string(),
        ));
    }
    let targets = parse_targets(&a.resources)?;
    let ns = ctx.namespace.clone();
    match targets {
        Targets::Named(pairs) => {
            if a.selector.is_some() || a.all {
                return Err(CliError::Usage(
                    "names cannot be given together with -l or --all".to_string(),
                ));
            }
            Ok(pairs.into_iter().map(|(k, n)| (k, ns.clone(), n)).collect())
        }
        Targets::All(kinds) => {
            if a.selector.is_none() && !a.all {
                return Err(CliError::Usage(format!(
                    "no name given for {}: name objects, or use -l SELECTOR or --all",
                    a.resources[0]
                )));
            }
            let opts = ListOptions {
                label_selector: a.selector.clone(),
                field_selector: None,
            };
            let mut out = Vec::new();
            for kind in &kinds {
                let list = ctx.client.list(*kind, Some(&ns), &opts)?;
                out.extend(items_of(*kind, &list).iter().map(|o| {
                    (
                        *kind,
                        printers::namespace_of(o).to_string(),
                        printers::name_of(o).to_string(),
                    )
                }));
            }
            if out.is_empty() {
                writeln!(ctx.err, "{}", no_resources(&kinds, Some(&ns)))?;
            }
            Ok(out)
        }
    }
}

/// The UID of the object a DELETE answered with (a `Status` carries it in `details`).
fn deleted_uid(resp: &Value) -> Option<String> {
    resp.pointer("/metadata/uid")
        .or_else(|| resp.pointer("/details/uid"))
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(String::from)
}

/// Polls until the object is gone, or replaced by a new one of the same name.
fn wait_gone(ctx: &mut Ctx<'_>, p: &Pending, timeout: Duration) -> Result<(), CliError> {
    let client = &ctx.client;
    let gone = poll_until(timeout, || {
        Ok(match client.get_opt(p.kind, &p.namespace, &p.name)? {
            None => true,
            Some(live) => match (&p.uid, deleted_uid(&live)) {
                (Some(old), Some(now)) => *old != now,
                _ => false,
            },
        })
    })?;
    if gone {
        Ok(())
    } else {
        Err(CliError::Timeout {
            what: format!(
                "{} \"{}\" to be deleted",
                p.kind.qualified_singular(),
                p.name
            ),
            after: humantime(timeout),
        })
    }
}

fn humantime(d: Duration) -> String {
    if d.subsec_millis() != 0 && d.as_secs() < 10 {
        format!("{}ms", d.as_millis())
    } else {
        format!("{}s", d.as_secs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn uids_come_from_objects_or_statuses() {
        assert_eq!(
            deleted_uid(&json!({"metadata": {"uid": "a"}})).as_deref(),
            Some("a")
        );
        assert_eq!(
            deleted_uid(&json!({"kind": "Status", "details": {"uid": "b"}})).as_deref(),
            Some("b")
        );
        assert_eq!(deleted_uid(&json!({"kind": "Status"})), None);
        assert_eq!(humantime(Duration::from_secs(60)), "60s");
        assert_eq!(humantime(Duration::from_millis(1500)), "1500ms");
    }
}
