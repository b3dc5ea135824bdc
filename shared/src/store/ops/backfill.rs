//! `admin table index-for-erasure`: gives the items written before erasure could list them
//! the index keys a write gives them today: an email alias its place under its owner (GSI1,
//! `EMAIL#<email>`), a message with a contact its place under that contact (GSI2,
//! `MESSAGE#<message_id>`). Until then erasing a client misses them (but its current email's
//! alias, which it releases by key).
//!
//! These items are listed nowhere else, so this is the one Scan: run once after deploying,
//! outside the request path. Each update is conditioned on the item still being as read
//! (the same owner or contact, no index keys yet), so it is idempotent, safe alongside live
//! traffic, and resumable without state of its own: a second run finds only what changed.

use crate::error::ApiError;
use crate::fields::parse_id;
use crate::fields::Email;
use crate::input::UserIdentity;
use crate::store::error::is_condition_failure;
use crate::store::expr::{Expr, WithExpression};
use crate::store::schema::attributes::EMAIL_ALIAS;
use crate::store::schema::keys::{self, key_of, ItemKey};
use crate::store::schema::{s, Item};
use crate::store::{storage_error, Store};
use aws_sdk_dynamodb::types::AttributeValue;
use futures::{StreamExt, TryStreamExt};

/// Updates in flight at once.
const CONCURRENT_UPDATES: usize = 16;

/// What a run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Indexed {
    pub aliases: usize,
    pub messages: usize,
    /// Changed between the read and the update (a live write gave it its keys already).
    pub changed_meanwhile: usize,
    /// Not understood (logged, left alone).
    pub skipped: usize,
}

enum Outcome {
    Alias,
    Message,
    Changed,
    Skipped,
}

fn text<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

/// The identity a stored `contact` reference names.
fn contact_identity(contact: &AttributeValue) -> Option<UserIdentity> {
    let contact = contact.as_m().ok()?;
    let value = |name: &str| contact.get(name).and_then(|v| v.as_s().ok());
    match (value("external_user_id"), value("email")) {
        (Some(id), _) => parse_id(id).ok().map(UserIdentity::External),
        (None, Some(email)) => email.parse::<Email>().ok().map(UserIdentity::Email),
        (None, None) => None,
    }
}

/// The index keys `item` lacks, and the condition that it is still as read.
fn planned(item: &Item) -> Option<(ItemKey, Expr, Outcome)> {
    let key = key_of(item)?;
    let org_id = text(item, "org_id")?;
    let mut expr = Expr::new();
    match text(item, "entity")? {
        EMAIL_ALIAS => {
            let owner = text(item, "external_user_id")?;
            let email = key
                .pk
                .strip_prefix(&format!("ORG#{org_id}#EMAIL#"))?
                .parse::<Email>()
                .ok()?;
            let owner_pk = keys::user_pk(org_id, &UserIdentity::External(parse_id(owner).ok()?));
            let listed = keys::alias_under_user(owner_pk, &email);
            expr.set("GSI1PK", s(listed.gsi1pk))
                .set("GSI1SK", s(listed.gsi1sk));
            let same_owner = expr.equals("external_user_id", s(owner));
            let unlisted = expr.not_exists("GSI1PK");
            expr.condition(same_owner).condition(unlisted);
            Some((key, expr, Outcome::Alias))
        }
        "message" => {
            let contact = item.get("contact")?;
            let message_id = parse_id(text(item, "message_id")?).ok()?;
            let contact_pk = keys::user_pk(org_id, &contact_identity(contact)?);
            let (pk, sort) = keys::message_under_contact(contact_pk, &message_id);
            expr.set("GSI2PK", s(pk)).set("GSI2SK", s(sort));
            let same_contact = expr.equals("contact", contact.clone());
            let unlisted = expr.not_exists("GSI2PK");
            expr.condition(same_contact).condition(unlisted);
            Some((key, expr, Outcome::Message))
        }
        _ => None,
    }
}

impl Store {
    /// One pass over the table (see the module documentation).
    pub async fn index_for_erasure(&self) -> Result<Indexed, ApiError> {
        let mut filter = Expr::new();
        let alias = format!(
            "({} AND {})",
            filter.equals("entity", s(EMAIL_ALIAS)),
            filter.not_exists("GSI1PK")
        );
        let message = format!(
            "({} AND {} AND {})",
            filter.equals("entity", s("message")),
            filter.exists("contact"),
            filter.not_exists("GSI2PK")
        );
        filter.condition(format!("({alias} OR {message})"));
        let projection = filter.projection([
            keys::TABLE_PK,
            keys::TABLE_SK,
            "entity",
            "org_id",
            "external_user_id",
            "contact",
            "message_id",
        ]);
        let filter = filter.finish();
        let mut indexed = Indexed::default();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .set_filter_expression(filter.condition.clone())
                .projection_expression(&projection)
                .set_expression_attribute_names(filter.names.clone())
                .set_expression_attribute_values(filter.values.clone())
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|error| storage_error("Scan (index for erasure)", error))?;
            let outcomes: Vec<Outcome> = futures::stream::iter(page.items.unwrap_or_default())
                .map(|item| self.index_one(item))
                .buffer_unordered(CONCURRENT_UPDATES)
                .try_collect()
                .await?;
            for outcome in outcomes {
                match outcome {
                    Outcome::Alias => indexed.aliases += 1,
                    Outcome::Message => indexed.messages += 1,
                    Outcome::Changed => indexed.changed_meanwhile += 1,
                    Outcome::Skipped => indexed.skipped += 1,
                }
            }
            match page.last_evaluated_key {
                Some(last) if !last.is_empty() => start = Some(last),
                _ => return Ok(indexed),
            }
        }
    }

    async fn index_one(&self, item: Item) -> Result<Outcome, ApiError> {
        let Some((key, expr, outcome)) = planned(&item) else {
            tracing::warn!(
                pk = text(&item, keys::TABLE_PK),
                "not understood: left alone"
            );
            return Ok(Outcome::Skipped);
        };
        match self.update_item(&key).with(expr.finish()).send().await {
            Ok(_) => Ok(outcome),
            Err(error) if is_condition_failure(&error) => Ok(Outcome::Changed),
            Err(error) => Err(storage_error("UpdateItem (index for erasure)", error)),
        }
    }
}
