//! The importer binary against the local stack: the real function handler
//! (`shared::http::handle`) behind a small HTTP server, over DynamoDB Local (set
//! DYNAMODB_ENDPOINT, as `make test` does). The stored state must be exactly what the
//! file's valid lines imply, the rejects file must name exactly its bad lines, and an
//! import killed halfway and run again must end in the same state.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use shared::http::App;
use shared::store::testing::keys;
use shared::store::Store;
use shared::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos:x}-{}", std::process::id())
}

async fn store() -> Store {
    assert!(
        std::env::var_os("DYNAMODB_ENDPOINT").is_some(),
        "these tests need DynamoDB Local: run `make test` (or start it and set DYNAMODB_ENDPOINT)"
    );
    // A table of its own: these tests write tens of thousands of items, which would slow
    // the scans of the shared/ tests that use theirs.
    static TABLE: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let shared = std::env::var("TABLE_NAME").unwrap_or_else(|_| "developer-ingest-test".into());
        format!("{shared}-importer")
    });
    std::env::set_var("TABLE_NAME", table);
    let store = Store::from_env().await;
    shared::admin::create_table(&store, shared::store::table::TableStream::Off)
        .await
        .expect("the test table");
    store
}

/// The local API: every request through the function handler of its endpoint. Every
/// `fail_every`-th request is answered 503 with Retry-After before reaching it (0: none),
/// and each waits `delay` first, so an import can be caught halfway.
struct LocalApi {
    url: String,
    app: Arc<App>,
}

#[derive(Clone, Copy)]
struct Behaviour {
    delay: Duration,
    fail_every: u32,
}

impl LocalApi {
    async fn start(store: Store, behaviour: Behaviour) -> LocalApi {
        let app = Arc::new(App::new(store));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = Arc::clone(&app);
        let requests = Arc::new(AtomicU32::new(0));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (app, requests) = (Arc::clone(&served), Arc::clone(&requests));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let (app, requests) = (Arc::clone(&app), Arc::clone(&requests));
                        async move { answer(&app, request, behaviour, &requests).await }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LocalApi { url, app }
    }
}

async fn answer(
    app: &App,
    request: hyper::Request<Incoming>,
    behaviour: Behaviour,
    requests: &AtomicU32,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    let (parts, body) = request.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    tokio::time::sleep(behaviour.delay).await;
    let count = requests.fetch_add(1, Ordering::Relaxed) + 1;
    if behaviour.fail_every > 0 && count % behaviour.fail_every == 0 {
        let response = hyper::Response::builder()
            .status(503)
            .header("retry-after", "1")
            .body(Full::new(Bytes::from_static(
                b"{\"error\":{\"code\":\"storage_unavailable\"}}",
            )))
            .unwrap();
        return Ok(response);
    }
    let path = parts.uri.path().to_owned();
    let endpoint = Endpoint::ALL
        .into_iter()
        .find(|e| e.method() == parts.method && e.match_path(&path).is_some())
        .unwrap_or(Endpoint::Health);
    let mut builder = lambda_http::http::Request::builder()
        .method(parts.method.clone())
        .uri(format!("http://127.0.0.1{}", parts.uri));
    for (name, value) in &parts.headers {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(lambda_http::Body::Binary(body.to_vec()))
        .unwrap();
    let response = shared::http::handle(app, endpoint, request).await;
    let (parts, body) = response.into_parts();
    let bytes = match body {
        lambda_http::Body::Text(text) => Bytes::from(text),
        lambda_http::Body::Binary(bytes) => Bytes::from(bytes),
        _ => Bytes::new(),
    };
    Ok(hyper::Response::from_parts(parts, Full::new(bytes)))
}

struct Org {
    id: String,
    key_file: PathBuf,
}

async fn new_org(store: &Store, dir: &Path, rate_limit: u32) -> Org {
    let id = unique("org");
    let key =
        shared::admin::create_key_with_limit(store, &id, "import", true, "test", Some(rate_limit))
            .await
            .unwrap();
    let key_file = dir.join(format!("{id}.key"));
    std::fs::write(&key_file, key.key).unwrap();
    Org { id, key_file }
}

fn importer(api: &LocalApi, org: &Org, file: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_importer"));
    command
        .arg(file)
        .args(["--url", &api.url, "--progress", "lines"])
        .arg("--api-key-file")
        .arg(&org.key_file)
        .args(extra)
        .env_remove("API_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the importer to its end: its exit code and summary.
async fn run(mut command: Command) -> (i32, String) {
    tokio::task::spawn_blocking(move || {
        let output = command.output().unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), text)
    })
    .await
    .unwrap()
}

/// What the file's valid lines imply, per user: events, installs, payments, cents paid.
type Expected = BTreeMap<String, [u64; 4]>;

const USERS: usize = 100;

/// 10,000 lines of events (with a few blank ones), in time order per user, among them
/// invalid lines of several kinds and repeated identical lines (each counts).
fn events_file(path: &Path) -> (Expected, BTreeSet<u64>) {
    let mut text = String::new();
    let mut expected = Expected::new();
    let mut bad = BTreeSet::new();
    let mut previous_opened: Option<String> = None;
    for i in 0..10_000u64 {
        let line = i + 1;
        let user = format!("imp-{}", i as usize % USERS);
        let at = format!(
            "2025-01-{:02}T{:02}:{:02}:{:02}Z",
            1 + i / 86_400,
            i / 3600 % 24,
            i / 60 % 60,
            i % 60
        );
        let cents = (i % 7 + 1) * 100 + i % 100;
        let (event, properties) = match i % 10 {
            0 => ("app_installed", json!({"install_platform": "ios"})),
            1 | 2 => (
                "user_purchased",
                json!({"amount": format!("{}.{:02}", cents / 100, cents % 100), "currency": "usd"}),
            ),
            _ => ("app_opened", json!({})),
        };
        let valid = json!({"event": event, "user": {"external_user_id": user}, "properties": properties, "event_timestamp": at});
        let bad_line = |text: String| (text, true);
        let (text_line, is_bad) = if i % 53 == 13 {
            bad_line(
                json!({"event": event, "user": {"name": "nobody"}, "event_timestamp": at})
                    .to_string(),
            )
        } else if i % 97 == 3 {
            bad_line("{\"event\": \"app_opened\", \"user\":".to_owned())
        } else if i % 89 == 11 {
            bad_line(json!({"event": "user_purchased", "user": {"external_user_id": user}, "properties": {"amount": "abc"}, "event_timestamp": at}).to_string())
        } else if i % 131 == 17 {
            bad_line(json!({"event": "app_opened", "user": {"external_user_id": user}, "event_timestamp": "2999-01-01T00:00:00Z"}).to_string())
        } else if i % 151 == 19 {
            bad_line("[]".to_owned())
        } else if i % 499 == 7 {
            (String::new(), false)
        } else if i % 200 == 150 && previous_opened.is_some() {
            // The same event twice: both are stored (an app_opened changes no counter).
            let repeated = previous_opened.clone().unwrap();
            let user: Value = serde_json::from_str(&repeated).unwrap();
            let id = user["user"]["external_user_id"]
                .as_str()
                .unwrap()
                .to_owned();
            expected.entry(id).or_default()[0] += 1;
            (repeated, false)
        } else {
            let tally = expected.entry(user.clone()).or_default();
            tally[0] += 1;
            match event {
                "app_installed" => tally[1] += 1,
                "user_purchased" => {
                    tally[2] += 1;
                    tally[3] += cents;
                }
                _ => previous_opened = Some(valid.to_string()),
            }
            (valid.to_string(), false)
        };
        if is_bad {
            bad.insert(line);
        }
        text.push_str(&text_line);
        text.push('\n');
    }
    std::fs::write(path, text).unwrap();
    (expected, bad)
}

/// Per user: events stored, install_count, total_payments_count, lifetime_value in cents.
async fn state(store: &Store, org: &str) -> Expected {
    let mut state = Expected::new();
    for i in 0..USERS {
        let user = format!("imp-{i}");
        let identity =
            shared::input::UserIdentity::External(serde_json::from_value(json!(user)).unwrap());
        let Some(record) = store
            .get_record::<shared::store::records::UserView>(&keys::user(org, &identity))
            .await
            .unwrap()
        else {
            continue;
        };
        let view = shared::views::json(&record);
        let events = store.count_user_events(org, &identity).await.unwrap() as u64;
        let number = |name: &str| view[name].as_u64().unwrap_or(0);
        let cents = view["lifetime_value"]
            .as_str()
            .map(|v| {
                let (whole, fraction) = v.split_once('.').unwrap_or((v, "0"));
                whole.parse::<u64>().unwrap() * 100
                    + format!("{fraction:0<2}")[..2].parse::<u64>().unwrap()
            })
            .unwrap_or(0);
        state.insert(
            user,
            [
                events,
                number("install_count"),
                number("total_payments_count"),
                cents,
            ],
        );
    }
    state
}

/// The client view of a stored record of type `R`.
async fn stored<R: shared::store::records::View>(store: &Store, key: keys::ItemKey) -> Value {
    let record: R = store.get_record(&key).await.unwrap().expect("stored");
    shared::views::json(&record)
}

fn rejected_lines(file: &Path) -> Vec<u64> {
    let rejects = std::fs::read_to_string(shared_suffix(file, ".rejects.ndjson")).unwrap();
    rejects
        .lines()
        .map(|entry| {
            let entry: Value = serde_json::from_str(entry).unwrap();
            assert!(
                entry["code"].is_string() && entry["message"].is_string(),
                "{entry}"
            );
            assert!(entry.get("param").is_some(), "{entry}");
            entry["line"].as_u64().unwrap()
        })
        .collect()
}

fn shared_suffix(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(unique("importer-test"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_with_bad_lines_imports_exactly_and_a_killed_import_resumes_to_the_same_state() {
    let store = store().await;
    let dir = scratch_dir();
    let file = dir.join("events.ndjson");
    let (expected, bad) = events_file(&file);
    assert_eq!(expected.len(), USERS);
    assert!(bad.len() > 300, "{}", bad.len());
    let bad: Vec<u64> = bad.into_iter().collect();
    let api = LocalApi::start(
        store.clone(),
        Behaviour {
            delay: Duration::from_millis(2),
            fail_every: 0,
        },
    )
    .await;
    let batch = [
        "--type",
        "events",
        "--batch-size",
        "50",
        "--concurrency",
        "4",
    ];

    // In one go.
    let whole = new_org(&store, &dir, 1_000_000).await;
    let (code, summary) = run(importer(&api, &whole, &file, &batch)).await;
    assert_eq!(code, 1, "some lines are refused: {summary}");
    assert_eq!(
        rejected_lines(&file),
        bad,
        "the rejects name exactly the bad lines"
    );
    assert_eq!(state(&store, &whole.id).await, expected);
    assert!(!shared_suffix(&file, ".checkpoint.json").exists());

    // Killed halfway, then run again: it resumes and ends in the same state.
    let killed = new_org(&store, &dir, 1_000_000).await;
    let mut child = importer(&api, &killed, &file, &batch).spawn().unwrap();
    let checkpoint = shared_suffix(&file, ".checkpoint.json");
    let started = Instant::now();
    let reached = loop {
        let done = std::fs::read_to_string(&checkpoint)
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|saved| saved["done_through_line"].as_u64())
            .unwrap_or(0);
        if done >= 4_000 {
            break done;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it could be killed"
        );
        assert!(started.elapsed() < Duration::from_secs(120));
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(reached < 10_000);
    let partial = state(&store, &killed.id).await;
    assert_ne!(partial, expected, "killed before the end");
    let (code, summary) = run(importer(&api, &killed, &file, &batch)).await;
    assert_eq!(code, 1, "{summary}");
    assert!(summary.contains("resumed after line"), "{summary}");
    assert_eq!(
        rejected_lines(&file),
        bad,
        "each bad line once, after the resume too"
    );
    assert_eq!(state(&store, &killed.id).await, expected);

    let _ = api.app;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_with_dotted_headers_and_mixed_ndjson_are_imported_and_refusals_retried_away() {
    let store = store().await;
    let dir = scratch_dir();
    // Every third request fails with 503 + Retry-After; the key admits 150 items a second,
    // so batches of 100 get per-item 429s too. Everything must still be stored, once.
    let api = LocalApi::start(
        store.clone(),
        Behaviour {
            delay: Duration::ZERO,
            fail_every: 3,
        },
    )
    .await;
    let org = new_org(&store, &dir, 150).await;
    let csv = dir.join("sales.csv");
    let mut text = String::from("sale_id,total,currency,quantity,buyer.external_user_id,buyer.email,product.external_product_id,product.type,metadata\n");
    for i in 0..400 {
        text.push_str(&format!(
            "sale-{i},{}.50,usd,{},csv-buyer-{},b{}@example.com,prod-{},service,\"{{\"\"row\"\": {i}}}\"\n",
            i,
            i % 5 + 1,
            i % 40,
            i % 40,
            i % 10
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let (code, summary) = run(importer(
        &api,
        &org,
        &csv,
        &["--type", "sales", "--max-attempts", "20"],
    ))
    .await;
    assert_eq!(code, 0, "{summary}");
    assert!(summary.contains("every line stored"), "{summary}");
    let id = |id: &str| serde_json::from_value(json!(id)).unwrap();
    let sale =
        stored::<shared::store::records::SaleView>(&store, keys::sale(&org.id, &id("sale-7")))
            .await;
    assert_eq!(sale["total"], "7.50");
    assert_eq!(sale["quantity"], 3);
    assert_eq!(sale["metadata"], json!({"row": 7}));
    let product = stored::<shared::store::records::ProductView>(
        &store,
        keys::product(&org.id, &id("prod-7")),
    )
    .await;
    assert_eq!(product["type"], "service");

    let mixed = dir.join("mixed.ndjson");
    std::fs::write(
        &mixed,
        [
            json!({"type": "user", "external_user_id": "mixed-1", "plan": "pro"}),
            json!({"type": "product", "external_product_id": "mixed-p", "product_type": "service"}),
            json!({"type": "booking", "booking_id": "mixed-b", "scheduled_at": "2026-02-01T10:00:00Z", "client": {"external_user_id": "mixed-1"}}),
            json!({"type": "event", "event": "app_installed", "user": {"external_user_id": "mixed-1"}, "event_timestamp": "2026-01-01T00:00:00Z"}),
            json!({"type": "invoice", "id": 1}),
            json!({"external_user_id": "no type"}),
        ]
        .iter()
        .map(|line| format!("{line}\n"))
        .collect::<String>(),
    )
    .unwrap();
    // Twice: the second run replays every event (derived keys), nothing counts twice.
    for _ in 0..2 {
        let (code, summary) = run(importer(&api, &org, &mixed, &[])).await;
        assert_eq!(code, 1, "{summary}");
        assert_eq!(rejected_lines(&mixed), [5, 6]);
    }
    let identity = shared::input::UserIdentity::External(id("mixed-1"));
    let user =
        stored::<shared::store::records::UserView>(&store, keys::user(&org.id, &identity)).await;
    assert_eq!(
        (&user["plan"], &user["install_count"]),
        (&json!("pro"), &json!(1)),
        "counted once over two runs"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
