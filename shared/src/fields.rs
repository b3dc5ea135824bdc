//! Typed field values. Each type parses (and normalizes) one kind of JSON value, so a
//! request that deserializes into the input structs is already valid: handlers and the
//! store never see an unchecked string. Serializing gives the stored, normalized form.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;
use time::{format_description::well_known::Rfc3339, OffsetDateTime, UtcOffset};

/// Longest identifier we accept (ids, skus, idempotency keys end up in DynamoDB keys,
/// which allow 2 KB for the partition key and 1 KB for the sort key).
pub const MAX_ID_CHARS: usize = 256;
/// Longest short text (names, titles, statuses, plans).
pub const MAX_SHORT_TEXT_CHARS: usize = 1_000;
/// Longest long text (message text, notes, descriptions).
pub const MAX_LONG_TEXT_CHARS: usize = 10_000;
/// Largest `metadata` / `properties` object, as serialized JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// Deepest nesting of arrays and objects inside `metadata`, `properties` and `media`.
pub const MAX_JSON_DEPTH: usize = 32;

fn reject_control_chars<E: de::Error>(value: &str, allow_newlines: bool) -> Result<(), E> {
    let bad = value
        .chars()
        .any(|c| c.is_control() && !(allow_newlines && matches!(c, '\n' | '\r' | '\t')));
    if bad {
        return Err(E::custom("must not contain control characters"));
    }
    Ok(())
}

/// Most UTF-8 bytes of an id: what every key it goes into leaves for it (`store::keys`
/// derives it and fails to compile if the two differ). Ids are limited in characters for
/// people and in bytes for DynamoDB.
pub const MAX_ID_BYTES: usize = 991;

fn check_length<E: de::Error>(value: &str, max_chars: usize) -> Result<(), E> {
    if value.chars().count() > max_chars {
        return Err(E::custom(format!("must be at most {max_chars} characters")));
    }
    Ok(())
}

/// An identifier chosen by the app (`external_user_id`, `sale_id`, ...). Surrounding
/// whitespace is trimmed; an empty id counts as absent, so `""` is reported as a missing
/// identity rather than stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Id(String);

impl Id {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Some` only for a non-empty id: the single place that decides what "missing" means.
    pub fn present(id: Option<Id>) -> Option<Id> {
        id.filter(|id| !id.0.is_empty())
    }
}

/// An id from a string (a path segment, a stored reference), checked like one in a body.
pub fn parse_id(raw: &str) -> Result<Id, serde::de::value::Error> {
    let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
        serde::de::IntoDeserializer::into_deserializer(raw);
    Id::deserialize(deserializer)
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let trimmed = raw.trim();
        if trimmed.chars().count() > MAX_ID_CHARS || trimmed.len() > MAX_ID_BYTES {
            return Err(de::Error::custom(format!(
                "must be at most {MAX_ID_CHARS} characters and {MAX_ID_BYTES} bytes (UTF-8)"
            )));
        }
        reject_control_chars(trimmed, false)?;
        Ok(Id(trimmed.to_owned()))
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text of at most `MAX` characters. `MULTILINE` texts may contain newlines and tabs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Text<const MAX: usize, const MULTILINE: bool>(String);

/// Names, titles, statuses, plans, versions.
pub type ShortText = Text<MAX_SHORT_TEXT_CHARS, false>;
/// Message text, notes, descriptions.
pub type LongText = Text<MAX_LONG_TEXT_CHARS, true>;

impl<const MAX: usize, const MULTILINE: bool> Text<MAX, MULTILINE> {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de, const MAX: usize, const MULTILINE: bool> Deserialize<'de> for Text<MAX, MULTILINE> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        check_length(&value, MAX)?;
        reject_control_chars(&value, MULTILINE)?;
        Ok(Text(value))
    }
}

/// An email address, trimmed and lower-cased: the normalized form is what identifies a
/// user who has no `external_user_id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Email {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        let email = raw.trim().to_lowercase();
        let (local, domain) = email.split_once('@').ok_or("must be an email address")?;
        let well_formed = !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && email.len() <= 254
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !well_formed {
            return Err("must be an email address");
        }
        Ok(Email(email))
    }
}

impl<'de> Deserialize<'de> for Email {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(de::Error::custom)
    }
}

/// An RFC 3339 timestamp, stored in UTC with millisecond precision
/// (`2026-03-23T10:30:00.000Z`). The fixed width makes stored timestamps sort and compare
/// correctly as strings, which the conditional writes rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(OffsetDateTime);

const STORED_FORMAT: &[time::format_description::FormatItem<'static>] = time::macros::format_description!(
    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
);

impl Timestamp {
    pub fn now() -> Self {
        Self::from_utc(OffsetDateTime::now_utc())
    }

    /// Any (in-range) time, converted to UTC.
    pub fn from_offset_date_time(at: OffsetDateTime) -> Self {
        Self::from_utc(at.to_offset(UtcOffset::UTC))
    }

    fn from_utc(at: OffsetDateTime) -> Self {
        // Truncate to the stored precision so that equal stored strings mean equal values.
        let millis = at.millisecond();
        Timestamp(at.replace_millisecond(millis).expect("a valid millisecond"))
    }

    pub fn to_stored(self) -> String {
        self.0
            .format(STORED_FORMAT)
            .expect("years 0..=9999 always format")
    }

    /// This time moved forward by `by`, saturating at the end of year 9999.
    pub fn later_by(self, by: time::Duration) -> Self {
        let latest = time::macros::datetime!(9999-12-31 23:59:59.999 UTC);
        Timestamp(self.0.checked_add(by).map_or(latest, |at| at.min(latest)))
    }

    /// This time moved back by `by`, saturating at the start of year 0.
    pub fn earlier_by(self, by: time::Duration) -> Self {
        let earliest = time::macros::datetime!(0000-01-01 00:00:00.000 UTC);
        Timestamp(
            self.0
                .checked_sub(by)
                .map_or(earliest, |at| at.max(earliest)),
        )
    }

    /// How long after `earlier` this time is (zero when it is not after it).
    pub fn since(self, earlier: Timestamp) -> time::Duration {
        (self.0 - earlier.0).max(time::Duration::ZERO)
    }

    pub fn unix_seconds(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// Milliseconds since the Unix epoch (negative before 1970): the stored precision.
    pub fn unix_millis(self) -> i64 {
        i64::try_from(self.0.unix_timestamp_nanos() / 1_000_000).expect("years 0..=9999 fit")
    }

    /// The time of [`Self::unix_millis`], if in years 0 to 9999.
    pub fn from_unix_millis(millis: i64) -> Option<Self> {
        let at = OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
        (0..=9999).contains(&at.year()).then_some(Timestamp(at))
    }
}

impl FromStr for Timestamp {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "must be an RFC 3339 timestamp like 2026-03-23T10:30:00Z";
        let parsed = OffsetDateTime::parse(raw, &Rfc3339).map_err(|_| EXPECTED)?;
        let utc = parsed
            .checked_to_offset(UtcOffset::UTC)
            .filter(|utc| (0..=9999).contains(&utc.year()))
            .ok_or("must be between years 0000 and 9999 in UTC")?;
        Ok(Self::from_utc(utc))
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        raw.parse().map_err(de::Error::custom)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_stored())
    }
}

/// A count or a number of minutes: a whole number from 0 to `u32::MAX`. `3.0` is 3: JSON
/// (and JSON Schema, which openapi.yaml is written in) does not tell `3.0` from `3`, and
/// some clients (Python's `json`) write whole floats that way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Count(u32);

impl Count {
    pub fn get(self) -> u32 {
        self.0
    }
}

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CountVisitor;
        impl de::Visitor<'_> for CountVisitor {
            type Value = Count;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number from 0 to {}", u32::MAX)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Count, E> {
                u32::try_from(v)
                    .map(Count)
                    .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Count, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
                    .and_then(|v| self.visit_u64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Count, E> {
                if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                    Ok(Count(v as u32))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }
        }
        deserializer.deserialize_any(CountVisitor)
    }
}

/// A non-negative money amount sent as a decimal string (`"29.00"`), kept exactly: the
/// scale the client sent is preserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Money(rust_decimal::Decimal);

/// Most decimal places a money amount may have.
const MAX_MONEY_SCALE: u32 = 8;
/// Most digits before the decimal point. With the 8 places after it, every amount fits
/// `Decimal` (28 digits), so the rule a client (and openapi.yaml) sees is this one, not
/// `Decimal`'s 96-bit limit.
const MAX_MONEY_WHOLE_DIGITS: usize = 20;

impl Money {
    pub fn decimal(self) -> rust_decimal::Decimal {
        self.0
    }
}

impl FromStr for Money {
    type Err = &'static str;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        const EXPECTED: &str = "must be a non-negative decimal string like \"29.00\"";
        let (whole, fraction) = raw.split_once('.').unwrap_or((raw, ""));
        let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits_only(whole) || !digits_only(fraction) {
            return Err(EXPECTED);
        }
        if raw.ends_with('.') {
            return Err(EXPECTED);
        }
        if whole.len() > MAX_MONEY_WHOLE_DIGITS {
            return Err("must have at most 20 digits before the decimal point");
        }
        if fraction.len() > MAX_MONEY_SCALE as usize {
            return Err("must have at most 8 decimal places");
        }
        let amount = rust_decimal::Decimal::from_str_exact(raw).map_err(|_| "is too large")?;
        Ok(Money(amount))
    }
}

impl<'de> Deserialize<'de> for Money {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MoneyVisitor;
        impl de::Visitor<'_> for MoneyVisitor {
            type Value = Money;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a decimal string like \"29.00\"")
            }
            fn visit_str<E: de::Error>(self, raw: &str) -> Result<Money, E> {
                raw.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_str(MoneyVisitor)
    }
}

impl Serialize for Money {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// An ISO 4217 currency code, upper-cased (`"usd"` is stored as `"USD"`). Only codes of the
/// standard (the `iso_currency` crate's list, about 180) are taken: a client keeps its
/// revenue per currency, so the set of codes bounds what that costs its item (about 5 KB at
/// most), where any three letters made a new counter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        let code = raw.to_ascii_uppercase();
        if iso_currency::Currency::from_code(&code).is_none() {
            return Err(de::Error::custom(
                "must be an ISO 4217 currency code like \"USD\"",
            ));
        }
        Ok(Currency(code))
    }
}

fn check_json_size<E: de::Error>(value: &serde_json::Value) -> Result<String, E> {
    let json = serde_json::to_string(value).map_err(E::custom)?;
    if json.len() > MAX_METADATA_BYTES {
        return Err(E::custom(format!(
            "must be at most {MAX_METADATA_BYTES} bytes of JSON"
        )));
    }
    Ok(json)
}

/// Reads free-form JSON with two rules serde_json's `Value` does not apply: an object may
/// not repeat a key (JSON parsers disagree on which copy wins, so we refuse to guess), and
/// nesting is at most `max_depth` deep ([`MAX_JSON_DEPTH`] for free-form fields).
#[derive(Clone, Copy)]
struct StrictJson {
    depth: usize,
    max_depth: usize,
}

impl<'de> de::DeserializeSeed<'de> for StrictJson {
    type Value = serde_json::Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictJson {
    fn nested<E: de::Error>(&self) -> Result<StrictJson, E> {
        if self.depth >= self.max_depth {
            return Err(E::custom(format!(
                "must be nested at most {} levels deep",
                self.max_depth
            )));
        }
        Ok(StrictJson {
            depth: self.depth + 1,
            ..*self
        })
    }
}

impl<'de> de::Visitor<'de> for StrictJson {
    type Value = serde_json::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(v.into())
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(serde_json::Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        de::DeserializeSeed::deserialize(self, d)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self.nested()?)? {
            items.push(item);
        }
        Ok(items.into())
    }
    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self.nested()?)?;
            if object.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "has the key `{key}` more than once"
                )));
            }
            object.insert(key, value);
        }
        Ok(object.into())
    }
}

fn strict_json<'de, D: Deserializer<'de>>(deserializer: D) -> Result<serde_json::Value, D::Error> {
    let strict = StrictJson {
        depth: 0,
        max_depth: MAX_JSON_DEPTH,
    };
    de::DeserializeSeed::deserialize(strict, deserializer)
}

/// A whole JSON document with no object repeating a key at any depth (serde_json's own
/// nesting limit applies), or `None`. Otherwise the very `Value` serde_json would build.
pub fn json_without_repeated_keys(bytes: &[u8]) -> Option<serde_json::Value> {
    let strict = StrictJson {
        depth: 0,
        max_depth: usize::MAX,
    };
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = de::DeserializeSeed::deserialize(strict, &mut deserializer).ok()?;
    deserializer.end().ok()?;
    Some(value)
}

/// Any JSON value (message `media`), bounded in size and stored as given, as one JSON
/// string attribute: DynamoDB's own number and nesting limits never reject it.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonDocument(String);

impl JsonDocument {
    pub fn as_json_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for JsonDocument {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = strict_json(deserializer)?;
        Ok(JsonDocument(check_json_size(&value)?))
    }
}

impl Serialize for JsonDocument {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

/// A free-form JSON object (`metadata`, `properties`), stored as given (as a JSON string,
/// like [`JsonDocument`]) and replaced as a whole when a request sends it again.
#[derive(Debug, Clone, PartialEq)]
pub struct Metadata {
    map: serde_json::Map<String, serde_json::Value>,
    json: JsonDocument,
}

impl Metadata {
    pub fn get(&self, key: &str) -> Option<&serde_json::Value> {
        self.map.get(key)
    }

    pub fn to_json_string(&self) -> String {
        self.json.0.clone()
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = strict_json(deserializer)?;
        let json = JsonDocument(check_json_size(&value)?);
        let serde_json::Value::Object(map) = value else {
            return Err(de::Error::custom("must be a JSON object"));
        };
        Ok(Metadata { map, json })
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.json.serialize(serializer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse<T: for<'de> Deserialize<'de>>(value: serde_json::Value) -> Result<T, String> {
        serde_json::from_value(value).map_err(|e| e.to_string())
    }

    #[test]
    fn timestamps_normalize_to_utc_milliseconds() {
        let at: Timestamp = parse(json!("2026-03-23T12:30:00.123456+02:00")).unwrap();
        assert_eq!(at.to_stored(), "2026-03-23T10:30:00.123Z");
        let at: Timestamp = parse(json!("2026-03-23T10:30:00Z")).unwrap();
        assert_eq!(at.to_stored(), "2026-03-23T10:30:00.000Z");
    }

    #[test]
    fn timestamps_reject_other_formats() {
        for bad in [
            json!("2026-03-23"),
            json!("yesterday"),
            json!("2026-13-01T00:00:00Z"),
            json!(1711189800),
            json!("0000-01-01T00:00:00+01:00"),
        ] {
            assert!(parse::<Timestamp>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn stored_timestamps_sort_like_time() {
        let early: Timestamp = "2026-03-23T10:30:00Z".parse().unwrap();
        let later: Timestamp = "2026-03-23T10:30:00.5Z".parse().unwrap();
        assert!(early.to_stored() < later.to_stored());
    }

    #[test]
    fn money_is_a_non_negative_decimal_string_kept_exactly() {
        let price: Money = parse(json!("29.00")).unwrap();
        let largest: Money = parse(json!("99999999999999999999.99999999")).unwrap();
        assert_eq!(
            largest.decimal().to_string(),
            "99999999999999999999.99999999"
        );
        assert_eq!(serde_json::to_value(price).unwrap(), json!("29.00"));
        for bad in [
            json!(29),
            json!("-1.00"),
            json!("1e3"),
            json!("29."),
            json!(".5"),
            json!("1,5"),
            json!(""),
            json!("0.123456789"),
            json!("99999999999999999999999999999999"),
            json!("123456789012345678901"),
        ] {
            assert!(parse::<Money>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_are_whole_numbers_in_u32_range() {
        assert_eq!(parse::<Count>(json!(3)).unwrap().get(), 3);
        assert_eq!(parse::<Count>(json!(3.0)).unwrap().get(), 3);
        assert_eq!(parse::<Count>(json!(u32::MAX)).unwrap().get(), u32::MAX);
        for bad in [
            json!(-1),
            json!(1.5),
            json!(-0.5),
            json!(u64::from(u32::MAX) + 1),
            json!(4294967296.0),
            json!("3"),
            json!(true),
        ] {
            assert!(parse::<Count>(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn currency_is_an_iso_4217_code_upper_cased() {
        assert_eq!(parse::<Currency>(json!("usd")).unwrap().0, "USD");
        assert_eq!(parse::<Currency>(json!("XXX")).unwrap().0, "XXX");
        for bad in ["US", "U$D", "ABC", "QQQ", "USDX", "ÜSD"] {
            assert!(parse::<Currency>(json!(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn emails_are_normalized() {
        let email: Email = parse(json!("  John.Doe@Example.COM ")).unwrap();
        assert_eq!(email.as_str(), "john.doe@example.com");
        for bad in ["nope", "@x.com", "a@", "a b@x.com", "a@b@c"] {
            assert!(bad.parse::<Email>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_are_trimmed_and_empty_counts_as_absent() {
        let id: Id = parse(json!("  usr_1 ")).unwrap();
        assert_eq!(id.as_str(), "usr_1");
        let blank: Id = parse(json!("   ")).unwrap();
        assert_eq!(Id::present(Some(blank)), None);
        assert!(parse::<Id>(json!("x".repeat(MAX_ID_CHARS + 1))).is_err());
        assert!(parse::<Id>(json!("a\u{0}b")).is_err());
    }

    #[test]
    fn long_text_allows_newlines_short_text_does_not() {
        assert!(parse::<LongText>(json!("line 1\nline 2")).is_ok());
        assert!(parse::<ShortText>(json!("line 1\nline 2")).is_err());
    }

    #[test]
    fn metadata_must_be_a_bounded_object() {
        let meta: Metadata = parse(json!({"a": [1, {"b": null}]})).unwrap();
        assert_eq!(meta.to_json_string(), r#"{"a":[1,{"b":null}]}"#);
        assert!(parse::<Metadata>(json!([1])).is_err());
        assert!(parse::<Metadata>(json!({"big": "x".repeat(MAX_METADATA_BYTES)})).is_err());
    }

    fn from_text<T: for<'de> Deserialize<'de>>(json: &str) -> Result<T, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn free_form_json_refuses_repeated_keys_at_any_depth() {
        assert!(from_text::<Metadata>(r#"{"a": 1, "b": {"c": 1, "d": 2}}"#).is_ok());
        let error = from_text::<Metadata>(r#"{"a": 1, "a": 2}"#).unwrap_err();
        assert!(error.contains("has the key `a` more than once"), "{error}");
        assert!(from_text::<JsonDocument>(r#"[{"x": {"y": 1, "y": 1}}]"#).is_err());
    }

    #[test]
    fn free_form_json_nesting_is_bounded() {
        let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        let object = |depth: usize| format!(r#"{{"a": {}}}"#, nested(depth - 1));
        assert!(from_text::<Metadata>(&object(MAX_JSON_DEPTH)).is_ok());
        let error = from_text::<Metadata>(&object(MAX_JSON_DEPTH + 1)).unwrap_err();
        assert!(error.contains("levels deep"), "{error}");
        assert!(from_text::<JsonDocument>(&nested(MAX_JSON_DEPTH)).is_ok());
        assert!(from_text::<JsonDocument>(&nested(MAX_JSON_DEPTH + 1)).is_err());
    }
}
