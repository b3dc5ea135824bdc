//! The attributes and encodings of stored items that more than one part of the store
//! reads or writes: the user item's event-kept fields (`ev_*`, `rev_*`), its merge
//! markers, the offer encoding, money as text, a message's stamp and an erased event's
//! tombstone. No I/O.

use super::{n, s};
use crate::facts::{Field, Latest, Offer, Position};
use aws_sdk_dynamodb::types::AttributeValue;
use std::collections::HashMap;

/// The prefix of the attributes that hold what events say (apart from what
/// `users/upsert` says): `ev_<field>`; counters `ev_install_count`, `ev_payment_count`,
/// revenue `rev_<currency>`.
pub const EVENT_FIELD_PREFIX: &str = "ev_";
pub const EVENT_INSTALLS: &str = "ev_install_count";
pub const EVENT_PAYMENTS: &str = "ev_payment_count";
pub const REVENUE_PREFIX: &str = "rev_";

/// The newest event time strictly before `last_event_at` (`""` when there is none yet): with
/// it, the gap between the client's two most recent activities.
pub const PREVIOUS_ACTIVITY: &str = "ev_prev";
/// The oldest event time.
pub const FIRST_EVENT: &str = "ev_first";
/// How many event names the client keeps apart (at most [`MAX_EVENT_NAMES`]).
pub const EVENT_NAMES: &str = "ev_names";
/// Per event name, one attribute `~<name>`: a list `[count, newest event time in Unix
/// milliseconds]`, short so that it adds little to every event's write. `~` alone holds the
/// names past [`MAX_EVENT_NAMES`], together.
pub const NAME_PREFIX: &str = "~";
/// The most event names a client keeps apart: at 991 bytes a name (the longest id), 64
/// names stay under 70 KB of the item's 400 KB.
pub const MAX_EVENT_NAMES: u32 = 64;

/// The attribute of an event name's count and time (`None`: the names past the bound).
pub fn name_attribute(name: Option<&str>) -> String {
    format!("{NAME_PREFIX}{}", name.unwrap_or_default())
}

pub fn event_attribute(field: Field) -> String {
    format!("{EVENT_FIELD_PREFIX}{}", field.name())
}

/// The attribute marking an email-only record merged into an identified one (its PK).
pub const MERGED_INTO: &str = "merged_into";
/// What every record item has besides its data: its keys (the table's and both GSIs'), what
/// it is, its org, and its write bookkeeping. Not profile fields (a merge never copies them,
/// a `client.updated` never lists them).
pub const RECORD_BOOKKEEPING: [&str; 11] = [
    "PK",
    "SK",
    "GSI1PK",
    "GSI1SK",
    "GSI2PK",
    "GSI2SK",
    "entity",
    "org_id",
    "version",
    "ingested_at",
    "updated_at",
];
/// The identified record's list of the email-only records merged into it (their PKs).
pub const MERGED_IDENTITIES: &str = "merged_identities";
/// The `entity` of an email's alias item.
pub const EMAIL_ALIAS: &str = "email_alias";

/// Money totals kept as DynamoDB numbers (so events can increment them atomically).
pub const NUMERIC_MONEY_ATTRIBUTES: [&str; 1] = ["lifetime_value"];

/// A DynamoDB number as money text with at least two places (DynamoDB may drop trailing
/// zeros: `58.00` comes back as `58`).
pub(crate) fn money_string(number: &str) -> String {
    match number.parse::<rust_decimal::Decimal>() {
        Ok(mut amount) if amount.scale() < 2 => {
            amount.rescale(2);
            amount.to_string()
        }
        _ => number.to_owned(),
    }
}

/// Where the offer stored in `value` for `field` stands (see [`Offer::position`]).
pub(crate) fn stored_position(field: Field, value: Option<&AttributeValue>) -> Option<Position> {
    let text = |map: &HashMap<String, AttributeValue>, name: &str| {
        map.get(name)
            .and_then(|v| v.as_s().ok().or(v.as_n().ok()))
            .cloned()
    };
    match value? {
        AttributeValue::S(at) if field.is_time_only() => Some((at.clone(), String::new())),
        AttributeValue::M(map) => Some((text(map, "at")?, text(map, tie_name(field))?)),
        _ => None,
    }
}

/// The attribute of a stored offer that holds its tie-break.
pub(crate) fn tie_name(field: Field) -> &'static str {
    match field {
        Field::LastPayment => "tb",
        _ => "v",
    }
}

/// An offer as stored: the time alone, or `{at, v}` (`{at, tb, amount, currency}` for a
/// payment), flags as the numbers 0 and 1 so that ties compare.
pub fn stored_offer(offer: &Offer) -> AttributeValue {
    let at = offer.at.to_stored();
    let mut map = HashMap::from([("at".to_owned(), s(&at))]);
    match &offer.value {
        Latest::Time => return s(at),
        Latest::Text(text) => {
            map.insert("v".into(), s(text));
        }
        Latest::Flag(flag) => {
            map.insert("v".into(), n(u8::from(*flag)));
        }
        Latest::Payment { amount, currency } => {
            map.insert("tb".into(), s(offer.value.tie_break()));
            map.extend(amount.as_ref().map(|a| ("amount".to_owned(), s(a))));
            map.extend(currency.as_ref().map(|c| ("currency".to_owned(), s(c))));
        }
    }
    AttributeValue::M(map)
}

/// A message's position in its thread's order: `<sent_at>#<message_id>` (a thread's
/// `newest_message`).
pub fn message_stamp(sent_at: &str, message_id: &str) -> String {
    format!("{sent_at}#{message_id}")
}

/// How long an erased event's `Idempotency-Key` is remembered: 90 days.
pub const ERASED_KEY_RETENTION_SECS: u64 = 90 * 86_400;
/// The `entity` of an erased event's tombstone.
pub const ERASED_EVENT: &str = "erased_event";
