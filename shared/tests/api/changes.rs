//! The change feed end to end: writes through the real handlers, DynamoDB Local's stream
//! read with DescribeStream/GetShardIterator/GetRecords and handed to the consumer the
//! Lambda runs (`shared::changes::consumer::handle`), then `GET changes/`.

use crate::common::{days_ago, streamed_store, TestOrg};
use crate::record_properties::run_streamed_cases;
use aws_lambda_events::event::dynamodb::{Event, EventRecord};
use serde_json::{json, Value};
use shared::changes::consumer::{self, Tally};
use shared::changes::poller::{local_client, StreamPoller};
use shared::cursor::FeedCursor;
use shared::store::{table, Store};
use shared::Endpoint;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// One reader of the test table's stream for the whole run, and the records it read that
/// no test has handled yet, by org: each test hands the consumer only its own orgs' records
/// (running it over every test's writes would load DynamoDB Local for the timing-sensitive
/// tests), as the Lambda would, in stream order.
struct Reader {
    poller: StreamPoller,
    pending: BTreeMap<String, Vec<EventRecord>>,
}

static READER: Mutex<Option<Reader>> = Mutex::const_new(None);

/// The org of a stream record (from its new image, else its old one).
fn org_of(record: &EventRecord) -> Option<String> {
    [&record.change.new_image, &record.change.old_image]
        .into_iter()
        .find_map(|image| {
            let image = serde_json::to_value(image).ok()?;
            image["org_id"]["S"].as_str().map(str::to_owned)
        })
}

/// Reads the stream's new records and runs the consumer over the org's, in order; a record
/// that fails is retried (as Lambda would retry the batch from it).
pub async fn pump(org: &TestOrg) -> (Event, Tally) {
    pump_org(org.store(), &org.org_id).await
}

async fn pump_org(store: &Store, org_id: &str) -> (Event, Tally) {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").expect("DynamoDB Local");
    let mut reader = READER.lock().await;
    if reader.is_none() {
        let arn = table::stream_arn(store.client(), store.table())
            .await
            .unwrap()
            .expect("the test table has a stream");
        *reader = Some(Reader {
            poller: StreamPoller::new(arn),
            pending: BTreeMap::new(),
        });
    }
    let reader = reader.as_mut().unwrap();
    let read = reader.poller.poll(&local_client(&endpoint)).await.unwrap();
    for record in read.records {
        if let Some(org) = org_of(&record) {
            reader.pending.entry(org).or_default().push(record);
        }
    }
    let mut event = Event::default();
    event.records = reader.pending.remove(org_id).unwrap_or_default();
    let total = consume(store, event.clone()).await;
    (event, total)
}

/// The consumer over `event`, retrying from a failed record as Lambda does.
async fn consume(store: &Store, event: Event) -> Tally {
    let mut total = Tally::default();
    let mut left = event;
    for _ in 0..10 {
        let (response, tally) = consumer::handle(store, left.clone()).await;
        total.written += tally.written;
        total.duplicates += tally.duplicates;
        let Some(failed) = response.batch_item_failures.first() else {
            return total;
        };
        let at = left
            .records
            .iter()
            .position(|r| r.change.sequence_number == failed.item_identifier)
            .unwrap();
        left.records.drain(..at);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the consumer kept failing a record: {:?}",
        left.records.first()
    );
}

/// Every visible change of the org, following `next_cursor` from the start.
pub async fn feed(org: &TestOrg, query: &str) -> Vec<Value> {
    let mut changes = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.to_owned();
        if let Some(cursor) = &cursor {
            q = format!("{q}&cursor={cursor}");
        }
        let reply = org.read(Endpoint::ChangesList, &[], &q).await;
        let body = reply.assert_status(200).clone();
        changes.extend(body["changes"].as_array().unwrap().iter().cloned());
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        assert!(cursor.is_some(), "next_cursor is always returned");
        if body["has_more"] == false {
            return changes;
        }
    }
}

/// Pumps the stream and reads the feed until `done` holds of it (or 15 s pass).
async fn settle(org: &TestOrg, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let started = Instant::now();
    loop {
        pump(org).await;
        let changes = feed(org, "").await;
        if done(&changes) {
            return changes;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the feed did not settle: {changes:#?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn types(changes: &[Value]) -> Vec<&str> {
    changes
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect()
}

fn of_type<'a>(changes: &'a [Value], kind: &str) -> Vec<&'a Value> {
    changes.iter().filter(|c| c["type"] == kind).collect()
}

/// No personal data in any change: none of `secrets` appears anywhere in them.
fn assert_thin(changes: &[Value], secrets: &[&str]) {
    let text = serde_json::to_string(changes).unwrap();
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} leaked: {text}");
    }
}

fn ids(changes: &[Value]) -> Vec<String> {
    changes
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn clients_are_created_by_any_path_and_updated_only_when_a_field_changes() {
    let org = TestOrg::streamed(None).await;
    let profile = json!({"external_user_id": "u1", "email": "ann@secret.example", "name": "Ann Secret", "phone": "+15550001111", "plan": "free"});
    org.call(Endpoint::UsersUpsert, profile.clone())
        .await
        .assert_success();
    // The same profile again: no change.
    org.call(Endpoint::UsersUpsert, profile.clone())
        .await
        .assert_success();
    let mut changed = profile.clone();
    changed["plan"] = json!("pro");
    changed["name"] = json!("Ann B Secret");
    org.call(Endpoint::UsersUpsert, changed)
        .await
        .assert_success();
    // A client first named in an event is created too.
    org.call(
        Endpoint::Events,
        json!({"event": "user_signed_up", "user": {"external_user_id": "u2"}, "event_timestamp": "2026-03-01T10:00:00Z"}),
    )
    .await
    .assert_status(201);

    let changes = settle(&org, |c| c.len() >= 4).await;
    assert_eq!(
        types(&changes).iter().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from(["client.created", "client.updated", "event.recorded"])
    );
    let created = of_type(&changes, "client.created");
    assert_eq!(created.len(), 2, "{changes:#?}");
    let updated = of_type(&changes, "client.updated");
    assert_eq!(
        updated.len(),
        1,
        "the repeated upsert changes nothing: {changes:#?}"
    );
    assert_eq!(updated[0]["data"]["changed"], json!(["name", "plan"]));
    assert_eq!(
        updated[0]["subject"]["client"],
        json!({"external_user_id": "u1"})
    );
    let u1: Vec<&Value> = changes
        .iter()
        .filter(|c| c["subject"]["client"]["external_user_id"] == "u1")
        .collect();
    assert!(u1[0]["sequence"].as_u64() < u1[1]["sequence"].as_u64());
    assert_thin(&changes, &["ann@secret", "Ann", "+1555", "Secret"]);
    for change in &changes {
        for field in ["id", "type", "recorded_at", "subject", "sequence", "data"] {
            assert!(change.get(field).is_some(), "{field} in {change}");
        }
    }
}

#[tokio::test]
async fn events_are_recorded_once_and_payments_once_per_payment() {
    let org = TestOrg::streamed(None).await;
    let purchase = json!({
        "event": "user_purchased", "user": {"external_user_id": "buyer"},
        "properties": {"amount": "9.99", "currency": "EUR", "note": "private text"},
        "event_timestamp": "2026-03-02T10:00:00Z"
    });
    let headers = [("Idempotency-Key", "purchase-1")];
    for _ in 0..3 {
        // An idempotent replay stores nothing: no second change.
        let reply = org
            .call_with(Endpoint::Events, &headers, purchase.to_string())
            .await;
        assert!(reply.status.is_success());
    }
    let sale = json!({"sale_id": "s1", "total": "58.00", "currency": "USD", "buyer": {"external_user_id": "buyer"}, "date": "2026-03-03T10:00:00Z"});
    org.call(Endpoint::SalesUpsert, sale.clone())
        .await
        .assert_success();
    org.call(Endpoint::SalesUpsert, sale).await.assert_success();
    org.call(
        Endpoint::SalesUpsert,
        json!({"sale_id": "s1", "quantity": 2}),
    )
    .await
    .assert_success();

    let changes = settle(&org, |c| of_type(c, "payment.recorded").len() >= 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let changes = settle(&org, |c| c.len() >= changes.len()).await;
    let events = of_type(&changes, "event.recorded");
    assert_eq!(events.len(), 1, "{changes:#?}");
    assert_eq!(events[0]["data"]["event"], "user_purchased");
    assert_eq!(
        events[0]["data"]["event_timestamp"],
        "2026-03-02T10:00:00.000Z"
    );
    assert_eq!(events[0]["occurred_at"], "2026-03-02T10:00:00.000Z");
    let payments = of_type(&changes, "payment.recorded");
    assert_eq!(payments.len(), 2, "{changes:#?}");
    let by_source: BTreeMap<&str, &Value> = payments
        .iter()
        .map(|p| (p["data"]["source"].as_str().unwrap(), *p))
        .collect();
    assert_eq!(by_source["event"]["data"]["amount"], "9.99");
    assert_eq!(by_source["event"]["data"]["currency"], "EUR");
    assert_eq!(by_source["sale"]["data"]["amount"], "58.00");
    assert_eq!(by_source["sale"]["subject"]["sale_id"], "s1");
    assert_thin(&changes, &["private text"]);
}

#[tokio::test]
async fn threads_enter_and_leave_the_inbox() {
    let org = TestOrg::streamed(None).await;
    let message = |id: &str, direction: &str, at: &str| {
        json!({"message_id": id, "thread_id": "t1", "direction": direction, "text": "very private words",
               "sent_at": at, "contact": {"external_user_id": "c1", "email": "c1@secret.example"}})
    };
    org.call(
        Endpoint::MessagesUpsert,
        message("m1", "in", "2026-03-01T10:00:00Z"),
    )
    .await
    .assert_success();
    org.call(
        Endpoint::MessagesUpsert,
        message("m2", "in", "2026-03-01T10:01:00Z"),
    )
    .await
    .assert_success();
    org.call(
        Endpoint::MessagesUpsert,
        message("m3", "out", "2026-03-01T10:05:00Z"),
    )
    .await
    .assert_success();
    let changes = settle(&org, |c| !of_type(c, "thread.replied").is_empty()).await;
    let waiting = of_type(&changes, "thread.awaiting_reply");
    assert_eq!(waiting.len(), 1, "{changes:#?}");
    assert_eq!(waiting[0]["subject"]["thread_id"], "t1");
    assert_eq!(
        waiting[0]["data"]["awaiting_reply_since"],
        "2026-03-01T10:00:00.000Z"
    );
    assert_eq!(of_type(&changes, "thread.replied").len(), 1);
    assert_thin(&changes, &["private words", "c1@secret"]);
}

#[tokio::test]
async fn bookings_are_scheduled_rescheduled_updated_and_canceled() {
    let org = TestOrg::streamed(None).await;
    let booking = |at: &str, notes: &str, status: &str| {
        json!({"booking_id": "b1", "scheduled_at": at, "notes": notes, "status": status,
               "client": {"external_user_id": "bc"}})
    };
    let steps = [
        booking("2026-04-01T10:00:00Z", "first", "confirmed"),
        booking("2026-04-01T10:00:00Z", "first", "confirmed"),
        booking("2026-04-02T11:00:00Z", "first", "confirmed"),
        booking("2026-04-02T11:00:00Z", "secret notes", "confirmed"),
        booking("2026-04-02T11:00:00Z", "secret notes", "Cancelled"),
    ];
    for step in steps {
        org.call(Endpoint::BookingsUpsert, step)
            .await
            .assert_success();
    }
    let changes = settle(&org, |c| !of_type(c, "booking.canceled").is_empty()).await;
    let bookings: Vec<&Value> = changes
        .iter()
        .filter(|c| c["subject"]["booking_id"] == "b1")
        .collect();
    let kinds: Vec<&str> = bookings
        .iter()
        .map(|c| c["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "booking.scheduled",
            "booking.rescheduled",
            "booking.updated",
            "booking.canceled"
        ],
        "{changes:#?}"
    );
    assert_eq!(bookings[1]["data"]["from"], "2026-04-01T10:00:00.000Z");
    assert_eq!(bookings[1]["data"]["to"], "2026-04-02T11:00:00.000Z");
    assert_eq!(bookings[2]["data"]["changed"], json!(["notes"]));
    let sequences: Vec<u64> = bookings
        .iter()
        .map(|c| c["sequence"].as_u64().unwrap())
        .collect();
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    assert_thin(&changes, &["secret notes"]);
}

#[tokio::test]
async fn a_merge_is_one_change_and_email_only_clients_are_named_by_a_hash() {
    let org = TestOrg::streamed(None).await;
    let email = "merge.me@secret.example";
    org.call(
        Endpoint::Events,
        json!({"event": "app_opened", "user": {"email": email}, "event_timestamp": "2026-03-01T10:00:00Z"}),
    )
    .await
    .assert_status(201);
    for _ in 0..3 {
        org.call(
            Endpoint::UsersUpsert,
            json!({"external_user_id": "m1", "email": email}),
        )
        .await
        .assert_success();
    }
    let changes = settle(&org, |c| !of_type(c, "client.merged").is_empty()).await;
    let merged = of_type(&changes, "client.merged");
    assert_eq!(merged.len(), 1, "{changes:#?}");
    assert_eq!(
        merged[0]["subject"]["client"],
        json!({"external_user_id": "m1"})
    );
    let hash = merged[0]["data"]["from"]["email_sha256"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    let first = of_type(&changes, "event.recorded");
    assert_eq!(first[0]["subject"]["client"]["email_sha256"], hash);
    assert_thin(&changes, &["merge.me", "secret.example"]);
}

#[tokio::test]
async fn erasing_a_client_leaves_only_its_erasure_in_the_feed() {
    let org = TestOrg::streamed(None).await;
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "gone", "name": "Gone"}),
    )
    .await
    .assert_success();
    org.call(
        Endpoint::Events,
        json!({"event": "app_opened", "user": {"external_user_id": "gone"}}),
    )
    .await
    .assert_status(201);
    org.call(Endpoint::UsersUpsert, json!({"external_user_id": "stays"}))
        .await
        .assert_success();
    settle(&org, |c| c.len() >= 3).await;
    org.read(Endpoint::UsersDelete, &["gone"], "")
        .await
        .assert_status(200);
    let changes = settle(&org, |c| !of_type(c, "client.erased").is_empty()).await;
    let about_gone: Vec<&Value> = changes
        .iter()
        .filter(|c| c["subject"]["client"]["external_user_id"] == "gone")
        .collect();
    assert_eq!(about_gone.len(), 1, "{changes:#?}");
    assert_eq!(about_gone[0]["type"], "client.erased");
    assert_eq!(about_gone[0]["data"], json!({}));
    assert_eq!(types(&changes), ["client.created", "client.erased"]);
}

#[tokio::test]
async fn redelivered_stream_records_add_nothing() {
    let org = TestOrg::streamed(None).await;
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "r1", "plan": "a"}),
    )
    .await
    .assert_success();
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "r1", "plan": "b"}),
    )
    .await
    .assert_success();
    let before = settle(&org, |c| c.len() >= 2).await;
    // Whatever the stream has, again: the consumer run twice over the same records, on
    // time and late (the late path checks the on-time key and its marker).
    let store = streamed_store().await;
    let (event, _) = pump(&org).await;
    let mut stream = replay_all(&store).await;
    stream
        .records
        .retain(|r| org_of(r).as_deref() == Some(org.org_id.as_str()));
    assert!(stream.records.len() >= 2);
    for batch in [event, stream] {
        let tally = consume(&store, batch).await;
        assert_eq!(tally.written, 0, "{tally:?}");
    }
    let after = feed(&org, "").await;
    assert_eq!(ids(&before), ids(&after));
}

/// The whole stream from its oldest record (a second reader, as a redelivery would be).
async fn replay_all(_store: &Store) -> Event {
    let endpoint = std::env::var("DYNAMODB_ENDPOINT").unwrap();
    let store = streamed_store().await;
    let arn = table::stream_arn(store.client(), store.table())
        .await
        .unwrap()
        .unwrap();
    StreamPoller::new(arn)
        .poll(&local_client(&endpoint))
        .await
        .unwrap()
}

#[tokio::test]
async fn cursors_are_checked_and_expire() {
    let org = TestOrg::streamed(None).await;
    let other = TestOrg::streamed(None).await;
    let reply = org.read(Endpoint::ChangesList, &[], "").await;
    let cursor = reply.assert_status(200)["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    other
        .read(Endpoint::ChangesList, &[], &format!("cursor={cursor}"))
        .await
        .assert_error(400, "invalid_cursor");
    for garbage in ["x", "e30", "eyJvIjoiYSIsInAiOiJ4In0"] {
        org.read(Endpoint::ChangesList, &[], &format!("cursor={garbage}"))
            .await
            .assert_error(400, "invalid_cursor");
    }
    let old = FeedCursor::encode(&org.org_id, "2020-01-01T00:00:00.000Z");
    org.read(Endpoint::ChangesList, &[], &format!("cursor={old}"))
        .await
        .assert_error(410, "cursor_expired");
    org.read(Endpoint::ChangesList, &[], "types=client.nope")
        .await
        .assert_error(400, "invalid_field");
    // Polling with the cursor later gives only what is newer.
    org.call(Endpoint::UsersUpsert, json!({"external_user_id": "later"}))
        .await
        .assert_success();
    let started = Instant::now();
    loop {
        pump(&org).await;
        let reply = org
            .read(
                Endpoint::ChangesList,
                &[],
                &format!("cursor={cursor}&types=client.created"),
            )
            .await;
        let body = reply.assert_status(200);
        let changes = body["changes"].as_array().unwrap();
        if !changes.is_empty() {
            assert_eq!(changes.len(), 1);
            assert_eq!(changes[0]["subject"]["client"]["external_user_id"], "later");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_consumer_following_the_cursor_during_writes_sees_every_change_once() {
    let org = std::sync::Arc::new(TestOrg::streamed(Some(1_000_000)).await);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let org = std::sync::Arc::clone(&org);
            tokio::spawn(async move {
                for i in 0..15 {
                    let id = format!("w{w}-{}", i % 5);
                    org.call(
                        Endpoint::UsersUpsert,
                        json!({"external_user_id": id, "plan": format!("p{i}")}),
                    )
                    .await
                    .assert_success();
                    org.call(
                        Endpoint::Events,
                        json!({"event": "app_opened", "user": {"external_user_id": id}}),
                    )
                    .await
                    .assert_status(201);
                }
            })
        })
        .collect();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pumping = {
        let (org, done) = (std::sync::Arc::clone(&org), std::sync::Arc::clone(&done));
        tokio::spawn(async move {
            for writer in writers {
                while !writer.is_finished() {
                    pump(&org).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                writer.await.unwrap();
            }
            pump(&org).await;
            done.store(true, std::sync::atomic::Ordering::SeqCst);
        })
    };
    // The follower: pages with `limit=7` and the cursor, while all that goes on, until
    // everything is written and nothing new has shown for longer than the lag.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut quiet_since = Instant::now();
    let started = Instant::now();
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst);
        if finished && quiet_since.elapsed() > Duration::from_secs(3) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(90));
        let query = match &cursor {
            Some(cursor) => format!("limit=7&cursor={cursor}"),
            None => "limit=7".to_owned(),
        };
        let reply = org.read(Endpoint::ChangesList, &[], &query).await;
        let body = reply.assert_status(200).clone();
        let page = ids(body["changes"].as_array().unwrap());
        if !page.is_empty() || !finished {
            quiet_since = Instant::now();
        }
        seen.extend(page);
        cursor = body["next_cursor"].as_str().map(str::to_owned);
        if body["has_more"] == false {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    pumping.await.unwrap();
    let stored = settle(&org, |_| true).await;
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no change twice");
    assert_eq!(
        unique,
        ids(&stored).iter().collect::<BTreeSet<_>>(),
        "every stored change seen"
    );
    // 20 clients created, 60 events; updates as plans changed.
    assert_eq!(of_type(&stored, "client.created").len(), 20);
    assert_eq!(of_type(&stored, "event.recorded").len(), 60);
}

/// The publisher against moto's EventBridge (`moto_server`, `EVENTBRIDGE_ENDPOINT`): a bus,
/// a rule routing this org's changes to an SQS queue, and the queue read back.
#[tokio::test]
async fn changes_are_put_on_the_bus_and_routed_by_a_rule() {
    use shared::changes::publisher;
    let Ok(endpoint) = std::env::var("EVENTBRIDGE_ENDPOINT") else {
        panic!("this test needs moto's server: run `make test` (or start `moto_server -p PORT` and set EVENTBRIDGE_ENDPOINT)");
    };
    let org = TestOrg::streamed(None).await;
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "bus1", "name": "Bus Secret"}),
    )
    .await
    .assert_success();
    org.call(
        Endpoint::BookingsUpsert,
        json!({"booking_id": "bb1", "scheduled_at": "2026-05-01T10:00:00Z", "client": {"external_user_id": "bus1"}}),
    )
    .await
    .assert_success();
    let changes = settle(&org, |c| c.len() >= 2).await;

    let bus_client = publisher::client_from_env().await;
    let sqs = {
        use aws_sdk_sqs::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&endpoint)
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("local", "local", None, None, "local"))
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    };
    let bus = crate::common::unique("bus");
    bus_client
        .create_event_bus()
        .name(&bus)
        .send()
        .await
        .unwrap();
    let queue = sqs
        .create_queue()
        .queue_name(crate::common::unique("q"))
        .send()
        .await
        .unwrap();
    let queue_url = queue.queue_url.unwrap();
    let attributes = sqs
        .get_queue_attributes()
        .queue_url(&queue_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap();
    let queue_arn =
        attributes.attributes.unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    let pattern = json!({"source": [publisher::SOURCE], "detail": {"org_id": [org.org_id]}});
    bus_client
        .put_rule()
        .name("changes-to-queue")
        .event_bus_name(&bus)
        .event_pattern(pattern.to_string())
        .send()
        .await
        .unwrap();
    bus_client
        .put_targets()
        .rule("changes-to-queue")
        .event_bus_name(&bus)
        .targets(
            aws_sdk_eventbridge::types::Target::builder()
                .id("queue")
                .arn(queue_arn)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();

    // The stream's records of this org's change items (a second reader, from the start).
    let store = streamed_store().await;
    let mut stream = replay_all(&store).await;
    stream.records.retain(|r| {
        serde_json::to_string(&r.change.new_image)
            .unwrap()
            .contains(&org.org_id)
    });
    let (response, published) = publisher::handle(&bus_client, &bus, stream).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(
        published.changes,
        changes.len(),
        "only INSERTs of change items"
    );

    let mut received: BTreeMap<String, Value> = BTreeMap::new();
    let started = Instant::now();
    while received.len() < changes.len() && started.elapsed() < Duration::from_secs(10) {
        let output = sqs
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(10)
            .send()
            .await
            .unwrap();
        for message in output.messages.unwrap_or_default() {
            let event: Value = serde_json::from_str(message.body.as_deref().unwrap()).unwrap();
            assert_eq!(event["source"], publisher::SOURCE);
            assert_eq!(event["detail-type"], event["detail"]["type"]);
            received.insert(
                event["detail"]["id"].as_str().unwrap().to_owned(),
                event["detail"].clone(),
            );
        }
    }
    let expected: BTreeSet<String> = ids(&changes).into_iter().collect();
    assert_eq!(received.keys().cloned().collect::<BTreeSet<_>>(), expected);
    for change in &changes {
        let mut detail = received[change["id"].as_str().unwrap()].clone();
        assert_eq!(detail["org_id"], org.org_id);
        detail.as_object_mut().unwrap().remove("org_id");
        assert_eq!(&detail, change, "the detail is the change record");
    }
}

/// One distinct fact of the property test: a keyed event (delivered 1 to 3 times, the same
/// key and body), or a profile upsert (delivered 1 to 2 times).
#[derive(Debug, Clone)]
enum Fact {
    Event {
        user: usize,
        purchase: Option<&'static str>,
        copies: usize,
    },
    Upsert {
        user: usize,
        plan: &'static str,
        copies: usize,
    },
}

fn fact() -> impl proptest::strategy::Strategy<Value = Fact> {
    use proptest::prelude::*;
    let amounts: &'static [&'static str] = &["0.00", "5.00", "7.5"];
    prop_oneof![
        (
            0..3usize,
            proptest::option::of(proptest::sample::select(amounts)),
            1..=3usize
        )
            .prop_map(|(user, purchase, copies)| Fact::Event {
                user,
                purchase,
                copies
            }),
        (
            0..3usize,
            proptest::sample::select(&["a", "b"][..]),
            1..=2usize
        )
            .prop_map(|(user, plan, copies)| Fact::Upsert { user, plan, copies }),
    ]
}

/// Random sets of facts, delivered with their duplicates in a random order in concurrent
/// waves: the feed holds exactly what a small model derives from the set of facts (a
/// client.created per client named, an event.recorded per distinct event, a
/// payment.recorded per event with a non-zero amount or none), no id twice, and each client's
/// own changes with distinct `sequence`s. `RECORD_CASES` cases (6 by default).
#[test]
fn the_feed_is_a_function_of_the_set_of_facts() {
    use proptest::prelude::*;
    let strategy = (
        proptest::collection::vec(fact(), 1..8),
        any::<u64>(),
        1..4usize,
    );
    run_streamed_cases(strategy, async |org: &TestOrg, (facts, seed, waves)| {
        let mut deliveries: Vec<(Endpoint, Option<String>, Value)> = Vec::new();
        for (n, fact) in facts.iter().enumerate() {
            match fact {
                Fact::Event {
                    user,
                    purchase,
                    copies,
                } => {
                    let mut body = json!({"event": "app_opened", "user": {"external_user_id": format!("p{user}")},
                                                   "event_timestamp": "2026-03-01T10:00:00Z"});
                    if let Some(amount) = purchase {
                        body["event"] = json!("user_purchased");
                        body["properties"] = json!({"amount": amount, "currency": "USD"});
                    }
                    for _ in 0..*copies {
                        deliveries.push((Endpoint::Events, Some(format!("k{n}")), body.clone()));
                    }
                }
                Fact::Upsert { user, plan, copies } => {
                    let body = json!({"external_user_id": format!("p{user}"), "plan": plan});
                    for _ in 0..*copies {
                        deliveries.push((Endpoint::UsersUpsert, None, body.clone()));
                    }
                }
            }
        }
        // A seeded shuffle, then concurrent waves.
        let mut state = seed | 1;
        for i in (1..deliveries.len()).rev() {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            deliveries.swap(i, (state % (i as u64 + 1)) as usize);
        }
        let size = deliveries.len().div_ceil(waves);
        for wave in deliveries.chunks(size) {
            let calls = wave.iter().map(|(endpoint, key, body)| {
                let org = &org;
                async move {
                    let headers: Vec<(&str, &str)> = key
                        .as_deref()
                        .map(|k| vec![("Idempotency-Key", k)])
                        .unwrap_or_default();
                    let reply = org.call_with(*endpoint, &headers, body.to_string()).await;
                    assert!(reply.status.is_success(), "{:?}", reply.body);
                }
            });
            futures::future::join_all(calls).await;
        }
        // The model, from the set of facts alone.
        let clients: BTreeSet<usize> = facts
            .iter()
            .map(|f| match f {
                Fact::Event { user, .. } | Fact::Upsert { user, .. } => *user,
            })
            .collect();
        let events = facts
            .iter()
            .filter(|f| matches!(f, Fact::Event { .. }))
            .count();
        let payments = facts
            .iter()
            .filter(|f| matches!(f, Fact::Event { purchase: Some(a), .. } if *a != "0.00"))
            .count();
        let want = clients.len() + events + payments;
        settle(org, |c| {
            c.iter().filter(|c| c["type"] != "client.updated").count() >= want
        })
        .await;
        // Past the horizon again: nothing more arrives.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        let changes = settle(org, |_| true).await;
        let count = |kind: &str| of_type(&changes, kind).len();
        prop_assert_eq!(count("client.created"), clients.len(), "{:#?}", changes);
        prop_assert_eq!(count("event.recorded"), events);
        prop_assert_eq!(count("payment.recorded"), payments);
        let unique: BTreeSet<String> = ids(&changes).into_iter().collect();
        prop_assert_eq!(unique.len(), changes.len(), "no id twice");
        for client in &clients {
            let sequences: Vec<u64> = changes
                .iter()
                .filter(|c| c["type"].as_str().unwrap().starts_with("client."))
                .filter(|c| c["subject"]["client"]["external_user_id"] == format!("p{client}"))
                .map(|c| c["sequence"].as_u64().unwrap())
                .collect();
            // Distinct, not in feed order: a change written late is recorded after
            // a later one of the same client written on time; `sequence` orders them.
            let distinct: BTreeSet<u64> = sequences.iter().copied().collect();
            prop_assert_eq!(distinct.len(), sequences.len(), "{:?}", sequences);
            for updated in of_type(&changes, "client.updated") {
                prop_assert_eq!(&updated["data"]["changed"], &json!(["plan"]));
            }
        }
        Ok(())
    });
}

#[tokio::test]
async fn a_write_that_changes_the_billing_state_says_from_and_to() {
    let org = TestOrg::streamed(None).await;
    org.call(Endpoint::UsersUpsert, json!({"external_user_id": "bill"}))
        .await
        .assert_success();
    org.call(
        Endpoint::Events,
        json!({"event": "subscription_started", "user": {"external_user_id": "bill"},
               "properties": {"amount": "10.00", "currency": "USD", "subscription_status": "active"}}),
    )
    .await
    .assert_status(201);
    let changes = settle(&org, |c| !of_type(c, "client.billing_changed").is_empty()).await;
    let billing = of_type(&changes, "client.billing_changed");
    assert_eq!(billing.len(), 1, "{changes:#?}");
    assert_eq!(billing[0]["data"]["from"], "none");
    assert_ne!(billing[0]["data"]["to"], "none");
    assert_eq!(
        billing[0]["subject"]["client"],
        json!({"external_user_id": "bill"})
    );
}

#[tokio::test]
async fn a_write_that_moves_the_lifecycle_stage_says_from_and_to() {
    let org = TestOrg::streamed(None).await;
    let event = |at: String| json!({"event": "app_opened", "user": {"external_user_id": "back"}, "event_timestamp": at});
    org.create_user(json!({"external_user_id": "back", "created_at": days_ago(60.0)}))
        .await;
    // Its history arrives: last active 40 days ago, so dormant (the defaults: 30 days).
    org.call(Endpoint::Events, event(days_ago(40.0)))
        .await
        .assert_status(201);
    // It comes back after a gap of 40 days: resurrected.
    org.call(Endpoint::Events, event(days_ago(0.0)))
        .await
        .assert_status(201);
    // A profile change moves no stage: no lifecycle change.
    org.call(
        Endpoint::UsersUpsert,
        json!({"external_user_id": "back", "name": "Back Again"}),
    )
    .await
    .assert_success();
    let changes = settle(&org, |c| of_type(c, "client.updated").len() == 1).await;
    let moves: Vec<(&Value, &Value, &Value)> = of_type(&changes, "client.lifecycle_changed")
        .into_iter()
        .map(|c| (&c["data"]["from"], &c["data"]["to"], &c["data"]["reason"]))
        .collect();
    assert_eq!(
        moves,
        [
            (&json!("active"), &json!("dormant"), &json!("write")),
            (&json!("dormant"), &json!("resurrected"), &json!("write")),
        ],
        "{changes:#?}"
    );
    // Redelivered, the same records derive the same changes: nothing added.
    let mut stream = replay_all(org.store()).await;
    stream
        .records
        .retain(|r| org_of(r).as_deref() == Some(org.org_id.as_str()));
    assert_eq!(consume(org.store(), stream).await.written, 0);
}
