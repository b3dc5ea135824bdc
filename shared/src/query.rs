//! Query strings of the read endpoints, parsed into typed values. Each endpoint lists the
//! parameters it accepts: an unknown or repeated parameter is a 400 naming it (a typo in a
//! filter must not silently widen a segment). An empty value counts as absent.

use crate::error::ApiError;
use crate::fields::{Currency, Money, ShortText, Timestamp};
use serde::de::IntoDeserializer;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Page size when `limit` is not sent, and the largest accepted.
pub const DEFAULT_LIMIT: usize = 25;
pub const MAX_LIMIT: usize = 100;
/// The parameters every paginated endpoint accepts besides its own.
const PAGINATION: [&str; 2] = ["limit", "cursor"];

#[derive(Debug, Clone, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Parses `raw` (the URI's query, form-urlencoded), accepting the `allowed`
    /// parameters and `limit`/`cursor`.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
            if !allowed.contains(&name.as_ref()) && !PAGINATION.contains(&name.as_ref()) {
                let message = format!(
                    "`{name}` is not a parameter of this endpoint; it accepts {}",
                    allowed
                        .iter()
                        .chain(&PAGINATION)
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return Err(ApiError::invalid_field(name, message));
            }
            if pairs.iter().any(|(seen, _)| *seen == name) {
                return Err(ApiError::invalid_field(
                    name.clone(),
                    format!("`{name}` may be sent once"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(QueryParams(pairs))
    }

    /// The raw value of `name`, if sent non-empty.
    pub fn value(&self, name: &str) -> Option<&str> {
        self.get(name)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(param, _)| param == name)
            .map(|(_, value)| value.as_str())
            .filter(|value| !value.is_empty())
    }

    /// Whether any parameter besides `limit` and `cursor` has a value.
    pub fn any_besides_pagination(&self) -> bool {
        self.0
            .iter()
            .any(|(name, value)| !value.is_empty() && !PAGINATION.contains(&name.as_str()))
    }

    /// `limit`: 1 to 100, 25 when absent.
    pub fn limit(&self) -> Result<usize, ApiError> {
        Ok(self
            .integer("limit", 1, MAX_LIMIT as u32)?
            .map_or(DEFAULT_LIMIT, |limit| limit as usize))
    }

    pub fn cursor(&self) -> Option<&str> {
        self.get("cursor")
    }

    /// An integer in `min..=max`.
    pub fn integer(&self, name: &str, min: u32, max: u32) -> Result<Option<u32>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        match raw.parse::<u32>() {
            Ok(value) if (min..=max).contains(&value) => Ok(Some(value)),
            _ => Err(ApiError::invalid_field(
                name,
                format!("`{name}` must be an integer from {min} to {max}"),
            )),
        }
    }

    pub fn timestamp(&self, name: &str) -> Result<Option<Timestamp>, ApiError> {
        self.get(name)
            .map(|raw| {
                raw.parse::<Timestamp>()
                    .map_err(|error| ApiError::invalid_field(name, format!("`{name}` {error}")))
            })
            .transpose()
    }

    pub fn required_timestamp(&self, name: &str) -> Result<Timestamp, ApiError> {
        self.timestamp(name)?.ok_or_else(|| ApiError::MissingField {
            param: name.to_owned(),
        })
    }

    /// A short text, validated like the same field in a request body.
    pub fn text(&self, name: &str) -> Result<Option<ShortText>, ApiError> {
        self.typed(name)
    }

    /// A non-negative decimal amount, written as in a request body (`"29.00"`).
    pub fn decimal(&self, name: &str) -> Result<Option<rust_decimal::Decimal>, ApiError> {
        Ok(self.typed::<Money>(name)?.map(Money::decimal))
    }

    /// An ISO 4217 currency code (upper-cased).
    pub fn currency(&self, name: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .typed::<Currency>(name)?
            .map(|code| code.as_str().to_owned()))
    }

    /// A value of a request body's field type, validated by its `Deserialize`.
    fn typed<T: for<'de> Deserialize<'de>>(&self, name: &str) -> Result<Option<T>, ApiError> {
        self.get(name)
            .map(|raw| {
                let deserializer: serde::de::value::StrDeserializer<'_, serde::de::value::Error> =
                    raw.into_deserializer();
                T::deserialize(deserializer)
                    .map_err(|error| ApiError::invalid_field(name, format!("`{name}` {error}")))
            })
            .transpose()
    }

    /// `true` or `false`.
    pub fn boolean(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(_) => Err(ApiError::invalid_field(
                name,
                format!("`{name}` must be `true` or `false`"),
            )),
        }
    }

    /// One of `allowed`.
    pub fn choice(
        &self,
        name: &str,
        allowed: &[&'static str],
    ) -> Result<Option<&'static str>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        allowed
            .iter()
            .find(|choice| **choice == raw)
            .copied()
            .map(Some)
            .ok_or_else(|| {
                ApiError::invalid_field(
                    name,
                    format!("`{name}` must be one of: {}", allowed.join(", ")),
                )
            })
    }

    /// What a cursor is bound to: every parameter but `limit` and `cursor` (so a page size
    /// may change between pages, a filter may not), as a short hash.
    pub fn fingerprint(&self, scope: &str) -> String {
        let mut pairs: Vec<_> = self
            .0
            .iter()
            .filter(|(name, value)| !PAGINATION.contains(&name.as_str()) && !value.is_empty())
            .collect();
        pairs.sort();
        let mut hash = Sha256::new();
        hash.update(scope.as_bytes());
        for (name, value) in pairs {
            hash.update([0]);
            hash.update(name.as_bytes());
            hash.update([0]);
            hash.update(value.as_bytes());
        }
        hex::encode(&hash.finalize()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_and_repeated_parameters_are_named() {
        let error = QueryParams::parse(Some("plan=pro&pln=x"), &["plan"]).unwrap_err();
        assert_eq!(error.param(), Some("pln"));
        let error = QueryParams::parse(Some("plan=a&plan=b"), &["plan"]).unwrap_err();
        assert_eq!(error.param(), Some("plan"));
    }

    #[test]
    fn values_are_decoded_and_typed() {
        let query = QueryParams::parse(
            Some("from=2026-03-23T10%3A30%3A00%2B02%3A00&plan=pro+plus&limit=100&on=true"),
            &["from", "plan", "on"],
        )
        .unwrap();
        assert_eq!(
            query.timestamp("from").unwrap().unwrap().to_stored(),
            "2026-03-23T08:30:00.000Z"
        );
        assert_eq!(query.text("plan").unwrap().unwrap().as_str(), "pro plus");
        assert_eq!(query.limit().unwrap(), 100);
        assert_eq!(query.boolean("on").unwrap(), Some(true));
    }

    #[test]
    fn limits_are_bounded() {
        for bad in ["0", "101", "-1", "ten", "2.5"] {
            let query = QueryParams::parse(Some(&format!("limit={bad}")), &[]).unwrap();
            assert_eq!(query.limit().unwrap_err().param(), Some("limit"), "{bad}");
        }
        let query = QueryParams::parse(None, &[]).unwrap();
        assert_eq!(query.limit().unwrap(), DEFAULT_LIMIT);
    }

    #[test]
    fn fingerprints_ignore_pagination_and_order() {
        let a = QueryParams::parse(Some("a=1&b=2&limit=5&cursor=x"), &["a", "b"]).unwrap();
        let b = QueryParams::parse(Some("b=2&a=1"), &["a", "b"]).unwrap();
        let c = QueryParams::parse(Some("a=1&b=3"), &["a", "b"]).unwrap();
        assert_eq!(a.fingerprint("s"), b.fingerprint("s"));
        assert_ne!(a.fingerprint("s"), c.fingerprint("s"));
        assert_ne!(a.fingerprint("s"), a.fingerprint("t"));
    }
}
