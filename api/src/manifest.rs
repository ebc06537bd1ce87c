//! Manifest parsing: multi-document YAML, JSON objects, JSON streams and `v1 List`s
//! into typed objects.
//!
//! Two stages, so each error says exactly where it is: text to `serde_json::Value`
//! (syntax errors carry line and column), then `Value` to [`Object`] (errors carry the
//! full field path, e.g. `spec.template.spec.containers[0].securityContext.seLinuxOptions`).
//! Fields Skiff does not implement are rejected as `<path>: not supported`, never
//! silently dropped.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use crate::{Kind, Object};

/// A manifest that could not be turned into objects.
///
/// `doc` is the 1-based document number in a multi-document input (`None` for a single
/// request body). Every `path` is relative to the document, so an item of a `List`
/// reads `items[2].spec...`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The text is not valid YAML or JSON.
    Syntax {
        doc: Option<usize>,
        /// `"YAML"` or `"JSON"`.
        format: &'static str,
        /// 1-based line and column, when the parser reports one.
        position: Option<(usize, usize)>,
        message: String,
    },
    /// A document (or list item) is not a mapping.
    NotAnObject {
        doc: Option<usize>,
        path: String,
        found: &'static str,
    },
    /// `apiVersion`/`kind` missing or naming nothing Skiff serves.
    UnsupportedType {
        doc: Option<usize>,
        path: String,
        api_version: Option<String>,
        kind: Option<String>,
    },
    /// A field Skiff does not implement.
    UnsupportedField { doc: Option<usize>, path: String },
    /// A field with the wrong type or value, or a required field that is missing.
    InvalidField {
        doc: Option<usize>,
        path: String,
        message: String,
    },
}

impl ManifestError {
    /// The 1-based document number, for multi-document input.
    pub fn doc(&self) -> Option<usize> {
        match self {
            ManifestError::Syntax { doc, .. }
            | ManifestError::NotAnObject { doc, .. }
            | ManifestError::UnsupportedType { doc, .. }
            | ManifestError::UnsupportedField { doc, .. }
            | ManifestError::InvalidField { doc, .. } => *doc,
        }
    }

    /// The 1-based (line, column) of a syntax error.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            ManifestError::Syntax { position, .. } => *position,
            _ => None,
        }
    }

    /// The field path the error is about (empty for the document itself); `None` for
    /// syntax errors.
    pub fn path(&self) -> Option<&str> {
        match self {
            ManifestError::Syntax { .. } => None,
            ManifestError::NotAnObject { path, .. }
            | ManifestError::UnsupportedType { path, .. }
            | ManifestError::UnsupportedField { path, .. }
            | ManifestError::InvalidField { path, .. } => Some(path),
        }
    }

    /// The error without its document number, e.g.
    /// `spec.containers[0].securityContext.seLinuxOptions: not supported`.
    pub fn message(&self) -> String {
        match self {
            ManifestError::Syntax {
                format,
                position,
                message,
                ..
            } => match position {
                Some((line, column)) => {
                    format!("invalid {format} at line {line}, column {column}: {message}")
                }
                None => format!("invalid {format}: {message}"),
            },
            ManifestError::NotAnObject { path, found, .. } => format!(
                "{}expected an object with apiVersion and kind, found {found}",
                path_prefix(path)
            ),
            ManifestError::UnsupportedType {
                path,
                api_version,
                kind,
                ..
            } => format!(
                "{}{}",
                path_prefix(path),
                describe_unsupported_type(api_version.as_deref(), kind.as_deref())
            ),
            ManifestError::UnsupportedField { path, .. } => format!("{path}: not supported"),
            ManifestError::InvalidField { path, message, .. } => {
                format!("{}{message}", path_prefix(path))
            }
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(doc) = self.doc() {
            write!(f, "document {doc}: ")?;
        }
        f.write_str(&self.message())
    }
}

fn path_prefix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!("{path}: ")
    }
}

fn describe_unsupported_type(api_version: Option<&str>, kind: Option<&str>) -> String {
    let known_kind = kind.and_then(|k| Kind::ALL.into_iter().find(|x| x.name() == k));
    match (api_version, kind, known_kind) {
        (None, None, _) => format!("apiVersion and kind are required; {}", supported_list()),
        (Some(_), None, _) => format!("kind is required; {}", supported_list()),
        (None, Some(_), Some(k)) => {
            format!(
                "apiVersion is required: {} is {}",
                k.name(),
                k.api_version()
            )
        }
        (Some(v), Some(_), Some(k)) => format!(
            "apiVersion {v:?} is not supported for kind {}: use {}",
            k.name(),
            k.api_version()
        ),
        (None, Some(kind), None) => format!(
            "apiVersion is required and kind {kind:?} is not supported; {}",
            supported_list()
        ),
        (Some(v), Some(kind), None) => format!(
            "kind {kind:?} (apiVersion {v:?}) is not supported; {}",
            supported_list()
        ),
    }
}

fn supported_list() -> String {
    let kinds: Vec<String> = Kind::ALL
        .iter()
        .map(|k| format!("{} {}", k.api_version(), k.name()))
        .collect();
    format!("supported: {} (or a v1 List of them)", kinds.join(", "))
}

/// Parses a manifest file: YAML with any number of `---`-separated documents (empty
/// ones are skipped), a JSON object, a stream of JSON objects, or a `v1 List` (in
/// either syntax) whose items are expanded in order.
pub fn parse_manifests(text: &str) -> Result<Vec<Object>, ManifestError> {
    let mut out = Vec::new();
    for (doc, value) in documents(text)? {
        expand(Some(doc), value, &mut out)?;
    }
    Ok(out)
}

/// Parses one JSON object, as sent in a REST request body. Errors carry no document
/// number.
pub fn parse_object_json(bytes: &[u8]) -> Result<Object, ManifestError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| json_syntax(None, &e))?;
    parse_value(None, String::new(), value)
}

/// Splits the text into numbered documents (1-based), skipping empty ones.
fn documents(text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let trimmed = text.trim_start();
    let after_brace = trimmed.strip_prefix('{').map(str::trim_start);
    if trimmed.starts_with('[') || after_brace.is_some_and(|rest| rest.starts_with(['"', '}'])) {
        // Quoted keys: JSON, whose errors are the ones to report, even where lenient
        // YAML would accept the text with a different meaning.
        return json_documents(text);
    }
    if after_brace.is_some() {
        // `{apiVersion: v1, ...}` is flow-style YAML, not JSON.
        return json_documents(text).or_else(|json_err| yaml_documents(text).map_err(|_| json_err));
    }
    yaml_documents(text)
}

fn json_documents(text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let mut docs = Vec::new();
    for (i, item) in serde_json::Deserializer::from_str(text)
        .into_iter::<Value>()
        .enumerate()
    {
        let value = item.map_err(|e| json_syntax(Some(i + 1), &e))?;
        docs.push((i + 1, value));
    }
    Ok(docs)
}

fn yaml_documents(text: &str) -> Result<Vec<(usize, Value)>, ManifestError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let doc = i + 1;
        match Value::deserialize(de) {
            Ok(Value::Null) => {}
            Ok(value) => docs.push((doc, value)),
            // The parser cannot continue past a syntax error, so stop at the first.
            Err(e) => return Err(yaml_syntax(doc, &e)),
        }
    }
    Ok(docs)
}

fn json_syntax(doc: Option<usize>, e: &serde_json::Error) -> ManifestError {
    let position = (e.line() > 0).then(|| (e.line(), e.column()));
    ManifestError::Syntax {
        doc,
        format: "JSON",
        position,
        message: strip_location(&e.to_string(), position),
    }
}

fn yaml_syntax(doc: usize, e: &serde_yaml_ng::Error) -> ManifestError {
    let position = e.location().map(|l| (l.line(), l.column()));
    ManifestError::Syntax {
        doc: Some(doc),
        format: "YAML",
        position,
        message: strip_location(&e.to_string(), position),
    }
}

/// Removes the parser's own " at line L column C" so the position is said once.
fn strip_location(message: &str, position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => {
            message.replacen(&format!(" at line {line} column {column}"), "", 1)
        }
        None => message.to_string(),
    }
}

/// Adds the objects of one document: the document itself, or each item of a List.
fn expand(doc: Option<usize>, value: Value, out: &mut Vec<Object>) -> Result<(), ManifestError> {
    let is_list = value.get("kind").and_then(Value::as_str) == Some("List")
        && value.get("apiVersion").and_then(Value::as_str) == Some("v1");
    if !is_list {
        out.push(parse_value(doc, String::new(), value)?);
        return Ok(());
    }
    let Value::Object(mut list) = value else {
        unreachable!("a value with a kind field is an object");
    };
    match list.remove("items") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(items)) => {
            for (i, item) in items.into_iter().enumerate() {
                out.push(parse_value(doc, format!("items[{i}]"), item)?);
            }
            Ok(())
        }
        Some(other) => Err(ManifestError::InvalidField {
            doc,
            path: "items".into(),
            message: format!("expected a list of objects, found {}", describe(&other)),
        }),
    }
}

/// The typed stage: one JSON object with `apiVersion` and `kind` into an `Object`.
/// `at` is where the object sits in its document (empty, or `items[i]`).
fn parse_value(doc: Option<usize>, at: String, value: Value) -> Result<Object, ManifestError> {
    let Value::Object(mut map) = value else {
        return Err(ManifestError::NotAnObject {
            doc,
            path: at,
            found: describe(&value),
        });
    };
    let api_version = map.remove("apiVersion").and_then(type_field);
    let kind_name = map.remove("kind").and_then(type_field);
    let kind = match (&api_version, &kind_name) {
        (Some(v), Some(k)) => Kind::from_api_version_kind(v, k),
        _ => None,
    };
    let Some(kind) = kind else {
        return Err(ManifestError::UnsupportedType {
            doc,
            path: at,
            api_version,
            kind: kind_name,
        });
    };
    strip_nulls(&mut map);
    Object::from_body(kind, Value::Object(map)).map_err(|e| typed_error(doc, &at, &e))
}

/// `apiVersion`/`kind` as written: a string, or the JSON text of anything else (so
/// the error shows what was found). Null counts as missing.
fn type_field(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Kubernetes decodes an explicit `null` as "unset" (generated manifests carry
/// `creationTimestamp: null`), so nulls inside mappings are dropped before typing.
fn strip_nulls(map: &mut Map<String, Value>) {
    map.retain(|_, v| !v.is_null());
    for v in map.values_mut() {
        strip_nulls_in(v);
    }
}

fn strip_nulls_in(v: &mut Value) {
    match v {
        Value::Object(map) => strip_nulls(map),
        Value::Array(items) => items.iter_mut().for_each(strip_nulls_in),
        _ => {}
    }
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

fn typed_error(
    doc: Option<usize>,
    at: &str,
    e: &serde_path_to_error::Error<serde_json::Error>,
) -> ManifestError {
    let mut path = at.to_string();
    for segment in e.path().iter() {
        match segment {
            Segment::Seq { index } => path.push_str(&format!("[{index}]")),
            Segment::Map { key } => push_field(&mut path, key),
            Segment::Enum { variant } => push_field(&mut path, variant),
            Segment::Unknown => push_field(&mut path, "?"),
        }
    }
    let message = e.inner().to_string();
    if let Some(field) = quoted_after(&message, "unknown field `") {
        // The path normally ends at the unknown key already; make sure it does.
        if !path.ends_with(field) {
            push_field(&mut path, field);
        }
        return ManifestError::UnsupportedField { doc, path };
    }
    if let Some(field) = quoted_after(&message, "missing field `") {
        push_field(&mut path, field);
        return ManifestError::InvalidField {
            doc,
            path,
            message: "Required value".into(),
        };
    }
    if let Some(value) = quoted_after(&message, "unknown variant `") {
        let supported: Vec<String> = message
            .split_once(", expected ")
            .map(|(_, rest)| {
                rest.split('`')
                    .skip(1)
                    .step_by(2)
                    .map(|s| format!("{s:?}"))
                    .collect()
            })
            .unwrap_or_default();
        return ManifestError::InvalidField {
            doc,
            path,
            message: format!(
                "Unsupported value {value:?}: supported values: {}",
                supported.join(", ")
            ),
        };
    }
    ManifestError::InvalidField { doc, path, message }
}

fn push_field(path: &mut String, field: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(field);
}

/// The text between `prefix` (ending in a backtick) and the next backtick.
fn quoted_after<'a>(message: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = message.strip_prefix(prefix)?;
    rest.split_once('`').map(|(field, _)| field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{
        DeploymentStrategyType, IntOrString, PullPolicy, RestartPolicy, ServiceType, TaintEffect,
        TolerationOperator,
    };

    const APP: &str = r#"
# The web tier.
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {app: web}
  creationTimestamp: null
spec:
  replicas: 3
  selector:
    matchLabels:
      app: web
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 25%
  template:
    metadata:
      labels:
        app: web
    spec:
      restartPolicy: Always
      containers:
        - name: web
          image: registry.local:5000/web:1.4
          args: ["--port", "8080"]
          env:
            - name: POD_NAME
              valueFrom:
                fieldRef:
                  fieldPath: metadata.name
          ports:
            - name: http
              containerPort: 8080
          resources:
            requests: {cpu: 100m, memory: 64Mi}
            limits: {cpu: 1, memory: 128Mi}
          readinessProbe:
            httpGet: {path: /healthz, port: http}
            periodSeconds: 5
          livenessProbe:
            tcpSocket: {port: 8080}
            initialDelaySeconds: 10
          securityContext:
            runAsNonRoot: true
            capabilities: {drop: [ALL]}
          volumeMounts:
            - {name: cache, mountPath: /cache}
      volumes:
        - name: cache
          emptyDir: {sizeLimit: 100Mi}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
              - matchExpressions:
                  - {key: kubernetes.io/arch, operator: In, values: [arm64, amd64]}
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
            - weight: 50
              podAffinityTerm:
                topologyKey: kubernetes.io/hostname
                labelSelector:
                  matchLabels: {app: web}
      tolerations:
        - key: dedicated
          operator: Equal
          value: edge
          effect: NoSchedule
        - operator: Exists
          effect: NoExecute
          tolerationSeconds: 300
---
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  type: NodePort
  selector: {app: web}
  ports:
    - name: http
      port: 80
      targetPort: http
      nodePort: 30080
"#;

    fn err(text: &str) -> ManifestError {
        parse_manifests(text).expect_err("manifest should be rejected")
    }

    #[test]
    fn parses_realistic_multi_document_file() {
        let objs = parse_manifests(APP).unwrap();
        assert_eq!(objs.len(), 3, "empty documents are skipped");
        let kinds: Vec<Kind> = objs.iter().map(Object::kind).collect();
        assert_eq!(kinds, [Kind::Namespace, Kind::Deployment, Kind::Service]);
        assert_eq!(objs[0].meta().name, "shop");

        let Object::Deployment(d) = &objs[1] else {
            panic!("expected a deployment")
        };
        assert_eq!(d.spec.replicas, Some(3));
        assert_eq!(d.metadata.creation_timestamp, None);
        let strategy = d.spec.strategy.as_ref().unwrap();
        assert_eq!(strategy.type_, Some(DeploymentStrategyType::RollingUpdate));
        let ru = strategy.rolling_update.as_ref().unwrap();
        assert_eq!(ru.max_surge, Some(IntOrString::Int(1)));
        assert_eq!(ru.max_unavailable, Some(IntOrString::from("25%")));
        let pod = &d.spec.template.spec;
        assert_eq!(pod.restart_policy, Some(RestartPolicy::Always));
        let c = &pod.containers[0];
        assert_eq!(c.image, "registry.local:5000/web:1.4");
        assert_eq!(c.args, ["--port", "8080"]);
        assert_eq!(c.resources.limits["cpu"].as_str(), "1");
        assert_eq!(c.resources.requests["memory"].as_str(), "64Mi");
        assert_eq!(
            c.env[0]
                .value_from
                .as_ref()
                .unwrap()
                .field_ref
                .as_ref()
                .unwrap()
                .field_path,
            "metadata.name"
        );
        let readiness = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            readiness.http_get.as_ref().unwrap().port,
            IntOrString::from("http")
        );
        assert_eq!(
            c.liveness_probe
                .as_ref()
                .unwrap()
                .tcp_socket
                .as_ref()
                .unwrap()
                .port,
            IntOrString::Int(8080)
        );
        assert_eq!(
            pod.volumes[0]
                .empty_dir
                .as_ref()
                .unwrap()
                .size_limit
                .as_ref()
                .unwrap()
                .as_str(),
            "100Mi"
        );
        let affinity = pod.affinity.as_ref().unwrap();
        let terms = &affinity
            .node_affinity
            .as_ref()
            .unwrap()
            .required_during_scheduling_ignored_during_execution
            .as_ref()
            .unwrap()
            .node_selector_terms;
        assert_eq!(terms[0].match_expressions[0].values, ["arm64", "amd64"]);
        let anti = affinity.pod_anti_affinity.as_ref().unwrap();
        assert_eq!(
            anti.preferred_during_scheduling_ignored_during_execution[0].weight,
            50
        );
        assert_eq!(pod.tolerations[0].effect, Some(TaintEffect::NoSchedule));
        assert_eq!(
            pod.tolerations[1].operator,
            Some(TolerationOperator::Exists)
        );
        assert_eq!(pod.tolerations[1].toleration_seconds, Some(300));
        assert_eq!(c.image_pull_policy, None::<PullPolicy>);

        let Object::Service(svc) = &objs[2] else {
            panic!("expected a service")
        };
        assert_eq!(svc.spec.type_, Some(ServiceType::NodePort));
        assert_eq!(svc.spec.ports[0].node_port, 30080);
        assert_eq!(
            svc.spec.ports[0].target_port,
            Some(IntOrString::from("http"))
        );
        for obj in &objs {
            crate::validate(obj).unwrap();
        }
    }

    #[test]
    fn accepts_kubectl_generated_manifests() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  creationTimestamp: null\n  labels:\n    app: web\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels:\n      app: web\n  strategy: {}\n  template:\n    metadata:\n      creationTimestamp: null\n      labels:\n        app: web\n    spec:\n      containers:\n      - image: nginx\n        name: nginx\n        resources: {}\nstatus: {}\n";
        let mut obj = parse_manifests(text).unwrap().remove(0);
        crate::apply_defaults(&mut obj);
        crate::validate(&obj).unwrap();
        let Object::Deployment(d) = obj else {
            panic!("expected a deployment")
        };
        assert_eq!(d.spec.template.spec.containers[0].image, "nginx");
        assert_eq!(
            d.spec.strategy.unwrap().type_,
            Some(DeploymentStrategyType::RollingUpdate)
        );
    }

    #[test]
    fn round_trip_through_json_is_lossless() {
        for obj in parse_manifests(APP).unwrap() {
            let text = obj.to_json_string();
            let again = parse_object_json(text.as_bytes()).unwrap();
            assert_eq!(again, obj);
            assert_eq!(again.to_json_string(), text);
        }
        let mut defaulted = parse_manifests(APP).unwrap();
        for obj in &mut defaulted {
            crate::apply_defaults(obj);
            let again = parse_object_json(obj.to_json_string().as_bytes()).unwrap();
            assert_eq!(&again, obj);
        }
    }

    #[test]
    fn parses_json_object_stream_and_list() {
        let one = r#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a"},
                      "spec":{"containers":[{"name":"c","image":"busybox"}]}}"#;
        let objs = parse_manifests(one).unwrap();
        assert_eq!(objs.len(), 1);
        assert_eq!(objs[0].key().name, "a");

        let stream = format!("{one}\n{}", one.replace("\"a\"", "\"b\""));
        let names: Vec<String> = parse_manifests(&stream)
            .unwrap()
            .iter()
            .map(|o| o.meta().name.clone())
            .collect();
        assert_eq!(names, ["a", "b"]);

        let list = format!(
            r#"{{"apiVersion":"v1","kind":"List","metadata":{{}},"items":[{one},
                {{"apiVersion":"v1","kind":"ServiceAccount","metadata":{{"name":"robot"}}}}]}}"#
        );
        let objs = parse_manifests(&list).unwrap();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[1].kind(), Kind::ServiceAccount);

        let yaml_list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: x}\n";
        let objs = parse_manifests(yaml_list).unwrap();
        assert_eq!(objs[0].kind(), Kind::Namespace);

        // Flow-style YAML that is not JSON.
        let flow = "{apiVersion: v1, kind: Namespace, metadata: {name: flow}}";
        assert_eq!(parse_manifests(flow).unwrap()[0].meta().name, "flow");

        assert!(parse_manifests("").unwrap().is_empty());
        assert!(parse_manifests("---\n# nothing\n---\n").unwrap().is_empty());
    }

    #[test]
    fn list_item_errors_name_the_item() {
        let list = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}},
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"},"spec":{"bogus":1}}]}"#;
        let e = err(list);
        assert_eq!(e.path(), Some("items[1].spec.bogus"));
        assert_eq!(
            e.to_string(),
            "document 1: items[1].spec.bogus: not supported"
        );

        let e = err(r#"{"apiVersion":"v1","kind":"List","items":[1]}"#);
        assert_eq!(
            e.message(),
            "items[0]: expected an object with apiVersion and kind, found a number"
        );
        let e = err(r#"{"apiVersion":"v1","kind":"List","items":{}}"#);
        assert_eq!(
            e.message(),
            "items: expected a list of objects, found an object"
        );
    }

    #[test]
    fn unsupported_fields_name_the_full_path() {
        let deployment = |extra: &str| {
            format!(
                "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n      - name: a\n        image: busybox\n      - name: b\n        image: busybox\n{extra}"
            )
        };
        let cases = [
            (
                "        securityContext:\n          seLinuxOptions: {level: s0}\n",
                "spec.template.spec.containers[1].securityContext.seLinuxOptions",
            ),
            (
                "        envFrom: [{configMapRef: {name: x}}]\n",
                "spec.template.spec.containers[1].envFrom",
            ),
            (
                "        env:\n        - name: X\n          valueFrom:\n            secretKeyRef: {name: s, key: k}\n",
                "spec.template.spec.containers[1].env[0].valueFrom.secretKeyRef",
            ),
            (
                "        livenessProbe:\n          grpc: {port: 9000}\n",
                "spec.template.spec.containers[1].livenessProbe.grpc",
            ),
            (
                "      volumes:\n      - name: v\n        configMap: {name: x}\n",
                "spec.template.spec.volumes[0].configMap",
            ),
            (
                "      imagePullSecrets: [{name: x}]\n",
                "spec.template.spec.imagePullSecrets",
            ),
            ("  suspend: true\n", "spec.suspend"),
        ];
        for (extra, path) in cases {
            let e = err(&deployment(extra));
            assert_eq!(e.message(), format!("{path}: not supported"), "{extra}");
            assert_eq!(e.to_string(), format!("document 1: {path}: not supported"));
            assert_eq!(e.path(), Some(path));
        }
        let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: a}\nextra: 1\n");
        assert_eq!(e.message(), "extra: not supported");
        let e = err("apiVersion: v1\nkind: Pod\nmetadata: {name: a, clusterName: x}\n");
        assert_eq!(e.message(), "metadata.clusterName: not supported");
        let e = parse_object_json(br#"{"apiVersion":"v1","kind":"Service","spec":{"type":"ClusterIP","externalName":"x"}}"#)
            .unwrap_err();
        assert_eq!(e.to_string(), "spec.externalName: not supported");
        assert_eq!(e.doc(), None);
    }

    #[test]
    fn invalid_values_and_missing_fields() {
        let e = err("apiVersion: v1\nkind: Pod\nspec:\n  restartPolicy: Sometimes\n");
        assert_eq!(
            e.message(),
            r#"spec.restartPolicy: Unsupported value "Sometimes": supported values: "Always", "OnFailure", "Never""#
        );
        let e = err("apiVersion: v1\nkind: Service\nspec:\n  type: LoadBalancer\n");
        assert_eq!(
            e.message(),
            r#"spec.type: Unsupported value "LoadBalancer": supported values: "ClusterIP", "NodePort""#
        );
        let e = err(
            "apiVersion: v1\nkind: Pod\nspec:\n  containers:\n  - name: a\n    livenessProbe:\n      httpGet: {path: /}\n",
        );
        assert_eq!(
            e.message(),
            "spec.containers[0].livenessProbe.httpGet.port: Required value"
        );
        let e = err("apiVersion: apps/v1\nkind: Deployment\nspec:\n  replicas: three\n");
        assert_eq!(e.path(), Some("spec.replicas"));
        assert!(
            e.message()
                .starts_with("spec.replicas: invalid type: string \"three\"")
        );
        let e = err("apiVersion: v1\nkind: Pod\nmetadata:\n  labels:\n    enabled: true\n");
        assert_eq!(e.path(), Some("metadata.labels.enabled"));
        let e =
            err("apiVersion: v1\nkind: Node\nspec:\n  taints:\n  - {key: a, effect: Sometimes}\n");
        assert!(
            e.message()
                .starts_with("spec.taints[0].effect: Unsupported value \"Sometimes\""),
            "{e}"
        );
        let e = err("apiVersion: v1\nkind: Pod\nmetadata:\n  creationTimestamp: yesterday\n");
        assert_eq!(e.path(), Some("metadata.creationTimestamp"));
    }

    #[test]
    fn yaml_syntax_errors_carry_line_and_column() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: b\n labels: {}\n";
        let e = err(text);
        assert_eq!(e.doc(), Some(2));
        assert_eq!(e.position(), Some((9, 2)));
        let shown = e.to_string();
        assert!(
            shown.starts_with("document 2: invalid YAML at line 9, column 2: "),
            "{shown}"
        );
        assert!(!shown.contains('\n'));
        assert_eq!(shown.matches("line 9").count(), 1, "{shown}");
    }

    #[test]
    fn json_syntax_errors_carry_line_and_column() {
        let e = err("{\n  \"apiVersion\": \"v1\",\n  \"kind\": ,\n}");
        assert_eq!(e.position(), Some((3, 11)));
        assert_eq!(e.doc(), Some(1));
        assert!(
            e.to_string()
                .starts_with("document 1: invalid JSON at line 3, column 11: "),
            "{e}"
        );
        let e = parse_object_json(b"{\"a\": tru}").unwrap_err();
        assert_eq!(e.position(), Some((1, 10)));
        assert_eq!(e.doc(), None);
        assert!(
            e.to_string()
                .starts_with("invalid JSON at line 1, column 10")
        );
    }

    #[test]
    fn unknown_or_missing_types_list_what_is_supported() {
        let e = err("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
        assert_eq!(
            e,
            ManifestError::UnsupportedType {
                doc: Some(1),
                path: String::new(),
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
            }
        );
        let shown = e.to_string();
        assert!(shown.starts_with(
            "document 1: kind \"ConfigMap\" (apiVersion \"v1\") is not supported; supported: v1 Namespace, v1 Node, v1 Pod, apps/v1 Deployment"
        ), "{shown}");
        assert!(shown.contains("batch/v1 Job"));

        let e = err("apiVersion: extensions/v1beta1\nkind: Deployment\n");
        assert_eq!(
            e.message(),
            "apiVersion \"extensions/v1beta1\" is not supported for kind Deployment: use apps/v1"
        );
        let e = err("kind: Deployment\n");
        assert_eq!(e.message(), "apiVersion is required: Deployment is apps/v1");
        let e = err("apiVersion: v1\nmetadata: {name: x}\n");
        assert!(e.message().starts_with("kind is required; supported: "));
        let e = err("metadata: {name: x}\n");
        assert!(
            e.message()
                .starts_with("apiVersion and kind are required; supported: ")
        );
        let e = err("apiVersion: v1\nkind: 7\n");
        assert!(e.message().starts_with("kind \"7\" (apiVersion \"v1\")"));
        let e = err("- a\n- b\n");
        assert_eq!(
            e.message(),
            "expected an object with apiVersion and kind, found a list"
        );
        let e = parse_object_json(b"[]").unwrap_err();
        assert_eq!(e.doc(), None);
        assert!(matches!(e, ManifestError::NotAnObject { .. }));
    }

    #[test]
    fn document_numbers_count_from_one_across_empty_documents() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n---\napiVersion: v1\nkind: Namespace\nspec: {bogus: 1}\n";
        let e = err(text);
        assert_eq!(e.doc(), Some(3));
        assert_eq!(e.to_string(), "document 3: spec.bogus: not supported");
    }
}
