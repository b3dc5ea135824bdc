//! The org-wide lists (segment, inbox, bookings) are spread over GSI2 shards and merged at
//! read time: their pages must be what one unsharded partition holding the same items
//! gives, across page boundaries and with filters, and cursors must survive writes.
//!
//! The unsharded order is DynamoDB's own: every item of the list's shards is copied into
//! one extra GSI2 partition (table keys prefixed so the copies are separate items) and
//! that partition is read with the same key condition and filters, page by page.

use crate::common::*;
use serde_json::{json, Value};
use shared::admin;
use shared::store::testing::keys::{self, OrgList};
use shared::store::testing::{s, Index, Item, Query, SortKey};
use shared::Endpoint;
use std::collections::HashSet;

/// Every item in the shards of `list`, read with raw Queries.
async fn items_of(org: &TestOrg, list: OrgList) -> Vec<Item> {
    let store = org.store();
    let mut items = Vec::new();
    for partition in list.partitions(&org.org_id) {
        let found: Vec<Item> = store
            .client()
            .query()
            .table_name(store.table())
            .index_name("GSI2")
            .key_condition_expression("GSI2PK = :p")
            .expression_attribute_values(":p", s(partition))
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .unwrap();
        items.extend(found);
    }
    items
}

/// Copies the list's items into one partition; its key.
async fn unsharded_copy(org: &TestOrg, list: OrgList) -> String {
    let copy = format!("COPY#{}", list.unsharded(&org.org_id));
    let items = items_of(org, list).await;
    let shards: HashSet<String> = items
        .iter()
        .map(|item| item["GSI2PK"].as_s().unwrap().clone())
        .collect();
    assert!(shards.len() > 1, "the test data spreads over shards");
    let store = org.store();
    for mut item in items {
        let pk = item["PK"].as_s().unwrap().clone();
        item.insert("PK".into(), s(format!("COPY#{pk}")));
        item.insert("GSI2PK".into(), s(&copy));
        // Listed nowhere else (a thread's copy would show under its contact).
        item.remove("GSI1PK");
        item.remove("GSI1SK");
        store
            .client()
            .put_item()
            .table_name(store.table())
            .set_item(Some(item))
            .send()
            .await
            .unwrap();
    }
    copy
}

/// `query` over the one unsharded partition, every page of `limit`: the ids of `field`.
async fn unsharded_order(org: &TestOrg, query: &Query, limit: usize, field: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut start = None;
    loop {
        let page = org
            .store()
            .query_page::<Value>(query, limit, start)
            .await
            .unwrap();
        ids.extend(
            page.items
                .iter()
                .map(|item| item[field].as_str().unwrap().to_owned()),
        );
        match page.next {
            Some(next) => start = Some(next),
            None => return ids,
        }
    }
}

/// Every page of the sharded read, checked page by page: at most `limit` items, and a
/// full page whenever no filter can have dropped items.
async fn sharded_order(
    org: &TestOrg,
    endpoint: Endpoint,
    query: &str,
    limit: usize,
    list: (&str, &str),
    filtered: bool,
) -> Vec<String> {
    pages_from(org, endpoint, query, limit, list, filtered, None).await
}

/// The pages from `cursor` on (see [`sharded_order`]).
async fn pages_from(
    org: &TestOrg,
    endpoint: Endpoint,
    query: &str,
    limit: usize,
    (list, field): (&str, &str),
    filtered: bool,
    mut cursor: Option<String>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..200 {
        let mut page_query = format!("{query}&limit={limit}");
        if let Some(cursor) = &cursor {
            page_query.push_str(&format!("&cursor={cursor}"));
        }
        let body = org.read(endpoint, &[], &page_query).await;
        let body = body.assert_status(200);
        let page = body[list].as_array().unwrap();
        assert!(page.len() <= limit);
        let next = body["next_cursor"].as_str();
        if !filtered && next.is_some() {
            assert_eq!(page.len(), limit, "an unfiltered page is full: {query}");
        }
        ids.extend(
            page.iter()
                .map(|item| item[field].as_str().unwrap().to_owned()),
        );
        match next {
            Some(next) => cursor = Some(next.to_owned()),
            None => {
                let unique: HashSet<&String> = ids.iter().collect();
                assert_eq!(unique.len(), ids.len(), "no duplicates: {query}");
                return ids;
            }
        }
    }
    panic!("too many pages");
}

async fn event(org: &TestOrg, user: &str, at: &str) {
    org.call(
        Endpoint::Events,
        json!({"event": "app_opened", "user": {"external_user_id": user}, "event_timestamp": at}),
    )
    .await
    .assert_status(201);
}

fn cutoff(days: u32) -> String {
    days_ago(f64::from(days))
}

/// An org whose key pages fast: large filtered pages cost up to 78 tokens each.
async fn paging_org() -> TestOrg {
    TestOrg::with_rate_limit(Some(1_000_000)).await
}

#[tokio::test]
async fn the_segment_pages_in_the_unsharded_order_with_filters() {
    let org = paging_org().await;
    let mut inactive_users = HashSet::new();
    for n in 0..45u32 {
        let user = format!("u{n:02}");
        let plan = if n % 3 == 0 { "pro" } else { "free" };
        org.create_user(json!({"external_user_id": user, "plan": plan}))
            .await;
        // Spread over 90 days, never within an hour of the 10-day cutoff; some users at
        // the same time (their order is then the identity's).
        let days = f64::from((n * 37) % 90) + 0.5 + f64::from(n % 2) * 0.25;
        event(&org, &user, &days_ago(days)).await;
        if days > 10.0 {
            inactive_users.insert(user);
        }
    }
    let copy = unsharded_copy(&org, OrgList::Users).await;
    let all = Query::new(Index::Gsi2, copy.clone(), SortKey::Any);
    let mut inactive = Query::new(Index::Gsi2, copy.clone(), SortKey::Below(cutoff(10)));
    inactive.filter_before("last_activity_at", &cutoff(10));
    let mut pro = all.clone();
    pro.filter_text("plan", "pro");
    let mut inactive_pro = inactive.clone();
    inactive_pro.filter_text("plan", "pro");
    let cases = [
        ("", &all, false),
        ("inactive_days=10", &inactive, true),
        ("plan=pro", &pro, true),
        ("inactive_days=10&plan=pro", &inactive_pro, true),
    ];
    // Exact membership, whatever the key's day of lag.
    let found = unsharded_order(&org, &inactive, 100, "external_user_id").await;
    assert_eq!(found.into_iter().collect::<HashSet<_>>(), inactive_users);
    for (params, query, filtered) in cases {
        let expected = unsharded_order(&org, query, 100, "external_user_id").await;
        assert!(!expected.is_empty(), "{params}");
        for limit in [1, 4, 10, 100] {
            let got = sharded_order(
                &org,
                Endpoint::UsersList,
                params,
                limit,
                ("users", "external_user_id"),
                filtered,
            )
            .await;
            assert_eq!(got, expected, "{params} limit={limit}");
        }
    }
}

async fn message(org: &TestOrg, thread: &str, id: &str, direction: &str, days: f64) {
    org.call(
        Endpoint::MessagesUpsert,
        json!({
            "message_id": id, "thread_id": thread, "direction": direction,
            "sent_at": days_ago(days), "contact": {"external_user_id": format!("c-{thread}")}
        }),
    )
    .await
    .assert_status(201);
}

#[tokio::test]
async fn the_inbox_pages_in_the_unsharded_order() {
    let org = paging_org().await;
    for n in 0..30u32 {
        let thread = format!("t{n:02}");
        message(
            &org,
            &thread,
            &format!("m{n}a"),
            "in",
            f64::from((n * 7) % 30) + 1.0,
        )
        .await;
        if n % 5 == 0 {
            // Replied: out of the inbox.
            message(&org, &thread, &format!("m{n}b"), "out", 0.5).await;
        }
    }
    let copy = unsharded_copy(&org, OrgList::Inbox).await;
    let query = Query::new(Index::Gsi2, copy, SortKey::Any);
    let expected = unsharded_order(&org, &query, 100, "thread_id").await;
    assert_eq!(expected.len(), 24);
    for limit in [1, 5, 24, 25] {
        let got = sharded_order(
            &org,
            Endpoint::Inbox,
            "status=awaiting_reply",
            limit,
            ("conversations", "thread_id"),
            false,
        )
        .await;
        assert_eq!(got, expected, "limit={limit}");
    }
}

async fn booking(org: &TestOrg, id: &str, at: &str) {
    let reply = org
        .call(
            Endpoint::BookingsUpsert,
            json!({"booking_id": id, "scheduled_at": at}),
        )
        .await;
    assert!(reply.status.is_success(), "{}", reply.body);
}

fn booking_ids(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["booking_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_bookings_window_pages_in_the_unsharded_order() {
    let org = paging_org().await;
    let same_time = days_ago(-5.0);
    for n in 0..36u32 {
        let at = match n % 6 {
            0 => same_time.clone(),
            _ => days_ago(-f64::from((n * 11) % 20) - 0.3),
        };
        booking(&org, &format!("b{n:02}"), &at).await;
    }
    let (from, to) = (days_ago(-2.0), days_ago(-15.0));
    let copy = unsharded_copy(&org, OrgList::Bookings).await;
    let query = Query::new(
        Index::Gsi2,
        copy,
        SortKey::Between(from.clone(), to.clone()),
    );
    let expected = unsharded_order(&org, &query, 100, "booking_id").await;
    assert!(expected.len() > 10);
    let window = format!("from={from}&to={to}");
    for limit in [1, 3, 7, 100] {
        let got = sharded_order(
            &org,
            Endpoint::BookingsList,
            &window,
            limit,
            ("bookings", "booking_id"),
            false,
        )
        .await;
        assert_eq!(got, expected, "limit={limit}");
    }
}

#[tokio::test]
async fn cursors_stay_valid_across_writes() {
    let org = paging_org().await;
    for n in 0..20u32 {
        booking(&org, &format!("b{n:02}"), &days_ago(-f64::from(n) - 1.0)).await;
    }
    let (from, to) = (days_ago(0.0), days_ago(-30.0));
    let window = format!("from={from}&to={to}");
    let first = org
        .read(Endpoint::BookingsList, &[], &format!("{window}&limit=6"))
        .await;
    let first = first.assert_status(200).clone();
    let seen = booking_ids(first["bookings"].as_array().unwrap());
    assert_eq!(seen, ["b00", "b01", "b02", "b03", "b04", "b05"]);
    let cursor = first["next_cursor"].as_str().unwrap().to_owned();

    // Writes in every part of the list: before the cursor, after it, a booking moved
    // from after it to before it, one moved later, one new at the end.
    booking(&org, "new-early", &days_ago(-1.5)).await;
    booking(&org, "new-late", &days_ago(-25.0)).await;
    booking(&org, "b10", &days_ago(-2.5)).await;
    booking(&org, "b07", &days_ago(-19.5)).await;

    let bookings = ("bookings", "booking_id");
    let rest = pages_from(
        &org,
        Endpoint::BookingsList,
        &window,
        4,
        bookings,
        false,
        Some(cursor),
    )
    .await;
    // The cursor resumes after b05's position: what sorts after it now, in order.
    let expected = [
        "b06", "b08", "b09", "b11", "b12", "b13", "b14", "b15", "b16", "b17", "b18", "b07", "b19",
        "new-late",
    ];
    assert_eq!(rest, expected);

    // A cursor taken after the writes reads the same rest.
    let all = org
        .read_all(
            Endpoint::BookingsList,
            &[],
            &format!("{window}&limit=5"),
            "bookings",
        )
        .await;
    let all = booking_ids(&all);
    let position = all.iter().position(|id| id == "b05").unwrap();
    assert_eq!(all[position + 1..], expected);

    // The segment's cursors too: a user's event between two pages moves it, the pages
    // go on from the cursor's point (the moved user is not read twice).
    for n in 0..12u32 {
        event(
            &org,
            &format!("u{n:02}"),
            &days_ago(60.0 - f64::from(n) * 2.0),
        )
        .await;
    }
    let page = org
        .read(Endpoint::UsersList, &[], "inactive_days=30&limit=5")
        .await;
    let page = page.assert_status(200).clone();
    let cursor = page["next_cursor"].as_str().unwrap().to_owned();
    let first: Vec<String> = page["users"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["external_user_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(first, ["u00", "u01", "u02", "u03", "u04"]);
    event(&org, "u01", &days_ago(1.0)).await;
    event(&org, "u08", &days_ago(1.0)).await;
    let users = ("users", "external_user_id");
    let query = "inactive_days=30";
    let rest = pages_from(
        &org,
        Endpoint::UsersList,
        query,
        5,
        users,
        true,
        Some(cursor),
    )
    .await;
    assert_eq!(rest, ["u05", "u06", "u07", "u09", "u10", "u11"]);
}

#[tokio::test]
async fn lists_write_every_record_to_its_own_shard() {
    let org = paging_org().await;
    event(&org, "u1", &days_ago(3.0)).await;
    let identity = external_identity("u1");
    let user = org.store().get(&keys::user(&org.org_id, &identity)).await;
    let user = user.unwrap().unwrap();
    assert_eq!(
        user["GSI2PK"].as_s().unwrap(),
        &keys::users_by_activity(&org.org_id, &identity)
    );
    let sort = user["GSI2SK"].as_s().unwrap();
    let activity = user["last_activity_at"].as_s().unwrap();
    assert!(sort.ends_with("#ext#u1"));
    assert!(
        sort.as_str() <= activity.as_str(),
        "the key is at most the activity"
    );
}

/// Puts the list's records back in its partition from before sharding, users with the
/// activity key of then (their exact `last_activity_at`): the layout of an older table.
async fn unshard(org: &TestOrg, list: OrgList) -> usize {
    let store = org.store();
    let items = items_of(org, list).await;
    for item in &items {
        let mut update = store
            .client()
            .update_item()
            .table_name(store.table())
            .key("PK", item["PK"].clone())
            .key("SK", item["SK"].clone())
            .update_expression("SET GSI2PK = :p, GSI2SK = :s")
            .expression_attribute_values(":p", s(list.unsharded(&org.org_id)));
        update = match item.get("last_activity_at") {
            Some(at) => {
                let identity = item["PK"].as_s().unwrap().rsplit("#USER#").next().unwrap();
                let old_sort = format!("{}#{identity}", at.as_s().unwrap());
                update.expression_attribute_values(":s", s(old_sort))
            }
            None => update.expression_attribute_values(":s", item["GSI2SK"].clone()),
        };
        update.send().await.unwrap();
    }
    items.len()
}

#[tokio::test]
async fn the_migration_moves_older_records_to_their_shards_once() {
    let org = paging_org().await;
    for n in 0..10u32 {
        event(&org, &format!("u{n}"), &days_ago(40.0 + f64::from(n) * 3.0)).await;
    }
    for n in 0..6u32 {
        message(
            &org,
            &format!("t{n}"),
            &format!("m{n}"),
            "in",
            f64::from(n) + 1.0,
        )
        .await;
        booking(&org, &format!("b{n}"), &days_ago(-f64::from(n) - 1.0)).await;
    }
    let segment = || async {
        let users = org
            .read_all(Endpoint::UsersList, &[], "inactive_days=30", "users")
            .await;
        let ids: Vec<String> = users
            .iter()
            .map(|u| u["external_user_id"].as_str().unwrap().to_owned())
            .collect();
        ids
    };
    let inbox = || {
        org.read_all(
            Endpoint::Inbox,
            &[],
            "status=awaiting_reply",
            "conversations",
        )
    };
    let window = format!("from={}&to={}", days_ago(0.0), days_ago(-10.0));
    let bookings = || org.read_all(Endpoint::BookingsList, &[], &window, "bookings");
    let users_before = segment().await;
    assert_eq!(users_before.len(), 10);
    let (inbox_before, bookings_before) = (inbox().await.len(), bookings().await.len());
    let keys_before = [
        items_of(&org, OrgList::Users).await,
        items_of(&org, OrgList::Inbox).await,
        items_of(&org, OrgList::Bookings).await,
    ];

    // The ten, and the threads' six contacts.
    assert_eq!(unshard(&org, OrgList::Users).await, 16);
    assert_eq!(unshard(&org, OrgList::Inbox).await, 6);
    assert_eq!(unshard(&org, OrgList::Bookings).await, 6);
    assert!(
        segment().await.is_empty(),
        "older records are not in the shards"
    );
    // An event moves its user by itself (and the migration resumes with the rest).
    for user in ["u0", "u1", "u2"] {
        event(&org, user, &days_ago(35.0)).await;
    }

    let done = admin::migrate_shards(org.store(), Some(&org.org_id))
        .await
        .unwrap();
    let moved: Vec<(OrgList, usize)> = done.iter().map(|(_, list, m)| (*list, m.moved)).collect();
    assert_eq!(
        moved,
        [
            (OrgList::Users, 13),
            (OrgList::Inbox, 6),
            (OrgList::Bookings, 6)
        ]
    );
    assert_eq!(segment().await.len(), 10);
    assert_eq!(inbox().await.len(), inbox_before);
    assert_eq!(bookings().await.len(), bookings_before);
    // The keys are the ones the writes gave (users moved by an event have newer ones).
    let keys_of = |items: &[Item]| {
        let mut keys: Vec<(String, String, String)> = items
            .iter()
            .filter(|item| {
                !["u0", "u1", "u2"]
                    .iter()
                    .any(|u| item["PK"].as_s().unwrap().ends_with(&format!("#{u}")))
            })
            .map(|item| {
                let text = |name: &str| item[name].as_s().unwrap().clone();
                (text("PK"), text("GSI2PK"), text("GSI2SK"))
            })
            .collect();
        keys.sort();
        keys
    };
    for (list, before) in OrgList::ALL.into_iter().zip(&keys_before) {
        assert_eq!(
            keys_of(&items_of(&org, list).await),
            keys_of(before),
            "{list:?}"
        );
    }

    // Idempotent: a second run finds nothing to move.
    let again = admin::migrate_shards(org.store(), Some(&org.org_id))
        .await
        .unwrap();
    assert!(again
        .iter()
        .all(|(_, _, m)| m.moved == 0 && m.changed_meanwhile == 0));
    let unknown = admin::migrate_shards(org.store(), Some("no-such-org")).await;
    assert!(matches!(unknown, Err(admin::AdminError::NoSuchOrg(_))));
}
