//! What makes a deploy trustworthy, kept from drifting: every function has its log group
//! with a retention, its alarms and the alias that canaries it; the deploy workflow smoke
//! tests what it deployed; the smoke test calls every endpoint; make test runs it.

use crate::delivery::{repo_file, template};
use serde_yaml_ng::Value;
use shared::Endpoint;
use std::collections::BTreeSet;

/// The value under a YAML tag such as `!Ref`, failing if the tag is another.
fn tagged<'a>(value: &'a Value, tag: &str) -> &'a Value {
    match value {
        Value::Tagged(tagged) if tagged.tag == tag => &tagged.value,
        _ => panic!("expected !{tag}, found {value:?}"),
    }
}

fn is_ref_to(value: &Value, name: &str) -> bool {
    matches!(value, Value::Tagged(tagged) if tagged.tag == "Ref" && tagged.value == name)
}

/// `Fn::ForEach::<loop>` of the resources: (its identifier's values, its fragment).
fn for_each<'a>(template: &'a Value, name: &str) -> (Vec<&'a str>, &'a serde_yaml_ng::Mapping) {
    let parts = template["Resources"][format!("Fn::ForEach::{name}").as_str()]
        .as_sequence()
        .unwrap_or_else(|| panic!("no Fn::ForEach::{name}"));
    let values = parts[1].as_sequence().unwrap();
    let values = values.iter().map(|v| v.as_str().unwrap()).collect();
    (values, parts[2].as_mapping().unwrap())
}

/// The logical ids of the functions, without their `Function` suffix.
fn function_names(template: &Value) -> BTreeSet<String> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
        .map(|(id, _)| {
            let id = id.as_str().unwrap();
            id.strip_suffix("Function")
                .unwrap_or_else(|| panic!("{id}: function ids end in Function"))
                .to_owned()
        })
        .collect()
}

/// Every alarm notifies the optional topic, when it fires and when it recovers.
fn assert_notifies_the_topic(id: &str, alarm: &Value) {
    for actions in ["AlarmActions", "OKActions"] {
        let choice = tagged(&alarm["Properties"][actions], "If");
        assert_eq!(choice[0], "HasAlarmTopic", "{id} {actions}");
        assert!(is_ref_to(&choice[1][0], "AlarmTopicArn"), "{id} {actions}");
    }
}

#[test]
fn every_function_has_its_log_group_alarms_and_canary() {
    let template = template();
    let functions = function_names(&template);
    assert_eq!(functions.len(), Endpoint::ALL.len());

    let globals = &template["Globals"]["Function"];
    assert_eq!(globals["AutoPublishAlias"], "live");
    let deployment = tagged(&globals["DeploymentPreference"]["Type"], "If");
    assert_eq!(
        deployment.as_sequence().unwrap(),
        &["IsProduction", "Canary10Percent5Minutes", "AllAtOnce"].map(Value::from),
        "prod canaries, branch stacks deploy at once"
    );
    assert_eq!(template["Parameters"]["LogRetentionDays"]["Default"], 30);
    assert_eq!(template["Parameters"]["AlarmTopicArn"]["Default"], "");

    let (looped, fragment) = for_each(&template, "FunctionLogsAndAlarms");
    let looped: BTreeSet<String> = looped.into_iter().map(str::to_owned).collect();
    assert_eq!(looped, functions, "the loop names every function");

    let log_group = &fragment["${Name}LogGroup"];
    assert_eq!(log_group["Type"], "AWS::Logs::LogGroup");
    assert!(is_ref_to(
        &log_group["Properties"]["RetentionInDays"],
        "LogRetentionDays"
    ));
    for alarm in ["Errors", "Throttles", "Duration"] {
        let id = format!("${{Name}}{alarm}Alarm");
        let resource = &fragment[id.as_str()];
        assert_eq!(resource["Type"], "AWS::CloudWatch::Alarm", "{id}");
        assert_eq!(resource["Properties"]["Namespace"], "AWS/Lambda", "{id}");
        assert_eq!(resource["Properties"]["MetricName"], alarm, "{id}");
        assert_notifies_the_topic(&id, resource);
    }
    // The canary's alarm watches the version the alias serves, not the function as a whole.
    let dimensions: Vec<&str> = fragment["${Name}ErrorsAlarm"]["Properties"]["Dimensions"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|d| d["Name"].as_str().unwrap())
        .collect();
    assert_eq!(dimensions, ["FunctionName", "Resource", "ExecutedVersion"]);
    // p99 near the timeout: 80 percent of it.
    let timeout_ms = globals["Timeout"].as_u64().unwrap() * 1000;
    let duration = &fragment["${Name}DurationAlarm"]["Properties"];
    assert_eq!(duration["ExtendedStatistic"], "p99");
    assert_eq!(duration["Threshold"].as_u64(), Some(timeout_ms * 8 / 10));

    for name in &functions {
        let properties = &template["Resources"][format!("{name}Function").as_str()]["Properties"];
        assert!(
            is_ref_to(
                &properties["LoggingConfig"]["LogGroup"],
                &format!("{name}LogGroup")
            ),
            "{name}: logs into its own group"
        );
        let alarms = properties["DeploymentPreference"]["Alarms"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: no DeploymentPreference alarms"));
        for alarm in [format!("{name}ErrorsAlarm"), "Api5xxRateAlarm".to_owned()] {
            assert!(
                alarms.iter().any(|a| is_ref_to(a, &alarm)),
                "{name}: a canary rolls back on {alarm}"
            );
        }
    }
}

#[test]
fn the_api_and_the_table_have_their_alarms() {
    let template = template();
    let api = &template["Resources"]["Api5xxRateAlarm"];
    assert_notifies_the_topic("Api5xxRateAlarm", api);
    let metrics: Vec<&str> = api["Properties"]["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m["MetricStat"]["Metric"]["MetricName"].as_str())
        .collect();
    assert_eq!(metrics, ["5xx", "Count"], "a rate: 5xx over all requests");

    let (looped, fragment) = for_each(&template, "TableAlarms");
    assert_eq!(looped, ["ThrottledRequests", "SystemErrors"]);
    let alarm = &fragment["Table${Metric}Alarm"];
    assert_notifies_the_topic("Table${Metric}Alarm", alarm);
    // DynamoDB publishes both per operation: the alarm sums every one the functions may call.
    let watched: BTreeSet<String> = alarm["Properties"]["Metrics"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|m| m["MetricStat"]["Metric"]["Dimensions"].as_sequence())
        .flat_map(|dimensions| dimensions.iter())
        .filter(|d| d["Name"] == "Operation")
        .map(|d| d["Value"].as_str().unwrap().to_owned())
        .collect();
    let allowed: BTreeSet<String> = template["Resources"]
        .as_mapping()
        .unwrap()
        .values()
        .filter_map(|r| r["Properties"]["Policies"].as_sequence())
        .flatten()
        .flat_map(|p| p["Statement"].as_sequence().unwrap())
        .flat_map(|s| s["Action"].as_sequence().unwrap())
        .map(|a| {
            a.as_str()
                .unwrap()
                .strip_prefix("dynamodb:")
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(watched, allowed);
}

/// The deploy job's steps, in order, as (name, `if`, run script).
fn deploy_steps() -> Vec<(String, String, String)> {
    let workflow: Value =
        serde_yaml_ng::from_str(&repo_file(".github/workflows/deploy.yml")).unwrap();
    workflow["jobs"]["deploy"]["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|step| {
            let text = |key: &str| step[key].as_str().unwrap_or_default().to_owned();
            assert!(step.get("continue-on-error").is_none(), "{step:?}");
            (text("name"), text("if"), text("run"))
        })
        .collect()
}

#[test]
fn the_workflow_smoke_tests_every_deploy_with_a_key_it_revokes() {
    let steps = deploy_steps();
    let position = |needle: &str| {
        steps
            .iter()
            .position(|(_, _, run)| run.contains(needle))
            .unwrap_or_else(|| panic!("no deploy step runs {needle}"))
    };
    let deploy = position("sam deploy");
    let create = position("keys create");
    let smoke = position("scripts/smoke.sh");
    let revoke = position("keys revoke");
    assert!(deploy < create && create < smoke && smoke < revoke);
    assert!(steps[create].2.contains("--org smoke") && steps[create].2.contains("--expires-in"));
    // A failed smoke test fails the run: it runs unconditionally, and nothing skips it.
    assert_eq!(
        steps[smoke].1, "",
        "the smoke test always runs after a deploy"
    );
    assert!(
        steps[revoke].1.contains("always()"),
        "the key is revoked even when the smoke test fails"
    );
}

/// `both <status> <METHOD> <path>` in scripts/smoke.sh: the path with and without its slash.
#[test]
fn the_smoke_test_calls_every_endpoint_with_and_without_the_slash() {
    let smoke = repo_file("scripts/smoke.sh");
    for endpoint in Endpoint::ALL {
        let path = endpoint
            .relative_path()
            .trim_end_matches('/')
            .replace("{external_user_id}", "$user")
            .replace("{thread_id}", "$thread");
        let called = smoke.lines().any(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            matches!(words[..], ["both", _, method, target, ..]
                if method == endpoint.method_name() && target.trim_matches('"') == path)
        });
        assert!(
            called,
            "scripts/smoke.sh: no `both ... {} {path}`",
            endpoint.method_name()
        );
    }
    let local = repo_file("scripts/smoke-local.sh");
    assert!(local.contains("scripts/smoke.sh"));
    assert!(repo_file("scripts/test.sh").contains("scripts/smoke-local.sh"));
}
