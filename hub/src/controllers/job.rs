//! The Job decision: run pods until `completions` have succeeded, at most
//! `parallelism` at a time; fail the Job when failed pods exceed `backoffLimit` or
//! `activeDeadlineSeconds` passes (deleting its active pods); report the status.
//!
//! Pods are matched by owner reference only (no generated `controller-uid` selector).
//! Without `completions`, the first success completes the Job once no pod is active.

use std::sync::Arc;

use skiff_api::resources::{ConditionStatus, Job, JobCondition, JobStatus, Pod, PodPhase};
use skiff_api::{Kind, Object, Time};

use super::common::{Action, controller_ref, is_active, pod_from_template, pods};

pub(crate) fn reconcile(job: &Job, owned: &[Arc<Object>], now: Time) -> Vec<Action> {
    let all = pods(owned);
    let active: Vec<&Pod> = all.iter().copied().filter(|p| is_active(p)).collect();
    let count = |phase| {
        i32::try_from(all.iter().filter(|p| p.phase() == phase).count()).unwrap_or(i32::MAX)
    };
    let succeeded = count(PodPhase::Succeeded);
    let failed = count(PodPhase::Failed);
    let old = job.status.clone().unwrap_or_default();
    let start_time = old.start_time.unwrap_or(now);
    let mut status = JobStatus {
        conditions: old.conditions.clone(),
        start_time: Some(start_time),
        completion_time: old.completion_time,
        active: i32::try_from(active.len()).unwrap_or(i32::MAX),
        succeeded,
        failed,
    };
    let mut actions = Vec::new();
    if !job.is_finished() && job.metadata.deletion_timestamp.is_none() {
        let parallelism = job.spec.parallelism.unwrap_or(1).max(0);
        let deadline_passed = job
            .spec
            .active_deadline_seconds
            .is_some_and(|s| start_time.0 + chrono::Duration::seconds(s) <= now.0);
        let failure = if failed > job.spec.backoff_limit.unwrap_or(6) {
            Some((
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if deadline_passed {
            Some((
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else {
            None
        };
        let complete = match job.spec.completions {
            Some(c) => succeeded >= c,
            None => succeeded > 0 && active.is_empty(),
        };
        if let Some((reason, message)) = failure {
            for p in &active {
                actions.push(Action::Delete(Object::Pod((*p).clone()).key()));
            }
            status.active = 0;
            status
                .conditions
                .push(condition("Failed", reason, message, now));
        } else if complete {
            for p in &active {
                actions.push(Action::Delete(Object::Pod((*p).clone()).key()));
            }
            status.active = 0;
            status.completion_time = Some(now);
            status.conditions.push(condition("Complete", "", "", now));
        } else {
            let remaining = job
                .spec
                .completions
                .map_or(if succeeded > 0 { 0 } else { parallelism }, |c| {
                    c - succeeded
                });
            let want = usize::try_from(parallelism.min(remaining).max(0)).unwrap_or(0);
            if active.len() < want {
                let owner = controller_ref(Kind::Job, &job.metadata);
                for _ in active.len()..want {
                    let mut pod = pod_from_template(
                        &job.spec.template,
                        job.metadata.namespace_or_empty(),
                        &job.metadata.name,
                        owner.clone(),
                    );
                    pod.metadata
                        .labels
                        .insert("job-name".into(), job.metadata.name.clone());
                    actions.push(Action::CreatePod(Box::new(pod)));
                }
            } else {
                // Too many running (parallelism lowered): stop the newest.
                let mut extra: Vec<&&Pod> = active.iter().collect();
                extra.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp));
                for p in extra.into_iter().take(active.len() - want) {
                    actions.push(Action::Delete(Object::Pod((**p).clone()).key()));
                }
            }
        }
    }
    if job.status.as_ref() != Some(&status) {
        let mut updated = job.clone();
        updated.status = Some(status);
        actions.push(Action::SetStatus(Box::new(Object::Job(updated))));
    }
    actions
}

fn condition(type_: &str, reason: &str, message: &str, now: Time) -> JobCondition {
    JobCondition {
        type_: type_.into(),
        status: ConditionStatus::True,
        last_probe_time: Some(now),
        last_transition_time: Some(now),
        reason: (!reason.is_empty()).then(|| reason.into()),
        message: (!message.is_empty()).then(|| message.into()),
    }
}

#[cfg(test)]
mod tests {
    use skiff_api::resources::JobSpec;
    use skiff_api::resources::PodPhase::{Failed, Running, Succeeded};

    use super::super::common::fixtures::*;
    use super::*;

    fn job(completions: Option<i32>, parallelism: i32, backoff: i32) -> Job {
        Job {
            metadata: meta("batch", "job-uid"),
            spec: JobSpec {
                completions,
                parallelism: Some(parallelism),
                backoff_limit: Some(backoff),
                template: template("busybox"),
                ..JobSpec::default()
            },
            status: None,
        }
    }

    fn outcome(actions: &[Action]) -> (usize, usize, Option<JobStatus>) {
        let creates = actions
            .iter()
            .filter(|a| matches!(a, Action::CreatePod(_)))
            .count();
        let deletes = actions
            .iter()
            .filter(|a| matches!(a, Action::Delete(_)))
            .count();
        let status = actions.iter().find_map(|a| match a {
            Action::SetStatus(o) => match o.as_ref() {
                Object::Job(j) => j.status.clone(),
                _ => None,
            },
            _ => None,
        });
        (creates, deletes, status)
    }

    fn cond(st: &JobStatus) -> Option<(String, Option<String>)> {
        st.conditions
            .last()
            .map(|c| (c.type_.clone(), c.reason.clone()))
    }

    #[test]
    fn runs_to_completion_or_failure() {
        let o = controller_ref(Kind::Job, &job(None, 1, 0).metadata);
        let p = |n: &str, phase| pod(n, o.clone(), "n1", phase, false, 1);
        // (case, job, pods, creates, deletes, active, succeeded, failed, condition)
        type Case = (
            &'static str,
            Job,
            Vec<Arc<Object>>,
            usize,
            usize,
            i32,
            i32,
            i32,
            Option<(&'static str, Option<&'static str>)>,
        );
        let cases: Vec<Case> = vec![
            (
                "start: parallelism 2 of 3",
                job(Some(3), 2, 6),
                vec![],
                2,
                0,
                0,
                0,
                0,
                None,
            ),
            (
                "one done, one left to start",
                job(Some(3), 2, 6),
                vec![p("a", Succeeded), p("b", Running)],
                1,
                0,
                1,
                1,
                0,
                None,
            ),
            (
                "last one running",
                job(Some(2), 2, 6),
                vec![p("a", Succeeded), p("b", Running)],
                0,
                0,
                1,
                1,
                0,
                None,
            ),
            (
                "complete",
                job(Some(2), 2, 6),
                vec![p("a", Succeeded), p("b", Succeeded)],
                0,
                0,
                0,
                2,
                0,
                Some(("Complete", None)),
            ),
            (
                "failure retried within backoff",
                job(Some(1), 1, 1),
                vec![p("a", Failed)],
                1,
                0,
                0,
                0,
                1,
                None,
            ),
            (
                "backoff exceeded",
                job(Some(1), 1, 1),
                vec![p("a", Failed), p("b", Failed), p("c", Running)],
                0,
                1,
                0,
                0,
                2,
                Some(("Failed", Some("BackoffLimitExceeded"))),
            ),
            (
                "no completions: first success ends it",
                job(None, 1, 6),
                vec![p("a", Succeeded)],
                0,
                0,
                0,
                1,
                0,
                Some(("Complete", None)),
            ),
        ];
        for (name, j, owned, creates, deletes, active, succeeded, failed, want_cond) in cases {
            let (c, d, st) = outcome(&reconcile(&j, &owned, at(100)));
            let st = st.expect("first pass writes status");
            assert_eq!((c, d), (creates, deletes), "{name}");
            assert_eq!(
                (st.active, st.succeeded, st.failed),
                (active, succeeded, failed),
                "{name}"
            );
            assert_eq!(st.start_time, Some(at(100)), "{name}");
            let want = want_cond.map(|(t, r)| (t.to_string(), r.map(String::from)));
            assert_eq!(cond(&st), want, "{name}");
            assert_eq!(
                st.completion_time.is_some(),
                want_cond.is_some_and(|c| c.0 == "Complete"),
                "{name}"
            );
        }
    }

    #[test]
    fn deadline_fails_the_job_and_finished_jobs_stay_put() {
        let mut j = job(Some(1), 1, 6);
        j.spec.active_deadline_seconds = Some(30);
        j.status = Some(JobStatus {
            start_time: Some(at(0)),
            ..JobStatus::default()
        });
        let o = controller_ref(Kind::Job, &j.metadata);
        let running = vec![pod("a", o, "n1", Running, false, 1)];
        let (c, d, st) = outcome(&reconcile(&j, &running, at(10)));
        assert_eq!((c, d), (0, 0));
        assert_eq!(st.unwrap().active, 1);
        let actions = reconcile(&j, &running, at(31));
        let (c, d, st) = outcome(&actions);
        assert_eq!((c, d), (0, 1));
        let st = st.unwrap();
        assert_eq!(
            cond(&st),
            Some(("Failed".into(), Some("DeadlineExceeded".into())))
        );
        // Once finished, nothing more is started.
        j.status = Some(st);
        let (c, d, _) = outcome(&reconcile(&j, &[], at(40)));
        assert_eq!((c, d), (0, 0));
    }
}
