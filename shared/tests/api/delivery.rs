//! template.yaml and the watch router must describe the same functions, routes and table
//! as the code: these tests fail when they drift apart.

use serde_yaml_ng::Value;
use shared::store::table::{GSIS, TABLE_KEYS, TTL_ATTRIBUTE};
use shared::Endpoint;
use std::path::PathBuf;

pub(crate) fn repo_file(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn template() -> Value {
    serde_yaml_ng::from_str(&repo_file("template.yaml")).expect("template.yaml is YAML")
}

fn key_schema(value: &Value) -> Vec<(String, String)> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|k| {
            (
                k["AttributeName"].as_str().unwrap().to_owned(),
                k["KeyType"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn expected(keys: &[(&str, aws_sdk_dynamodb::types::KeyType)]) -> Vec<(String, String)> {
    keys.iter()
        .map(|(name, kind)| (name.to_string(), kind.as_str().to_owned()))
        .collect()
}

#[test]
fn the_template_table_matches_the_code() {
    let template = template();
    let table = &template["Resources"]["Table"]["Properties"];
    assert_eq!(table["BillingMode"], "PAY_PER_REQUEST");
    assert_eq!(key_schema(&table["KeySchema"]), expected(&TABLE_KEYS));
    let indexes = table["GlobalSecondaryIndexes"].as_sequence().unwrap();
    assert_eq!(indexes.len(), GSIS.len());
    for (index, (name, keys)) in indexes.iter().zip(GSIS) {
        assert_eq!(index["IndexName"], name);
        assert_eq!(key_schema(&index["KeySchema"]), expected(&keys));
        assert_eq!(index["Projection"]["ProjectionType"], "ALL");
    }
    assert_eq!(
        table["TimeToLiveSpecification"]["AttributeName"],
        TTL_ATTRIBUTE
    );
    assert_eq!(
        table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
        true
    );
}

#[test]
fn the_template_has_one_function_per_endpoint_with_its_routes() {
    let template = template();
    let resources = template["Resources"].as_mapping().unwrap();
    let functions: Vec<&Value> = resources
        .values()
        .filter(|r| r["Type"] == "AWS::Serverless::Function")
        .collect();
    assert_eq!(functions.len(), Endpoint::ALL.len());
    for endpoint in Endpoint::ALL {
        let function = functions
            .iter()
            .find(|f| f["Metadata"]["BuildProperties"]["Binary"] == endpoint.function_name())
            .unwrap_or_else(|| panic!("no function builds {}", endpoint.function_name()));
        assert_eq!(function["Metadata"]["BuildMethod"], "rust-cargolambda");
        let path = endpoint.path();
        let routes: Vec<(String, String)> = function["Properties"]["Events"]
            .as_mapping()
            .unwrap()
            .values()
            .map(|event| {
                assert_eq!(event["Type"], "HttpApi");
                let properties = &event["Properties"];
                (
                    properties["Method"].as_str().unwrap().to_owned(),
                    properties["Path"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let method = endpoint.method_name().to_owned();
        assert!(
            routes.contains(&(method.clone(), path.trim_end_matches('/').to_owned())),
            "{routes:?}"
        );
        assert!(
            routes.contains(&(method, format!("{path}{{proxy+}}"))),
            "{routes:?}"
        );
    }
}

/// Every authenticated function reads its key (GetItem) and records its use at most hourly
/// (UpdateItem); the upserts write with UpdateItem, events also with PutItem.
#[test]
fn functions_get_only_the_table_actions_they_use() {
    let template = template();
    for (name, resource) in template["Resources"].as_mapping().unwrap() {
        if resource["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let binary = resource["Metadata"]["BuildProperties"]["Binary"]
            .as_str()
            .unwrap();
        let mut actions: Vec<&str> = resource["Properties"]["Policies"]
            .as_sequence()
            .map(|policies| {
                policies
                    .iter()
                    .flat_map(|p| p["Statement"].as_sequence().unwrap())
                    .flat_map(|s| s["Action"].as_sequence().unwrap())
                    .map(|a| a.as_str().unwrap())
                    .collect()
            })
            .unwrap_or_default();
        actions.sort();
        let expected: &[&str] = match binary {
            "health" => &[],
            "me" => &["dynamodb:GetItem", "dynamodb:UpdateItem"],
            "events" => &[
                "dynamodb:GetItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem",
            ],
            _ => &["dynamodb:GetItem", "dynamodb:UpdateItem"],
        };
        assert_eq!(actions, expected, "{name:?}");
    }
}

#[test]
fn the_watch_router_serves_every_endpoint_with_and_without_the_slash() {
    let manifest: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .unwrap();
    assert_eq!(router.len(), 2 * Endpoint::ALL.len());
    for endpoint in Endpoint::ALL {
        let path = endpoint.path();
        for variant in [path.as_str(), path.trim_end_matches('/')] {
            assert_eq!(
                router[variant].as_str(),
                Some(endpoint.function_name()),
                "{variant}"
            );
        }
    }
}

#[test]
fn every_function_crate_runs_its_endpoint() {
    for endpoint in Endpoint::ALL {
        let main = repo_file(&format!(
            "functions/{}/src/main.rs",
            endpoint.function_name()
        ));
        assert!(
            main.contains(&format!(
                "shared::http::run(shared::Endpoint::{endpoint:?})"
            )),
            "{endpoint:?}"
        );
    }
}
