//! Every file in events/ goes through its function's handler and must get the status its
//! name promises: `<function>.<status>.<case>.json`. So the fixtures never rot.

use crate::common::*;
use shared::http::App;
use shared::store::Store;
use shared::Endpoint;
use std::path::PathBuf;

fn events_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events")
}

/// What reads find: the records the write endpoints' 201 files create.
async fn seed_reference_records(app: &App, files: &[PathBuf]) {
    for path in files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let Some(function) = name.strip_suffix(".201.created.json") else {
            continue;
        };
        let endpoint = Endpoint::from_function_name(function).unwrap();
        let raw = std::fs::read_to_string(path).unwrap();
        let request = lambda_http::request::from_str(&raw).unwrap();
        let reply = send(app, endpoint, request).await;
        assert!(reply.status.is_success(), "seeding {name}: {}", reply.body);
    }
}

#[tokio::test]
async fn every_event_file_gets_the_status_its_name_promises() {
    let client = store().await.client().clone();
    let mut files: Vec<_> = std::fs::read_dir(events_dir())
        .expect("events/ exists")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let mut covered = std::collections::HashSet::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let parts: Vec<&str> = name.trim_end_matches(".json").split('.').collect();
        let [function, status, case] = parts[..] else {
            panic!("{name}: expected <function>.<status>.<case>.json");
        };
        let endpoint = Endpoint::from_function_name(function)
            .unwrap_or_else(|| panic!("{name}: unknown function"));
        let status: u16 = status
            .parse()
            .unwrap_or_else(|_| panic!("{name}: status is not a number"));
        let raw = std::fs::read_to_string(path).unwrap();
        let request = lambda_http::request::from_str(&raw)
            .unwrap_or_else(|e| panic!("{name}: not an API Gateway event: {e}"));
        assert!(
            endpoint.match_path(request.uri().path()).is_some(),
            "{name}: path"
        );
        // A table of its own per file, so every file sees the state it was written for.
        let store = Store::new(client.clone(), unique("fixtures"));
        shared::admin::create_table(&store, shared::store::table::TableStream::Off)
            .await
            .unwrap();
        // What `make run` registers too (admin fixtures register).
        assert!(shared::admin::register_fixture_key(&store).await.unwrap());
        let app = App::new(store);
        if endpoint.method() != "POST" && endpoint.requires_api_key() {
            seed_reference_records(&app, &files).await;
        }
        let reply = send(&app, endpoint, request).await;
        assert_eq!(reply.status.as_u16(), status, "{name}: {}", reply.body);
        if status >= 400 {
            assert_eq!(
                reply.body["error"]["code"], case,
                "{name}: the case names the error code"
            );
        }
        covered.insert(function);
    }
    for endpoint in Endpoint::ALL {
        assert!(
            covered.contains(endpoint.function_name()),
            "no event file for {}",
            endpoint.function_name()
        );
    }
}
