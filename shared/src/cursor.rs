//! Opaque page cursors: base64url of DynamoDB's position after a page (its
//! LastEvaluatedKey), bound to the org and to the query that produced it.
//!
//! Not signed: every position an org can reach is under its own `ORG#<org>#` keys, and
//! the org comes from the API key. Decoding checks that the cursor was made for this org
//! and this query (a hash of its parameters), that it names exactly the key attributes
//! of the index queried, that its table key is the org's, and that it sits in one of the
//! queried partitions. So a cursor from org A, or from another filter, is refused.
//!
//! A list spread over shards (`store::keys::OrgList`) has one position for all its
//! shards: the point of the merged order its page ended at (see
//! `Store::sharded_page`), held as the key of the item there, in that item's shard.

use crate::error::ApiError;
use crate::store::ops::lists::PageScope;
use crate::store::Position;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Longest cursor accepted (keys are bounded, so real cursors are far shorter).
const MAX_CURSOR_CHARS: usize = 4096;

#[derive(Debug, Serialize, Deserialize)]
struct Cursor {
    /// org
    o: String,
    /// query fingerprint
    q: String,
    /// key attribute -> string value
    k: BTreeMap<String, String>,
    /// The instant the list's time-based conditions are evaluated at, kept for every
    /// page of one traversal (`GET users/`'s `as_of`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    a: Option<String>,
}

/// Where a cursor belongs: one org's one query over the pages of `pages` (one partition,
/// or the shards of a list).
#[derive(Debug, Clone)]
pub struct CursorScope<'a> {
    pub org_id: &'a str,
    pub query: String,
    pub pages: &'a PageScope,
}

impl CursorScope<'_> {
    pub fn encode(&self, position: &Position) -> String {
        self.encode_at(position, None)
    }

    /// A cursor that also carries the traversal's instant `as_of`.
    pub fn encode_at(&self, position: &Position, as_of: Option<&str>) -> String {
        let k = position.strings();
        let cursor = Cursor {
            o: self.org_id.to_owned(),
            q: self.query.clone(),
            k,
            a: as_of.map(str::to_owned),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).expect("a cursor serializes"))
    }

    pub fn decode(&self, raw: &str) -> Result<Position, ApiError> {
        Ok(self.decode_at(raw)?.0)
    }

    /// The position and the instant a cursor carries (`None` if it carries none).
    pub fn decode_at(&self, raw: &str) -> Result<(Position, Option<String>), ApiError> {
        if raw.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| ApiError::InvalidCursor)?;
        let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|_| ApiError::InvalidCursor)?;
        let valid =
            cursor.o == self.org_id && cursor.q == self.query && self.pages.holds(&cursor.k);
        if !valid {
            return Err(ApiError::InvalidCursor);
        }
        Ok((Position::from_strings(cursor.k), cursor.a))
    }

    /// The cursor a page ends with, if more may follow.
    pub fn next(&self, position: Option<&Position>) -> Option<String> {
        position.map(|position| self.encode(position))
    }

    /// The position to start from: the request's `cursor`, decoded, if sent.
    pub fn start(&self, raw: Option<&str>) -> Result<Option<Position>, ApiError> {
        raw.map(|raw| self.decode(raw)).transpose()
    }
}

/// The change feed's cursor: a position in the org's feed (a stored time, or a change's
/// `<recorded_at>#<id>`), bound to the org. Types are a filter, not part of the position:
/// a cursor is valid with any `types`.
#[derive(Debug, Serialize, Deserialize)]
pub struct FeedCursor {
    /// org
    o: String,
    /// position
    p: String,
}

impl FeedCursor {
    pub fn encode(org_id: &str, position: &str) -> String {
        let cursor = FeedCursor {
            o: org_id.to_owned(),
            p: position.to_owned(),
        };
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&cursor).expect("a cursor serializes"))
    }

    /// The position of `raw`, if it is a well-formed cursor of this org's feed.
    pub fn decode(org_id: &str, raw: &str) -> Result<String, ApiError> {
        if raw.len() > MAX_CURSOR_CHARS {
            return Err(ApiError::InvalidCursor);
        }
        let bytes = URL_SAFE_NO_PAD
            .decode(raw.trim_end_matches('='))
            .map_err(|_| ApiError::InvalidCursor)?;
        let cursor: FeedCursor =
            serde_json::from_slice(&bytes).map_err(|_| ApiError::InvalidCursor)?;
        let time = cursor.p.get(..24).unwrap_or_default();
        let tail = cursor.p.get(24..).unwrap_or_default();
        let well_formed = time
            .parse::<crate::fields::Timestamp>()
            .map(|t| t.to_stored())
            == Ok(time.to_owned())
            && (tail.is_empty() || tail.starts_with("#chg_"));
        if cursor.o != org_id || !well_formed {
            return Err(ApiError::InvalidCursor);
        }
        Ok(cursor.p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope<'a>(org: &'a str, partitions: &[String]) -> CursorScope<'a> {
        let pages = PageScope::org_list_partitions(org, partitions.to_vec());
        CursorScope {
            org_id: org,
            query: "q1".into(),
            pages: Box::leak(Box::new(pages)),
        }
    }

    fn one(partition: &str) -> Vec<String> {
        vec![partition.to_owned()]
    }

    fn position(org: &str) -> Position {
        Position::from_strings(BTreeMap::from([
            ("PK".to_owned(), format!("ORG#{org}#USER#ext#u1")),
            ("SK".to_owned(), "USER".to_owned()),
            ("GSI2PK".to_owned(), format!("ORG#{org}#USERS")),
            (
                "GSI2SK".to_owned(),
                "2026-01-01T00:00:00.000Z#ext#u1".to_owned(),
            ),
        ]))
    }

    #[test]
    fn cursors_round_trip() {
        let partitions = one("ORG#a#USERS");
        let scope = scope("a", &partitions);
        let cursor = scope.encode(&position("a"));
        assert_eq!(scope.decode(&cursor).unwrap(), position("a"));
    }

    #[test]
    fn cursors_of_another_org_query_or_partition_are_refused() {
        let (users_a, users_b) = (one("ORG#a#USERS"), one("ORG#b#USERS"));
        let bookings = one("ORG#a#BOOKINGS");
        let a = scope("a", &users_a);
        let cursor = a.encode(&position("a"));
        assert!(scope("b", &users_b).decode(&cursor).is_err());
        assert!(scope("a", &bookings).decode(&cursor).is_err());
        let shards = vec!["ORG#a#USERS#0".to_owned(), "ORG#a#USERS".to_owned()];
        assert!(
            scope("a", &shards).decode(&cursor).is_ok(),
            "any shard of the list"
        );
        let other_query = CursorScope {
            query: "q2".into(),
            ..a.clone()
        };
        assert!(other_query.decode(&cursor).is_err());
        // A cursor claiming org a but holding org b's keys.
        let forged = a.encode(&position("b"));
        assert!(a.decode(&forged).is_err());
        for garbage in ["", "!!!", "e30", &"A".repeat(5000)] {
            assert!(a.decode(garbage).is_err(), "{garbage}");
        }
    }
}
