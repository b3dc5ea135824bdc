//! One client per person: the normalized email and the `external_user_id` name one client.
//!
//! An identified user (one with an `external_user_id`) owns its email through an alias item
//! `ORG#<org>#EMAIL#<email>` naming the `external_user_id`. A user known only by email (no
//! alias yet) is the record at its email key, as before.
//!
//! - A mention with only an `external_user_id` resolves as before: no extra call.
//! - A mention with only an email reads the alias (one small GetItem): the owner if there
//!   is one, else the email-only client.
//! - A mention with both reads the alias (one strongly consistent GetItem): when it names
//!   this user already, as it does for every mention after the first, that is all (a read
//!   costs a fifth of a write). Otherwise it claims the alias (one conditional UpdateItem):
//!   refused with 409 `identity_conflict` when another `external_user_id` owns the email.
//!   The first claim of an email merges the email-only client into the identified one, once
//!   (below).
//!
//! **The merge** is one transaction: the email-only client is marked `merged_into` (its
//! segment keys removed) and its counts, its event-kept fields (where they win), its
//! activity and the profile fields the identified client lacks are added to the identified
//! client, guarded by both records' `version`, so it happens exactly once however many
//! requests race. Its history (events, sales, threads, bookings) stays listed under the
//! email-only record's key: the identified client names it in `merged_identities`, and its
//! reads and its erasure cover both. So a merge costs the same whatever the history's size.
//! A write that still targets a merged email-only record (a request that resolved the email
//! just before the merge) is refused by its condition and answered 503: its retry resolves
//! the email again, to the identified client.

use crate::error::ApiError;
use crate::facts::{wins, Field};
use crate::fields::{Email, Id, Timestamp};
use crate::input::UserIdentity;
use crate::store::codec::records::Stored;
use crate::store::error::{is_condition_failure, throttled_transaction};
use crate::store::expr::{Expr, WithExpression};
use crate::store::schema::attributes::{
    event_attribute, name_attribute, stored_position, EMAIL_ALIAS, EVENT_FIELD_PREFIX,
    EVENT_INSTALLS, EVENT_NAMES, EVENT_PAYMENTS, FIRST_EVENT, MAX_EVENT_NAMES, MERGED_IDENTITIES,
    MERGED_INTO, NAME_PREFIX, PREVIOUS_ACTIVITY, RECORD_BOOKKEEPING, REVENUE_PREFIX,
};
use crate::store::schema::keys::{self, key_attributes, ItemKey};
use crate::store::schema::{n, s, Item};
use crate::store::{storage_error, Store};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, TransactWriteItem, Update};
use std::collections::HashMap;

/// Most email-only records merged into one client (`merged_identities` lists their keys, at
/// most about 340 bytes each: this keeps the list under 17 KB of the item's 400 KB). One
/// more is refused with 409 `too_many_identities`: the email is not claimed and the
/// email-only record stays whole, as it was.
pub const MAX_MERGED_IDENTITIES: usize = 50;
/// Merge transactions tried before a merge racing other writers is a 503.
const MERGE_ATTEMPTS: usize = 5;

/// Attributes a merge never copies: keys, bookkeeping, identity.
fn is_not_copied(name: &str) -> bool {
    RECORD_BOOKKEEPING.contains(&name) || name == MERGED_INTO || name == MERGED_IDENTITIES
}

/// Counts a merge adds (the profile's baseline and the events' counters).
const COUNTS: [&str; 5] = [
    "install_count",
    "total_payments_count",
    "lifetime_value",
    EVENT_INSTALLS,
    EVENT_PAYMENTS,
];

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

enum Claim {
    /// The email was this user's already.
    Held,
    /// Claimed now, for the first time.
    New,
}

/// What a user mention resolves to.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolution {
    /// The client the mention names.
    pub identity: UserIdentity,
    /// When the mention claimed its email for the first time: the other email the
    /// identified client had until now (`users/upsert` releases it: an email change).
    pub replaced_email: Option<Email>,
    /// The email this mention claimed for the first time, if it did (a request that then
    /// stores nothing gives it back with [`Store::release_email`]).
    pub claimed: Option<Email>,
}

/// What resolving a keyed event's user found.
#[derive(Debug, Clone, PartialEq)]
pub enum EventUser {
    Resolved(Resolution),
    /// An event is stored at the request's id already: nothing was resolved (nor claimed).
    /// `conflict`: another `external_user_id` owns the mention's email (what a claim would
    /// have been refused for).
    Stored {
        event: Stored,
        conflict: bool,
    },
}

impl Store {
    /// The client `identity` and `email` name (see the module documentation).
    pub async fn resolve_identity(
        &self,
        org_id: &str,
        identity: &UserIdentity,
        email: Option<&Email>,
    ) -> Result<Resolution, ApiError> {
        let owner = match (identity, email) {
            (UserIdentity::External(_), Some(email)) => {
                self.email_owner(org_id, email, true).await?
            }
            _ => None,
        };
        self.resolve_with_owner(org_id, identity, email, owner)
            .await
    }

    /// [`Store::resolve_identity`] for an event stored at `event_id` (it has an
    /// `Idempotency-Key`). A mention that may claim its email reads the event with the alias
    /// (one strongly consistent BatchGetItem where the alias alone was one GetItem): a
    /// replay is found before anything is claimed.
    pub async fn resolve_event_user(
        &self,
        org_id: &str,
        identity: &UserIdentity,
        email: Option<&Email>,
        event_id: &str,
    ) -> Result<EventUser, ApiError> {
        let (UserIdentity::External(_), Some(address)) = (identity, email) else {
            let resolution = self.resolve_identity(org_id, identity, email).await?;
            return Ok(EventUser::Resolved(resolution));
        };
        let alias_key = keys::email_alias(org_id, address);
        let [alias, event] = self
            .get_pair_consistent([&alias_key, &keys::event(org_id, event_id)])
            .await?;
        let owner = alias.and_then(|alias| text(&alias, "external_user_id"));
        if let Some(event) = event {
            let conflict = matches!((identity, &owner), (UserIdentity::External(id), Some(owner)) if owner != id.as_str());
            let event = Stored::new(event);
            return Ok(EventUser::Stored { event, conflict });
        }
        let resolution = self
            .resolve_with_owner(org_id, identity, email, owner)
            .await?;
        Ok(EventUser::Resolved(resolution))
    }

    /// The owners of the aliases of `emails` (the emails that have one), read in
    /// BatchGetItem calls: what resolves a batch's email-only mentions, one read each.
    pub async fn email_owners(
        &self,
        org_id: &str,
        emails: &[Email],
    ) -> Result<HashMap<Email, Id>, ApiError> {
        let by_key: HashMap<ItemKey, &Email> = emails
            .iter()
            .map(|email| (keys::email_alias(org_id, email), email))
            .collect();
        let wanted: Vec<ItemKey> = by_key.keys().cloned().collect();
        let mut owners = HashMap::new();
        for alias in self.batch_get(&wanted).await? {
            let email = keys::key_of(alias.item()).and_then(|key| by_key.get(&key));
            if let (Some(email), Some(owner)) = (email, text(alias.item(), "external_user_id")) {
                owners.insert((*email).clone(), stored_id(&owner)?);
            }
        }
        Ok(owners)
    }

    /// [`Store::resolve_identity`] once the alias of a mention with both an id and an email
    /// was read (`owner`).
    async fn resolve_with_owner(
        &self,
        org_id: &str,
        identity: &UserIdentity,
        email: Option<&Email>,
        owner: Option<String>,
    ) -> Result<Resolution, ApiError> {
        let mut resolution = Resolution {
            identity: identity.clone(),
            replaced_email: None,
            claimed: None,
        };
        match (identity, email) {
            (UserIdentity::External(id), Some(email)) => {
                if owner.as_deref() == Some(id.as_str()) {
                    return Ok(resolution);
                }
                if let Claim::New = self.claim_email(org_id, email, id).await? {
                    resolution.claimed = Some(email.clone());
                    let previous = match self.merge_email_client(org_id, email, id).await {
                        Ok(previous) => previous,
                        Err(error) => {
                            // Give the claim back: a held alias skips the merge, so only a
                            // retry that claims again merges the email-only client.
                            let _ = self.release_email(org_id, email, id).await;
                            return Err(error);
                        }
                    };
                    resolution.replaced_email = previous
                        .and_then(|previous| previous.parse::<Email>().ok())
                        .filter(|previous| previous != email);
                }
            }
            (UserIdentity::Email(email), _) => {
                if let Some(owner) = self.email_owner(org_id, email, false).await? {
                    resolution.identity = UserIdentity::External(stored_id(&owner)?);
                }
            }
            (UserIdentity::External(_), None) => {}
        }
        Ok(resolution)
    }

    /// The `external_user_id` the alias of `email` names, if any.
    async fn email_owner(
        &self,
        org_id: &str,
        email: &Email,
        consistent: bool,
    ) -> Result<Option<String>, ApiError> {
        let alias = self
            .get_item(&keys::email_alias(org_id, email), consistent)
            .await?;
        Ok(alias.and_then(|alias| text(&alias, "external_user_id")))
    }

    /// Makes `email` name the identified user `id`, unless another user owns it.
    async fn claim_email(&self, org_id: &str, email: &Email, id: &Id) -> Result<Claim, ApiError> {
        let mut expr = Expr::new();
        let owner = s(id.as_str());
        let listed = keys::alias_under_user(
            keys::user_pk(org_id, &UserIdentity::External(id.clone())),
            email,
        );
        expr.set("entity", s(EMAIL_ALIAS))
            .set("org_id", s(org_id))
            .set("external_user_id", owner.clone())
            .set("GSI1PK", s(listed.gsi1pk))
            .set("GSI1SK", s(listed.gsi1sk));
        let unowned = expr.not_exists("external_user_id");
        let mine = expr.equals("external_user_id", owner);
        expr.condition(format!("({unowned} OR {mine})"));
        let result = self
            .update_item(&keys::email_alias(org_id, email))
            .with(expr.finish())
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output)
                if output
                    .attributes
                    .as_ref()
                    .is_some_and(|old| !old.is_empty()) =>
            {
                Ok(Claim::Held)
            }
            Ok(_) => Ok(Claim::New),
            Err(error) if is_condition_failure(&error) => Err(ApiError::IdentityConflict {
                param: "email".into(),
            }),
            Err(error) => Err(storage_error("UpdateItem (email alias)", error)),
        }
    }

    /// After `users/upsert` changed the user `id`'s email from `previous`: the old email no
    /// longer names it (unless another user took it meanwhile, which is that user's).
    pub async fn release_email(
        &self,
        org_id: &str,
        previous: &Email,
        id: &Id,
    ) -> Result<(), ApiError> {
        self.release_alias_at(keys::email_alias(org_id, previous), id)
            .await
    }

    /// Deletes the alias at `key` if it names the user `id` (erasure lists them by key).
    pub async fn release_alias_at(&self, key: ItemKey, id: &Id) -> Result<(), ApiError> {
        self.delete_if(
            &key,
            "external_user_id",
            id.as_str(),
            "DeleteItem (email alias)",
        )
        .await
    }

    /// Merges the email-only client of `email`, if there is one not merged yet, into the
    /// identified client `id` (created if missing), exactly once. The identified client's
    /// email as it was.
    async fn merge_email_client(
        &self,
        org_id: &str,
        email: &Email,
        id: &Id,
    ) -> Result<Option<String>, ApiError> {
        let from_key = keys::user(org_id, &UserIdentity::Email(email.clone()));
        let into_identity = UserIdentity::External(id.clone());
        let into_key = keys::user(org_id, &into_identity);
        for _ in 0..MERGE_ATTEMPTS {
            let [from, into] = self.get_pair_consistent([&from_key, &into_key]).await?;
            let email_before = into.as_ref().and_then(|into| text(into, "email"));
            let Some(from) = from.filter(|from| !from.contains_key(MERGED_INTO)) else {
                return Ok(email_before);
            };
            let merged = into
                .as_ref()
                .and_then(|into| into.get(MERGED_IDENTITIES))
                .and_then(|list| list.as_l().ok())
                .map_or(0, Vec::len);
            if merged >= MAX_MERGED_IDENTITIES {
                return Err(ApiError::TooManyIdentities {
                    param: "email".into(),
                    max: MAX_MERGED_IDENTITIES,
                });
            }
            let merge = Merge {
                table: &self.table,
                org_id,
                from: (&from_key, &from),
                into: (&into_key, into.as_ref(), &into_identity),
            };
            let (from_update, into_update) = merge.updates()?;
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(from_update).build())
                .transact_items(TransactWriteItem::builder().update(into_update).build())
                .send()
                .await;
            match result {
                Ok(_) => {
                    tracing::info!(org_id, "email-only client merged into an identified one");
                    return Ok(email_before);
                }
                Err(error) => match error.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => {
                        let reasons = cancelled.cancellation_reasons();
                        if let Some(throttled) =
                            throttled_transaction("TransactWriteItems (merge)", reasons)
                        {
                            return Err(throttled);
                        }
                        continue;
                    }
                    _ => return Err(storage_error("TransactWriteItems (merge)", error)),
                },
            }
        }
        tracing::warn!(org_id, "merge kept racing other writes");
        Err(ApiError::StorageUnavailable)
    }
}

/// An id as stored (valid when it was written).
fn stored_id(raw: &str) -> Result<Id, ApiError> {
    crate::fields::parse_id(raw).map_err(|error| {
        tracing::error!(%error, "stored external_user_id");
        ApiError::Internal
    })
}

struct Merge<'a> {
    table: &'a str,
    org_id: &'a str,
    from: (&'a ItemKey, &'a Item),
    into: (&'a ItemKey, Option<&'a Item>, &'a UserIdentity),
}

impl Merge<'_> {
    /// The two updates: the email-only record marked merged, the identified one given what
    /// it had. Each only if its record is still as read.
    fn updates(&self) -> Result<(Update, Update), ApiError> {
        let (from_key, from) = self.from;
        let (into_key, into, into_identity) = self.into;
        let empty = Item::new();
        let current = into.unwrap_or(&empty);

        let mut mark = Expr::new();
        mark.set(MERGED_INTO, s(&into_key.pk))
            .add("version", n(1))
            .remove("GSI2PK")
            .remove("GSI2SK");
        unchanged(&mut mark, from);

        let mut give = Expr::new();
        let now = give.value(s(Timestamp::now().to_stored()));
        give.set("entity", s("user"))
            .set("org_id", s(self.org_id))
            .set_if_absent_to("ingested_at", &now)
            .set_to("updated_at", &now)
            .set(
                "GSI2PK",
                s(keys::users_by_activity(self.org_id, into_identity)),
            );
        // A client the merge creates is still created by the request's own write (its
        // `version` 1 says `created`).
        if into.is_some() {
            give.add("version", n(1));
        }
        for (name, value) in from {
            let counted = COUNTS.contains(&name.as_str()) || name.starts_with(REVENUE_PREFIX);
            if counted {
                give.add(name, value.clone());
            } else if !is_not_copied(name)
                && !name.starts_with(EVENT_FIELD_PREFIX)
                && !name.starts_with(NAME_PREFIX)
                && !matches!(name.as_str(), "last_event_at" | "last_activity_at")
            {
                give.set_if_absent(name, value.clone());
            }
        }
        for field in Field::ALL {
            let attribute = event_attribute(field);
            let Some(value) = from.get(&attribute) else {
                continue;
            };
            let theirs = stored_position(field, Some(value));
            let mine = stored_position(field, current.get(&attribute));
            if theirs.is_some_and(|theirs| wins(field.pick(), &theirs, mine.as_ref())) {
                give.set(&attribute, value.clone());
            }
        }
        let activity = |item: &Item, name: &str| text(item, name);
        let from_activity = activity(from, "last_activity_at");
        if from_activity > activity(current, "last_activity_at") {
            let at = from_activity.unwrap_or_default();
            let sort = at
                .parse::<Timestamp>()
                .map(|time| keys::user_activity_sort(time, into_identity));
            give.set("last_activity_at", s(&at));
            if let Ok(sort) = sort {
                give.set("GSI2SK", s(sort));
            }
        }
        if let Some(last_event) = activity(from, "last_event_at") {
            if Some(&last_event) > activity(current, "last_event_at").as_ref() {
                give.set("last_event_at", s(last_event));
            }
        }
        let (history, dropped) = merged_history(from, current);
        for (name, value) in history {
            give.set(&name, value);
        }
        for name in dropped {
            give.remove(&name);
        }
        let merged = AttributeValue::L(vec![s(&from_key.pk)]);
        let list = give.name(MERGED_IDENTITIES);
        let (merged, none) = (
            give.value(merged),
            give.value(AttributeValue::L(Vec::new())),
        );
        give.set_clause(format!(
            "{list} = list_append(if_not_exists({list}, {none}), {merged})"
        ));
        unchanged(&mut give, current);

        let build = |key: &ItemKey, expr: Expr| {
            Update::builder()
                .table_name(self.table)
                .set_key(Some(key_attributes(key)))
                .with(expr.finish())
        };
        let (from_update, into_update) = (build(from_key, mark), build(into_key, give));
        Ok((finish(from_update)?, finish(into_update)?))
    }
}

/// What the two records' events say together, computed from both as read (the merge is
/// guarded on both being unchanged): the first event (the earlier), the activity pair (the
/// two most recent distinct instants of the four), and per name the summed count and the
/// later time, the smallest [`MAX_EVENT_NAMES`] names kept apart and the others' counts
/// joining the entry of the names past the bound (the rule of `ops::events_write`). The
/// attributes to set, and the identified record's names to remove.
fn merged_history(from: &Item, into: &Item) -> (Vec<(String, AttributeValue)>, Vec<String>) {
    let mut set = Vec::new();
    let times = |name: &str| -> Vec<String> {
        [from, into]
            .into_iter()
            .filter_map(|item| text(item, name))
            .filter(|at| !at.is_empty())
            .collect()
    };
    if let Some(first) = times(FIRST_EVENT).into_iter().min() {
        set.push((FIRST_EVENT.to_owned(), s(first)));
    }
    let mut instants = times("last_event_at");
    instants.extend(times(PREVIOUS_ACTIVITY));
    instants.sort_unstable();
    instants.dedup();
    if !instants.is_empty() {
        let previous = instants.iter().rev().nth(1).cloned().unwrap_or_default();
        set.push((PREVIOUS_ACTIVITY.to_owned(), s(previous)));
    }
    let entry = |item: &Item, name: &str| -> Option<(i64, i64)> {
        let list = item.get(name)?.as_l().ok()?;
        let number = |index: usize| list.get(index)?.as_n().ok()?.parse::<i64>().ok();
        Some((number(0)?, number(1)?))
    };
    let names_of = |item: &Item| -> Vec<String> {
        let mut names: Vec<String> = item
            .keys()
            .filter(|name| name.len() > NAME_PREFIX.len() && name.starts_with(NAME_PREFIX))
            .cloned()
            .collect();
        names.sort_unstable();
        names
    };
    if names_of(from).is_empty() {
        return (set, Vec::new());
    }
    let add = |sum: &mut Option<(i64, i64)>, (count, at): (i64, i64)| {
        *sum = Some(sum.map_or((count, at), |(c, t)| (c + count, t.max(at))));
    };
    // Both records' names together: the smallest `MAX_EVENT_NAMES` kept, as for events.
    let mut union: std::collections::BTreeMap<String, Option<(i64, i64)>> = Default::default();
    for item in [from, into] {
        for name in names_of(item) {
            if let Some(entry) = entry(item, &name) {
                add(union.entry(name).or_default(), entry);
            }
        }
    }
    let other = name_attribute(None);
    let mut overflow: Option<(i64, i64)> = None;
    for item in [from, into] {
        if let Some(entry) = entry(item, &other) {
            add(&mut overflow, entry);
        }
    }
    let mut kept = 0;
    let mut remove = Vec::new();
    for (name, sum) in union {
        let Some((count, at)) = sum else { continue };
        if kept < MAX_EVENT_NAMES as usize {
            kept += 1;
            set.push((name, AttributeValue::L(vec![n(count), n(at)])));
        } else {
            add(&mut overflow, (count, at));
            if into.contains_key(&name) {
                remove.push(name);
            }
        }
    }
    if let Some((count, at)) = overflow {
        set.push((other, AttributeValue::L(vec![n(count), n(at)])));
    }
    set.push((EVENT_NAMES.to_owned(), n(kept)));
    (set, remove)
}

/// Guards an update on `item` being as read: the same `version`, or still absent.
fn unchanged(expr: &mut Expr, item: &Item) {
    let condition = match item.get("version") {
        Some(version) => expr.equals("version", version.clone()),
        None => expr.not_exists("PK"),
    };
    expr.condition(condition);
}

fn finish(update: aws_sdk_dynamodb::types::builders::UpdateBuilder) -> Result<Update, ApiError> {
    update.build().map_err(|error| {
        tracing::error!(%error, "merge update");
        ApiError::Internal
    })
}
