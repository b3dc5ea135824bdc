//! Test harness: the real handler (`shared::http::handle`) against DynamoDB Local.
//! `make test` starts one DynamoDB Local for the whole run and sets DYNAMODB_ENDPOINT.

use lambda_http::http::{HeaderMap, Request as HttpRequest, StatusCode};
use lambda_http::{Body, Request};
use serde_json::Value;
use shared::admin;
use shared::http::{handle, App};
use shared::store::table::TableStream;
use shared::store::testing::keys;
use shared::store::Store;
use shared::Endpoint;
use tokio::sync::OnceCell;

pub const TEST_TABLE: &str = "developer-ingest-test";

static TABLE: OnceCell<()> = OnceCell::const_new();
static STREAMED_TABLE: OnceCell<String> = OnceCell::const_new();

/// The test table (no stream: nothing here reads it, see `streamed_store`).
pub async fn store() -> Store {
    assert!(
        std::env::var_os("DYNAMODB_ENDPOINT").is_some(),
        "these tests need DynamoDB Local: run `make test` (or start it and set DYNAMODB_ENDPOINT)"
    );
    if std::env::var_os("TABLE_NAME").is_none() {
        std::env::set_var("TABLE_NAME", TEST_TABLE);
    }
    let store = Store::from_env().await;
    TABLE
        .get_or_init(|| async {
            admin::create_table(&store, TableStream::Off)
                .await
                .map(|_| ())
                .expect("create the test table")
        })
        .await;
    store
}

/// A table of its own with the stream the change feed is derived from, for the tests that
/// read it (changes, timers): the other tests' writes stay out of its stream, which DynamoDB
/// Local's transactions slow down with as it grows.
pub async fn streamed_store() -> Store {
    let store = store().await;
    let table = STREAMED_TABLE
        .get_or_init(|| async {
            let table = format!("{}-changes", store.table());
            let streamed = Store::new(store.client().clone(), &table);
            admin::create_table(&streamed, TableStream::On)
                .await
                .expect("create the streamed test table");
            table
        })
        .await;
    Store::new(store.client().clone(), table)
}

pub fn unique(prefix: &str) -> String {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).unwrap();
    format!("{prefix}-{}", hex::encode(bytes))
}

/// One org with one key, and an App (a warm function instance) to call handlers with.
pub struct TestOrg {
    pub app: App,
    pub org_id: String,
    pub secret: String,
    pub key_id: String,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl TestOrg {
    pub async fn new() -> TestOrg {
        Self::with_rate_limit(None).await
    }

    /// An org whose key has its own rate limit (requests per second).
    pub async fn with_rate_limit(limit: Option<u32>) -> TestOrg {
        Self::on(store().await, limit).await
    }

    /// An org on the streamed table (`streamed_store`), for the change feed's tests.
    pub async fn streamed(limit: Option<u32>) -> TestOrg {
        Self::on(streamed_store().await, limit).await
    }

    async fn on(store: Store, limit: Option<u32>) -> TestOrg {
        let org_id = unique("org");
        let key = admin::create_key_with_limit(&store, &org_id, "test key", true, "test", limit)
            .await
            .expect("create key");
        TestOrg {
            app: App::new(store),
            org_id,
            secret: key.key,
            key_id: key.key_id,
        }
    }

    pub fn store(&self) -> &Store {
        &self.app.store
    }

    /// POSTs (or GETs) `body` to `endpoint` with this org's key.
    pub async fn call(&self, endpoint: Endpoint, body: Value) -> Reply {
        self.call_with(endpoint, &[], body.to_string()).await
    }

    /// Upserts a new user with this org's key and checks it was created.
    pub async fn create_user(&self, body: Value) {
        self.call(Endpoint::UsersUpsert, body)
            .await
            .assert_status(201);
    }

    pub async fn call_with(
        &self,
        endpoint: Endpoint,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Reply {
        send(&self.app, endpoint, self.request(endpoint, headers, body)).await
    }

    /// A request to `endpoint` with this org's key, for any App (warm instance) to handle.
    pub fn request(
        &self,
        endpoint: Endpoint,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Request {
        let mut builder = HttpRequest::builder()
            .method(endpoint.method())
            .uri(format!("https://api.example.test{}", endpoint.path()))
            .header("authorization", format!("Bearer {}", self.secret))
            .header("content-type", "application/json");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(body.into()).unwrap()
    }

    /// The public view of the user `external_user_id`, read straight from the table.
    pub async fn stored_user(&self, external_user_id: &str) -> Value {
        let user: shared::store::records::UserView = self
            .store()
            .get_record(&keys::user(
                &self.org_id,
                &external_identity(external_user_id),
            ))
            .await
            .unwrap()
            .expect("user stored");
        shared::views::json(&user)
    }

    /// How many events the table holds for the user `external_user_id` (GSI1).
    pub async fn count_events(&self, external_user_id: &str) -> usize {
        self.store()
            .count_user_events(&self.org_id, &external_identity(external_user_id))
            .await
            .unwrap()
    }
}

pub fn external_identity(external_user_id: &str) -> shared::input::UserIdentity {
    shared::input::UserIdentity::External(
        serde_json::from_value(serde_json::json!(external_user_id)).unwrap(),
    )
}

/// Sends a prepared request through the function handler.
pub async fn send(app: &App, endpoint: Endpoint, request: Request) -> Reply {
    let response = handle(app, endpoint, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = match response.body() {
        Body::Text(text) => serde_json::from_str(text).expect("JSON body"),
        other => panic!("unexpected body {other:?}"),
    };
    assert!(
        headers.contains_key("x-request-id"),
        "every response has a request id"
    );
    Reply {
        status,
        headers,
        body,
    }
}

impl Reply {
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        assert_eq!(self.body["error"]["code"], code, "body: {}", self.body);
        assert!(self.body["error"]["message"].is_string());
        assert!(self.body["error"]["request_id"].is_string());
        self
    }

    #[track_caller]
    pub fn param(&self) -> &str {
        self.body["error"]["param"].as_str().unwrap_or_default()
    }

    /// 200 (updated) or 201 (created).
    #[track_caller]
    pub fn assert_success(&self) -> &Value {
        assert!(self.status.is_success(), "body: {}", self.body);
        &self.body
    }

    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.body);
        &self.body
    }
}

/// `GET me/` with `secret`, from a fresh instance (no warm key cache), as a cold Lambda
/// or a warm one after the cache time would answer.
pub async fn me_from_fresh_instance(store: &Store, secret: &str) -> Reply {
    let app = App::new(store.clone());
    let request = HttpRequest::builder()
        .method("GET")
        .uri(Endpoint::Me.path())
        .header("authorization", format!("Bearer {secret}"))
        .body(Body::Empty)
        .unwrap();
    send(&app, Endpoint::Me, request).await
}

/// A store whose DynamoDB endpoint refuses connections: what an outage looks like.
pub fn unreachable_store() -> Store {
    Store::at_endpoint("http://127.0.0.1:9", TEST_TABLE)
}

/// The secret with its last character changed: well-formed, same key id, wrong secret.
pub fn tampered(secret: &str) -> String {
    let (head, last) = secret.split_at(secret.len() - 1);
    format!("{head}{}", if last == "0" { "1" } else { "0" })
}

impl TestOrg {
    /// Sends `endpoint` (a read or the erasure) with its path parameters and query string.
    pub async fn read(&self, endpoint: Endpoint, params: &[&str], query: &str) -> Reply {
        self.read_at(endpoint, &endpoint.path_with(params), query)
            .await
    }

    /// [`TestOrg::read`] at a given path (an endpoint's alternate path form).
    pub async fn read_at(&self, endpoint: Endpoint, path: &str, query: &str) -> Reply {
        let mut uri = format!("https://api.example.test{path}");
        if !query.is_empty() {
            uri.push('?');
            uri.push_str(query);
        }
        let request = HttpRequest::builder()
            .method(endpoint.method())
            .uri(uri)
            .header("authorization", format!("Bearer {}", self.secret))
            .body(Body::Empty)
            .unwrap();
        send(&self.app, endpoint, request).await
    }

    /// Every page of a paginated read, following `next_cursor`; `list` names the items.
    pub async fn read_all(
        &self,
        endpoint: Endpoint,
        params: &[&str],
        query: &str,
        list: &str,
    ) -> Vec<Value> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        for _ in 0..100 {
            let mut page_query = query.to_owned();
            if let Some(cursor) = &cursor {
                page_query.push_str(&format!("&cursor={cursor}"));
            }
            let reply = self.read(endpoint, params, &page_query).await;
            let body = reply.assert_status(200);
            items.extend(body[list].as_array().unwrap().iter().cloned());
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_owned()),
                None => return items,
            }
        }
        panic!("more than 100 pages");
    }
}

/// An RFC 3339 time `days` before now (negative: after), in the stored form.
pub fn days_ago(days: f64) -> String {
    let at = time::OffsetDateTime::now_utc() - time::Duration::seconds_f64(days * 86_400.0);
    shared::fields::Timestamp::from_offset_date_time(at).to_stored()
}

impl TestOrg {
    /// The raw item at `key`, whatever its type, as JSON.
    pub async fn stored(&self, key: &keys::ItemKey) -> Option<Value> {
        let output = self
            .store()
            .client()
            .get_item()
            .table_name(self.store().table())
            .key("PK", shared::store::testing::s(&key.pk))
            .key("SK", shared::store::testing::s(&key.sk))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        output
            .item
            .map(|item| serde_dynamo::from_item(item).unwrap())
    }
}
