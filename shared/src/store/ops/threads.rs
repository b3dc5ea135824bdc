//! A thread's inbox state as a function of the set of its messages.
//!
//! The newest message (by `sent_at`, then by the greater `message_id`: the documented
//! tie-break) decides `last_message_id`, `last_message_direction` and whether the thread
//! awaits a reply (it does when the newest message is inbound); it then waits since the
//! earliest inbound message after the newest one that is not inbound (a reply, or a message
//! without a direction), which is its inbox sort key.
//!
//! In order (the common case) one guarded write keeps this exactly (`items::
//! thread_for_message`: it applies only when the message is newer than the thread's
//! `newest_message`). When the message is not the newest (late, or re-sent), the state is
//! recomputed here from the thread's messages, read with one strongly consistent Query of
//! the thread's own partition, and written only if the thread did not change meanwhile (its
//! `version`), so concurrent writers never lose each other's messages.
//!
//! Message ids are unique in an org: a locator item remembers each message's thread, so a
//! message re-sent with another `thread_id` moves (it is removed from the old thread, whose
//! state is recomputed).

use super::queries::{Query, SortKey};
use crate::error::ApiError;
use crate::fields::Id;
use crate::store::codec::records::{MessageTally, Stored};
use crate::store::error::{conditional_check_item, is_condition_failure};
use crate::store::expr::{Expr, WithExpression};
use crate::store::schema::attributes::message_stamp;
use crate::store::schema::keys::{self, Index};
use crate::store::schema::{n, s, Item};
use crate::store::{storage_error, Store};
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};

/// Messages a recomputation reads at most (as many as a thread's summary counts).
pub const MAX_RECOMPUTED_MESSAGES: usize = 5_000;
/// Recomputations tried before a thread that keeps changing is a 503 (the client retries).
const RECOMPUTE_ATTEMPTS: usize = 5;

/// What the messages of a thread say about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InboxState {
    /// The newest message: its stamp, id, `sent_at` and direction.
    pub newest: Option<(String, String, String, Option<String>)>,
    /// When the thread awaits a reply: since when.
    pub awaiting_since: Option<String>,
}

/// The inbox state of a set of messages (those without `sent_at` are not ordered and
/// change nothing).
pub fn inbox_state(messages: &[MessageTally]) -> InboxState {
    let mut dated: Vec<(String, &MessageTally)> = messages
        .iter()
        .filter_map(|m| {
            Some((
                message_stamp(m.sent_at.as_deref()?, m.message_id.as_deref()?),
                m,
            ))
        })
        .collect();
    dated.sort_by(|a, b| a.0.cmp(&b.0));
    let Some((stamp, newest)) = dated.last() else {
        return InboxState::default();
    };
    let inbound = |m: &MessageTally| m.direction.as_deref() == Some("in");
    let awaiting_since = if inbound(newest) {
        // A message without a direction ends the wait as a reply does (as it does in order).
        let last_reply = dated.iter().rposition(|(_, m)| !inbound(m));
        let after_reply = last_reply.map_or(0, |index| index + 1);
        dated[after_reply..]
            .iter()
            .find(|(_, m)| inbound(m))
            .and_then(|(_, m)| m.sent_at.clone())
    } else {
        None
    };
    InboxState {
        newest: Some((
            stamp.clone(),
            newest.message_id.clone().unwrap_or_default(),
            newest.sent_at.clone().unwrap_or_default(),
            newest.direction.clone(),
        )),
        awaiting_since,
    }
}

fn text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

impl Store {
    /// Recomputes the inbox state of a thread from its messages and writes it, unless the
    /// thread does not exist (an erased one stays erased). The thread as written.
    pub async fn recompute_thread(
        &self,
        org_id: &str,
        thread_id: &Id,
    ) -> Result<Option<Stored>, ApiError> {
        let thread_key = keys::thread(org_id, thread_id);
        let mut messages = Query::new(
            Index::Table,
            keys::thread_pk(org_id, thread_id),
            SortKey::children(keys::MESSAGE),
        );
        messages.projection = Some(MessageTally::ATTRIBUTES.to_vec());
        messages.consistent = true;
        for _ in 0..RECOMPUTE_ATTEMPTS {
            let Some(thread) = self.get_consistent(&thread_key).await? else {
                return Ok(None);
            };
            let (tallies, _) = self
                .query_up_to::<MessageTally>(&messages, MAX_RECOMPUTED_MESSAGES)
                .await?;
            let state = inbox_state(&tallies);
            let expr = recomputed(org_id, thread_id, &thread, &state);
            let result = self
                .update_item(&thread_key)
                .with(expr.finish())
                .return_values(ReturnValue::AllNew)
                .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::None)
                .send()
                .await;
            match result {
                Ok(output) => return Ok(Some(Stored::new(output.attributes.unwrap_or_default()))),
                Err(error) if is_condition_failure(&error) => {
                    continue;
                }
                Err(error) => return Err(storage_error("UpdateItem (thread)", error)),
            }
        }
        tracing::warn!(
            thread_id = thread_id.as_str(),
            "thread kept changing while recomputed"
        );
        Err(ApiError::StorageUnavailable)
    }

    /// Records that `message_id` is in `thread_id`. `Some(other thread)` when the message
    /// was in another thread: the caller moves it, then calls [`Store::place_message`].
    pub async fn locate_message(
        &self,
        org_id: &str,
        message_id: &Id,
        thread_id: &Id,
    ) -> Result<Option<String>, ApiError> {
        let mut expr = locator_expression(org_id, thread_id);
        let here = s(thread_id.as_str());
        let unplaced = expr.not_exists("thread_id");
        let same = expr.equals("thread_id", here);
        expr.condition(format!("({unplaced} OR {same})"));
        let result = self
            .update_item(&keys::message_locator(org_id, message_id))
            .with(expr.finish())
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(error) => match conditional_check_item(&error) {
                Some(old) => Ok(text(&old, "thread_id")),
                None => Err(storage_error("UpdateItem (message locator)", error)),
            },
        }
    }

    /// Completes the move of `message_id` from the thread `from` (as its locator named it)
    /// to `to`, where it is already stored: removed from `from`, whose state is
    /// recomputed, and only then located in `to`, so a retry after a failure here finds the
    /// move still to do.
    pub async fn move_message(
        &self,
        org_id: &str,
        message_id: &Id,
        from: &str,
        to: &Id,
    ) -> Result<(), ApiError> {
        let from = crate::fields::parse_id(from).map_err(|error| {
            tracing::error!(%error, "stored thread id");
            ApiError::Internal
        })?;
        self.delete(&keys::message(org_id, &from, message_id))
            .await?;
        self.recompute_thread(org_id, &from).await?;
        self.place_message(org_id, message_id, to).await
    }

    /// Records that `message_id` is in `thread_id` now (after a move).
    async fn place_message(
        &self,
        org_id: &str,
        message_id: &Id,
        thread_id: &Id,
    ) -> Result<(), ApiError> {
        self.update_item(&keys::message_locator(org_id, message_id))
            .with(locator_expression(org_id, thread_id).finish())
            .send()
            .await
            .map_err(|error| storage_error("UpdateItem (message locator)", error))?;
        Ok(())
    }
}

fn locator_expression(org_id: &str, thread_id: &Id) -> Expr {
    let mut expr = Expr::new();
    expr.set("entity", s("message_locator"))
        .set("org_id", s(org_id))
        .set("thread_id", s(thread_id.as_str()));
    expr
}

/// The write of a recomputed state: only if the thread is still at the version read.
fn recomputed(org_id: &str, thread_id: &Id, thread: &Item, state: &InboxState) -> Expr {
    let mut expr = Expr::new();
    expr.set("updated_at", s(crate::fields::Timestamp::now().to_stored()))
        .add("version", n(1));
    match &state.newest {
        Some((stamp, id, sent_at, direction)) => {
            expr.set("newest_message", s(stamp))
                .set("last_message_id", s(id));
            match direction {
                Some(direction) => expr.set("last_message_direction", s(direction)),
                None => expr.remove("last_message_direction"),
            };
            // `last_message_at` only moves forward (a conversation may state a later one).
            if text(thread, "last_message_at").is_none_or(|at| at < *sent_at) {
                expr.set("last_message_at", s(sent_at));
            }
        }
        None => {
            for name in [
                "newest_message",
                "last_message_id",
                "last_message_direction",
            ] {
                expr.remove(name);
            }
        }
    }
    match &state.awaiting_since {
        Some(since) => {
            expr.set("awaiting_reply_since", s(since))
                .set("GSI2PK", s(keys::inbox_awaiting_reply(org_id, thread_id)))
                .set("GSI2SK", s(keys::inbox_sort(since, thread_id)));
        }
        None => {
            for name in ["awaiting_reply_since", "GSI2PK", "GSI2SK"] {
                expr.remove(name);
            }
        }
    }
    let version = thread
        .get("version")
        .cloned()
        .unwrap_or(AttributeValue::N("0".into()));
    let unchanged = expr.equals("version", version);
    expr.condition(unchanged);
    expr
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, at: &str, direction: Option<&str>) -> MessageTally {
        MessageTally {
            message_id: Some(id.into()),
            sent_at: Some(at.into()),
            direction: direction.map(str::to_owned),
        }
    }

    #[test]
    fn the_thread_waits_since_the_first_inbound_after_the_last_reply() {
        let messages = [
            message("m1", "t1", Some("in")),
            message("m3", "t3", Some("in")),
            message("m2", "t2", Some("out")),
            message("m4", "t4", Some("in")),
        ];
        let state = inbox_state(&messages);
        assert_eq!(state.awaiting_since.as_deref(), Some("t3"));
        assert_eq!(state.newest.unwrap().1, "m4");
    }

    #[test]
    fn a_message_without_direction_ends_the_wait_like_a_reply() {
        let messages = [
            message("a", "t1", Some("in")),
            message("b", "t2", None),
            message("c", "t3", Some("in")),
        ];
        assert_eq!(inbox_state(&messages).awaiting_since.as_deref(), Some("t3"));
    }

    #[test]
    fn a_reply_newest_or_no_dated_message_means_no_wait() {
        let replied = [
            message("a", "t1", Some("in")),
            message("b", "t2", Some("out")),
        ];
        assert_eq!(inbox_state(&replied).awaiting_since, None);
        let undated = [MessageTally {
            message_id: Some("x".into()),
            sent_at: None,
            direction: Some("in".into()),
        }];
        assert_eq!(inbox_state(&undated), InboxState::default());
    }

    #[test]
    fn same_time_messages_are_ordered_by_id() {
        let messages = [
            message("b", "t1", Some("out")),
            message("a", "t1", Some("in")),
        ];
        // `b` > `a`: the reply is the newest, so nothing awaits.
        assert_eq!(inbox_state(&messages).awaiting_since, None);
        let messages = [
            message("a", "t1", Some("out")),
            message("b", "t1", Some("in")),
        ];
        assert_eq!(inbox_state(&messages).awaiting_since.as_deref(), Some("t1"));
    }
}
