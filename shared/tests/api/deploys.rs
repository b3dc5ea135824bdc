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

/// The change feed's stream consumers: no endpoints, checked by their own test.
const CONSUMER: &str = "ChangesConsumerFunction";
const PUBLISHER: &str = "ChangesPublisherFunction";
const SWEEPER: &str = "ChangesSweeperFunction";

/// The logical ids of the endpoints' functions, without their `Function` suffix.
fn function_names(template: &Value) -> BTreeSet<String> {
    template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, resource)| resource["Type"] == "AWS::Serverless::Function")
        // The stream consumer is no endpoint: `the_change_feed_consumer_...` checks it.
        .filter(|(id, _)| ![Some(CONSUMER), Some(PUBLISHER), Some(SWEEPER)].contains(&id.as_str()))
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
    let mut log_groups = ids_of_type(&template, "AWS::Logs::LogGroup");
    assert!(
        log_groups.remove(API_ACCESS_LOG_GROUP),
        "the API's access logs"
    );
    assert!(
        log_groups.remove("ChangesConsumerLogGroup"),
        "the consumer's logs"
    );
    assert!(
        log_groups.remove("ChangesPublisherLogGroup"),
        "the publisher's logs"
    );
    assert!(
        log_groups.remove("ChangesSweeperLogGroup"),
        "the sweeper's logs"
    );
    assert_eq!(log_groups, per_function("LogGroup"));
    let alarms = ids_of_type(&template, "AWS::CloudWatch::Alarm");
    for alarm in ["Errors", "Throttles", "Duration"] {
        let suffix = format!("{alarm}Alarm");
        let with_suffix: BTreeSet<String> = alarms
            .iter()
            .filter(|id| id.ends_with(&suffix) && !id.starts_with("Table"))
            .filter(|id| !id.starts_with("Changes") || id.starts_with("ChangesList"))
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
/// own bookkeeping, UpdateItem on `APIKEY#` (last use) and `RATELIMIT#` (the limiter's key and
/// org counters, on every authenticated request), and only functions that take a key have it.
#[test]
fn every_write_is_scoped_to_the_key_prefixes_it_writes() {
    use shared::input::UserIdentity;
    use shared::store::testing::keys;
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
        keys::change(org, "2026-03-01T00:00:00.000Z", "chg_1").pk,
        keys::change_marker(org, "chg_1").pk,
        keys::booking_timer(org, "b1", "ended").pk,
        keys::client_timer(&keys::user(org, &UserIdentity::External(id("u1"))).pk).pk,
    ];
    let api_key = keys::api_key("k1").pk;
    let window = 1_795_514_400;
    let counters = [
        keys::rate_counter(keys::RateCounter::Key("k1"), window).pk,
        keys::rate_counter(keys::RateCounter::Org(org), window).pk,
    ];
    let never = [keys::org(org).pk, keys::warm_up().pk];

    let template = template();
    // Every endpoint's function (`takes_key`: it may keep its key's items), and the consumer.
    let functions = Endpoint::ALL
        .map(|e| (format!("{e:?}Function"), e.requires_api_key()))
        .into_iter()
        .chain([CONSUMER, PUBLISHER, SWEEPER].map(|f| (f.to_owned(), false)));
    for (endpoint, takes_key) in functions {
        let function = resource(&template, &endpoint);
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
            let bookkeeping = action == "dynamodb:UpdateItem" && takes_key;
            for pk in [&api_key, &counters[0], &counters[1]] {
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
    assert!(like("APIKEY#*", &api_key) && !like("APIKEY#*", &counters[0]));
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
        // ConditionCheckItem is a part of a TransactWriteItems call, reported under it.
        .filter_map(|a| a.as_str().unwrap().strip_prefix("dynamodb:"))
        .filter(|a| *a != "ConditionCheckItem")
        .map(str::to_owned)
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

const WORKFLOW: &str = ".github/workflows/deploy.yml";
/// The steps both deploy jobs run after checkout (`uses: $/.github/actions/deploy-stack`).
const DEPLOY_ACTION: &str = ".github/actions/deploy-stack/action.yml";

fn yaml_file(name: &str) -> Value {
    serde_yaml_ng::from_str(&repo_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The deploy action's steps, in order, as (name, `if`, run script).
fn deploy_steps() -> Vec<(String, String, String)> {
    yaml_file(DEPLOY_ACTION)["runs"]["steps"]
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

// Who may deploy prod, what reaches a shell, what the API logs, what keeps prod's table.

const API_ACCESS_LOG_GROUP: &str = "ApiAccessLogGroup";
const BRANCH_ROLE: &str = "secrets.AWS_BRANCH_DEPLOY_ROLE_ARN";
const PROD_ROLE: &str = "secrets.AWS_PROD_DEPLOY_ROLE_ARN";

fn json_file(name: &str) -> serde_json::Value {
    serde_json::from_str(&repo_file(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A job's text as YAML, to find the expressions it uses wherever they stand.
fn job_text(job: &Value) -> String {
    serde_yaml_ng::to_string(job).unwrap()
}

fn string_list(value: &serde_json::Value) -> Vec<&str> {
    match value {
        serde_json::Value::String(one) => vec![one.as_str()],
        serde_json::Value::Array(many) => many.iter().map(|v| v.as_str().unwrap()).collect(),
        _ => panic!("expected a string or a list: {value}"),
    }
}

/// IAM's ARN matching: `*` any run of characters, `?` any one.
fn iam_glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| iam_glob(rest, &text[skip..])),
        Some((&p, rest)) => {
            text.first().is_some_and(|&t| p == b'?' || p == t) && iam_glob(rest, &text[1..])
        }
    }
}

/// Whether an unconditional statement of this effect in the policy names this action on this
/// resource. A resource of `*` alone does not count: it is for the actions that name no
/// resource, checked apart.
fn names(policy: &serde_json::Value, effect: &str, (action, arn): &(&str, String)) -> bool {
    let matches = |patterns: &serde_json::Value, text: &str| {
        string_list(patterns)
            .iter()
            .any(|pattern| iam_glob(pattern.as_bytes(), text.as_bytes()))
    };
    policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["Effect"] == effect && s.get("Condition").is_none() && s["Resource"] != "*")
        .any(|s| matches(&s["Action"], action) && matches(&s["Resource"], arn))
}

/// One write to each kind of resource a stack of this stage holds, as the deploy roles do it.
fn stack_writes(stage: &str) -> Vec<(&'static str, String)> {
    let at = "REGION:ACCOUNT_ID";
    vec![
        ("cloudformation:ExecuteChangeSet", format!("arn:aws:cloudformation:{at}:stack/developer-ingest-{stage}/0f1e2d")),
        ("dynamodb:PutItem", format!("arn:aws:dynamodb:{at}:table/developer-ingest-{stage}")),
        ("dynamodb:Query", format!("arn:aws:dynamodb:{at}:table/developer-ingest-{stage}/index/GSI1")),
        ("dynamodb:UpdateTable", format!("arn:aws:dynamodb:{at}:table/developer-ingest-{stage}")),
        ("lambda:UpdateFunctionCode", format!("arn:aws:lambda:{at}:function:developer-ingest-{stage}-health")),
        ("iam:PutRolePolicy", format!("arn:aws:iam::ACCOUNT_ID:role/developer-ingest-{stage}-HealthFunctionRole-AB12")),
        ("logs:PutRetentionPolicy", format!("arn:aws:logs:{at}:log-group:/developer-ingest/{stage}/ApiAccess:*")),
        ("cloudwatch:PutMetricAlarm", format!("arn:aws:cloudwatch:{at}:alarm:developer-ingest-{stage}-HealthErrorsAlarm-AB12")),
        ("codedeploy:CreateDeployment", format!("arn:aws:codedeploy:{at}:deploymentgroup:developer-ingest-{stage}-ServerlessDeploymentApplication-AB12/developer-ingest-{stage}-HealthDeploymentGroup-AB12")),
        ("s3:PutObject", format!("arn:aws:s3:::aws-sam-cli-managed-default-samclisourcebucket-ab12/developer-ingest/{stage}/0f1e2d")),
        ("sqs:CreateQueue", format!("arn:aws:sqs:{at}:developer-ingest-{stage}-changes-dlq")),
        ("events:CreateEventBus", format!("arn:aws:events:{at}:event-bus/developer-ingest-{stage}-changes")),
        ("scheduler:CreateSchedule", format!("arn:aws:scheduler:{at}:schedule/default/developer-ingest-{stage}-changes-sweeper")),
        ("lambda:PutFunctionConcurrency", format!("arn:aws:lambda:{at}:function:developer-ingest-{stage}-changes-sweeper")),
        ("dynamodb:DescribeStream", format!("arn:aws:dynamodb:{at}:table/developer-ingest-{stage}/stream/2026-12-03T00:00:00.000")),
    ]
}

/// The GitHub OIDC `sub` claims a trust policy accepts, as (condition operator, value).
fn trusted_subjects(trust: &serde_json::Value) -> Vec<(String, String)> {
    let statements = trust["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 1, "one way in: {trust}");
    let statement = &statements[0];
    assert_eq!(statement["Action"], "sts:AssumeRoleWithWebIdentity");
    assert_eq!(
        statement["Principal"]["Federated"],
        "arn:aws:iam::ACCOUNT_ID:oidc-provider/token.actions.githubusercontent.com"
    );
    let conditions = statement["Condition"].as_object().unwrap();
    assert_eq!(
        conditions["StringEquals"]["token.actions.githubusercontent.com:aud"],
        "sts.amazonaws.com"
    );
    conditions
        .iter()
        .filter_map(|(operator, keys)| {
            let sub = keys.get("token.actions.githubusercontent.com:sub")?;
            Some((operator.clone(), sub.as_str().unwrap().to_owned()))
        })
        .collect()
}

#[test]
fn prod_deploys_only_from_main_through_its_environment_and_role() {
    let workflow = yaml_file(WORKFLOW);
    let jobs = workflow["jobs"].as_mapping().unwrap();
    let text = repo_file(WORKFLOW) + &repo_file(DEPLOY_ACTION);
    assert!(
        !text.contains("AWS_DEPLOY_ROLE_ARN"),
        "no role shared by branches and prod"
    );

    // Exactly one job can assume the prod role: on main, in the environment `production`.
    let prod_jobs: Vec<&str> = jobs
        .iter()
        .filter(|(_, job)| job_text(job).contains(PROD_ROLE))
        .map(|(id, _)| id.as_str().unwrap())
        .collect();
    assert_eq!(prod_jobs, ["deploy-prod"]);
    for (id, job) in jobs {
        let id = id.as_str().unwrap();
        let condition = job["if"].as_str().unwrap_or_default();
        let in_production = job["environment"] == "production";
        let assumes_a_role = job["permissions"]["id-token"] == "write";
        if id == "deploy-prod" {
            assert!(in_production, "{id}: in the environment its role trusts");
            assert!(
                condition.contains("github.ref == 'refs/heads/main'"),
                "{id}: main only"
            );
            assert!(!job_text(job).contains(BRANCH_ROLE), "{id}");
        } else {
            assert!(!in_production, "{id}: only deploy-prod is in production");
            assert!(
                !assumes_a_role || job_text(job).contains(BRANCH_ROLE),
                "{id}: assumes the branch role"
            );
        }
    }
    assert!(workflow["jobs"]["deploy-branch"]["if"]
        .as_str()
        .unwrap()
        .contains("github.ref != 'refs/heads/main'"));
    // Both deploy through the same steps, so what prod runs is what every branch tried.
    for id in ["deploy-branch", "deploy-prod"] {
        assert!(
            job_text(&workflow["jobs"][id]).contains("uses: $/.github/actions/deploy-stack"),
            "{id}"
        );
    }

    // The roles' trust: prod's only the environment's token, the branch role any branch's.
    let prod_trust = json_file("deploy/iam/prod-deploy-role.trust.json");
    assert_eq!(
        trusted_subjects(&prod_trust),
        [(
            "StringEquals".to_owned(),
            "repo:OWNER/REPO:environment:production".to_owned()
        )]
    );
    let branch_trust = json_file("deploy/iam/branch-deploy-role.trust.json");
    assert_eq!(
        trusted_subjects(&branch_trust),
        [(
            "StringLike".to_owned(),
            "repo:OWNER/REPO:ref:refs/heads/*".to_owned()
        )]
    );

    // Their permissions: the branch role is denied every kind of prod resource by name,
    // explicitly (so nothing else it is granted can reach them); prod's reaches only prod's.
    let prod = json_file("deploy/iam/prod-deploy-role.permissions.json");
    let branch = json_file("deploy/iam/branch-deploy-role.permissions.json");
    for write in stack_writes("prod") {
        assert!(names(&prod, "Allow", &write), "prod role: {write:?}");
        assert!(names(&branch, "Deny", &write), "branch role: {write:?}");
    }
    for write in stack_writes("my-branch") {
        assert!(names(&branch, "Allow", &write), "branch role: {write:?}");
        assert!(!names(&branch, "Deny", &write), "branch role: {write:?}");
        assert!(!names(&prod, "Allow", &write), "prod role: {write:?}");
    }
    // What CloudFormation tags with prod's stack name is denied too, whatever its name.
    let by_tag = branch["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Effect"] == "Deny" && s["Resource"] == "*")
        .expect("a Deny by the stack's tag");
    assert_eq!(
        by_tag["Condition"]["StringEquals"]["aws:ResourceTag/aws:cloudformation:stack-name"],
        "developer-ingest-prod"
    );
    // On any resource: only actions that name none (validating a template, the access log
    // delivery API Gateway sets up), never a stack's, function's, role's or table's.
    for policy in [&prod, &branch] {
        for statement in policy["Statement"].as_array().unwrap() {
            if statement["Effect"] == "Allow" && statement["Resource"] == "*" {
                for action in string_list(&statement["Action"]) {
                    assert!(
                        action == "cloudformation:ValidateTemplate" || action.starts_with("logs:"),
                        "{action} on any resource"
                    );
                }
            }
        }
    }
    let prod_actions: Vec<&str> = prod["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| string_list(&s["Action"]))
        .collect();
    for never in ["cloudformation:DeleteStack", "dynamodb:DeleteTable", "*"] {
        assert!(!prod_actions.contains(&never), "prod role: {never}");
    }
}

/// Every `uses:` line of the workflow and its action: third-party ones by commit, with the tag.
#[test]
fn the_workflow_pins_its_actions_and_passes_no_expression_to_a_shell() {
    for file in [WORKFLOW, DEPLOY_ACTION] {
        for line in repo_file(file).lines() {
            let Some((_, used)) = line.split_once("uses: ") else {
                continue;
            };
            if used.starts_with("$/") {
                continue;
            }
            let (action, rest) = used.split_once('@').unwrap_or((used, ""));
            let (sha, tag) = rest.split_once(" # ").unwrap_or((rest, ""));
            assert!(
                action.split('/').count() == 2
                    && sha.len() == 40
                    && sha.bytes().all(|b| b.is_ascii_hexdigit()),
                "{file}: `{line}` is not pinned to a commit"
            );
            assert!(tag.starts_with('v'), "{file}: `{line}` names no tag");
        }
    }

    // Branch names may hold `'`, `$` and `|`: every value reaches a script through env:.
    let workflow = yaml_file(WORKFLOW);
    let workflow_steps = workflow["jobs"]
        .as_mapping()
        .unwrap()
        .values()
        .flat_map(|job| job["steps"].as_sequence().unwrap());
    let action = yaml_file(DEPLOY_ACTION);
    let action_steps = action["runs"]["steps"].as_sequence().unwrap();
    for step in workflow_steps.chain(action_steps) {
        let run = step["run"].as_str().unwrap_or_default();
        assert!(!run.contains("${{"), "an expression in a script: {run}");
        if step["uses"]
            .as_str()
            .is_some_and(|u| u.starts_with("actions/checkout@"))
        {
            assert_eq!(step["with"]["persist-credentials"], false, "{step:?}");
        }
    }

    // Least privilege: nothing by default, each job what it uses.
    assert_eq!(workflow["permissions"], Value::Mapping(Default::default()));
    for (id, job) in workflow["jobs"].as_mapping().unwrap() {
        let permissions = job["permissions"]
            .as_mapping()
            .unwrap_or_else(|| panic!("{id:?}"));
        for (scope, level) in permissions {
            let allowed = matches!(
                (scope.as_str().unwrap(), level.as_str().unwrap()),
                ("contents", "read") | ("id-token", "write")
            );
            assert!(allowed, "{id:?}: {scope:?}: {level:?}");
        }
    }

    // make test lints them with a pinned zizmor (zero findings), offline.
    assert!(repo_file("scripts/tools.sh").contains("ZIZMOR_VERSION=\""));
    assert!(repo_file("scripts/test.sh").contains("zizmor\" --offline --no-progress .github/"));
}

#[test]
fn the_api_logs_each_request_without_its_path_headers_or_body() {
    let template = template();
    let settings = &resource(&template, "HttpApi")["Properties"]["AccessLogSettings"];
    let destination = tagged(&settings["DestinationArn"], "GetAtt");
    assert_eq!(destination, &format!("{API_ACCESS_LOG_GROUP}.Arn"));
    let log_group = resource(&template, API_ACCESS_LOG_GROUP);
    assert_retained_on_prod(API_ACCESS_LOG_GROUP, log_group);
    assert!(
        is_ref_to(
            &log_group["Properties"]["RetentionInDays"],
            "LogRetentionDays"
        ),
        "kept as long as the functions' logs"
    );

    let format: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(settings["Format"].as_str().unwrap())
            .expect("the format is one JSON object");
    for field in [
        "requestId",
        "ip",
        "requestTime",
        "httpMethod",
        "routeKey",
        "status",
        "protocol",
        "responseLength",
        "integrationLatency",
        "integrationErrorMessage",
    ] {
        assert!(format.contains_key(field), "access log: no {field}");
    }
    let docs = repo_file("docs/operations.md");
    for (field, value) in &format {
        assert!(
            docs.contains(&format!("`{field}`")),
            "docs/operations.md: no `{field}`"
        );
        let value = value.as_str().unwrap();
        assert!(value.starts_with("$context."), "{field}: {value}");
        // A path can hold an email (users/{external_user_id}); the route key says the same
        // without it. Headers carry the API key.
        let lower = value.to_ascii_lowercase();
        for never in ["path", "header", "authorization", "body", "querystring"] {
            assert!(!lower.contains(never), "access log: {field} is {value}");
        }
    }
}

#[test]
fn the_prod_table_refuses_to_be_deleted() {
    let template = template();
    let table = resource(&template, "Table");
    assert_retained_on_prod("Table", table);
    let protection = tagged(&table["Properties"]["DeletionProtectionEnabled"], "If");
    assert_eq!(
        protection.as_sequence().unwrap(),
        &[
            Value::from("IsProduction"),
            Value::from(true),
            Value::from(false)
        ]
    );
}

/// The change feed's consumer reads the table's stream (both images), reports the records
/// that failed, bisects a crashing batch, gives up after bounded retries into a queue that an
/// alarm watches, and writes only tenant items.
#[test]
fn the_change_feed_consumer_is_bounded_and_watched() {
    let template = template();
    let table = resource(&template, "Table");
    assert_eq!(
        table["Properties"]["StreamSpecification"]["StreamViewType"],
        "NEW_AND_OLD_IMAGES"
    );
    for function in [CONSUMER, PUBLISHER] {
        let stream = &resource(&template, function)["Properties"]["Events"]["Stream"];
        assert_stream_consumer(stream);
    }
    let publisher = resource(&template, PUBLISHER);
    let filter = publisher["Properties"]["Events"]["Stream"]["Properties"]["FilterCriteria"]
        ["Filters"][0]["Pattern"]
        .as_str()
        .unwrap();
    assert!(
        filter.contains("INSERT") && filter.contains("change"),
        "only new change items"
    );
    assert_eq!(
        resource(&template, "ChangesBus")["Type"],
        "AWS::Events::EventBus"
    );
    let consumer = resource(&template, CONSUMER);
    let queue = resource(&template, "ChangesDeadLetterQueue");
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let alarm = resource(&template, "ChangesDeadLetterAlarm");
    assert_notifies_the_topic("ChangesDeadLetterAlarm", alarm);
    assert_eq!(alarm["Properties"]["Namespace"], "AWS/SQS");
    for statement in consumer["Properties"]["Policies"][0]["Statement"]
        .as_sequence()
        .unwrap()
    {
        let writes = statement["Action"].as_sequence().unwrap().iter().any(|a| {
            a.as_str()
                .is_some_and(|a| a.ends_with("PutItem") || a.ends_with("BatchWriteItem"))
        });
        if writes {
            assert_eq!(
                statement["Condition"]["ForAllValues:StringLike"]["dynamodb:LeadingKeys"][0],
                "ORG#*#*"
            );
        }
    }
}

fn assert_stream_consumer(stream: &Value) {
    assert_eq!(stream["Type"], "DynamoDB");
    let properties = &stream["Properties"];
    assert_eq!(
        properties["FunctionResponseTypes"][0],
        "ReportBatchItemFailures"
    );
    assert_eq!(properties["BisectBatchOnFunctionError"], true);
    assert!(properties["MaximumRetryAttempts"].as_u64().unwrap() <= 10);
    assert_eq!(
        properties["ParallelizationFactor"], 1,
        "one writer per shard, in order"
    );
    let destination = &properties["DestinationConfig"]["OnFailure"];
    assert_eq!(destination["Type"], "SQS");
}

/// The sweeper of due timers (issue 26): a schedule every minute, retries bounded, a
/// dead-letter queue (for failed runs and undelivered schedules) that an alarm watches,
/// one run at a time, and writes only tenant items and its own watermark.
#[test]
fn the_timer_sweeper_runs_every_minute_bounded_and_watched() {
    let template = template();
    let sweeper = &resource(&template, SWEEPER)["Properties"];
    let schedule = &sweeper["Events"]["EveryMinute"];
    assert_eq!(schedule["Type"], "ScheduleV2");
    assert_eq!(
        schedule["Properties"]["ScheduleExpression"],
        "rate(1 minute)"
    );
    assert!(
        schedule["Properties"]["RetryPolicy"]["MaximumRetryAttempts"]
            .as_u64()
            .unwrap()
            <= 3
    );
    let queue = "ChangesSweeperDeadLetterQueue";
    assert_eq!(resource(&template, queue)["Type"], "AWS::SQS::Queue");
    let dlq = |value: &Value| tagged(value, "GetAtt").as_str() == Some(&format!("{queue}.Arn"));
    assert!(dlq(&schedule["Properties"]["DeadLetterConfig"]["Arn"]));
    let invoke = &sweeper["EventInvokeConfig"];
    assert!(invoke["MaximumRetryAttempts"].as_u64().unwrap() <= 2);
    assert!(dlq(&invoke["DestinationConfig"]["OnFailure"]["Destination"]));
    assert_eq!(sweeper["ReservedConcurrentExecutions"], 1);
    let alarm = resource(&template, "ChangesSweeperDeadLetterAlarm");
    assert_notifies_the_topic("ChangesSweeperDeadLetterAlarm", alarm);
    let function = resource(&template, SWEEPER);
    assert!(may(function, "dynamodb:UpdateItem", "SWEEPER#timers"));
    assert!(!may(function, "dynamodb:PutItem", "SWEEPER#timers"));
    assert!(
        !may(function, "dynamodb:Scan", "ORG#acme#BOOKING#b1"),
        "no scan"
    );
}
