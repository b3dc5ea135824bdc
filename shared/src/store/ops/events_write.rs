//! An event and what it adds to its client, written in one transaction.
//!
//! `TransactWriteItems` of two items: the create-only Put of the event, and the Update of
//! its user that adds the event's counts and offers its last-value fields. Atomicity is
//! what makes the counts exact: an event is either stored with its counts or not at all,
//! so a retry that finds the event stored (same `Idempotency-Key`, or the SDK resending a
//! request whose response was lost) knows its counts are in, and adds nothing.
//!
//! Each offered field is guarded in the user Update's condition (it applies only if the
//! offer wins over what the field holds, see [`crate::facts::Offer::wins_over`]), and so
//! are the activity pair (`last_event_at`, `ev_prev`), the first event and the event
//! name's entry. In order, for a name the client sent before, everything applies: one
//! transaction. When a guard fails (a late, older event; a name's first event), DynamoDB
//! cancels the whole transaction and returns the user as it is; the parts are chosen again
//! from it (`Part::all_for`) and the transaction is sent again, so the event and its
//! counts are still written. Guards only ever move what they guard one way (times forward,
//! the first event back, entries created once), so a retry meets a concurrent writer or
//! succeeds; past `ATTEMPTS` the answer is a 503.

use super::write::upsert_expression;
use crate::error::ApiError;
use crate::facts::{Contribution, Latest, Offer, Pick};
use crate::fields::Timestamp;
use crate::store::codec::records::Stored;
use crate::store::codec::upsert::{Advance, Upsert};
use crate::store::error::{storage_error, throttled_transaction};
use crate::store::expr::{Expr, WithExpression};
use crate::store::schema::attributes::{
    event_attribute, name_attribute, stored_offer, stored_position, tie_name, EVENT_INSTALLS,
    EVENT_NAMES, EVENT_PAYMENTS, FIRST_EVENT, MAX_EVENT_NAMES, NAME_PREFIX, PREVIOUS_ACTIVITY,
    REVENUE_PREFIX,
};
use crate::store::schema::keys::key_attributes;
use crate::store::schema::{n, s, Item};
use crate::store::Store;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

/// Transactions one event may send: in order one; out of order usually two. Past this
/// (a user with many events racing), the answer is a 503 and the client retries.
const ATTEMPTS: usize = 6;

/// The write of one event: its item, its user's write (the nested user's fields, which
/// only fill gaps, and the activity time as its [`Advance`]), and what it adds.
#[derive(Debug, Clone)]
pub struct EventWrite {
    pub event: Stored,
    pub user: Upsert,
    pub contribution: Contribution,
}

#[derive(Debug, Clone, PartialEq)]
pub enum EventOutcome {
    /// The event was new: it is stored with its counts.
    Recorded,
    /// An event with this id was already stored (here it is): its counts are in.
    Exists(Stored),
}

/// A guarded part of the user update.
#[derive(Debug, Clone, PartialEq)]
enum Part<'a> {
    /// The event is the newest: its time becomes `last_event_at` (and the last activity),
    /// the one it replaces `ev_prev`.
    Activity,
    /// The event falls strictly between the two most recent activities: it becomes
    /// `ev_prev` (a late event inside a gap closes it).
    Gap,
    /// The event is older than the oldest: it becomes `ev_first`.
    First,
    /// The event's name counts it: in the name's own entry, or (`other`) in the entry of
    /// the names past the bound; `new` creates the entry.
    Count {
        other: bool,
        new: bool,
    },
    /// The event is the newest of its entry (only with an existing entry's count).
    Latest {
        other: bool,
    },
    /// A new name smaller than the greatest of a full set of kept names: that one's entry
    /// joins the names past the bound, and the new name gets an entry.
    Evict(Eviction),
    Offer(&'a Offer),
}

/// The greatest kept name's entry and the entry of the names past the bound, as read
/// (`[count, time]`); the eviction is guarded on both being unchanged.
#[derive(Debug, Clone, PartialEq)]
struct Eviction {
    attribute: String,
    entry: (i64, i64),
    other: Option<(i64, i64)>,
}

/// Why a transaction was not written.
enum Refusal {
    EventExists(Item),
    /// The user's condition failed; the user as it is now.
    UserGuard(Item),
    /// Another transaction touched the same items: try again.
    Conflict,
}

impl Store {
    pub async fn record_event(&self, write: &EventWrite) -> Result<EventOutcome, ApiError> {
        // The common case, guessed: the newest event of the client and of a known name.
        let mut parts: Vec<Part> = [
            Part::Activity,
            Part::Count {
                other: false,
                new: false,
            },
            Part::Latest { other: false },
        ]
        .into_iter()
        .chain(write.contribution.offers.iter().map(Part::Offer))
        .collect();
        for attempt in 0..ATTEMPTS {
            match self.transact(write, &parts).await? {
                Ok(()) => return Ok(EventOutcome::Recorded),
                Err(Refusal::EventExists(item)) => {
                    return Ok(EventOutcome::Exists(Stored::new(item)))
                }
                Err(Refusal::UserGuard(current)) => {
                    write.user.check_not_merged(&current)?;
                    // No item: a new client, whose first event guessed a known name.
                    if !current.is_empty() && !write.user.is_owner_of(&current) {
                        tracing::error!(
                            pk = write.user.key.loggable(),
                            "item owned by another org or entity"
                        );
                        return Err(ApiError::Internal);
                    }
                    parts = Part::all_for(write, &current);
                }
                Err(Refusal::Conflict) => {
                    let pause = 10u64 << attempt.min(4);
                    tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
                }
            }
        }
        tracing::warn!(
            pk = write.user.key.loggable(),
            "event transaction kept conflicting"
        );
        Err(ApiError::StorageUnavailable)
    }

    async fn transact(
        &self,
        write: &EventWrite,
        parts: &[Part<'_>],
    ) -> Result<Result<(), Refusal>, ApiError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(write.event.item().clone()))
            .condition_expression("attribute_not_exists(PK)")
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(internal)?;
        let update = Update::builder()
            .table_name(&self.table)
            .set_key(Some(key_attributes(&write.user.key)))
            .with(user_expression(write, parts).finish())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .build()
            .map_err(internal)?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        let error = match result {
            Ok(_) => return Ok(Ok(())),
            Err(error) => error,
        };
        let reasons = match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                cancelled.cancellation_reasons().to_vec()
            }
            // The SDK's own retry of this transaction while the first attempt still runs.
            Some(TransactWriteItemsError::TransactionInProgressException(_)) => {
                return Ok(Err(Refusal::Conflict))
            }
            _ => return Err(storage_error("TransactWriteItems", error)),
        };
        if let Some(throttled) = throttled_transaction("TransactWriteItems", &reasons) {
            return Err(throttled);
        }
        let code = |index: usize| reasons.get(index).and_then(|r| r.code()).unwrap_or("None");
        let item = |index: usize| {
            reasons
                .get(index)
                .and_then(|r| r.item.clone())
                .unwrap_or_default()
        };
        Ok(Err(match (code(0), code(1)) {
            ("ConditionalCheckFailed", _) => Refusal::EventExists(item(0)),
            (_, "ConditionalCheckFailed") => Refusal::UserGuard(item(1)),
            (first, second) if [first, second].contains(&"TransactionConflict") => {
                Refusal::Conflict
            }
            _ => return Err(storage_error("TransactWriteItems", error)),
        }))
    }
}

fn internal(error: impl std::fmt::Display) -> ApiError {
    tracing::error!(%error, "transaction request");
    ApiError::Internal
}

/// The event's time as stored, and its name.
fn time_and_name(write: &EventWrite) -> (String, Option<&str>) {
    let text = |name: &str| write.event.item().get(name).and_then(|v| v.as_s().ok());
    let at = text("event_timestamp").cloned().unwrap_or_default();
    (at, text("event").map(String::as_str))
}

/// The event's time in Unix milliseconds (what a name's entry keeps).
fn millis(at: &str) -> i64 {
    at.parse::<Timestamp>().map_or(0, Timestamp::unix_millis)
}

/// A name entry's `[count, time]` element `index`, as stored in `current`.
fn entry(current: &Item, attribute: &str, index: usize) -> Option<i64> {
    let list = current.get(attribute)?.as_l().ok()?;
    list.get(index)?.as_n().ok()?.parse().ok()
}

impl<'a> Part<'a> {
    /// Every part whose guard holds on `current` (the user as DynamoDB has it).
    fn all_for(write: &'a EventWrite, current: &Item) -> Vec<Part<'a>> {
        let (at, name) = time_and_name(write);
        let stored = |attribute: &str| current.get(attribute).and_then(|v| v.as_s().ok());
        let last = stored("last_event_at");
        let mut parts = Vec::new();
        if write.user.advance.is_some() {
            if last.is_none_or(|last| last < &at) {
                parts.push(Part::Activity);
            } else if last.is_some_and(|last| last > &at)
                && stored(PREVIOUS_ACTIVITY).is_none_or(|previous| previous < &at)
            {
                parts.push(Part::Gap);
            }
            if stored(FIRST_EVENT).is_none_or(|first| first > &at) {
                parts.push(Part::First);
            }
        }
        // Kept apart: the `MAX_EVENT_NAMES` smallest names (in byte order) of all the
        // client sent, whatever the order they came in; the others' events together.
        let kept = name_attribute(name);
        let names = current
            .get(EVENT_NAMES)
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0);
        let greatest = current
            .keys()
            .filter(|attribute| attribute.len() > NAME_PREFIX.len())
            .filter(|attribute| attribute.starts_with(NAME_PREFIX))
            .max();
        let both =
            |attribute: &str| Some((entry(current, attribute, 0)?, entry(current, attribute, 1)?));
        let other_attribute = name_attribute(None);
        if !current.contains_key(&kept) && names >= MAX_EVENT_NAMES {
            if let Some(greatest) = greatest.filter(|greatest| kept < **greatest) {
                if let Some(entry) = both(greatest) {
                    parts.push(Part::Evict(Eviction {
                        attribute: greatest.clone(),
                        entry,
                        other: both(&other_attribute),
                    }));
                }
            } else {
                push_count(&mut parts, current, &other_attribute, true, &at);
            }
        } else {
            push_count(&mut parts, current, &kept, false, &at);
        }
        parts.extend(write.contribution.offers.iter().filter_map(|offer| {
            let attribute = event_attribute(offer.field);
            let position = stored_position(offer.field, current.get(&attribute));
            offer
                .wins_over(position.as_ref())
                .then_some(Part::Offer(offer))
        }));
        parts
    }
}

/// The count of `attribute` (`other`: the names past the bound), and its time if newer.
fn push_count(parts: &mut Vec<Part>, current: &Item, attribute: &str, other: bool, at: &str) {
    let new = !current.contains_key(attribute);
    parts.push(Part::Count { other, new });
    if !new && entry(current, attribute, 1).is_none_or(|t| t < millis(at)) {
        parts.push(Part::Latest { other });
    }
}

/// The user Update: its write (bookkeeping, gap-filling fields, first-seen activity), the
/// activity advance if still a part, the counts, and every part with its guard.
fn user_expression(write: &EventWrite, parts: &[Part]) -> Expr {
    let activity = parts.contains(&Part::Activity);
    let advance: Option<&Advance> = write.user.advance.as_ref().filter(|_| activity);
    let mut expr = upsert_expression(&write.user, advance);
    let contribution = &write.contribution;
    if contribution.installs > 0 {
        expr.add(EVENT_INSTALLS, n(contribution.installs));
    }
    if contribution.payments > 0 {
        expr.add(EVENT_PAYMENTS, n(contribution.payments));
    }
    if let Some((currency, amount)) = &contribution.revenue {
        expr.add(&format!("{REVENUE_PREFIX}{currency}"), n(amount));
    }
    let (at, name) = time_and_name(write);
    let at_value = expr.value(s(&at));
    if write.user.advance.is_some() && !parts.contains(&Part::First) {
        expr.set_if_absent_to(FIRST_EVENT, &at_value);
    }
    for part in parts {
        match part {
            Part::Activity => {
                // Strictly newer: an event of the same millisecond is the same activity
                // instant, and must not make `last_event_at` its own predecessor.
                let last = expr.name("last_event_at");
                let none = expr.value(s(""));
                let previous = expr.name(PREVIOUS_ACTIVITY);
                expr.set_clause(format!("{previous} = if_not_exists({last}, {none})"));
                let guard = expr.absent_or_below("last_event_at", &at_value);
                expr.condition(guard);
            }
            Part::Gap => {
                expr.set_to(PREVIOUS_ACTIVITY, &at_value);
                let last = expr.name("last_event_at");
                let previous = expr.absent_or_below(PREVIOUS_ACTIVITY, &at_value);
                expr.condition(format!("({last} > {at_value} AND {previous})"));
            }
            Part::First => {
                expr.set_to(FIRST_EVENT, &at_value);
                let guard = expr.absent_or_above(FIRST_EVENT, &at_value);
                expr.condition(guard);
            }
            Part::Count { other, new } => {
                let attribute = name_attribute(name.filter(|_| !other));
                let entry = expr.name(&attribute);
                if *new {
                    let list = AttributeValue::L(vec![n(1), n(millis(&at))]);
                    expr.set(&attribute, list);
                    let absent = expr.not_exists(&attribute);
                    expr.condition(absent);
                    if !other {
                        let max = expr.value(n(MAX_EVENT_NAMES));
                        let room = expr.not_exists(EVENT_NAMES);
                        let names = expr.name(EVENT_NAMES);
                        expr.condition(format!("({room} OR {names} < {max})"));
                        expr.add(EVENT_NAMES, n(1));
                    }
                } else {
                    let one = expr.value(n(1));
                    expr.set_clause(format!("{entry}[0] = {entry}[0] + {one}"));
                    let exists = expr.exists(&attribute);
                    expr.condition(exists);
                }
            }
            Part::Latest { other } => {
                let attribute = name_attribute(name.filter(|_| !other));
                let entry = expr.name(&attribute);
                let time = expr.value(n(millis(&at)));
                expr.set_clause(format!("{entry}[1] = {time}"));
                expr.condition(format!("{entry}[1] < {time}"));
            }
            Part::Evict(eviction) => evict(&mut expr, eviction, name, &at),
            Part::Offer(offer) => {
                let attribute = event_attribute(offer.field);
                expr.set(&attribute, stored_offer(offer));
                let guard = offer_guard(&mut expr, &attribute, offer);
                expr.condition(guard);
            }
        }
    }
    expr
}

/// Moves the greatest kept name's entry into the entry of the names past the bound and
/// gives the event's name an entry, guarded on both entries being as read and the name
/// still having none.
fn evict(expr: &mut Expr, eviction: &Eviction, name: Option<&str>, at: &str) {
    let list = |(count, at): (i64, i64)| AttributeValue::L(vec![n(count), n(at)]);
    let same = |expr: &mut Expr, attribute: &str, (count, at): (i64, i64)| {
        let path = expr.name(attribute);
        let (count, at) = (expr.value(n(count)), expr.value(n(at)));
        format!("({path}[0] = {count} AND {path}[1] = {at})")
    };
    let guard = same(expr, &eviction.attribute, eviction.entry);
    expr.condition(guard);
    expr.remove(&eviction.attribute);
    let other = name_attribute(None);
    let (count, latest) = eviction.entry;
    let joined = match eviction.other {
        Some(entry) => {
            let guard = same(expr, &other, entry);
            expr.condition(guard);
            (entry.0 + count, entry.1.max(latest))
        }
        None => {
            let absent = expr.not_exists(&other);
            expr.condition(absent);
            eviction.entry
        }
    };
    expr.set(&other, list(joined));
    let attribute = name_attribute(name);
    let absent = expr.not_exists(&attribute);
    expr.condition(absent);
    expr.set(&attribute, list((1, millis(at))));
}

/// `attribute_not_exists(g) OR g < :at` for a time alone; for the rest,
/// `... OR g.at < :at OR (g.at = :at AND g.tie < :tie)` (`>` on the time for an oldest-wins
/// field), the condition [`Offer::wins_over`] states in Rust.
fn offer_guard(expr: &mut Expr, attribute: &str, offer: &Offer) -> String {
    let (at, tie) = offer.position();
    let at = expr.value(s(at));
    let absent = expr.not_exists(attribute);
    let group = expr.name(attribute);
    if matches!(offer.value, Latest::Time) {
        return format!("({absent} OR {group} < {at})");
    }
    let at_path = format!("{group}.{}", expr.name("at"));
    let tie_path = format!("{group}.{}", expr.name(tie_name(offer.field)));
    let tie = match offer.value {
        Latest::Flag(flag) => expr.value(n(u8::from(flag))),
        _ => expr.value(s(tie)),
    };
    let earlier = match offer.field.pick() {
        Pick::Newest => "<",
        Pick::Oldest => ">",
    };
    format!("({absent} OR {at_path} {earlier} {at} OR ({at_path} = {at} AND {tie_path} < {tie}))")
}
