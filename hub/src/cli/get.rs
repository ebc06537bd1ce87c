//! `skiff get`: fetch objects by name or by kind (with selectors), print them as a
//! table, names, YAML or JSON, and optionally follow the kind's watch stream.

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;
use skiff_api::Kind;

use super::Ctx;
use super::args::{Targets, parse_targets};
use super::client::ListOptions;
use super::error::{CliError, Failures};
use super::printers::{self, Layout};
use super::table::Table;

/// Output forms of `get`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Output {
    /// The table with extra columns
    Wide,
    Yaml,
    Json,
    /// KIND/NAME per line
    Name,
}

#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// KIND [NAME...] or KIND/NAME... (kinds: see `skiff api-resources`)
    #[arg(required = true, value_name = "KIND [NAME...] | KIND/NAME")]
    resources: Vec<String>,
    /// List across all namespaces
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Label selector, e.g. `app=web,tier!=db,env in (prod,qa),!legacy`
    #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
    selector: Option<String>,
    /// Field selector: metadata.name, metadata.namespace, spec.nodeName, status.phase
    #[arg(long, value_name = "SELECTOR")]
    field_selector: Option<String>,
    /// Output format
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    output: Option<Output>,
    /// After listing, print a row for every change until interrupted
    #[arg(short = 'w', long)]
    watch: bool,
    /// Print only the changes, not the current list
    #[arg(long)]
    watch_only: bool,
    /// With --watch, prefix each row with the event type (ADDED, MODIFIED, DELETED)
    #[arg(long)]
    output_watch_events: bool,
}

/// How long to wait before reopening a watch the hub closed.
const REWATCH_DELAY: Duration = Duration::from_millis(500);

pub(crate) fn run(ctx: &mut Ctx<'_>, a: &GetArgs) -> Result<(), CliError> {
    let targets = parse_targets(&a.resources)?;
    if matches!(targets, Targets::Named(_)) && (a.selector.is_some() || a.field_selector.is_some())
    {
        return Err(CliError::Usage(
            "names cannot be given together with a selector (-l or --field-selector)".to_string(),
        ));
    }
    if a.watch || a.watch_only {
        return watch(ctx, a, &targets);
    }
    let layout = Layout {
        wide: a.output == Some(Output::Wide),
        namespace: a.all_namespaces,
        event: false,
    };
    match targets {
        Targets::Named(pairs) => {
            let mut failures = Failures::default();
            let mut found = Vec::new();
            for (kind, name) in &pairs {
                match ctx.client.get(*kind, &ctx.namespace, name) {
                    Ok(obj) => found.push((*kind, obj)),
                    Err(e) => failures.push_api(ctx.err, e)?,
                }
            }
            let single = pairs.len() == 1;
            let several_kinds = pairs.iter().any(|(k, _)| *k != pairs[0].0);
            print_objects(ctx, a.output, layout, &found, single, several_kinds)?;
            failures.finish(ctx.err)
        }
        Targets::All(kinds) => {
            let ns = (!a.all_namespaces).then_some(ctx.namespace.clone());
            let mut found: Vec<(Kind, Value)> = Vec::new();
            for kind in &kinds {
                let list = ctx.client.list(*kind, ns.as_deref(), &list_options(a))?;
                found.extend(items_of(*kind, &list).into_iter().map(|o| (*kind, o)));
            }
            if found.is_empty() && !matches!(a.output, Some(Output::Json | Output::Yaml)) {
                writeln!(ctx.err, "{}", no_resources(&kinds, ns.as_deref()))?;
                return Ok(());
            }
            print_objects(ctx, a.output, layout, &found, false, kinds.len() > 1)
        }
    }
}

fn list_options(a: &GetArgs) -> ListOptions {
    ListOptions {
        label_selector: a.selector.clone(),
        field_selector: a.field_selector.clone(),
    }
}

/// kubectl's message for an empty list.
pub(crate) fn no_resources(kinds: &[Kind], namespace: Option<&str>) -> String {
    match namespace {
        Some(ns) if kinds.iter().any(|k| k.namespaced()) => {
            format!("No resources found in {ns} namespace.")
        }
        _ => "No resources found".to_string(),
    }
}

/// The items of a list response, each with `apiVersion` and `kind`.
pub(crate) fn items_of(kind: Kind, list: &Value) -> Vec<Value> {
    list.get("items")
        .and_then(Value::as_array)
        .map(|items| items.iter().map(|o| printers::with_type(kind, o)).collect())
        .unwrap_or_default()
}

/// Prints fetched objects. `single` means one object was asked for by name, so YAML
/// and JSON show it bare rather than in a `List`; `several_kinds` that names in tables
/// carry their kind (`pod/web`), as the tables alone would not tell.
fn print_objects(
    ctx: &mut Ctx<'_>,
    output: Option<Output>,
    layout: Layout,
    found: &[(Kind, Value)],
    single: bool,
    several_kinds: bool,
) -> Result<(), CliError> {
    match output {
        Some(Output::Json) | Some(Output::Yaml) => {
            if found.is_empty() && single {
                return Ok(());
            }
            let doc = if single && found.len() == 1 {
                printers::with_type(found[0].0, &found[0].1)
            } else {
                printers::list_of(
                    found
                        .iter()
                        .map(|(k, o)| printers::with_type(*k, o))
                        .collect(),
                )
            };
            write_doc(ctx, output == Some(Output::Yaml), &doc, false)
        }
        Some(Output::Name) => {
            for (kind, obj) in found {
                writeln!(ctx.out, "{}", printers::resource_name(*kind, obj))?;
            }
            Ok(())
        }
        None | Some(Output::Wide) => {
            let kinds: Vec<Kind> = {
                let mut ks: Vec<Kind> = Vec::new();
                for (k, _) in found {
                    if !ks.contains(k) {
                        ks.push(*k);
                    }
                }
                ks
            };
            for (i, kind) in kinds.iter().enumerate() {
                let mut t = Table::new(printers::header(*kind, layout));
                for (k, obj) in found.iter().filter(|(k, _)| k == kind) {
                    let mut r = printers::row(*k, obj, layout, None, ctx.now);
                    if several_kinds && let Some(name_cell) = name_cell(*k, layout, &mut r) {
                        *name_cell = printers::resource_name(*k, obj);
                    }
                    t.push(r);
                }
                if i > 0 {
                    writeln!(ctx.out)?;
                }
                ctx.out.write_all(t.render().as_bytes())?;
            }
            Ok(())
        }
    }
}

/// The NAME cell of a row, when the kind has one (events are listed by time instead).
fn name_cell(kind: Kind, layout: Layout, row: &mut [String]) -> Option<&mut String> {
    if kind == Kind::Event {
        return None;
    }
    let idx = usize::from(layout.event) + usize::from(layout.namespace && kind.namespaced());
    row.get_mut(idx)
}

/// One YAML or JSON document. In a stream of watch events, YAML documents are separated
/// by `---`.
fn write_doc(ctx: &mut Ctx<'_>, yaml: bool, doc: &Value, stream: bool) -> Result<(), CliError> {
    if yaml {
        if stream {
            writeln!(ctx.out, "---")?;
        }
        ctx.out
            .write_all(serde_yaml_ng::to_string(doc)?.as_bytes())?;
    } else {
        let text = serde_json::to_string_pretty(doc).unwrap_or_else(|_| doc.to_string());
        writeln!(ctx.out, "{text}")?;
    }
    Ok(())
}

/// Lists, prints, then follows the watch stream from the list's revision. A stream the
/// hub closes is reopened from the last revision seen.
fn watch(ctx: &mut Ctx<'_>, a: &GetArgs, targets: &Targets) -> Result<(), CliError> {
    let (kind, field_selector) = match targets {
        Targets::All(kinds) if kinds.len() == 1 => (kinds[0], a.field_selector.clone()),
        Targets::Named(pairs) if pairs.len() == 1 => {
            (pairs[0].0, Some(format!("metadata.name={}", pairs[0].1)))
        }
        _ => {
            return Err(CliError::Usage(
                "--watch follows one kind, or one object by name".to_string(),
            ));
        }
    };
    let opts = ListOptions {
        label_selector: a.selector.clone(),
        field_selector,
    };
    let layout = Layout {
        wide: a.output == Some(Output::Wide),
        namespace: a.all_namespaces,
        event: a.output_watch_events,
    };
    let ns = (!a.all_namespaces).then_some(ctx.namespace.clone());
    let list = ctx.client.list(kind, ns.as_deref(), &opts)?;
    let mut revision = list
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();

    let mut widths: Vec<usize> = Vec::new();
    let mut header_done = false;
    if !a.watch_only {
        let items = items_of(kind, &list);
        if items.is_empty() {
            if a.output.is_none() || a.output == Some(Output::Wide) {
                writeln!(ctx.err, "{}", no_resources(&[kind], ns.as_deref()))?;
            }
        } else {
            if matches!(a.output, None | Some(Output::Wide)) {
                // Align the current list as one table; watch rows then follow its widths.
                let mut t = Table::new(printers::header(kind, layout));
                for obj in &items {
                    t.push(printers::row(kind, obj, layout, Some("ADDED"), ctx.now));
                }
                widths = t.widths();
            }
            for obj in &items {
                print_event(
                    ctx,
                    a.output,
                    layout,
                    kind,
                    "ADDED",
                    obj,
                    &mut widths,
                    &mut header_done,
                )?;
            }
        }
    }
    loop {
        let mut stream = ctx.client.watch(kind, ns.as_deref(), &opts, &revision)?;
        while let Some(ev) = stream.next_event()? {
            if let Some(rv) = ev
                .object
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
            {
                revision = rv.to_string();
            }
            let obj = printers::with_type(kind, &ev.object);
            print_event(
                ctx,
                a.output,
                layout,
                kind,
                &ev.event_type,
                &obj,
                &mut widths,
                &mut header_done,
            )?;
        }
        std::thread::sleep(REWATCH_DELAY);
    }
}

/// One row (or document) of a watch. The header is printed once; later rows are aligned
/// to the widest cells seen so far.
#[allow(clippy::too_many_arguments)]
fn print_event(
    ctx: &mut Ctx<'_>,
    output: Option<Output>,
    layout: Layout,
    kind: Kind,
    event: &str,
    obj: &Value,
    widths: &mut Vec<usize>,
    header_done: &mut bool,
) -> Result<(), CliError> {
    match output {
        Some(Output::Yaml) => write_doc(ctx, true, obj, true)?,
        Some(Output::Json) => write_doc(ctx, false, obj, true)?,
        Some(Output::Name) => {
            let name = printers::resource_name(kind, obj);
            if layout.event {
                writeln!(ctx.out, "{event} {name}")?;
            } else {
                writeln!(ctx.out, "{name}")?;
            }
        }
        None | Some(Output::Wide) => {
            // Rows of a watch arrive over time: their ages are computed when they arrive.
            let mut t = Table::new(printers::header(kind, layout));
            t.push(printers::row(
                kind,
                obj,
                layout,
                Some(event),
                chrono::Utc::now(),
            ));
            let row_widths = t.widths();
            widths.resize(widths.len().max(row_widths.len()), 0);
            for (w, r) in widths.iter_mut().zip(row_widths) {
                *w = (*w).max(r);
            }
            if layout.event {
                // Room for the longest event type, so later rows stay aligned.
                widths[0] = widths[0].max("MODIFIED".len());
            }
            let text = t.render_with(widths, !*header_done);
            *header_done = true;
            ctx.out.write_all(text.as_bytes())?;
        }
    }
    ctx.out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_list_messages_match_kubectl() {
        assert_eq!(
            no_resources(&[Kind::Pod], Some("default")),
            "No resources found in default namespace."
        );
        assert_eq!(no_resources(&[Kind::Pod], None), "No resources found");
        assert_eq!(
            no_resources(&[Kind::Node], Some("default")),
            "No resources found"
        );
        assert_eq!(
            no_resources(&[Kind::Node, Kind::Pod], Some("prod")),
            "No resources found in prod namespace."
        );
    }

    #[test]
    fn list_items_get_their_type() {
        let list = json!({"kind": "PodList", "items": [{"metadata": {"name": "a"}}]});
        let items = items_of(Kind::Pod, &list);
        assert_eq!(items.len(), 1);
        assert_eq!(items[0]["kind"], "Pod");
        assert!(items_of(Kind::Pod, &json!({})).is_empty());
    }
}
