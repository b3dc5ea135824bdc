//! What makes a deploy trustworthy, kept from drifting: every function has its log group
//! with a retention, its alarms and the alias that canaries it; the deploy workflow smoke
//! tests what it deployed; the smoke test calls every endpoint; make test runs it.

use crate::delivery::{repo_file, template};
use serde_yaml_ng::Value;
use shared::Endpoint;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

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

/// The resource with this logical id, failing if the template has none.
fn resource<'a>(template: &'a Value, id: &str) -> &'a Value {
    let resource = &template["Resources"][id];
    assert!(!resource.is_null(), "template.yaml: no resource {id}");
    resource
}

/// The logical ids of the resources of this type.
fn ids_of_type(template: &Value, kind: &str) -> BTreeSet<String> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"] == kind)
        .map(|(id, _)| id.as_str().unwrap().to_owned())
        .collect()
}

fn is_sub_of(value: &Value, text: &str) -> bool {
    matches!(value, Value::Tagged(tagged) if tagged.tag == "Sub" && tagged.value == text)
}

/// `!If [IsProduction, Retain, Delete]`: prod keeps what a stack delete would remove.
fn assert_retained_on_prod(id: &str, resource: &Value) {
    for policy in ["DeletionPolicy", "UpdateReplacePolicy"] {
        let choice = tagged(&resource[policy], "If");
        assert_eq!(
            choice.as_sequence().unwrap(),
            &["IsProduction", "Retain", "Delete"].map(Value::from),
            "{id} {policy}"
        );
    }
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

    // sam build cannot read Fn::ForEach (aws/aws-sam-cli#5647): the resources are explicit.
    let resources = template["Resources"].as_mapping().unwrap();
    assert!(
        !resources
            .keys()
            .any(|id| id.as_str().unwrap().starts_with("Fn::ForEach")),
        "no Fn::ForEach in the resources: make template writes them out"
    );
    // One log group and three alarms per function, none left over from a removed one.
    let per_function = |suffix: &str| -> BTreeSet<String> {
        functions
            .iter()
            .map(|name| format!("{name}{suffix}"))
            .collect()
    };
    assert_eq!(
        ids_of_type(&template, "AWS::Logs::LogGroup"),
        per_function("LogGroup")
    );
    let alarms = ids_of_type(&template, "AWS::CloudWatch::Alarm");
    for alarm in ["Errors", "Throttles", "Duration"] {
        let suffix = format!("{alarm}Alarm");
        let with_suffix: BTreeSet<String> = alarms
            .iter()
            .filter(|id| id.ends_with(&suffix) && !id.starts_with("Table"))
            .cloned()
            .collect();
        assert_eq!(with_suffix, per_function(&suffix));
    }
    let timeout_ms = globals["Timeout"].as_u64().unwrap() * 1000;

    for name in &functions {
        let function = format!("{name}Function");
        let id = format!("{name}LogGroup");
        let log_group = resource(&template, &id);
        assert_retained_on_prod(&id, log_group);
        assert!(is_ref_to(
            &log_group["Properties"]["RetentionInDays"],
            "LogRetentionDays"
        ));
        assert!(
            is_sub_of(
                &log_group["Properties"]["LogGroupName"],
                &format!("/developer-ingest/${{Stage}}/{name}")
            ),
            "{id}: not /aws/lambda/<function>, which Lambda may have created already"
        );

        for alarm in ["Errors", "Throttles", "Duration"] {
            let id = format!("{name}{alarm}Alarm");
            let resource = resource(&template, &id);
            let properties = &resource["Properties"];
            assert_eq!(properties["Namespace"], "AWS/Lambda", "{id}");
            assert_eq!(properties["MetricName"], alarm, "{id}");
            assert_notifies_the_topic(&id, resource);
            let function_name = &properties["Dimensions"][0];
            assert_eq!(function_name["Name"], "FunctionName", "{id}");
            assert!(
                is_sub_of(&function_name["Value"], &format!("${{{function}}}")),
                "{id}: watches {function}"
            );
        }
        // The canary's alarm watches the version the alias serves, not the function as a whole.
        let errors = &template["Resources"][format!("{name}ErrorsAlarm").as_str()]["Properties"];
        let dimensions: Vec<(&str, &Value)> = errors["Dimensions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|d| (d["Name"].as_str().unwrap(), &d["Value"]))
            .collect();
        assert_eq!(dimensions.len(), 3, "{name}ErrorsAlarm");
        assert_eq!(dimensions[1].0, "Resource");
        assert!(is_sub_of(dimensions[1].1, &format!("${{{function}}}:live")));
        assert_eq!(dimensions[2].0, "ExecutedVersion");
        assert!(is_sub_of(
            dimensions[2].1,
            &format!("${{{function}.Version.Version}}")
        ));
        // p99 near the timeout: 80 percent of it.
        let duration =
            &template["Resources"][format!("{name}DurationAlarm").as_str()]["Properties"];
        assert_eq!(duration["ExtendedStatistic"], "p99", "{name}DurationAlarm");
        assert_eq!(duration["Threshold"].as_u64(), Some(timeout_ms * 8 / 10));

        let properties = &resource(&template, &function)["Properties"];
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

/// The generated parts (template.yaml's functions, log groups and alarms, Cargo.toml's
/// watch router) are exactly what scripts/generate-template.py writes from endpoints.toml,
/// so nobody edits 80 near-identical blocks by hand (and the next function gets them too).
#[test]
fn the_generated_resources_are_what_make_template_writes() {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/generate-template.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg("--check")
        .output()
        .expect("python3 runs scripts/generate-template.py");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// IAM `StringLike`: `*` is any run of characters, `?` any one.
fn like(pattern: &str, value: &str) -> bool {
    match pattern.chars().next() {
        None => value.is_empty(),
        Some('*') => (0..=value.len())
            .filter(|&i| value.is_char_boundary(i))
            .any(|i| like(&pattern[1..], &value[i..])),
        Some(c) => {
            value.chars().next().is_some_and(|v| c == '?' || c == v)
                && like(
                    &pattern[c.len_utf8()..],
                    &value[value.chars().next().unwrap().len_utf8()..],
                )
        }
    }
}

/// A function's (actions, LeadingKeys patterns) per statement; no patterns when unconditioned.
fn statements(function: &Value) -> Vec<(Vec<String>, Option<Vec<String>>)> {
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    };
    function["Properties"]["Policies"]
        .as_sequence()
        .into_iter()
        .flatten()
        .flat_map(|p| p["Statement"].as_sequence().unwrap())
        .map(|s| {
            assert_eq!(s["Effect"], "Allow");
            let leading = s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"]
                .as_sequence()
                .map(|_| {
                    strings(&s["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"])
                });
            (strings(&s["Action"]), leading)
        })
        .collect()
}

/// Whether the function may call `action` on an item with this partition key.
fn may(function: &Value, action: &str, pk: &str) -> bool {
    statements(function).iter().any(|(actions, leading)| {
        actions.iter().any(|a| a == action)
            && leading
                .as_ref()
                .is_none_or(|patterns| patterns.iter().any(|p| like(p, pk)))
    })
}

const WRITES: [&str; 4] = [
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
];

/// Every write a function may make is scoped with `dynamodb:LeadingKeys` (endpoints.toml,
/// write_keys): tenant writes to the tenant items of keys.rs only, so no function can mint
/// or delete an API key, or change an org. The one write outside tenant items is the key's
/// own bookkeeping, UpdateItem on `APIKEY#` (last use) and `RATELIMIT#` (the limiter, on
/// every authenticated request), and only functions that take a key have it.
#[test]
fn every_write_is_scoped_to_the_key_prefixes_it_writes() {
    use shared::input::UserIdentity;
    use shared::store::keys;
    let id = |raw: &str| shared::endpoint::parse_id(raw).unwrap();
    let email: shared::fields::Email = "ann@example.com".parse().unwrap();
    let org = "acme";
    // Every tenant item keys.rs makes, and every other item a function must never write.
    let tenant = [
        keys::user(org, &UserIdentity::External(id("u1"))).pk,
        keys::user(org, &UserIdentity::Email(email.clone())).pk,
        keys::email_alias(org, &email).pk,
        keys::product(org, &id("p1")).pk,
        keys::sale(org, &id("s1")).pk,
        keys::channel(org, &id("c1")).pk,
        keys::thread(org, &id("t1")).pk,
        keys::message(org, &id("t1"), &id("m1")).pk,
        keys::message_locator(org, &id("m1")).pk,
        keys::booking(org, &id("b1")).pk,
        keys::event(org, "e1").pk,
    ];
    let api_key = keys::api_key("k1").pk;
    let counter = keys::rate_limit_window("k1", 1_795_514_400).pk;
    let never = [keys::org(org).pk, keys::warm_up().pk];

    let template = template();
    for endpoint in Endpoint::ALL {
        let function = resource(&template, &format!("{endpoint:?}Function"));
        for (actions, leading) in statements(function) {
            if actions.iter().any(|a| WRITES.contains(&a.as_str())) {
                assert!(
                    leading.is_some_and(|p| !p.is_empty()),
                    "{endpoint:?}: a write without dynamodb:LeadingKeys: {actions:?}"
                );
            }
        }
        for action in WRITES {
            for pk in &never {
                assert!(!may(function, action, pk), "{endpoint:?} {action} {pk}");
            }
            // The key's bookkeeping: UpdateItem only, for the functions that take a key.
            let bookkeeping = action == "dynamodb:UpdateItem" && endpoint.requires_api_key();
            for pk in [&api_key, &counter] {
                assert_eq!(
                    may(function, action, pk),
                    bookkeeping,
                    "{endpoint:?} {action} {pk}"
                );
            }
            // A function that writes tenant items may write any of them (the prefixes are
            // not narrower than keys.rs's shapes: DynamoDB Local ignores IAM, so a too
            // narrow one would only fail on AWS).
            let writes_tenant_items = tenant.iter().any(|pk| may(function, action, pk));
            if writes_tenant_items {
                for pk in &tenant {
                    assert!(may(function, action, pk), "{endpoint:?} {action} {pk}");
                }
            }
        }
    }
    // The matcher itself.
    assert!(like("ORG#*#*", &tenant[0]) && !like("ORG#*#*", &never[0]));
    assert!(like("APIKEY#*", &api_key) && !like("APIKEY#*", &counter));
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

    let table_alarms: BTreeSet<String> = ids_of_type(&template, "AWS::CloudWatch::Alarm")
        .into_iter()
        .filter(|id| id.starts_with("Table"))
        .collect();
    let metrics = ["ThrottledRequests", "SystemErrors"];
    assert_eq!(
        table_alarms,
        metrics.map(|m| format!("Table{m}Alarm")).into()
    );
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
    for metric in metrics {
        let id = format!("Table{metric}Alarm");
        let alarm = resource(&template, &id);
        assert_notifies_the_topic(&id, alarm);
        let stats: Vec<&Value> = alarm["Properties"]["Metrics"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|m| m.get("MetricStat"))
            .collect();
        assert!(
            stats.iter().all(|s| s["Metric"]["MetricName"] == metric),
            "{id}: every operation's {metric}"
        );
        // DynamoDB publishes both per operation: the alarm sums every one the functions may call.
        let watched: BTreeSet<String> = stats
            .iter()
            .filter_map(|s| s["Metric"]["Dimensions"].as_sequence())
            .flatten()
            .filter(|d| d["Name"] == "Operation")
            .map(|d| d["Value"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(watched, allowed, "{id}");
    }
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
