//! openapi.yaml must describe the API the code serves: the same operations as `Endpoint`,
//! template.yaml and the watch router, every error code `ApiError` can answer with, the
//! version health reports, the field limits the parser enforces, the path and query
//! parameters of the reads and their bounds. Whether real answers
//! conform to it is what `make fuzz-api` (schemathesis) checks.

use crate::delivery::{repo_file, template};
use serde_yaml_ng::Value;
use shared::{fields, handlers, input, query, reads, ApiError, Endpoint};
use std::collections::BTreeSet;

fn spec() -> Value {
    serde_yaml_ng::from_str(&repo_file("openapi.yaml")).expect("openapi.yaml is YAML")
}

/// (METHOD, path) of every operation in the spec.
fn operations(spec: &Value) -> BTreeSet<(String, String)> {
    let mut operations = BTreeSet::new();
    for (path, methods) in spec["paths"].as_mapping().unwrap() {
        for method in methods.as_mapping().unwrap().keys() {
            operations.insert((
                method.as_str().unwrap().to_uppercase(),
                path.as_str().unwrap().to_owned(),
            ));
        }
    }
    operations
}

fn operation(spec: &Value, endpoint: Endpoint) -> &Value {
    &spec["paths"][endpoint.path().as_str()][endpoint.method_name().to_lowercase().as_str()]
}

/// The documented path a route or router entry serves: with its trailing slash.
fn documented_path(route: &str) -> String {
    format!(
        "{}/",
        route.trim_end_matches("{proxy+}").trim_end_matches('/')
    )
}

fn endpoint_operations() -> BTreeSet<(String, String)> {
    Endpoint::ALL
        .iter()
        .flat_map(|e| {
            e.paths()
                .into_iter()
                .map(|path| (e.method_name().to_owned(), path))
        })
        .collect()
}

#[test]
fn the_spec_has_exactly_the_endpoints_of_the_code() {
    assert_eq!(operations(&spec()), endpoint_operations());
}

#[test]
fn every_template_route_and_watch_route_is_in_the_spec() {
    let documented = operations(&spec());
    let template = template();
    for resource in template["Resources"].as_mapping().unwrap().values() {
        let Some(events) = resource["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for event in events.values().filter(|e| e["Type"] == "HttpApi") {
            let properties = &event["Properties"];
            let route = (
                properties["Method"].as_str().unwrap().to_owned(),
                documented_path(properties["Path"].as_str().unwrap()),
            );
            assert!(
                documented.contains(&route),
                "{route:?} is not in openapi.yaml"
            );
        }
    }
    let manifest: toml::Table = repo_file("Cargo.toml").parse().unwrap();
    let router = manifest["workspace"]["metadata"]["lambda"]["watch"]["router"]
        .as_table()
        .unwrap();
    let documented_paths: BTreeSet<&String> = documented.iter().map(|(_, path)| path).collect();
    for path in router.keys() {
        assert!(
            documented_paths.contains(&documented_path(path)),
            "{path} is not in openapi.yaml"
        );
    }
}

#[test]
fn only_health_is_open_and_every_authenticated_operation_documents_its_errors() {
    let spec = spec();
    assert_eq!(spec["security"][0]["bearerAuth"], Value::Sequence(vec![]));
    for endpoint in Endpoint::ALL {
        let operation = operation(&spec, endpoint);
        let responses = operation["responses"].as_mapping().unwrap();
        let has = |status: &str| responses.contains_key(status);
        if endpoint.requires_api_key() {
            assert!(operation.get("security").is_none(), "{endpoint:?}");
            for status in ["401", "429", "500", "503"] {
                assert!(has(status), "{endpoint:?} does not document {status}");
            }
        } else {
            assert_eq!(operation["security"], Value::Sequence(vec![]));
            assert!(!has("401"), "{endpoint:?}");
        }
        let takes_a_body = endpoint.method_name() == "POST";
        assert_eq!(operation.get("requestBody").is_some(), takes_a_body);
        assert_eq!(has("413"), takes_a_body, "{endpoint:?}");
        // Everything but health and me reads a body, a path id or a query.
        let takes_input = !matches!(endpoint, Endpoint::Health | Endpoint::Me);
        assert_eq!(has("400"), takes_input, "{endpoint:?}");
        let sends_a_header = parameters(&spec, operation)
            .iter()
            .any(|p| p["in"] == "header");
        assert_eq!(sends_a_header, endpoint == Endpoint::Events);
        // Events: `idempotency_key_reused`; stats: `segment_too_large`.
        let refuses_422 = matches!(endpoint, Endpoint::Events | Endpoint::StatsUsers);
        assert_eq!(has("422"), refuses_422, "{endpoint:?}");
    }
}

/// An operation's parameters, references resolved.
fn parameters<'a>(spec: &'a Value, operation: &'a Value) -> Vec<&'a Value> {
    let Some(list) = operation["parameters"].as_sequence() else {
        return Vec::new();
    };
    list.iter()
        .map(|parameter| match parameter["$ref"].as_str() {
            Some(reference) => {
                let name = reference.trim_start_matches("#/components/parameters/");
                &spec["components"]["parameters"][name]
            }
            None => parameter,
        })
        .collect()
}

#[test]
fn path_parameters_are_the_ones_in_the_path_and_answer_404() {
    let spec = spec();
    for endpoint in Endpoint::ALL {
        let path = endpoint.path();
        let in_path: BTreeSet<&str> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        let operation = operation(&spec, endpoint);
        let documented: BTreeSet<&str> = parameters(&spec, operation)
            .into_iter()
            .filter(|p| p["in"] == "path")
            .inspect(|p| assert_eq!(p["required"], Value::Bool(true), "{endpoint:?}"))
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(documented, in_path, "{endpoint:?}");
        // A blank id is no path of the endpoint: 404 `not_found`.
        let responses = &operation["responses"];
        assert_eq!(
            responses.get("404").is_some(),
            !in_path.is_empty(),
            "{endpoint:?}"
        );
    }
}

/// Every `code` a response schema in the spec allows: enums and consts under `code`.
fn codes_named_in_responses(value: &Value, found: &mut BTreeSet<String>) {
    match value {
        Value::Mapping(map) => {
            if let Some(code) = map.get("code") {
                if let Some(codes) = code["enum"].as_sequence() {
                    found.extend(codes.iter().map(|c| c.as_str().unwrap().to_owned()));
                }
                if let Some(code) = code["const"].as_str() {
                    found.insert(code.to_owned());
                }
            }
            map.values()
                .for_each(|v| codes_named_in_responses(v, found));
        }
        Value::Sequence(items) => items
            .iter()
            .for_each(|v| codes_named_in_responses(v, found)),
        _ => {}
    }
}

#[test]
fn the_error_codes_are_the_ones_the_code_can_emit() {
    let spec = spec();
    let enumerated: Vec<&str> = spec["components"]["schemas"]["ErrorCode"]["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(enumerated, ApiError::ALL_CODES);

    let mut named = BTreeSet::new();
    codes_named_in_responses(&spec["paths"], &mut named);
    codes_named_in_responses(&spec["components"]["responses"], &mut named);
    let all: BTreeSet<String> = ApiError::ALL_CODES.iter().map(|c| c.to_string()).collect();
    assert!(
        named.is_subset(&all),
        "unknown: {:?}",
        named.difference(&all)
    );
    // Every code is some operation's answer: `not_found` for a blank path id,
    // `method_not_allowed` for the id `upsert` under `make run`.
    assert_eq!(named, all, "named by no operation");

    let guide = repo_file("docs/api-guide.md");
    for code in ApiError::ALL_CODES {
        assert!(
            guide.contains(&format!("`{code}`")),
            "{code} is not in docs/api-guide.md's error table"
        );
    }
}

/// The spec's currency pattern takes exactly the ISO 4217 codes the parser takes, in any case.
#[test]
fn the_spec_lists_the_currencies_the_parser_takes() {
    use iso_currency::IntoEnumIterator;
    let codes: Vec<String> = iso_currency::Currency::iter()
        .map(|currency| currency.code().to_owned())
        .collect();
    let cased = |code: &str| -> String {
        code.chars()
            .map(|c| format!("[{c}{}]", c.to_ascii_lowercase()))
            .collect()
    };
    let expected = format!(
        "^(?:{})$",
        codes.iter().map(|c| cased(c)).collect::<Vec<_>>().join("|")
    );
    let spec = spec();
    assert_eq!(
        spec["components"]["schemas"]["Currency"]["pattern"].as_str(),
        Some(expected.as_str())
    );
}

#[test]
fn the_spec_lists_the_change_types_the_feed_takes() {
    let alternatives = shared::changes::TYPES
        .iter()
        .map(|kind| kind.replace('.', "\\."))
        .collect::<Vec<_>>()
        .join("|");
    let expected = format!("^(?:(?:{alternatives})(?:,(?:{alternatives}))*)?$");
    let spec = spec();
    let types = operation(&spec, Endpoint::ChangesList)["parameters"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "types")
        .expect("a types parameter");
    assert_eq!(types["schema"]["pattern"].as_str(), Some(expected.as_str()));
}

#[test]
fn the_warning_codes_are_the_ones_the_code_can_emit() {
    let spec = spec();
    let warning = &spec["components"]["schemas"]["Warnings"]["items"]["properties"]["code"];
    let enumerated: Vec<&str> = warning["enum"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|code| code.as_str().unwrap())
        .collect();
    assert_eq!(enumerated, handlers::WARNING_CODES);
    let guide = repo_file("docs/api-guide.md");
    for code in handlers::WARNING_CODES {
        assert!(
            guide.contains(&format!("`{code}`")),
            "{code} in docs/api-guide.md"
        );
    }
}

#[test]
fn the_spec_version_is_the_api_version() {
    assert_eq!(spec()["info"]["version"], handlers::API_VERSION);
}

#[test]
fn the_spec_states_the_limits_the_parser_enforces() {
    let spec = spec();
    let schemas = &spec["components"]["schemas"];
    let max_length = |name: &str| schemas[name]["maxLength"].as_u64().unwrap() as usize;
    assert_eq!(max_length("ShortText"), fields::MAX_SHORT_TEXT_CHARS);
    assert_eq!(max_length("LongText"), fields::MAX_LONG_TEXT_CHARS);
    assert_eq!(
        schemas["Count"]["maximum"].as_u64(),
        Some(u64::from(u32::MAX))
    );
    // An id is a first and a last character around at most MAX - 2 others.
    let inner = format!("{{0,{}}}", fields::MAX_ID_CHARS - 2);
    for id in ["Id", "PresentId"] {
        assert!(
            schemas[id]["pattern"].as_str().unwrap().contains(&inner),
            "{id}"
        );
    }
    let idempotency_key = &spec["components"]["parameters"]["IdempotencyKey"]["schema"];
    assert_eq!(
        idempotency_key["maxLength"].as_u64(),
        Some(shared::idempotency::MAX_IDEMPOTENCY_KEY_CHARS as u64)
    );
    let query_parameter = |name: &str| &spec["components"]["parameters"][name]["schema"];
    let limit = query_parameter("Limit");
    assert_eq!(limit["minimum"].as_u64(), Some(1));
    assert_eq!(limit["maximum"].as_u64(), Some(query::MAX_LIMIT as u64));
    assert_eq!(limit["default"].as_u64(), Some(query::DEFAULT_LIMIT as u64));
    let users_list = operation(&spec, Endpoint::UsersList);
    let inactive_days = parameters(&spec, users_list)
        .into_iter()
        .find(|p| p["name"] == "inactive_days")
        .unwrap();
    assert_eq!(
        inactive_days["schema"]["maximum"].as_u64(),
        Some(u64::from(reads::MAX_INACTIVE_DAYS))
    );
    for list in ["events", "sales", "bookings", "conversations"] {
        let schema = &schemas["UserContext"]["properties"][list];
        assert_eq!(
            schema["maxItems"].as_u64(),
            Some(reads::USER_CONTEXT_ITEMS as u64),
            "{list}"
        );
    }
    for list in ["service_external_ids", "services"] {
        let schema = &schemas["BookingRequest"]["properties"][list]["anyOf"][0];
        assert_eq!(
            schema["maxItems"].as_u64(),
            Some(input::MAX_SERVICES_PER_BOOKING as u64),
            "{list}"
        );
    }
}
