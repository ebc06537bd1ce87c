//! Handler tests: real HTTP requests through the axum router, in-process, against the
//! in-memory store.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use futures::StreamExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{AdminToken, ApiOptions, ApiServer};
use crate::store::{MemoryStore, SqliteStore, Store, StoreOptions};

const TOKEN: &str = "0123456789abcdef-test-token";
const BODY_LIMIT: usize = 64 * 1024;
const JSON: &str = "application/json";
const YAML: &str = "application/yaml";
const MERGE: &str = "application/merge-patch+json";

struct Hub {
    server: Arc<ApiServer>,
    router: Router,
    store: Arc<dyn Store>,
    /// Holds the SQLite store's directory; dropped last.
    _dir: Option<tempfile::TempDir>,
}

async fn hub_on(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) -> Hub {
    let server = ApiServer::new(
        store.clone(),
        AdminToken::from_secret(TOKEN),
        ApiOptions {
            body_limit: BODY_LIMIT,
        },
    );
    server.bootstrap().await.unwrap();
    let router = server.router();
    Hub {
        server: Arc::new(server),
        router,
        store,
        _dir: dir,
    }
}

async fn hub() -> Hub {
    hub_on(Arc::new(MemoryStore::new()), None).await
}

async fn sqlite_hub() -> Hub {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("state.db"), StoreOptions::default()).unwrap();
    hub_on(Arc::new(store), Some(dir)).await
}

/// Runs each scenario against both stores: the in-memory one and SQLite in a temp dir,
/// so the server relies on nothing the real store does differently.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                #[tokio::test]
                async fn memory() {
                    super::$name(super::hub().await).await
                }

                #[tokio::test]
                async fn sqlite() {
                    super::$name(super::sqlite_hub().await).await
                }
            }
        )*
    };
}

on_both_stores!(
    namespaced_crud,
    cluster_scoped_crud_and_all_namespace_lists,
    yaml_bodies_and_generate_name,
    list_with_label_and_field_selectors,
    status_subresource_is_separate,
    auth_is_required_on_the_api_only,
    not_found_paths_methods_and_objects,
    conflicts,
    invalid_objects_get_422_with_causes,
    malformed_bodies_get_400_with_a_position,
    kind_namespace_and_name_must_match_the_url,
    body_limit_and_patch_types,
    finalizers_hold_deletes,
    watch_streams_events_from_a_list_and_from_a_revision,
    watch_ends_on_timeout_and_on_shutdown,
    deleting_a_namespace_deletes_its_contents,
    a_namespace_waits_for_finalizers_while_terminating,
    bootstrap_resumes_terminating_namespaces,
    graceful_shutdown_ends_watches_and_finishes_requests,
);

struct Reply {
    code: StatusCode,
    body: Value,
}

impl Hub {
    async fn send(&self, req: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(req).await.unwrap()
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        content_type: Option<&str>,
        body: impl Into<Body>,
    ) -> Reply {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        if let Some(t) = content_type {
            req = req.header(header::CONTENT_TYPE, t);
        }
        let resp = self.send(req.body(body.into()).unwrap()).await;
        let code = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|e| panic!("{method} {uri}: body is not JSON ({e}): {bytes:?}"))
        };
        Reply { code, body }
    }

    async fn get(&self, uri: &str) -> Reply {
        self.call("GET", uri, None, Body::empty()).await
    }

    async fn post(&self, uri: &str, body: &Value) -> Reply {
        self.call("POST", uri, Some(JSON), body.to_string()).await
    }

    async fn put(&self, uri: &str, body: &Value) -> Reply {
        self.call("PUT", uri, Some(JSON), body.to_string()).await
    }

    async fn patch(&self, uri: &str, body: &Value) -> Reply {
        self.call("PATCH", uri, Some(MERGE), body.to_string()).await
    }

    async fn delete(&self, uri: &str) -> Reply {
        self.call("DELETE", uri, None, Body::empty()).await
    }

    /// Opens a watch and returns its line stream.
    async fn watch(&self, uri: &str) -> Lines {
        let req = Request::builder()
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::empty())
            .unwrap();
        let resp = self.send(req).await;
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        Lines {
            stream: resp.into_body().into_data_stream(),
            buf: Vec::new(),
        }
    }
}

struct Lines {
    stream: axum::body::BodyDataStream,
    buf: Vec<u8>,
}

impl Lines {
    /// The next event, or `None` when the stream ended. Fails after 5 s of silence.
    async fn next(&mut self) -> Option<Value> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(serde_json::from_slice(&line).unwrap());
            }
            let chunk = tokio::time::timeout(Duration::from_secs(5), self.stream.next())
                .await
                .expect("no watch event within 5s");
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes.unwrap()),
                None => {
                    assert!(self.buf.is_empty(), "partial line at end of stream");
                    return None;
                }
            }
        }
    }

    /// The next event as (type, name).
    async fn event(&mut self) -> (String, String) {
        let e = self.next().await.expect("watch ended");
        (
            e["type"].as_str().unwrap().to_string(),
            e["object"]["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    }

    /// Asserts nothing arrives for a short while.
    async fn quiet(&mut self) {
        let got = tokio::time::timeout(Duration::from_millis(200), self.stream.next()).await;
        assert!(got.is_err(), "unexpected watch data: {got:?}");
    }
}

fn ev(t: &str, name: &str) -> (String, String) {
    (t.to_string(), name.to_string())
}

const SAS: &str = "/api/v1/namespaces/default/serviceaccounts";
const PODS: &str = "/api/v1/namespaces/default/pods";
const NODES: &str = "/api/v1/nodes";

fn sa(name: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name, "labels": labels}})
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"zone": "a"}}})
}

fn pod(name: &str, app: &str, node: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {"nodeName": node, "containers": [{"name": "main", "image": "busybox"}]},
    })
}

fn rv(obj: &Value) -> u64 {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn names(list: &Value) -> Vec<&str> {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect()
}

fn assert_status(r: &Reply, code: u16, reason: &str) {
    assert_eq!(r.code.as_u16(), code, "{}", r.body);
    assert_eq!(r.body["kind"], "Status", "{}", r.body);
    assert_eq!(r.body["apiVersion"], "v1");
    assert_eq!(r.body["status"], "Failure");
    assert_eq!(r.body["code"], code);
    assert_eq!(r.body["reason"], reason, "{}", r.body);
}

async fn namespaced_crud(hub: Hub) {
    let created = hub.post(SAS, &sa("builder", json!({"team": "a"}))).await;
    assert_eq!(created.code, StatusCode::CREATED, "{}", created.body);
    let obj = &created.body;
    assert_eq!(obj["apiVersion"], "v1");
    assert_eq!(obj["kind"], "ServiceAccount");
    assert_eq!(obj["metadata"]["namespace"], "default");
    assert!(obj["metadata"]["uid"].is_string());
    assert!(obj["metadata"]["creationTimestamp"].is_string());
    let first_rv = rv(obj);

    let got = hub.get(&format!("{SAS}/builder")).await;
    assert_eq!(got.code, StatusCode::OK);
    assert_eq!(got.body, created.body);

    // Replace with a new label: new revision, uid kept.
    let mut changed = got.body.clone();
    changed["metadata"]["labels"]["team"] = json!("b");
    let put = hub.put(&format!("{SAS}/builder"), &changed).await;
    assert_eq!(put.code, StatusCode::OK, "{}", put.body);
    assert!(rv(&put.body) > first_rv);
    assert_eq!(put.body["metadata"]["uid"], obj["metadata"]["uid"]);
    assert_eq!(put.body["metadata"]["labels"]["team"], "b");

    // Writing the same object again changes nothing, not even the revision.
    let same = hub.put(&format!("{SAS}/builder"), &put.body).await;
    assert_eq!(same.code, StatusCode::OK);
    assert_eq!(rv(&same.body), rv(&put.body));
    assert_eq!(hub.store.revision().0, rv(&put.body));

    // Merge patch adds a label and removes another.
    let patched = hub
        .patch(
            &format!("{SAS}/builder"),
            &json!({"metadata": {"labels": {"team": null, "tier": "ci"}}}),
        )
        .await;
    assert_eq!(patched.code, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["metadata"]["labels"], json!({"tier": "ci"}));

    let list = hub.get(SAS).await;
    assert_eq!(list.code, StatusCode::OK);
    assert_eq!(list.body["kind"], "ServiceAccountList");
    assert_eq!(list.body["apiVersion"], "v1");
    assert_eq!(names(&list.body), ["builder"]);
    assert_eq!(list.body["items"][0]["kind"], "ServiceAccount");
    assert_eq!(
        list.body["metadata"]["resourceVersion"],
        hub.store.revision().to_string()
    );

    let deleted = hub.delete(&format!("{SAS}/builder")).await;
    assert_eq!(deleted.code, StatusCode::OK, "{}", deleted.body);
    assert_eq!(deleted.body["kind"], "Status");
    assert_eq!(deleted.body["status"], "Success");
    assert_eq!(deleted.body["details"]["name"], "builder");
    assert_eq!(deleted.body["details"]["kind"], "serviceaccounts");
    assert_eq!(deleted.body["details"]["uid"], obj["metadata"]["uid"]);
    assert_status(&hub.get(&format!("{SAS}/builder")).await, 404, "NotFound");
}

async fn cluster_scoped_crud_and_all_namespace_lists(hub: Hub) {
    let created = hub.post(NODES, &node("edge-1")).await;
    assert_eq!(created.code, StatusCode::CREATED, "{}", created.body);
    assert!(created.body["metadata"].get("namespace").is_none());
    hub.post(NODES, &node("edge-2")).await;

    let got = hub.get(&format!("{NODES}/edge-1")).await;
    assert_eq!(got.body["metadata"]["labels"]["zone"], "a");
    let patched = hub
        .patch(
            &format!("{NODES}/edge-1"),
            &json!({"metadata": {"labels": {"zone": "b"}}}),
        )
        .await;
    assert_eq!(patched.code, StatusCode::OK, "{}", patched.body);
    let list = hub.get(&format!("{NODES}?labelSelector=zone%3Db")).await;
    assert_eq!(list.body["kind"], "NodeList");
    assert_eq!(names(&list.body), ["edge-1"]);

    assert_eq!(
        hub.delete(&format!("{NODES}/edge-1")).await.code,
        StatusCode::OK
    );
    assert_eq!(names(&hub.get(NODES).await.body), ["edge-2"]);

    // Namespaces are cluster-scoped too; the built-in ones exist from the start.
    let nss = hub.get("/api/v1/namespaces").await;
    assert_eq!(names(&nss.body), ["default", "kube-system"]);

    // All-namespaces list of a namespaced kind.
    hub.post(
        "/api/v1/namespaces",
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "other"}}),
    )
    .await;
    hub.post(SAS, &sa("a", json!({}))).await;
    hub.post(
        "/api/v1/namespaces/other/serviceaccounts",
        &sa("b", json!({})),
    )
    .await;
    let all = hub.get("/api/v1/serviceaccounts").await;
    assert_eq!(names(&all.body), ["a", "b"]);
    assert_eq!(all.body["items"][1]["metadata"]["namespace"], "other");
}

async fn yaml_bodies_and_generate_name(hub: Hub) {
    let yaml = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  generateName: worker-\n  labels:\n    app: w\n";
    let r = hub.call("POST", SAS, Some(YAML), yaml).await;
    assert_eq!(r.code, StatusCode::CREATED, "{}", r.body);
    let name = r.body["metadata"]["name"].as_str().unwrap();
    assert_eq!(name.len(), "worker-".len() + 5);
    assert!(name.starts_with("worker-"));
    assert!(
        name[7..]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    );
    assert_eq!(r.body["metadata"]["generateName"], "worker-");
}

async fn list_with_label_and_field_selectors(hub: Hub) {
    for (name, app, node) in [("w1", "web", "n1"), ("w2", "web", "n2"), ("d1", "db", "n1")] {
        let r = hub.post(PODS, &pod(name, app, node)).await;
        assert_eq!(r.code, StatusCode::CREATED, "{}", r.body);
    }
    let q = |s: &str| format!("{PODS}?{s}");
    assert_eq!(
        names(&hub.get(&q("labelSelector=app%3Dweb")).await.body),
        ["w1", "w2"]
    );
    assert_eq!(
        names(&hub.get(&q("labelSelector=app!%3Dweb")).await.body),
        ["d1"]
    );
    assert_eq!(
        names(&hub.get(&q("fieldSelector=spec.nodeName%3Dn1")).await.body),
        ["d1", "w1"]
    );
    assert_eq!(
        names(
            &hub.get(&q(
                "labelSelector=app%3Dweb&fieldSelector=spec.nodeName%3Dn1"
            ))
            .await
            .body
        ),
        ["w1"]
    );
    assert_eq!(
        names(&hub.get(&q("fieldSelector=metadata.name!%3Dw1")).await.body),
        ["d1", "w2"]
    );
    assert_status(
        &hub.get(&q("fieldSelector=spec.replicas%3D1")).await,
        400,
        "BadRequest",
    );
    assert_status(
        &hub.get(&q("labelSelector=app%20in%20(")).await,
        400,
        "BadRequest",
    );
}

async fn status_subresource_is_separate(hub: Hub) {
    let created = hub.post(PODS, &pod("p", "web", "n1")).await;
    assert_eq!(created.code, StatusCode::CREATED, "{}", created.body);

    // PUT /status changes only status.
    let mut body = created.body.clone();
    body["status"] = json!({"phase": "Running"});
    body["metadata"]["labels"]["app"] = json!("ignored");
    let r = hub.put(&format!("{PODS}/p/status"), &body).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Running");
    assert_eq!(r.body["metadata"]["labels"]["app"], "web");

    // PUT of the object keeps the stored status.
    let mut body = r.body.clone();
    body["status"] = json!({"phase": "Failed"});
    body["metadata"]["labels"]["app"] = json!("api");
    let r = hub.put(&format!("{PODS}/p"), &body).await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Running");
    assert_eq!(r.body["metadata"]["labels"]["app"], "api");

    // PATCH /status.
    let r = hub
        .patch(
            &format!("{PODS}/p/status"),
            &json!({"status": {"phase": "Succeeded"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"]["phase"], "Succeeded");
    let r = hub.get(&format!("{PODS}/p/status")).await;
    assert_eq!(r.body["status"]["phase"], "Succeeded");
    let r = hub
        .get(&format!("{PODS}?fieldSelector=status.phase%3DSucceeded"))
        .await;
    assert_eq!(names(&r.body), ["p"]);
}

async fn auth_is_required_on_the_api_only(hub: Hub) {
    let no_header = Request::get(SAS).body(Body::empty()).unwrap();
    let resp = hub.send(no_header).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(body["reason"], "Unauthorized");
    assert_eq!(body["kind"], "Status");

    for bad in ["Bearer wrong", "Basic abc", &format!("Bearer {TOKEN}x")] {
        let req = Request::get("/api/v1/nodes")
            .header(header::AUTHORIZATION, bad)
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            hub.send(req).await.status(),
            StatusCode::UNAUTHORIZED,
            "{bad}"
        );
    }
    // Even unknown API paths ask for credentials first.
    let req = Request::get("/apis/nope/v1/things")
        .body(Body::empty())
        .unwrap();
    assert_eq!(hub.send(req).await.status(), StatusCode::UNAUTHORIZED);

    let req = Request::get("/healthz").body(Body::empty()).unwrap();
    assert_eq!(hub.send(req).await.status(), StatusCode::OK);
    let req = Request::get("/version").body(Body::empty()).unwrap();
    let resp = hub.send(req).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = serde_json::from_slice(
        &axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["gitVersion"], format!("v{}", env!("CARGO_PKG_VERSION")));
    assert!(v["platform"].as_str().unwrap().starts_with("linux/"));
}

async fn not_found_paths_methods_and_objects(hub: Hub) {
    assert_status(&hub.get("/api/v1/widgets").await, 404, "NotFound");
    assert_status(&hub.get("/api/v1/pods/p").await, 404, "NotFound");
    assert_status(&hub.get("/nothing/here").await, 404, "NotFound");
    let r = hub.get(&format!("{SAS}/ghost")).await;
    assert_status(&r, 404, "NotFound");
    assert_eq!(r.body["message"], "serviceaccounts \"ghost\" not found");
    assert_eq!(r.body["details"]["name"], "ghost");
    let r = hub
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await;
    assert_eq!(r.body["details"]["group"], "apps");
    assert_status(&hub.delete(&format!("{SAS}/ghost")).await, 404, "NotFound");
    assert_status(
        &hub.patch(&format!("{SAS}/ghost"), &json!({"metadata": {}}))
            .await,
        404,
        "NotFound",
    );
    // Creating into a namespace that does not exist.
    let r = hub
        .post(
            "/api/v1/namespaces/nowhere/serviceaccounts",
            &sa("x", json!({})),
        )
        .await;
    assert_status(&r, 404, "NotFound");
    assert_eq!(r.body["details"]["kind"], "namespaces");
    // Wrong methods.
    assert_status(
        &hub.post(&format!("{SAS}/x"), &sa("x", json!({}))).await,
        405,
        "MethodNotAllowed",
    );
    assert_status(
        &hub.post("/api/v1/serviceaccounts", &sa("x", json!({})))
            .await,
        405,
        "MethodNotAllowed",
    );
    assert_status(&hub.delete(SAS).await, 405, "MethodNotAllowed");
}

async fn conflicts(hub: Hub) {
    let first = hub.post(SAS, &sa("s", json!({}))).await.body;
    assert_status(
        &hub.post(SAS, &sa("s", json!({}))).await,
        409,
        "AlreadyExists",
    );

    let mut update = first.clone();
    update["metadata"]["labels"] = json!({"v": "1"});
    assert_eq!(
        hub.put(&format!("{SAS}/s"), &update).await.code,
        StatusCode::OK
    );
    // The same body again carries the now stale resourceVersion.
    update["metadata"]["labels"] = json!({"v": "2"});
    let r = hub.put(&format!("{SAS}/s"), &update).await;
    assert_status(&r, 409, "Conflict");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("has been modified")
    );
    // Without a resourceVersion the replace is unconditional.
    update["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    assert_eq!(
        hub.put(&format!("{SAS}/s"), &update).await.code,
        StatusCode::OK
    );

    // A patch carrying a stale resourceVersion is refused too.
    let r = hub
        .patch(
            &format!("{SAS}/s"),
            &json!({"metadata": {"resourceVersion": first["metadata"]["resourceVersion"], "labels": {"v": "3"}}}),
        )
        .await;
    assert_status(&r, 409, "Conflict");

    // Delete with a stale precondition, in the query or in DeleteOptions.
    let stale = rv(&first);
    let r = hub
        .delete(&format!("{SAS}/s?preconditions.resourceVersion={stale}"))
        .await;
    assert_status(&r, 409, "Conflict");
    let opts = json!({"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"resourceVersion": stale.to_string()}});
    let r = hub
        .call("DELETE", &format!("{SAS}/s"), Some(JSON), opts.to_string())
        .await;
    assert_status(&r, 409, "Conflict");
    let current = hub.store.revision().0;
    let r = hub
        .delete(&format!("{SAS}/s?preconditions.resourceVersion={current}"))
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
}

async fn invalid_objects_get_422_with_causes(hub: Hub) {
    let r = hub
        .post(
            SAS,
            &json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {}}),
        )
        .await;
    assert_status(&r, 422, "Invalid");
    assert_eq!(r.body["details"]["kind"], "ServiceAccount");
    assert_eq!(r.body["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(
        r.body["details"]["causes"][0]["reason"],
        "FieldValueRequired"
    );

    let r = hub.post(SAS, &sa("Not_A_DNS_Name", json!({}))).await;
    assert_status(&r, 422, "Invalid");
    let causes = r.body["details"]["causes"].as_array().unwrap();
    assert!(
        causes.iter().any(|c| c["field"] == "metadata.name"),
        "{causes:?}"
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("Not_A_DNS_Name")
    );
}

async fn malformed_bodies_get_400_with_a_position(hub: Hub) {
    let r = hub
        .call(
            "POST",
            SAS,
            Some(JSON),
            "{\n  \"apiVersion\": \"v1\",\n  \"kind\": ,\n}",
        )
        .await;
    assert_status(&r, 400, "BadRequest");
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.contains("line 3"), "{msg}");

    let r = hub
        .call(
            "POST",
            SAS,
            Some(YAML),
            "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: [oops\n",
        )
        .await;
    assert_status(&r, 400, "BadRequest");
    let msg = r.body["message"].as_str().unwrap();
    assert!(msg.contains("YAML") && msg.contains("line 5"), "{msg}");

    let r = hub
        .call("PATCH", &format!("{SAS}/x"), Some(MERGE), "{\"metadata\": ")
        .await;
    assert_status(&r, 400, "BadRequest");
    assert!(r.body["message"].as_str().unwrap().contains("column"));
}

async fn kind_namespace_and_name_must_match_the_url(hub: Hub) {
    let r = hub.post(PODS, &sa("x", json!({}))).await;
    assert_status(&r, 400, "BadRequest");
    assert!(
        r.body["message"].as_str().unwrap().contains("kind"),
        "{}",
        r.body
    );

    let mut other_ns = sa("x", json!({}));
    other_ns["metadata"]["namespace"] = json!("kube-system");
    let r = hub.post(SAS, &other_ns).await;
    assert_status(&r, 400, "BadRequest");
    assert!(r.body["message"].as_str().unwrap().contains("namespace"));

    hub.post(SAS, &sa("x", json!({}))).await;
    let r = hub.put(&format!("{SAS}/x"), &sa("y", json!({}))).await;
    assert_status(&r, 400, "BadRequest");
    let r = hub
        .patch(&format!("{SAS}/x"), &json!({"metadata": {"name": "y"}}))
        .await;
    assert_status(&r, 400, "BadRequest");
}

async fn body_limit_and_patch_types(hub: Hub) {
    let big = sa("x", json!({"pad": "a".repeat(BODY_LIMIT)}));
    let r = hub.post(SAS, &big).await;
    assert_status(&r, 413, "RequestEntityTooLarge");

    hub.post(SAS, &sa("x", json!({}))).await;
    for t in [
        "application/json-patch+json",
        "application/strategic-merge-patch+json",
        JSON,
    ] {
        let r = hub.call("PATCH", &format!("{SAS}/x"), Some(t), "{}").await;
        assert_status(&r, 415, "UnsupportedMediaType");
    }
    let r = hub.call("POST", SAS, Some("text/plain"), "hello").await;
    assert_status(&r, 415, "UnsupportedMediaType");
}

async fn finalizers_hold_deletes(hub: Hub) {
    let mut held = sa("held", json!({}));
    held["metadata"]["finalizers"] = json!(["skiff.io/test"]);
    hub.post(SAS, &held).await;
    let r = hub.delete(&format!("{SAS}/held")).await;
    assert_eq!(r.code, StatusCode::OK);
    assert_eq!(r.body["kind"], "ServiceAccount");
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    // Clearing the finalizers lets it go.
    let r = hub
        .patch(
            &format!("{SAS}/held"),
            &json!({"metadata": {"finalizers": null}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    assert_status(&hub.get(&format!("{SAS}/held")).await, 404, "NotFound");
}

async fn watch_streams_events_from_a_list_and_from_a_revision(hub: Hub) {
    hub.post(SAS, &sa("old", json!({"app": "web"}))).await;
    let mut all = hub.watch(&format!("{SAS}?watch=true")).await;
    let mut web = hub
        .watch(&format!("{SAS}?watch=1&labelSelector=app%3Dweb"))
        .await;
    assert_eq!(all.event().await, ev("ADDED", "old"));
    assert_eq!(web.event().await, ev("ADDED", "old"));
    let mark = hub.store.revision().0;

    hub.post(SAS, &sa("db", json!({"app": "db"}))).await;
    hub.patch(
        &format!("{SAS}/old"),
        &json!({"metadata": {"annotations": {"x": "1"}}}),
    )
    .await;
    hub.delete(&format!("{SAS}/old")).await;
    // Other namespaces and kinds are not part of this watch.
    hub.post(
        "/api/v1/namespaces/kube-system/serviceaccounts",
        &sa("elsewhere", json!({})),
    )
    .await;
    hub.post(NODES, &node("n")).await;

    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(all.event().await);
    }
    assert_eq!(
        seen,
        [
            ev("ADDED", "db"),
            ev("MODIFIED", "old"),
            ev("DELETED", "old")
        ]
    );
    all.quiet().await;
    assert_eq!(web.event().await, ev("MODIFIED", "old"));
    assert_eq!(web.event().await, ev("DELETED", "old"));
    web.quiet().await;

    // Resume from the revision before those writes: the same three, nothing synthetic.
    let mut resumed = hub
        .watch(&format!("{SAS}?watch=true&resourceVersion={mark}"))
        .await;
    let first = resumed.next().await.unwrap();
    assert_eq!(first["object"]["kind"], "ServiceAccount");
    assert_eq!(rv(&first["object"]), mark + 1);
    assert_eq!(first["type"], "ADDED");
    assert_eq!(resumed.event().await, ev("MODIFIED", "old"));
    assert_eq!(resumed.event().await, ev("DELETED", "old"));
    resumed.quiet().await;

    // All-namespaces watch of a namespaced kind.
    let mut every = hub
        .watch(&format!(
            "/api/v1/serviceaccounts?watch=true&resourceVersion={mark}"
        ))
        .await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(every.event().await);
    }
    assert_eq!(got[3], ev("ADDED", "elsewhere"));
}

async fn watch_ends_on_timeout_and_on_shutdown(hub: Hub) {
    let mut timed = hub
        .watch(&format!("{SAS}?watch=true&timeoutSeconds=1"))
        .await;
    let started = std::time::Instant::now();
    assert!(timed.next().await.is_none());
    assert!(started.elapsed() >= Duration::from_millis(900));

    let mut open = hub.watch(&format!("{SAS}?watch=true")).await;
    hub.server.shut_down();
    assert!(open.next().await.is_none());
}

#[tokio::test]
async fn watch_from_compacted_history_is_gone() {
    let hub = hub_on(Arc::new(MemoryStore::with_retention(3)), None).await;
    for i in 0..6 {
        hub.post(SAS, &sa(&format!("s{i}"), json!({}))).await;
    }
    let r = hub
        .get(&format!("{SAS}?watch=true&resourceVersion=1"))
        .await;
    assert_status(&r, 410, "Expired");

    // A watch that is still inside the history works.
    let recent = hub.store.revision().0 - 1;
    let mut w = hub
        .watch(&format!("{SAS}?watch=true&resourceVersion={recent}"))
        .await;
    assert_eq!(w.event().await, ev("ADDED", "s5"));
}

async fn deleting_a_namespace_deletes_its_contents(hub: Hub) {
    let team = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    assert_eq!(
        hub.post("/api/v1/namespaces", &team).await.code,
        StatusCode::CREATED
    );
    let team_sas = "/api/v1/namespaces/team/serviceaccounts";
    hub.post(team_sas, &sa("a", json!({}))).await;
    hub.post(team_sas, &sa("b", json!({}))).await;
    hub.post(SAS, &sa("keep", json!({}))).await;

    let r = hub.delete("/api/v1/namespaces/team").await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["status"], "Success");
    assert_eq!(r.body["details"]["kind"], "namespaces");
    assert_status(&hub.get("/api/v1/namespaces/team").await, 404, "NotFound");
    assert!(names(&hub.get(team_sas).await.body).is_empty());
    assert_eq!(names(&hub.get(SAS).await.body), ["keep"]);
}

async fn a_namespace_waits_for_finalizers_while_terminating(hub: Hub) {
    let team = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    hub.post("/api/v1/namespaces", &team).await;
    let team_sas = "/api/v1/namespaces/team/serviceaccounts";
    let mut held = sa("held", json!({}));
    held["metadata"]["finalizers"] = json!(["skiff.io/test"]);
    hub.post(team_sas, &held).await;
    hub.post(team_sas, &sa("free", json!({}))).await;

    let r = hub.delete("/api/v1/namespaces/team").await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["kind"], "Namespace");
    assert_eq!(r.body["status"]["phase"], "Terminating");
    assert_eq!(names(&hub.get(team_sas).await.body), ["held"]);

    let r = hub.post(team_sas, &sa("new", json!({}))).await;
    assert_status(&r, 403, "Forbidden");
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("being terminated")
    );

    hub.patch(
        &format!("{team_sas}/held"),
        &json!({"metadata": {"finalizers": null}}),
    )
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        if hub.get("/api/v1/namespaces/team").await.code == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "namespace never went away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn bootstrap_resumes_terminating_namespaces(hub: Hub) {
    let team = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}});
    hub.post("/api/v1/namespaces", &team).await;
    hub.post(
        "/api/v1/namespaces/team/serviceaccounts",
        &sa("x", json!({})),
    )
    .await;
    // A previous run marked it and stopped before finishing.
    let r = hub
        .patch(
            "/api/v1/namespaces/team/status",
            &json!({"status": {"phase": "Terminating"}}),
        )
        .await;
    assert_eq!(r.code, StatusCode::OK, "{}", r.body);

    let restarted = ApiServer::new(
        hub.store.clone(),
        AdminToken::from_secret(TOKEN),
        ApiOptions::default(),
    );
    restarted.bootstrap().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while hub.get("/api/v1/namespaces/team").await.code != StatusCode::NOT_FOUND {
        assert!(
            std::time::Instant::now() < deadline,
            "namespace never went away"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        names(
            &hub.get("/api/v1/namespaces/team/serviceaccounts")
                .await
                .body
        )
        .is_empty()
    );
}

/// Reads from a raw HTTP/1.1 connection until the server closes it.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    use tokio::io::AsyncReadExt;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .expect("the server did not close the connection")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

async fn graceful_shutdown_ends_watches_and_finishes_requests(hub: Hub) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    hub.post(SAS, &sa("old", json!({}))).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let serving = {
        let server = hub.server.clone();
        tokio::spawn(async move {
            server
                .serve(listener, async move {
                    let _ = stop_rx.await;
                })
                .await
        })
    };

    let mut watch = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {SAS}?watch=true HTTP/1.1\r\nHost: hub\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
    );
    watch.write_all(request.as_bytes()).await.unwrap();
    // The synthetic ADDED for "old" proves the watch is registered; "live" that it
    // is following.
    let mut seen = Vec::new();
    for name in ["old", "live"] {
        if name == "live" {
            hub.post(SAS, &sa("live", json!({}))).await;
        }
        while !String::from_utf8_lossy(&seen).contains(&format!("\"name\":\"{name}\"")) {
            let mut buf = [0u8; 4096];
            let n = tokio::time::timeout(Duration::from_secs(5), watch.read(&mut buf))
                .await
                .expect("no watch data")
                .unwrap();
            assert!(n > 0, "connection closed early");
            seen.extend_from_slice(&buf[..n]);
        }
    }
    stop_tx.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve did not return after shutdown")
        .unwrap();
    assert!(result.is_ok(), "{result:?}");
    let rest = read_to_close(&mut watch).await;
    let text = format!("{}{rest}", String::from_utf8_lossy(&seen));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    // The chunked body was terminated properly, not cut off.
    assert!(text.ends_with("0\r\n\r\n"), "{text:?}");
    // New connections are refused once the server is down.
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn watch_from_history_the_sqlite_store_compacted_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let options = StoreOptions {
        retained_revisions: 2,
        ..StoreOptions::default()
    };
    let store = Arc::new(SqliteStore::open(dir.path().join("state.db"), options).unwrap());
    let hub = hub_on(store.clone(), Some(dir)).await;
    for i in 0..6 {
        hub.post(SAS, &sa(&format!("s{i}"), json!({}))).await;
    }
    let compacted = store.compact().await.unwrap();
    assert!(compacted.0 > 1, "{compacted:?}");
    let r = hub
        .get(&format!("{SAS}?watch=true&resourceVersion=1"))
        .await;
    assert_status(&r, 410, "Expired");
    let mut w = hub
        .watch(&format!("{SAS}?watch=true&resourceVersion={}", compacted.0))
        .await;
    assert_eq!(w.event().await.0, "ADDED");
}
