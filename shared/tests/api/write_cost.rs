//! What the per-name counters cost each event, measured: DynamoDB Local's
//! `ReturnConsumedCapacity: INDEXES` (the table's units and each index's, summed) on every event transaction (asked for by an SDK
//! interceptor on a store of the test's own), for a client with 1, 10 and the most names.
//! DynamoDB bills a transactional write 2 units per KB of the larger of the item's size
//! before and after; the numbers are in docs/data-model.md ("What the per-name counters
//! cost").

use crate::common::*;
use aws_sdk_dynamodb::config::interceptors::{
    AfterDeserializationInterceptorContextRef, BeforeSerializationInterceptorContextMut,
};
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_dynamodb::error::BoxError;
use aws_sdk_dynamodb::operation::transact_write_items::{
    TransactWriteItemsInput, TransactWriteItemsOutput,
};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use serde_json::json;
use shared::http::App;
use shared::store::testing::{attributes, keys};
use shared::store::Store;
use shared::Endpoint;
use std::sync::{Arc, Mutex};

/// Capacity units of each successful transaction, and how many transactions were sent.
#[derive(Debug, Clone, Default)]
struct Units(Arc<Mutex<(Vec<f64>, usize)>>);

impl Intercept for Units {
    fn name(&self) -> &'static str {
        "Units"
    }

    fn modify_before_serialization(
        &self,
        context: &mut BeforeSerializationInterceptorContextMut<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(input) = context
            .input_mut()
            .downcast_mut::<TransactWriteItemsInput>()
        {
            input.return_consumed_capacity = Some(ReturnConsumedCapacity::Indexes);
            self.0.lock().unwrap().1 += 1;
        }
        Ok(())
    }

    fn read_after_deserialization(
        &self,
        context: &AfterDeserializationInterceptorContextRef<'_>,
        _: &RuntimeComponents,
        _: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Ok(output) = context.output_or_error() {
            if let Some(output) = output.downcast_ref::<TransactWriteItemsOutput>() {
                let units = output
                    .consumed_capacity()
                    .iter()
                    .filter_map(|c| c.capacity_units())
                    .sum();
                self.0.lock().unwrap().0.push(units);
            }
        }
        Ok(())
    }
}

/// DynamoDB's size of a value (names and strings in UTF-8 bytes, numbers about one byte per
/// two digits plus one, documents 3 bytes plus one per element).
fn value_size(value: &AttributeValue) -> usize {
    match value {
        AttributeValue::S(text) => text.len(),
        AttributeValue::N(number) => {
            let digits = number.chars().filter(char::is_ascii_digit).count();
            digits.div_ceil(2) + 1
        }
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::L(list) => 3 + list.iter().map(|v| value_size(v) + 1).sum::<usize>(),
        AttributeValue::M(map) => {
            3 + map
                .iter()
                .map(|(k, v)| k.len() + value_size(v) + 1)
                .sum::<usize>()
        }
        _ => 0,
    }
}

/// The bytes of the attributes the per-name counters and the activity pair add.
fn added_bytes(item: &std::collections::HashMap<String, AttributeValue>) -> usize {
    item.iter()
        .filter(|(name, _)| {
            name.starts_with(attributes::NAME_PREFIX)
                || [
                    attributes::EVENT_NAMES,
                    attributes::FIRST_EVENT,
                    attributes::PREVIOUS_ACTIVITY,
                ]
                .contains(&name.as_str())
        })
        .map(|(name, value)| name.len() + value_size(value))
        .sum()
}

#[tokio::test]
async fn the_per_name_counters_cost_is_measured() {
    let plain = TestOrg::with_rate_limit(Some(1_000_000)).await;
    let units = Units::default();
    let config = plain
        .store()
        .client()
        .config()
        .to_builder()
        .interceptor(units.clone())
        .build();
    let client = aws_sdk_dynamodb::Client::from_conf(config);
    let org = TestOrg {
        app: App::new(Store::new(client, plain.store().table())),
        ..plain
    };
    let max = attributes::MAX_EVENT_NAMES as usize;
    let mut report = Vec::new();
    for names in [1, 10, max] {
        let id = unique("cost");
        let profile = json!({"external_user_id": id, "email": format!("{id}@example.com"),
            "name": "Jane Doe", "plan": "pro", "subscription_status": "active",
            "install_source": "producthunt", "metadata": {"team": "growth", "seats": 12}});
        org.call(Endpoint::UsersUpsert, profile)
            .await
            .assert_success();
        // Every name once (creating its entry), then 3 rounds in order: the steady state.
        let rounds = 4;
        let mut steady = Vec::new();
        let mut first_round = 0;
        for round in 0..rounds {
            for index in 0..names {
                let before = units.0.lock().unwrap().clone();
                let body = json!({"event": format!("screen_viewed_{index:02}"),
                    "user": {"external_user_id": id},
                    "event_timestamp": days_ago(1.0 - (round * names + index) as f64 / 1e5)});
                org.call(Endpoint::Events, body).await.assert_status(201);
                let after = units.0.lock().unwrap().clone();
                if round > 0 {
                    let cost: f64 = after.0[before.0.len()..].iter().sum();
                    steady.push((cost, after.1 - before.1));
                } else {
                    first_round += after.1 - before.1;
                }
            }
        }
        let key = keys::user(&org.org_id, &external_identity(&id));
        let item = org.store().get_consistent(&key).await.unwrap().unwrap();
        let size: usize = item.iter().map(|(k, v)| k.len() + value_size(v)).sum();
        let average = steady.iter().map(|(c, _)| c).sum::<f64>() / steady.len() as f64;
        let transactions =
            steady.iter().map(|(_, t)| t).sum::<usize>() as f64 / steady.len() as f64;
        let first = first_round as f64 / names as f64;
        report.push((
            names,
            size,
            added_bytes(&item),
            average,
            transactions,
            first,
        ));
    }
    for (names, size, added, average, transactions, first) in &report {
        println!(
            "{names} names: user item {size} B ({added} B of counters and activity pair), \
             {average:.2} WCU and {transactions:.2} transactions per event; \
             {first:.2} transactions per first event of a name"
        );
    }
    // One transaction per in-order event of a known name, whatever the number of names.
    assert!(report.iter().all(|r| r.4 == 1.0), "{report:?}");
}
