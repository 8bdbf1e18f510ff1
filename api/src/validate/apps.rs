//! Workload controllers: Deployment, ReplicaSet, StatefulSet, DaemonSet,
//! ReplicationController, Job and CronJob (`pkg/apis/apps/validation`,
//! `pkg/apis/batch/validation`).

use serde_json::Value;

use super::field::{Errs, IntOrStr, join, peek};
use super::meta::{self, NameRule};
use super::names;
use super::pod::{self, PodContext};
use crate::cron;

/// The CronJob name leaves room for the 11-character suffix of the Jobs it creates.
const CRON_JOB_NAME_MAX: usize = 52;

/// Checks a Deployment.
pub(crate) fn validate_deployment(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = spec_of(e, obj) else {
        return;
    };
    replica_set_like_spec(e, spec, "deployment");
    if let Some(strategy) = e.obj(spec, "spec", "strategy") {
        validate_deployment_strategy(e, strategy);
    }
    nonnegative(e, spec, "spec", "minReadySeconds");
    nonnegative(e, spec, "spec", "revisionHistoryLimit");
    if let Some(deadline) = e.int(spec, "spec", "progressDeadlineSeconds") {
        e.nonnegative("spec.progressDeadlineSeconds", deadline);
        let min_ready = spec
            .get("minReadySeconds")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if deadline <= min_ready {
            e.invalid(
                "spec.progressDeadlineSeconds",
                deadline,
                "must be greater than minReadySeconds",
            );
        }
    }
}

/// Checks a ReplicaSet.
pub(crate) fn validate_replica_set(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = spec_of(e, obj) else {
        return;
    };
    replica_set_like_spec(e, spec, "deployment");
    nonnegative(e, spec, "spec", "minReadySeconds");
}

/// `spec` as an object; a missing spec is reported as a missing selector, the first thing
/// every controller needs.
fn spec_of<'v>(e: &mut Errs, obj: &'v Value) -> Option<&'v Value> {
    let spec = e.obj(obj, "", "spec");
    if spec.is_none() && obj.get("spec").is_none_or(Value::is_null) {
        e.required("spec.selector", "");
    }
    spec
}

fn nonnegative(e: &mut Errs, parent: &Value, path: &str, field: &str) {
    if let Some(v) = e.int(parent, path, field) {
        e.nonnegative(&join(path, field), v);
    }
}

/// The replicas, selector and template rules Deployments and ReplicaSets share. `word` is
/// the kind upstream names in the empty-selector message ("deployment" for both).
fn replica_set_like_spec(e: &mut Errs, spec: &Value, word: &str) {
    nonnegative(e, spec, "spec", "replicas");
    let selector = required_selector(e, spec, word);
    check_template_matches(e, spec, selector);
    pod::validate_template(e, spec, "spec", "template", &PodContext::default());
    template_restart_always(e, spec, "ReplicaSet");
}

/// `spec.selector`: required, well-formed and not empty. Returns it when present.
fn required_selector<'v>(e: &mut Errs, spec: &'v Value, word: &str) -> Option<&'v Value> {
    let Some(selector) = e.obj(spec, "spec", "selector") else {
        e.required("spec.selector", "");
        return None;
    };
    meta::validate_label_selector(e, spec, "spec", "selector");
    if meta::selector_is_empty(selector) {
        e.invalid(
            "spec.selector",
            selector,
            &format!("empty selector is invalid for {word}"),
        );
    }
    Some(selector)
}

/// A non-empty selector must select the template's labels.
fn check_template_matches(e: &mut Errs, spec: &Value, selector: Option<&Value>) {
    let Some(selector) = selector else {
        return;
    };
    if meta::selector_is_empty(selector) {
        return;
    }
    let labels = peek(spec, &["template", "metadata", "labels"]);
    if !meta::selector_matches(selector, labels) {
        e.invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        );
    }
}

/// Long-running controllers restart their pods always and give them no deadline.
fn template_restart_always(e: &mut Errs, spec: &Value, kind: &str) {
    let Some(tspec) = peek(spec, &["template", "spec"]) else {
        return;
    };
    let policy = tspec
        .get("restartPolicy")
        .and_then(Value::as_str)
        .unwrap_or("");
    if policy != "Always" {
        e.not_supported("spec.template.spec.restartPolicy", policy, &["Always"]);
    }
    if tspec
        .get("activeDeadlineSeconds")
        .is_some_and(|v| !v.is_null())
    {
        e.forbidden(
            "spec.template.spec.activeDeadlineSeconds",
            &format!("activeDeadlineSeconds in {kind} is not Supported"),
        );
    }
}

fn validate_deployment_strategy(e: &mut Errs, strategy: &Value) {
    let path = "spec.strategy";
    let rolling = e.obj(strategy, path, "rollingUpdate");
    match e.str_or_empty(strategy, path, "type") {
        "Recreate" => {
            if rolling.is_some() {
                e.forbidden(
                    "spec.strategy.rollingUpdate",
                    "may not be specified when strategy `type` is 'Recreate'",
                );
            }
        }
        "RollingUpdate" => match rolling {
            None => e.required(
                "spec.strategy.rollingUpdate",
                "this should be defaulted and never be nil",
            ),
            Some(ru) => {
                let ru_path = "spec.strategy.rollingUpdate";
                let unavailable = int_or_percent(e, ru, ru_path, "maxUnavailable");
                let surge = int_or_percent(e, ru, ru_path, "maxSurge");
                if unavailable.value() == 0 && surge.value() == 0 {
                    e.invalid(
                        "spec.strategy.rollingUpdate.maxUnavailable",
                        unavailable.shown(),
                        "may not be 0 when `maxSurge` is 0",
                    );
                }
                not_more_than_100(
                    e,
                    &unavailable,
                    "spec.strategy.rollingUpdate.maxUnavailable",
                );
            }
        },
        _ => e.not_supported(path, strategy, &["Recreate", "RollingUpdate"]),
    }
}

/// An int-or-percent field as read (absent reads as the integer 0, Go's zero value).
struct IntOrPercent(Value);

impl IntOrPercent {
    /// The number upstream compares: the percentage or the integer (0 when unparseable).
    fn value(&self) -> i64 {
        match &self.0 {
            Value::String(s) => s.trim_end_matches('%').parse().unwrap_or(0),
            v => v.as_i64().unwrap_or(0),
        }
    }

    fn percent(&self) -> Option<i64> {
        match &self.0 {
            Value::String(s) if names::percent(s).is_empty() => {
                s.trim_end_matches('%').parse().ok()
            }
            _ => None,
        }
    }

    fn shown(&self) -> &Value {
        &self.0
    }
}

/// Reads and checks an int-or-percent field: a non-negative integer or `N%`.
fn int_or_percent(e: &mut Errs, parent: &Value, path: &str, field: &str) -> IntOrPercent {
    let fpath = join(path, field);
    match e.int_or_str(parent, path, field) {
        Some(IntOrStr::Str(s)) => {
            for msg in names::percent(s) {
                e.invalid(&fpath, s, &msg);
            }
            IntOrPercent(Value::String(s.to_owned()))
        }
        Some(IntOrStr::Int(i)) => {
            e.nonnegative(&fpath, i);
            IntOrPercent(Value::from(i))
        }
        None => IntOrPercent(Value::from(0)),
    }
}

fn not_more_than_100(e: &mut Errs, v: &IntOrPercent, path: &str) {
    if v.percent().is_some_and(|p| p > 100) {
        e.invalid(path, v.shown(), "must not be greater than 100%");
    }
}

/// Checks a StatefulSet.
pub(crate) fn validate_stateful_set(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Label);
    let Some(spec) = spec_of(e, obj) else {
        return;
    };
    match e.str_or_empty(spec, "spec", "podManagementPolicy") {
        "" => e.required("spec.podManagementPolicy", ""),
        "OrderedReady" | "Parallel" => {}
        other => e.invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        ),
    }
    validate_stateful_set_strategy(e, spec);
    if let Some(policy) = e.obj(spec, "spec", "persistentVolumeClaimRetentionPolicy") {
        let ppath = "spec.persistentVolumeClaimRetentionPolicy";
        for f in ["whenDeleted", "whenScaled"] {
            let v = e.str_or_empty(policy, ppath, f);
            if v != "Retain" && v != "Delete" {
                e.not_supported(&join(ppath, f), v, &["Retain", "Delete"]);
            }
        }
    }
    nonnegative(e, spec, "spec", "replicas");
    nonnegative(e, spec, "spec", "minReadySeconds");
    if let Some(ordinals) = e.obj(spec, "spec", "ordinals")
        && let Some(start) = e.int(ordinals, "spec.ordinals", "start")
    {
        e.nonnegative("spec.ordinals.start", start);
    }
    let selector = required_selector(e, spec, "statefulset");
    check_template_matches(e, spec, selector);
    // Claim templates supply volumes the pod spec mounts without declaring.
    let mut claims = Vec::new();
    for (cpath, claim) in e.objs(spec, "spec", "volumeClaimTemplates") {
        if let Some(name) = peek(claim, &["metadata", "name"]).and_then(Value::as_str) {
            claims.push(name.to_owned());
        } else {
            e.required(&join(&cpath, "metadata.name"), "");
        }
    }
    let ctx = PodContext {
        is_pod: false,
        extra_volumes: claims,
    };
    pod::validate_template(e, spec, "spec", "template", &ctx);
    template_restart_always(e, spec, "StatefulSet");
}

fn validate_stateful_set_strategy(e: &mut Errs, spec: &Value) {
    let strategy = e.obj(spec, "spec", "updateStrategy");
    let spath = "spec.updateStrategy";
    let kind = strategy.map_or("", |s| e.str_or_empty(s, spath, "type"));
    let rolling = strategy.and_then(|s| e.obj(s, spath, "rollingUpdate"));
    match kind {
        "" => e.required(spath, ""),
        "OnDelete" => {
            if let Some(ru) = rolling {
                e.invalid(
                    "spec.updateStrategy.rollingUpdate",
                    ru,
                    "only allowed for updateStrategy 'RollingUpdate'",
                );
            }
        }
        "RollingUpdate" => {
            if let Some(ru) = rolling {
                let rpath = "spec.updateStrategy.rollingUpdate";
                nonnegative(e, ru, rpath, "partition");
                if ru.get("maxUnavailable").is_some_and(|v| !v.is_null()) {
                    let mu = int_or_percent(e, ru, rpath, "maxUnavailable");
                    let mpath = "spec.updateStrategy.rollingUpdate.maxUnavailable";
                    if mu.value() == 0 {
                        e.invalid(mpath, mu.shown(), "cannot be 0");
                    }
                    not_more_than_100(e, &mu, mpath);
                }
            }
        }
        _ => e.invalid(
            spath,
            strategy.unwrap_or(&Value::Null),
            "must be 'RollingUpdate' or 'OnDelete'",
        ),
    }
}

/// Checks a DaemonSet.
pub(crate) fn validate_daemon_set(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = spec_of(e, obj) else {
        return;
    };
    meta::validate_label_selector(e, spec, "spec", "selector");
    let selector = e.obj(spec, "spec", "selector");
    // A missing selector selects nothing, so it cannot match the template either.
    let labels = peek(spec, &["template", "metadata", "labels"]);
    if !selector.is_some_and(|s| meta::selector_matches(s, labels)) {
        e.invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        );
    }
    if let Some(s) = selector
        && meta::selector_is_empty(s)
    {
        e.invalid(
            "spec.selector",
            s,
            "empty selector is invalid for daemonset",
        );
    }
    pod::validate_template(e, spec, "spec", "template", &PodContext::default());
    template_restart_always(e, spec, "DaemonSet");
    nonnegative(e, spec, "spec", "minReadySeconds");
    nonnegative(e, spec, "spec", "templateGeneration");
    validate_daemon_set_strategy(e, spec);
    nonnegative(e, spec, "spec", "revisionHistoryLimit");
}

fn validate_daemon_set_strategy(e: &mut Errs, spec: &Value) {
    let spath = "spec.updateStrategy";
    let strategy = e.obj(spec, "spec", "updateStrategy");
    let kind = strategy.map_or("", |s| e.str_or_empty(s, spath, "type"));
    match kind {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(ru) = strategy.and_then(|s| e.obj(s, spath, "rollingUpdate")) else {
                e.required("spec.updateStrategy.rollingUpdate", "");
                return;
            };
            let rpath = "spec.updateStrategy.rollingUpdate";
            let unavailable = int_or_percent(e, ru, rpath, "maxUnavailable");
            let surge = int_or_percent(e, ru, rpath, "maxSurge");
            not_more_than_100(
                e,
                &unavailable,
                "spec.updateStrategy.rollingUpdate.maxUnavailable",
            );
            not_more_than_100(e, &surge, "spec.updateStrategy.rollingUpdate.maxSurge");
            match (unavailable.value() != 0, surge.value() != 0) {
                (true, true) => e.invalid(
                    "spec.updateStrategy.rollingUpdate.maxSurge",
                    surge.shown(),
                    "may not be set when maxUnavailable is non-zero",
                ),
                (false, false) => e.required(
                    "spec.updateStrategy.rollingUpdate.maxUnavailable",
                    "cannot be 0 when maxSurge is 0",
                ),
                _ => {}
            }
        }
        _ => e.not_supported(
            spath,
            strategy.unwrap_or(&Value::Null),
            &["RollingUpdate", "OnDelete"],
        ),
    }
}

/// Checks a ReplicationController.
pub(crate) fn validate_replication_controller(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = spec_of(e, obj) else {
        return;
    };
    nonnegative(e, spec, "spec", "minReadySeconds");
    let selector = e.str_map(spec, "spec", "selector");
    if selector.is_empty() {
        e.required("spec.selector", "");
    }
    nonnegative(e, spec, "spec", "replicas");
    if e.obj(spec, "spec", "template").is_none() {
        e.required("spec.template", "");
        return;
    }
    let labels = peek(spec, &["template", "metadata", "labels"]);
    let matches = selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(*k)).and_then(Value::as_str) == Some(*v));
    if !selector.is_empty() && !matches {
        e.invalid(
            "spec.template.metadata.labels",
            labels.unwrap_or(&Value::Null),
            "`selector` does not match template `labels`",
        );
    }
    pod::validate_template(e, spec, "spec", "template", &PodContext::default());
    template_restart_always(e, spec, "ReplicationController");
}

/// Checks a Job. A Job without a selector is accepted unless `manualSelector` is set: the
/// server generates the selector from the Job's uid (see
/// [`crate::defaults::generate_job_selector`]).
pub(crate) fn validate_job(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.template", "");
        return;
    };
    validate_job_spec(e, spec, "spec");
    let manual = e.bool(spec, "spec", "manualSelector") == Some(true);
    match e.obj(spec, "spec", "selector") {
        None if manual => e.required("spec.selector", ""),
        None => {}
        Some(selector) => {
            meta::validate_label_selector(e, spec, "spec", "selector");
            let labels = peek(spec, &["template", "metadata", "labels"]);
            if !meta::selector_matches(selector, labels) {
                e.invalid(
                    "spec.template.metadata.labels",
                    labels.unwrap_or(&Value::Null),
                    "`selector` does not match template `labels`",
                );
            }
        }
    }
}

/// The spec rules Jobs and CronJob job templates share.
fn validate_job_spec(e: &mut Errs, spec: &Value, path: &str) {
    for f in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
        "ttlSecondsAfterFinished",
    ] {
        nonnegative(e, spec, path, f);
    }
    if let Some(mode) = e.str(spec, path, "completionMode") {
        match mode {
            "NonIndexed" => {}
            "Indexed" => {
                if spec.get("completions").is_none_or(Value::is_null) {
                    e.required(
                        &join(path, "completions"),
                        "when completion mode is Indexed",
                    );
                }
            }
            other => e.not_supported(
                &join(path, "completionMode"),
                other,
                &["Indexed", "NonIndexed"],
            ),
        }
    }
    if let Some(policy) = e.str(spec, path, "podReplacementPolicy") {
        let has_failure_policy = spec.get("podFailurePolicy").is_some_and(|v| !v.is_null());
        let rpath = join(path, "podReplacementPolicy");
        if has_failure_policy && policy != "Failed" {
            e.not_supported(&rpath, policy, &["Failed"]);
        } else if policy != "Failed" && policy != "TerminatingOrFailed" {
            e.not_supported(&rpath, policy, &["Failed", "TerminatingOrFailed"]);
        }
    }
    pod::validate_template(e, spec, path, "template", &PodContext::default());
    if let Some(tspec) = peek(spec, &["template", "spec"]) {
        let policy = tspec
            .get("restartPolicy")
            .and_then(Value::as_str)
            .unwrap_or("");
        if policy != "OnFailure" && policy != "Never" {
            e.not_supported(
                &join(path, "template.spec.restartPolicy"),
                policy,
                &["OnFailure", "Never"],
            );
        }
    }
}

/// Checks a CronJob.
pub(crate) fn validate_cron_job(e: &mut Errs, obj: &Value) {
    meta::validate_object_meta(e, obj, NameRule::Subdomain);
    if let Some(name) = peek(obj, &["metadata", "name"]).and_then(Value::as_str)
        && name.len() > CRON_JOB_NAME_MAX
    {
        e.invalid(
            "metadata.name",
            name,
            &format!("must be no more than {CRON_JOB_NAME_MAX} characters"),
        );
    }
    let Some(spec) = e.obj(obj, "", "spec") else {
        e.required("spec.schedule", "");
        return;
    };
    let time_zone = e.str(spec, "spec", "timeZone");
    match e.str_or_empty(spec, "spec", "schedule") {
        "" => e.required("spec.schedule", ""),
        schedule => {
            // A `TZ=` prefix is reported below, whatever zone it names; the rest must parse.
            let fields = match schedule
                .strip_prefix("TZ=")
                .or(schedule.strip_prefix("CRON_TZ="))
            {
                Some(rest) => rest.split_once(' ').map_or("", |(_, fields)| fields),
                None => schedule,
            };
            if let Err(error) = cron::Schedule::parse(fields, jiff::tz::TimeZone::UTC) {
                e.invalid("spec.schedule", schedule, &error.to_string());
            }
            if schedule.contains("TZ") {
                e.invalid(
                    "spec.schedule",
                    schedule,
                    "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
                );
            }
        }
    }
    if let Some(tz) = time_zone {
        validate_time_zone(e, tz);
    }
    nonnegative(e, spec, "spec", "startingDeadlineSeconds");
    match e.str_or_empty(spec, "spec", "concurrencyPolicy") {
        "Allow" | "Forbid" | "Replace" => {}
        "" => e.required("spec.concurrencyPolicy", ""),
        other => e.not_supported(
            "spec.concurrencyPolicy",
            other,
            &["Allow", "Forbid", "Replace"],
        ),
    }
    match e.obj(spec, "spec", "jobTemplate") {
        None => e.required("spec.jobTemplate.spec.template.spec.containers", ""),
        Some(template) => {
            let jpath = "spec.jobTemplate.spec";
            match e.obj(template, "spec.jobTemplate", "spec") {
                None => e.required("spec.jobTemplate.spec.template.spec.containers", ""),
                Some(jspec) => {
                    validate_job_spec(e, jspec, jpath);
                    if let Some(sel) = e.obj(jspec, jpath, "selector") {
                        e.invalid(
                            "spec.jobTemplate.spec.selector",
                            sel,
                            "`selector` will be auto-generated",
                        );
                    }
                    if e.bool(jspec, jpath, "manualSelector") == Some(true) {
                        e.not_supported(
                            "spec.jobTemplate.spec.manualSelector",
                            Value::Bool(true),
                            &["nil", "false"],
                        );
                    }
                }
            }
        }
    }
    nonnegative(e, spec, "spec", "successfulJobsHistoryLimit");
    nonnegative(e, spec, "spec", "failedJobsHistoryLimit");
}

/// A CronJob time zone: an IANA name by its shape. Whether the zone exists is not checked
/// here (that would read the host's zone database).
fn validate_time_zone(e: &mut Errs, tz: &str) {
    let path = "spec.timeZone";
    if tz.is_empty() {
        e.invalid(path, tz, "timeZone must be nil or non-empty string");
        return;
    }
    for part in tz.split('/') {
        let chars_ok = !part.is_empty()
            && part.len() <= 14
            && part
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b'+'));
        if part == "." || part == ".." || part.starts_with('-') || !chars_ok {
            e.invalid(path, tz, &format!("unknown time zone {tz}"));
            return;
        }
    }
    if tz.eq_ignore_ascii_case("local") {
        e.invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::{assert_causes, assert_valid, defaulted};
    use crate::validate::CauseType::{Forbidden, Invalid, NotSupported, Required};
    use serde_json::{Value, json};

    fn pod_template(labels: Value, restart: Option<&str>) -> Value {
        let mut t = json!({
            "metadata": {"labels": labels},
            "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:2.1",
                "ports": [{"containerPort": 8080}]}]}
        });
        if let Some(r) = restart {
            t["spec"]["restartPolicy"] = json!(r);
        }
        t
    }

    fn deployment() -> Value {
        defaulted(
            "apps",
            "Deployment",
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "namespace": "default"},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": pod_template(json!({"app": "web", "tier": "fe"}), None)
                }
            }),
        )
    }

    #[test]
    fn a_realistic_deployment_is_valid() {
        assert_valid("apps", "Deployment", &deployment());
    }

    #[test]
    fn deployment_selector_rules() {
        let mut d = deployment();
        d["spec"]["selector"] = json!({"matchLabels": {"app": "other"}});
        let causes = assert_causes(
            "apps",
            "Deployment",
            &d,
            &[("spec.template.metadata.labels", Invalid)],
        );
        assert!(
            causes[0]
                .message
                .ends_with("`selector` does not match template `labels`")
        );
        let mut d = deployment();
        d["spec"]["selector"] = json!({});
        assert_causes("apps", "Deployment", &d, &[("spec.selector", Invalid)]);
        let mut d = deployment();
        d["spec"].as_object_mut().expect("spec").remove("selector");
        assert_causes("apps", "Deployment", &d, &[("spec.selector", Required)]);
    }

    #[test]
    fn deployment_numbers_and_strategy() {
        let mut d = deployment();
        d["spec"]["replicas"] = json!(-1);
        assert_causes("apps", "Deployment", &d, &[("spec.replicas", Invalid)]);
        let mut d = deployment();
        d["spec"]["strategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": "0%"});
        assert_causes(
            "apps",
            "Deployment",
            &d,
            &[("spec.strategy.rollingUpdate.maxUnavailable", Invalid)],
        );
        let mut d = deployment();
        d["spec"]["strategy"]["type"] = json!("Canary");
        assert_causes("apps", "Deployment", &d, &[("spec.strategy", NotSupported)]);
        let mut d = deployment();
        d["spec"]["strategy"]["type"] = json!("Recreate");
        assert_causes(
            "apps",
            "Deployment",
            &d,
            &[("spec.strategy.rollingUpdate", Forbidden)],
        );
        let mut d = deployment();
        d["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = json!("a lot");
        assert_causes(
            "apps",
            "Deployment",
            &d,
            &[("spec.strategy.rollingUpdate.maxSurge", Invalid)],
        );
    }

    #[test]
    fn deployment_template_must_restart_always() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        assert_causes(
            "apps",
            "Deployment",
            &d,
            &[("spec.template.spec.restartPolicy", NotSupported)],
        );
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("");
        assert_causes(
            "apps",
            "Deployment",
            &d,
            &[("spec.template.spec.containers[0].image", Required)],
        );
    }

    #[test]
    fn replica_sets_and_controllers() {
        let rs = defaulted(
            "apps",
            "ReplicaSet",
            json!({"metadata": {"name": "web-5d8f"}, "spec": {"selector": {"matchLabels": {"app": "web"}},
                "template": pod_template(json!({"app": "web"}), None)}}),
        );
        assert_valid("apps", "ReplicaSet", &rs);
        let rc = defaulted(
            "",
            "ReplicationController",
            json!({"metadata": {"name": "old"}, "spec": {"template": pod_template(json!({"app": "old"}), None)}}),
        );
        assert_valid("", "ReplicationController", &rc);
        let mut bad = rc.clone();
        bad["spec"]["selector"] = json!({"app": "new"});
        assert_causes(
            "",
            "ReplicationController",
            &bad,
            &[("spec.template.metadata.labels", Invalid)],
        );
    }

    fn stateful_set() -> Value {
        let mut template = pod_template(json!({"app": "db"}), None);
        template["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/var/lib/db"}]);
        defaulted(
            "apps",
            "StatefulSet",
            json!({"metadata": {"name": "db"}, "spec": {
                "serviceName": "db", "replicas": 3,
                "selector": {"matchLabels": {"app": "db"}},
                "template": template,
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}]
            }}),
        )
    }

    #[test]
    fn stateful_sets() {
        assert_valid("apps", "StatefulSet", &stateful_set());
        let mut s = stateful_set();
        s["spec"]["podManagementPolicy"] = json!("Random");
        assert_causes(
            "apps",
            "StatefulSet",
            &s,
            &[("spec.podManagementPolicy", Invalid)],
        );
        let mut s = stateful_set();
        s["spec"]["updateStrategy"]["rollingUpdate"]["partition"] = json!(-1);
        assert_causes(
            "apps",
            "StatefulSet",
            &s,
            &[("spec.updateStrategy.rollingUpdate.partition", Invalid)],
        );
        let mut s = stateful_set();
        s["metadata"]["name"] = json!("db.example");
        assert_causes("apps", "StatefulSet", &s, &[("metadata.name", Invalid)]);
        let mut s = stateful_set();
        s["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] = json!("Keep");
        assert_causes(
            "apps",
            "StatefulSet",
            &s,
            &[(
                "spec.persistentVolumeClaimRetentionPolicy.whenDeleted",
                NotSupported,
            )],
        );
    }

    fn daemon_set() -> Value {
        defaulted(
            "apps",
            "DaemonSet",
            json!({"metadata": {"name": "agent", "namespace": "kube-system"}, "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": pod_template(json!({"app": "agent"}), None)}}),
        )
    }

    #[test]
    fn daemon_sets() {
        assert_valid("apps", "DaemonSet", &daemon_set());
        let mut d = daemon_set();
        d["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 0, "maxSurge": 0});
        assert_causes(
            "apps",
            "DaemonSet",
            &d,
            &[("spec.updateStrategy.rollingUpdate.maxUnavailable", Required)],
        );
        let mut d = daemon_set();
        d["spec"]["updateStrategy"]["rollingUpdate"] = json!({"maxUnavailable": 1, "maxSurge": 1});
        assert_causes(
            "apps",
            "DaemonSet",
            &d,
            &[("spec.updateStrategy.rollingUpdate.maxSurge", Invalid)],
        );
        let mut d = daemon_set();
        d["spec"].as_object_mut().expect("spec").remove("selector");
        assert_causes(
            "apps",
            "DaemonSet",
            &d,
            &[("spec.template.metadata.labels", Invalid)],
        );
    }

    fn job() -> Value {
        defaulted(
            "batch",
            "Job",
            json!({"metadata": {"name": "pi", "uid": "0c5f2a6e-1111-2222-3333-444455556666"},
                "spec": {"template": pod_template(json!({}), Some("Never"))}}),
        )
    }

    #[test]
    fn jobs() {
        let j = job();
        assert!(
            j["spec"]["selector"].is_object(),
            "selector generated from the uid"
        );
        assert_valid("batch", "Job", &j);
        let mut bad = job();
        bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        assert_causes(
            "batch",
            "Job",
            &bad,
            &[("spec.template.spec.restartPolicy", NotSupported)],
        );
        let mut bad = job();
        bad["spec"]["parallelism"] = json!(-2);
        assert_causes("batch", "Job", &bad, &[("spec.parallelism", Invalid)]);
        let mut bad = job();
        bad["spec"]["completionMode"] = json!("Indexed");
        bad["spec"]
            .as_object_mut()
            .expect("spec")
            .remove("completions");
        assert_causes("batch", "Job", &bad, &[("spec.completions", Required)]);
    }

    fn cron_job() -> Value {
        defaulted(
            "batch",
            "CronJob",
            json!({"metadata": {"name": "nightly"}, "spec": {"schedule": "0 3 * * *", "timeZone": "Europe/Paris",
                "jobTemplate": {"spec": {"template": pod_template(json!({}), Some("OnFailure"))}}}}),
        )
    }

    #[test]
    fn cron_jobs() {
        assert_valid("batch", "CronJob", &cron_job());
        let mut c = cron_job();
        c["spec"]["schedule"] = json!("0 3 * *");
        let causes = assert_causes("batch", "CronJob", &c, &[("spec.schedule", Invalid)]);
        assert!(
            causes[0]
                .message
                .contains("expected exactly 5 fields, found 4")
        );
        let mut c = cron_job();
        c["spec"]["schedule"] = json!("");
        assert_causes("batch", "CronJob", &c, &[("spec.schedule", Required)]);
        let mut c = cron_job();
        c["spec"]["schedule"] = json!("@daily");
        assert_valid("batch", "CronJob", &c);
        let mut c = cron_job();
        c["spec"]["timeZone"] = json!("Local");
        assert_causes("batch", "CronJob", &c, &[("spec.timeZone", Invalid)]);
        let mut c = cron_job();
        c["metadata"]["name"] = json!("a".repeat(53));
        assert_causes("batch", "CronJob", &c, &[("metadata.name", Invalid)]);
        let mut c = cron_job();
        c["spec"]["concurrencyPolicy"] = json!("Sometimes");
        assert_causes(
            "batch",
            "CronJob",
            &c,
            &[("spec.concurrencyPolicy", NotSupported)],
        );
        let mut c = cron_job();
        c["spec"]["jobTemplate"]["spec"]["selector"] = json!({"matchLabels": {"a": "b"}});
        assert_causes(
            "batch",
            "CronJob",
            &c,
            &[("spec.jobTemplate.spec.selector", Invalid)],
        );
    }
}
