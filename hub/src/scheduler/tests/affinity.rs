//! Inter-pod affinity and anti-affinity: co-location and separation by hostname and
//! zone, the symmetric rule, the self-matching first pod, namespaces, equality and
//! set-based selectors, and the preferred forms.

use super::*;

const HOST: &str = "kubernetes.io/hostname";
const ZONE: &str = "topology.kubernetes.io/zone";

/// n1, n2 in zone a; n3 in zone b; n4 without a zone label.
fn zoned_nodes() -> Vec<Node> {
    vec![
        node("n1").label(ZONE, "a"),
        node("n2").label(ZONE, "a"),
        node("n3").label(ZONE, "b"),
        node("n4"),
    ]
}

/// A pod labelled `app: <app>` with the given `affinity:` body.
fn with_affinity(name: &str, app: &str, affinity: &str) -> Pod {
    pod(&format!(
        "metadata: {{name: {name}, labels: {{app: {app}}}}}\nspec:\n  affinity:\n{}",
        affinity
            .lines()
            .map(|l| format!("    {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ))
}

fn required(kind: &str, selector: &str, key: &str) -> String {
    format!(
        "{kind}:\n  requiredDuringSchedulingIgnoredDuringExecution:\n  - labelSelector: {selector}\n    topologyKey: {key}"
    )
}

#[test]
fn required_affinity_and_anti_affinity_by_hostname_and_zone() {
    struct Case {
        name: &'static str,
        /// `(pod name, app label, node)` of the pods already running.
        existing: &'static [(&'static str, &'static str, &'static str)],
        affinity: String,
        allowed: &'static [&'static str],
    }
    let cache_selector = "{matchLabels: {app: cache}}";
    let cases = [
        Case {
            name: "co-locate on the cache's node",
            existing: &[("cache-0", "cache", "n2")],
            affinity: required("podAffinity", cache_selector, HOST),
            allowed: &["n2"],
        },
        Case {
            name: "co-locate in the cache's zone",
            existing: &[("cache-0", "cache", "n1")],
            affinity: required("podAffinity", cache_selector, ZONE),
            allowed: &["n1", "n2"],
        },
        Case {
            name: "stay off the cache's node",
            existing: &[("cache-0", "cache", "n1")],
            affinity: required("podAntiAffinity", cache_selector, HOST),
            allowed: &["n2", "n3", "n4"],
        },
        Case {
            name: "stay out of the cache's zone (a node without the key is fine)",
            existing: &[("cache-0", "cache", "n1")],
            affinity: required("podAntiAffinity", cache_selector, ZONE),
            allowed: &["n3", "n4"],
        },
        Case {
            name: "set-based selector: In",
            existing: &[("cache-0", "cache", "n3"), ("db-0", "db", "n1")],
            affinity: required(
                "podAffinity",
                "{matchExpressions: [{key: app, operator: In, values: [cache, queue]}]}",
                HOST,
            ),
            allowed: &["n3"],
        },
        Case {
            name: "set-based selector: NotIn repels every other app",
            existing: &[("cache-0", "cache", "n3"), ("db-0", "db", "n1")],
            affinity: required(
                "podAntiAffinity",
                "{matchExpressions: [{key: app, operator: NotIn, values: [cache]}]}",
                HOST,
            ),
            allowed: &["n2", "n3", "n4"],
        },
        Case {
            name: "set-based selector: Exists",
            existing: &[("db-0", "db", "n4")],
            affinity: required(
                "podAffinity",
                "{matchExpressions: [{key: app, operator: Exists}]}",
                HOST,
            ),
            allowed: &["n4"],
        },
        Case {
            name: "set-based selector: DoesNotExist matches pods without the label",
            existing: &[("db-0", "db", "n4")],
            affinity: required(
                "podAntiAffinity",
                "{matchExpressions: [{key: tier, operator: DoesNotExist}]}",
                HOST,
            ),
            allowed: &["n1", "n2", "n3"],
        },
    ];
    for case in cases {
        let existing = case
            .existing
            .iter()
            .map(|(name, app, node)| labelled(name, &[("app", app)], Some(node)))
            .collect();
        let mut c = Cluster::new(zoned_nodes(), existing);
        let p = with_affinity("p", "web", &case.affinity);
        assert_feasible(&mut c, &p, case.allowed, case.name);
    }
}

#[test]
fn unsatisfiable_affinity_is_explained() {
    // The cache is in zone b only on a node the pod may not use... and no web pod
    // matches: affinity to app=web where nothing runs and the pod is not web itself.
    let mut c = Cluster::new(
        zoned_nodes(),
        vec![labelled("db-0", &[("app", "db")], Some("n1"))],
    );
    let p = with_affinity(
        "p",
        "api",
        &required("podAffinity", "{matchLabels: {app: web}}", HOST),
    );
    // db-0 matches nothing: no pod matches the term anywhere, and the pod is not
    // `app: web` itself, so it cannot be the first of the group.
    assert_eq!(
        c.schedule(&p),
        Err("0/4 nodes are available: 4 node(s) didn't match pod affinity rules.".into())
    );
    let anti = with_affinity(
        "p",
        "api",
        &required("podAntiAffinity", "{matchLabels: {app: db}}", ZONE),
    );
    let mut only_a = Cluster::new(
        vec![node("n1").label(ZONE, "a"), node("n2").label(ZONE, "a")],
        vec![labelled("db-0", &[("app", "db")], Some("n1"))],
    );
    assert_eq!(
        only_a.schedule(&anti),
        Err("0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules.".into())
    );
}

#[test]
fn a_pod_matching_its_own_affinity_may_be_the_first_of_its_group() {
    let term = required("podAffinity", "{matchLabels: {app: web}}", ZONE);
    let mut c = Cluster::new(zoned_nodes(), vec![]);
    // No web pod yet: the first may go to any node that has the topology key.
    assert_feasible(
        &mut c,
        &with_affinity("web-0", "web", &term),
        &["n1", "n2", "n3"],
        "first",
    );
    // Once placed, the rest follow it into its zone.
    let first = c.place(&with_affinity("web-0", "web", &term));
    let zone = if first == "n3" {
        vec!["n3"]
    } else {
        vec!["n1", "n2"]
    };
    for i in 1..5 {
        let n = c.place(&with_affinity(&format!("web-{i}"), "web", &term));
        assert!(
            zone.contains(&n.as_str()),
            "web-{i} on {n}, first on {first}"
        );
    }
    // A pod not matching its own term gets no such exception.
    let mut c = Cluster::new(zoned_nodes(), vec![]);
    assert!(c.schedule(&with_affinity("api", "api", &term)).is_err());
}

#[test]
fn existing_pods_anti_affinity_is_symmetric() {
    // A pod that wants no `app: web` near it, on n1.
    let mut loner = with_affinity(
        "loner",
        "batch",
        &required("podAntiAffinity", "{matchLabels: {app: web}}", HOST),
    );
    loner.spec.node_name = Some("n1".into());
    let mut c = Cluster::new(vec![node("n1"), node("n2")], vec![loner.clone()]);
    // A web pod with no rules of its own still stays off n1.
    let web = labelled("web", &[("app", "web")], None);
    assert_feasible(&mut c, &web, &["n2"], "symmetric anti-affinity");
    let mut one = Cluster::new(vec![node("n1")], vec![loner.clone()]);
    assert_eq!(
        one.schedule(&web),
        Err(
            "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."
                .into()
        )
    );
    // Other pods are not affected.
    assert_eq!(
        one.schedule(&labelled("db", &[("app", "db")], None)),
        Ok("n1".into())
    );
    // The rule goes with its pod.
    one.cache.remove_pod(&Uid("uid-loner".into()));
    assert_eq!(one.schedule(&web), Ok("n1".into()));
    // In another namespace the term (which covers its own namespace) does not apply.
    let mut c = Cluster::new(vec![node("n1")], vec![loner]);
    let mut elsewhere = web.clone();
    elsewhere.metadata.namespace = Some("other".into());
    assert_eq!(c.schedule(&elsewhere), Ok("n1".into()));
}

#[test]
fn replicas_with_anti_affinity_take_one_node_each() {
    let term = required("podAntiAffinity", "{matchLabels: {app: web}}", HOST);
    let mut c = Cluster::new(vec![node("n1"), node("n2"), node("n3")], vec![]);
    let mut used: Vec<String> = (0..3)
        .map(|i| c.place(&with_affinity(&format!("web-{i}"), "web", &term)))
        .collect();
    used.sort();
    assert_eq!(used, ["n1", "n2", "n3"]);
    assert_eq!(
        c.schedule(&with_affinity("web-3", "web", &term)),
        Err("0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.".into())
    );
}

#[test]
fn web_next_to_cache_but_apart_from_each_other() {
    // The Kubernetes documentation's example: caches spread one per node, web servers
    // each next to a cache and never two on one node.
    let cache_rules = required("podAntiAffinity", "{matchLabels: {app: cache}}", HOST);
    let web_rules = format!(
        "{}\n{}",
        required("podAffinity", "{matchLabels: {app: cache}}", HOST),
        required("podAntiAffinity", "{matchLabels: {app: web}}", HOST)
    );
    let mut c = Cluster::new(vec![node("n1"), node("n2"), node("n3"), node("n4")], vec![]);
    let mut caches: Vec<String> = (0..3)
        .map(|i| c.place(&with_affinity(&format!("cache-{i}"), "cache", &cache_rules)))
        .collect();
    let mut webs: Vec<String> = (0..3)
        .map(|i| c.place(&with_affinity(&format!("web-{i}"), "web", &web_rules)))
        .collect();
    caches.sort();
    webs.sort();
    assert_eq!(caches, webs, "each web server shares a node with a cache");
    webs.dedup();
    assert_eq!(webs.len(), 3, "no two web servers share a node");
    assert!(
        c.schedule(&with_affinity("web-3", "web", &web_rules))
            .is_err()
    );
}

#[test]
fn affinity_namespaces() {
    let existing = || {
        let mut p = labelled("cache", &[("app", "cache")], Some("n2"));
        p.metadata.namespace = Some("infra".into());
        vec![p]
    };
    let term = |extra: &str| {
        format!(
            "podAffinity:\n  requiredDuringSchedulingIgnoredDuringExecution:\n  - labelSelector: {{matchLabels: {{app: cache}}}}\n    topologyKey: {HOST}\n{extra}"
        )
    };
    // By default the term covers the pod's own namespace only: the cache in `infra`
    // does not count, and the pod (not a cache) cannot be first of its group.
    let mut c = Cluster::new(vec![node("n1"), node("n2")], existing());
    assert!(c.schedule(&with_affinity("p", "web", &term(""))).is_err());
    // Listing the namespace makes it count.
    let mut c = Cluster::new(vec![node("n1"), node("n2")], existing());
    assert_feasible(
        &mut c,
        &with_affinity("p", "web", &term("    namespaces: [infra]")),
        &["n2"],
        "namespaces",
    );
    // So does a namespace selector matching the namespace's labels...
    let mut c = Cluster::new(vec![node("n1"), node("n2")], existing());
    c.namespace("infra", &[("team", "platform")]);
    let by_labels = term("    namespaceSelector: {matchLabels: {team: platform}}");
    assert_feasible(
        &mut c,
        &with_affinity("p", "web", &by_labels),
        &["n2"],
        "namespaceSelector",
    );
    // ... and an empty namespace selector covers every namespace.
    let mut c = Cluster::new(vec![node("n1"), node("n2")], existing());
    assert_feasible(
        &mut c,
        &with_affinity("p", "web", &term("    namespaceSelector: {}")),
        &["n2"],
        "all namespaces",
    );
    // A selector that matches no namespace covers none.
    let mut c = Cluster::new(vec![node("n1"), node("n2")], existing());
    c.namespace("infra", &[("team", "data")]);
    assert!(c.schedule(&with_affinity("p", "web", &by_labels)).is_err());
}

#[test]
fn preferred_pod_affinity_and_anti_affinity() {
    let preferred = |kind: &str, weight: i32, app: &str| {
        format!(
            "{kind}:\n  preferredDuringSchedulingIgnoredDuringExecution:\n  - weight: {weight}\n    podAffinityTerm:\n      labelSelector: {{matchLabels: {{app: {app}}}}}\n      topologyKey: {HOST}"
        )
    };
    let existing = || {
        vec![
            labelled("cache-0", &[("app", "cache")], Some("n1")),
            labelled("db-0", &[("app", "db")], Some("n2")),
        ]
    };
    let nodes = || vec![node("n1"), node("n2"), node("n3")];
    let mut c = Cluster::new(nodes(), existing());
    assert_prefers(
        &mut c,
        &with_affinity("p", "web", &preferred("podAffinity", 50, "cache")),
        &["n1"],
        "prefer the cache's node",
    );
    assert_prefers(
        &mut c,
        &with_affinity("p", "web", &preferred("podAntiAffinity", 50, "cache")),
        &["n3"],
        "prefer away from the cache (n2 is busier)",
    );
    // Preferences never block: with only the cache's node left, it is used.
    let mut only = Cluster::new(
        vec![node("n1")],
        vec![labelled("cache-0", &[("app", "cache")], Some("n1"))],
    );
    assert_eq!(
        only.schedule(&with_affinity(
            "p",
            "web",
            &preferred("podAntiAffinity", 100, "cache")
        )),
        Ok("n1".into())
    );
    // Existing pods' preferences apply to the incoming pod too (symmetry).
    let mut shy = with_affinity("shy", "shy", &preferred("podAntiAffinity", 100, "web"));
    shy.spec.node_name = Some("n3".into());
    let mut c = Cluster::new(nodes(), vec![shy]);
    assert_prefers(
        &mut c,
        &labelled("web", &[("app", "web")], None),
        &["n1", "n2"],
        "existing pod's preferred anti-affinity",
    );
    // And an existing pod's required affinity attracts matching pods (hard weight).
    let mut needy = with_affinity(
        "needy",
        "needy",
        &required("podAffinity", "{matchLabels: {app: web}}", HOST),
    );
    needy.spec.node_name = Some("n2".into());
    let mut c = Cluster::new(nodes(), vec![needy]);
    assert_prefers(
        &mut c,
        &labelled("web", &[("app", "web")], None),
        &["n2"],
        "existing pod's required affinity",
    );
}
