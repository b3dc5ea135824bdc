//! How an event moves the client record's lifecycle state.
//!
//! Each lifecycle event stamps one or more timestamp fields with the event's time and sets
//! a few state fields. The write is guarded: it only applies if every stamped (and
//! `also_newer_than`) field is absent or older than the event. So an out-of-order event
//! never moves a timestamp backwards, and a replayed event (same time) is a no-op, which
//! keeps the counters (`install_count`, `total_payments_count`, `lifetime_value`) exact
//! when a client retries.

use crate::error::ApiError;
use crate::fields::{Currency, Metadata, Money, ShortText, Timestamp};
use crate::input::Event;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

#[derive(Debug, Clone, Default, PartialEq)]
pub struct LifecycleUpdate {
    /// Timestamp fields set to the event time, each guarded to only move forward.
    pub stamps: Vec<&'static str>,
    /// Timestamp fields that must also be older than the event for it to apply.
    pub also_newer_than: Vec<&'static str>,
    /// State fields the event sets, already in their stored JSON form.
    pub set: Vec<(&'static str, Value)>,
    /// Counters the event increments.
    pub install_count: u32,
    pub total_payments_count: u32,
    pub lifetime_value: Option<Money>,
}

impl LifecycleUpdate {
    pub fn is_empty(&self) -> bool {
        self.stamps.is_empty()
    }
}

/// Reads an optional typed property, naming it `properties.<key>` when it is malformed.
fn property<T: DeserializeOwned>(
    properties: Option<&Metadata>,
    key: &str,
) -> Result<Option<T>, ApiError> {
    match properties.and_then(|p| p.get(key)) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => T::deserialize(value).map(Some).map_err(|error| {
            ApiError::invalid_field(
                format!("properties.{key}"),
                format!("`properties.{key}` {error}"),
            )
        }),
    }
}

/// Copies the listed properties, parsed as `T`, into state fields of the same name.
fn copy_properties<T: DeserializeOwned + serde::Serialize>(
    update: &mut LifecycleUpdate,
    properties: Option<&Metadata>,
    keys: &[&'static str],
) -> Result<(), ApiError> {
    for &key in keys {
        if let Some(value) = property::<T>(properties, key)? {
            update.set.push((key, json!(value)));
        }
    }
    Ok(())
}

/// A payment carried by the event: `properties.amount` (decimal string) and
/// `properties.currency`.
fn record_payment(
    update: &mut LifecycleUpdate,
    properties: Option<&Metadata>,
) -> Result<(), ApiError> {
    update.stamps.push("last_payment_at");
    update.total_payments_count = 1;
    if let Some(amount) = property::<Money>(properties, "amount")? {
        update.set.push(("last_payment_amount", json!(amount)));
        update.lifetime_value = Some(amount);
    }
    if let Some(currency) = property::<Currency>(properties, "currency")? {
        update.set.push(("last_payment_currency", json!(currency)));
    }
    update.set.push(("is_active_customer", json!(true)));
    Ok(())
}

/// The subscription status a `subscription_<suffix>` event implies, if any.
fn subscription_status(suffix: &str) -> Option<&'static str> {
    match suffix {
        "started" | "renewed" | "resumed" | "reactivated" | "restarted" => Some("active"),
        "cancelled" | "canceled" => Some("cancelled"),
        "expired" => Some("expired"),
        "paused" => Some("paused"),
        "trial_started" => Some("trialing"),
        _ => None,
    }
}

/// The lifecycle update an event implies; empty for events that only attach to the user.
pub fn lifecycle_update(event: &Event) -> Result<LifecycleUpdate, ApiError> {
    let properties = event.properties.as_ref();
    let mut update = LifecycleUpdate::default();
    match event.name.as_str() {
        "app_installed" => {
            update.stamps.push("installed_at");
            update.also_newer_than.push("uninstalled_at");
            update.set.push(("is_installed", json!(true)));
            update.install_count = 1;
            copy_properties::<ShortText>(
                &mut update,
                properties,
                &["install_platform", "install_source", "app_version"],
            )?;
        }
        "app_opened" => {
            update.stamps.push("last_opened_at");
            update.also_newer_than.push("uninstalled_at");
            update.set.push(("is_installed", json!(true)));
            copy_properties::<ShortText>(&mut update, properties, &["app_version"])?;
        }
        "app_uninstalled" => {
            update.stamps.push("uninstalled_at");
            update
                .also_newer_than
                .extend(["installed_at", "last_opened_at"]);
            update.set.push(("is_installed", json!(false)));
        }
        "user_purchased" => record_payment(&mut update, properties)?,
        name => {
            let Some(suffix) = name.strip_prefix("subscription_") else {
                return Ok(update);
            };
            update.stamps.push("subscription_updated_at");
            if suffix == "started" {
                update.stamps.push("subscription_started_at");
            }
            if let Some(status) = property::<ShortText>(properties, "subscription_status")? {
                update
                    .set
                    .push(("subscription_status", json!(status.as_str())));
            } else if let Some(status) = subscription_status(suffix) {
                update.set.push(("subscription_status", json!(status)));
            }
            copy_properties::<ShortText>(
                &mut update,
                properties,
                &["plan", "billing_model", "billing_interval"],
            )?;
            copy_properties::<Timestamp>(
                &mut update,
                properties,
                &["subscription_ends_at", "next_billing_at"],
            )?;
            if suffix == "renewed" || property::<Money>(properties, "amount")?.is_some() {
                record_payment(&mut update, properties)?;
            }
        }
    }
    Ok(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_event;

    fn update_for(body: Value) -> Result<LifecycleUpdate, ApiError> {
        let event = parse_event(&serde_json::to_vec(&body).unwrap(), Timestamp::now()).unwrap();
        lifecycle_update(&event)
    }

    #[test]
    fn install_stamps_counts_and_copies_properties() {
        let update = update_for(json!({
            "event": "app_installed", "user": {"external_user_id": "u"},
            "properties": {"install_platform": "ios", "ignored": 1}
        }))
        .unwrap();
        assert_eq!(update.stamps, ["installed_at"]);
        assert_eq!(update.install_count, 1);
        assert!(update.set.contains(&("install_platform", json!("ios"))));
        assert!(update.set.contains(&("is_installed", json!(true))));
    }

    #[test]
    fn purchases_add_revenue() {
        let update = update_for(json!({
            "event": "user_purchased", "user": {"external_user_id": "u"},
            "properties": {"amount": "19.99", "currency": "usd"}
        }))
        .unwrap();
        assert_eq!(
            update.lifetime_value.unwrap().decimal().to_string(),
            "19.99"
        );
        assert!(update
            .set
            .contains(&("last_payment_currency", json!("USD"))));
        assert_eq!(update.total_payments_count, 1);
    }

    #[test]
    fn subscription_events_set_status() {
        let update =
            update_for(json!({"event": "subscription_cancelled", "user": {"email": "a@b.c"}}))
                .unwrap();
        assert!(update
            .set
            .contains(&("subscription_status", json!("cancelled"))));
        assert_eq!(update.total_payments_count, 0);
    }

    #[test]
    fn other_events_only_attach() {
        assert!(
            update_for(json!({"event": "level_completed", "user": {"email": "a@b.c"}}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn malformed_interpreted_properties_are_field_errors() {
        let error = update_for(json!({
            "event": "user_purchased", "user": {"email": "a@b.c"}, "properties": {"amount": 5}
        }))
        .unwrap_err();
        assert_eq!(error.param(), Some("properties.amount"));
    }
}
