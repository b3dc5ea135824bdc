//! What the functions log: one structured JSON line per request, and never an API key,
//! whatever the request looks like or however it fails.
//!
//! Its own test binary (its own process), because the log subscriber is process-global, as
//! in a function: tests running beside it in one process would log into it, or race it.

#[allow(dead_code)]
#[path = "api/common.rs"]
mod common;

use common::*;
use lambda_http::http::Request as HttpRequest;
use lambda_http::Body;
use serde_json::{json, Value};
use shared::http::{log_subscriber, App};
use shared::Endpoint;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// A log destination the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'w> tracing_subscriber::fmt::MakeWriter<'w> for Captured {
    type Writer = Captured;
    fn make_writer(&'w self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("UTF-8 logs")
    }
}

fn request(
    endpoint: Endpoint,
    authorization: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> HttpRequest<Body> {
    let mut builder = HttpRequest::builder()
        .method(endpoint.method())
        .uri(endpoint.path())
        .header("authorization", authorization);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::from(body.to_owned())).unwrap()
}

#[tokio::test]
async fn logs_are_one_json_line_per_request_and_never_contain_a_key() {
    let org = TestOrg::new().await;
    let secret = org.secret.clone();
    // The secret part alone, and its SHA-256 as stored, must not leak either.
    let secret_part = secret.rsplit('_').next().unwrap().to_owned();
    let bearer = format!("Bearer {secret}");
    let captured = Captured::default();
    // Debug level: even the most verbose setting a deployment may use keeps keys out.
    tracing::subscriber::set_global_default(log_subscriber("debug", captured.clone()))
        .expect("the only subscriber of this process");

    let user = json!({"external_user_id": "log-user"}).to_string();
    let broken = App::new(unreachable_store());
    let cases: Vec<(&App, HttpRequest<Body>, u16)> = vec![
        (
            &org.app,
            request(Endpoint::UsersUpsert, &bearer, &[], &user),
            201,
        ),
        (&org.app, request(Endpoint::Me, &bearer, &[], ""), 200),
        (
            &org.app,
            request(
                Endpoint::Me,
                &format!("Bearer {}", tampered(&secret)),
                &[],
                "",
            ),
            401,
        ),
        (
            &org.app,
            request(Endpoint::Me, &format!("Basic {secret}"), &[], ""),
            401,
        ),
        (
            &org.app,
            request(Endpoint::Me, &format!("Bearer  {secret}x"), &[], ""),
            401,
        ),
        (&org.app, request(Endpoint::Me, &secret, &[], ""), 401),
        // The key pasted where it does not belong: a body field, an idempotency key.
        (
            &org.app,
            request(
                Endpoint::UsersUpsert,
                &bearer,
                &[],
                &json!({"external_user_id": "u", "install_count": secret}).to_string(),
            ),
            400,
        ),
        (
            &org.app,
            request(
                Endpoint::Events,
                &bearer,
                &[("idempotency-key", &secret)],
                &json!({"event": "app_opened", "user": {"external_user_id": "u"}}).to_string(),
            ),
            201,
        ),
        (
            &org.app,
            request(
                Endpoint::UsersUpsert,
                &bearer,
                &[],
                &format!("{{\"{secret}\""),
            ),
            400,
        ),
        // Storage down while authenticating.
        (&broken, request(Endpoint::Me, &bearer, &[], ""), 503),
    ];
    let count = cases.len();
    for (app, request, status) in cases {
        let endpoint = Endpoint::ALL
            .into_iter()
            .find(|e| request.uri().path() == e.path())
            .unwrap();
        let reply = send(app, endpoint, request).await;
        assert_eq!(reply.status.as_u16(), status, "{}", reply.body);
        // A success body may echo what the client chose to store (here the idempotency key).
        if status >= 400 {
            let body = reply.body.to_string();
            assert!(
                !body.contains(&secret_part),
                "error body leaks the key: {body}"
            );
        }
    }

    // Another org's, so the per-line checks below stay about the cases above.
    let personal_org = TestOrg::new().await;
    let personal = personal_data_requests(&personal_org).await;

    let logs = captured.text();
    for data in &personal {
        assert!(
            !logs.to_lowercase().contains(&data.to_lowercase()),
            "{data:?} is in the logs: {logs}"
        );
    }
    assert!(!logs.contains(&secret_part), "the key is in the logs");
    let stored_hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
    assert!(
        !logs.contains(&stored_hash),
        "the key's hash is in the logs"
    );

    let lines: Vec<Value> = logs
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}")))
        .collect();
    let requests: Vec<&Value> = lines.iter().filter(|l| l["message"] == "request").collect();
    assert_eq!(
        requests.len(),
        count + PERSONAL_DATA_REQUESTS,
        "one line per request"
    );
    for line in &requests {
        if line["org_id"] == personal_org.org_id.as_str() {
            continue;
        }
        assert!(line["request_id"].is_string(), "{line}");
        assert!(line["function"].is_string(), "{line}");
        assert!(line["status"].is_u64(), "{line}");
        assert!(line["duration_ms"].is_u64(), "{line}");
        let expected = match line["status"].as_u64().unwrap() {
            200..=299 => "ok",
            400..=499 => "rejected",
            _ => "failed",
        };
        assert_eq!(line["outcome"], expected, "{line}");
        let authenticated = matches!(line["status"].as_u64(), Some(200 | 201 | 400));
        assert_eq!(
            line["org_id"].as_str() == Some(org.org_id.as_str()),
            authenticated,
            "org id on authenticated requests only: {line}"
        );
        if expected != "ok" {
            assert!(line["error_code"].is_string(), "{line}");
        }
    }
    // The outage is logged with its cause for operators (the body said only "retry").
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["message"] == "storage unavailable"),
        "{logs}"
    );
}

const PERSONAL_DATA_REQUESTS: usize = 6;

/// Requests full of personal data, ending every way (created, read, refused by a merge that
/// happened meanwhile, whose warning names the record): what of them must never be logged.
async fn personal_data_requests(org: &TestOrg) -> Vec<String> {
    let email = format!("{}@pii.example", unique("ann.lee"));
    let merged_email = format!("{}@pii.example", unique("bo.merge"));
    let (name, phone, text, metadata) = (
        "Annabel Leeperson",
        "+15550100999",
        "my card number is in this message",
        "meta-value-of-ann",
    );
    let user = json!({
        "external_user_id": unique("pii"), "email": email, "name": name, "phone": phone,
        "metadata": {"note": metadata}
    });
    org.call(Endpoint::UsersUpsert, user)
        .await
        .assert_status(201);
    let message = json!({
        "message_id": unique("msg"), "thread_id": unique("thr"), "direction": "in",
        "text": text, "sent_at": "2026-03-24T09:15:00Z",
        "contact": {"email": email, "name": name}, "metadata": {"note": metadata}
    });
    org.call(Endpoint::MessagesUpsert, message)
        .await
        .assert_status(201);
    let by_email = format!("/api/developer/users/email/{email}/");
    org.read_at(Endpoint::UsersGet, &by_email, "")
        .await
        .assert_status(200);

    // An email-only client merged into an identified one; then a write that still resolves
    // the email to the merged record (its alias gone here, as if read just before the
    // merge) is refused with a warning naming the record.
    let email_only = |amount: &str| {
        json!({
            "event": "user_purchased", "user": {"email": merged_email},
            "properties": {"amount": amount, "currency": "USD"},
            "event_timestamp": "2026-03-23T10:00:00Z"
        })
    };
    org.call(Endpoint::Events, email_only("1.00"))
        .await
        .assert_status(201);
    let identify = json!({"external_user_id": unique("pii"), "email": merged_email});
    org.call(Endpoint::UsersUpsert, identify)
        .await
        .assert_status(201);
    let parsed: shared::fields::Email = merged_email.parse().unwrap();
    org.store()
        .delete(&shared::store::testing::keys::email_alias(
            &org.org_id,
            &parsed,
        ))
        .await
        .unwrap();
    org.call(Endpoint::Events, email_only("2.00"))
        .await
        .assert_error(503, "storage_unavailable");

    vec![
        email,
        merged_email,
        name.into(),
        phone.into(),
        text.into(),
        metadata.into(),
    ]
}
