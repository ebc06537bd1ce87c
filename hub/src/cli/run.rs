//! `skiff run`: create a single pod from an image and a command, like `kubectl run`.

use clap::Args;
use serde_json::{Map, Value, json};
use skiff_api::Kind;

use super::Ctx;
use super::error::CliError;

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Name of the pod (and of its one container)
    name: String,
    /// Image to run, e.g. busybox:1
    #[arg(long)]
    image: String,
    /// Environment variable KEY=VALUE (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Label KEY=VALUE (repeatable); `run=NAME` is always added
    #[arg(
        short = 'l',
        long = "labels",
        value_name = "KEY=VALUE",
        value_delimiter = ','
    )]
    labels: Vec<String>,
    /// Always, OnFailure or Never
    #[arg(long, default_value = "Always", value_parser = ["Always", "OnFailure", "Never"])]
    restart: String,
    /// IfNotPresent, Always or Never
    #[arg(long = "image-pull-policy", value_parser = ["IfNotPresent", "Always", "Never"])]
    image_pull_policy: Option<String>,
    /// Put the pod on this node instead of letting the scheduler choose
    #[arg(long = "node", value_name = "NODE")]
    node: Option<String>,
    /// Print the pod as JSON instead of creating it
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// The command (replaces the image's ENTRYPOINT); without it the image's own runs
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

fn pairs(what: &str, items: &[String]) -> Result<Vec<(String, String)>, CliError> {
    items
        .iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(CliError::Usage(format!(
                "--{what} {kv:?}: expected KEY=VALUE"
            ))),
        })
        .collect()
}

/// The pod `skiff run` creates.
fn pod(a: &RunArgs, namespace: &str) -> Result<Value, CliError> {
    let mut labels = Map::new();
    labels.insert("run".into(), Value::String(a.name.clone()));
    for (k, v) in pairs("labels", &a.labels)? {
        labels.insert(k, Value::String(v));
    }
    let env: Vec<Value> = pairs("env", &a.env)?
        .into_iter()
        .map(|(name, value)| json!({"name": name, "value": value}))
        .collect();
    let mut container = json!({"name": a.name, "image": a.image});
    if !a.command.is_empty() {
        container["command"] = json!(a.command);
    }
    if !env.is_empty() {
        container["env"] = Value::Array(env);
    }
    if let Some(p) = &a.image_pull_policy {
        container["imagePullPolicy"] = json!(p);
    }
    let mut spec = json!({"containers": [container], "restartPolicy": a.restart});
    if let Some(node) = &a.node {
        spec["nodeName"] = json!(node);
    }
    Ok(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": a.name, "namespace": namespace, "labels": labels},
        "spec": spec,
    }))
}

pub(crate) fn run(ctx: &mut Ctx<'_>, a: &RunArgs) -> Result<(), CliError> {
    let body = pod(a, &ctx.namespace)?;
    if a.dry_run {
        serde_json::to_writer_pretty(&mut *ctx.out, &body).map_err(std::io::Error::from)?;
        writeln!(ctx.out)?;
        return Ok(());
    }
    let ns = ctx.namespace.clone();
    ctx.client.create(Kind::Pod, &ns, &body)?;
    writeln!(ctx.out, "pod/{} created", a.name)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct T {
        #[command(flatten)]
        a: RunArgs,
    }

    fn args(argv: &[&str]) -> RunArgs {
        T::try_parse_from(std::iter::once("run").chain(argv.iter().copied()))
            .unwrap()
            .a
    }

    #[test]
    fn the_pod_carries_image_command_env_and_policy() {
        let a = args(&[
            "hello",
            "--image",
            "busybox:1",
            "--env",
            "A=1",
            "--restart",
            "Never",
            "-l",
            "tier=fe",
            "--",
            "sh",
            "-c",
            "echo hi",
        ]);
        let p = pod(&a, "shop").unwrap();
        assert_eq!(p["metadata"]["namespace"], "shop");
        assert_eq!(p["metadata"]["labels"]["run"], "hello");
        assert_eq!(p["metadata"]["labels"]["tier"], "fe");
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["image"], "busybox:1");
        assert_eq!(c["command"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["env"], json!([{"name": "A", "value": "1"}]));
        assert_eq!(p["spec"]["restartPolicy"], "Never");
        let parsed = skiff_api::parse_object_json(&serde_json::to_vec(&p).unwrap());
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn without_a_command_the_image_decides() {
        let p = pod(&args(&["web", "--image", "nginx:1"]), "default").unwrap();
        assert!(p["spec"]["containers"][0].get("command").is_none());
    }

    #[test]
    fn a_bad_env_pair_is_a_usage_error() {
        let e = pod(&args(&["x", "--image", "i", "--env", "NOVALUE"]), "default").unwrap_err();
        assert!(e.to_string().contains("expected KEY=VALUE"), "{e}");
    }
}
