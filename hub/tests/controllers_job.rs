//! The Job controller against a real SQLite store: pods run until enough succeed.

mod controllers_support;

use controllers_support::*;
use skiff_api::resources::{Job, JobSpec, PodPhase, RestartPolicy};
use skiff_api::{Kind, Object};
use skiff_hub::store::Store;

#[test]
fn job_with_two_completions_finishes_when_pods_succeed() {
    run(|| async {
        let h = Harness::start();
        let mut tpl = template("batch", "busybox");
        tpl.spec.restart_policy = Some(RestartPolicy::Never);
        h.store
            .create(Object::Job(Job {
                metadata: meta("batch"),
                spec: JobSpec {
                    completions: Some(2),
                    parallelism: Some(1),
                    template: tpl,
                    ..JobSpec::default()
                },
                status: None,
            }))
            .await
            .unwrap();
        for round in 0..2 {
            let pod = h
                .eventually("one active pod", |h| {
                    let p = h.pods_of(Kind::Job, "batch");
                    (p.len() == 1).then(|| p[0].clone())
                })
                .await;
            assert!(pod.metadata.name.starts_with("batch-"));
            assert_eq!(pod.metadata.labels["job-name"], "batch");
            h.set_pod_status(&pod.metadata.name, PodPhase::Succeeded, false)
                .await;
            if round == 0 {
                h.eventually("succeeded 1", |h| {
                    let Object::Job(j) = h.get(Kind::Job, "batch")?.as_ref().clone() else {
                        return None;
                    };
                    (j.status?.succeeded == 1).then_some(())
                })
                .await;
            }
        }
        let job = h
            .eventually("job complete", |h| {
                let Object::Job(j) = h.get(Kind::Job, "batch")?.as_ref().clone() else {
                    return None;
                };
                j.is_finished().then_some(j)
            })
            .await;
        let st = job.status.unwrap();
        assert_eq!((st.succeeded, st.active, st.failed), (2, 0, 0));
        assert!(st.completion_time.is_some() && st.start_time.is_some());
        assert_eq!(st.conditions[0].type_, "Complete");
        assert_eq!(
            h.list(Kind::Pod).len(),
            2,
            "no pod started after completion"
        );
        h.stop().await;
    });
}
