//! The one error type of the API. Every failure a caller can see is a variant here, and
//! each variant knows its HTTP status and its machine-readable `code`. Internal details
//! (SDK errors, unexpected item shapes) are logged where they happen (SDK errors by
//! `store::storage_error`, undecodable items by `store::records::decode`) and never reach
//! the response body, which only says [`ApiError::Internal`] or
//! [`ApiError::StorageUnavailable`].

use lambda_http::http::StatusCode;
use serde_json::json;

// EnumIter (tests only) yields one value of every variant, so a test can prove that
// `ALL_CODES` names every code a variant has: see `all_codes_lists_every_variant`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[cfg_attr(test, derive(strum::EnumIter))]
pub enum ApiError {
    #[error("Send your API key as `Authorization: Bearer <key>`.")]
    MissingAuthorization,
    #[error("The API key is unknown, revoked or expired.")]
    InvalidApiKey,
    #[error("The body is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("{message}")]
    InvalidField { param: String, message: String },
    #[error("`{param}` is required.")]
    MissingField { param: String },
    #[error("A user needs `external_user_id` or `email`.")]
    MissingUserIdentity { param: String },
    #[error("A product needs `external_product_id`.")]
    MissingProductIdentity { param: String },
    #[error("A channel needs `external_channel_id`.")]
    MissingChannelIdentity { param: String },
    #[error("A sale needs `sale_id`.")]
    MissingSaleIdentity,
    #[error("A conversation or message needs `thread_id`.")]
    MissingThreadIdentity,
    #[error("A message needs `message_id`.")]
    MissingMessageIdentity,
    #[error("A booking needs `booking_id`.")]
    MissingBookingIdentity,
    #[error("A booking needs `scheduled_at`.")]
    MissingBookingScheduledAt,
    #[error("The Idempotency-Key header must be 1 to {max} printable ASCII characters.")]
    InvalidIdempotencyKey { max: usize },
    #[error("This Idempotency-Key was already used with a different request body.")]
    IdempotencyKeyReused,
    #[error("This email already identifies another user (another `external_user_id`): an email names one client.")]
    IdentityConflict { param: String },
    #[error("This client already has {max} email-only records merged into it: this email is not claimed. Erase the client, or send it without the email.")]
    TooManyIdentities { param: String, max: usize },
    #[error("This Idempotency-Key stored an event of a client that has since been erased: the event is not stored again.")]
    ClientErased,
    #[error("The body is larger than {limit} bytes.")]
    PayloadTooLarge { limit: usize },
    #[error("A batch holds at most {max} items.")]
    TooManyItems { max: usize },
    #[error("The body is not a valid gzip stream.")]
    InvalidEncoding,
    #[error("Content-Encoding must be `gzip` or `identity`.")]
    UnsupportedEncoding,
    #[error("No such endpoint.")]
    NotFound,
    #[error("No user with this `external_user_id`.")]
    UserNotFound,
    #[error("No conversation with this `thread_id`.")]
    ThreadNotFound,
    #[error("The cursor is malformed, or belongs to another query: send back the `next_cursor` of the previous page with the same parameters.")]
    InvalidCursor,
    #[error(
        "The cursor is older than the 30 days changes are kept: start again without a cursor."
    )]
    CursorExpired,
    #[error("This endpoint does not accept that method.")]
    MethodNotAllowed { allow: &'static str },
    /// `limit` tokens per second of the key (or of its org, all its keys together) are
    /// spent for this second; the request costs `cost`.
    #[error("The {} limit of {limit} tokens per second is used up (this request costs {cost}): retry after the Retry-After seconds, backing off.", scope.describe())]
    RateLimited {
        scope: RateLimitScope,
        limit: u32,
        cost: u32,
    },
    /// `stats/users/` stops rather than answer a count it could not finish.
    #[error("The segment has more than {max} users, or could not be read within the request's time: narrow it with filters.")]
    SegmentTooLarge { max: usize },
    #[error("Storage is temporarily unavailable; retry the request.")]
    StorageUnavailable,
    #[error("Something went wrong on our side; the request id identifies it in our logs.")]
    Internal,
}

/// Seconds a client should wait before retrying a 503.
pub const STORAGE_RETRY_AFTER_SECS: u64 = 1;

impl ApiError {
    /// Every `code` the API can answer with, in the order of the variants: what openapi.yaml's
    /// `ErrorCode` enum lists (shared/tests/api/openapi.rs) and the README's error table.
    pub const ALL_CODES: [&'static str; 32] = [
        "missing_authorization",
        "invalid_api_key",
        "invalid_json",
        "invalid_field",
        "missing_field",
        "missing_user_identity",
        "missing_product_identity",
        "missing_channel_identity",
        "missing_sale_identity",
        "missing_thread_identity",
        "missing_message_identity",
        "missing_booking_identity",
        "missing_booking_scheduled_at",
        "invalid_idempotency_key",
        "idempotency_key_reused",
        "identity_conflict",
        "too_many_identities",
        "client_erased",
        "payload_too_large",
        "too_many_items",
        "invalid_encoding",
        "unsupported_encoding",
        "not_found",
        "user_not_found",
        "thread_not_found",
        "invalid_cursor",
        "cursor_expired",
        "method_not_allowed",
        "rate_limited",
        "segment_too_large",
        "storage_unavailable",
        "internal_error",
    ];

    pub fn invalid_field(param: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::InvalidField {
            param: param.into(),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        use ApiError::*;
        match self {
            MissingAuthorization | InvalidApiKey => StatusCode::UNAUTHORIZED,
            InvalidJson(_)
            | InvalidField { .. }
            | MissingField { .. }
            | MissingUserIdentity { .. }
            | MissingProductIdentity { .. }
            | MissingChannelIdentity { .. }
            | MissingSaleIdentity
            | MissingThreadIdentity
            | MissingMessageIdentity
            | MissingBookingIdentity
            | MissingBookingScheduledAt
            | InvalidIdempotencyKey { .. }
            | InvalidEncoding
            | InvalidCursor => StatusCode::BAD_REQUEST,
            IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            IdentityConflict { .. } | TooManyIdentities { .. } => StatusCode::CONFLICT,
            ClientErased | CursorExpired => StatusCode::GONE,
            PayloadTooLarge { .. } | TooManyItems { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            UnsupportedEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            NotFound | UserNotFound | ThreadNotFound => StatusCode::NOT_FOUND,
            MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            SegmentTooLarge { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            StorageUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            MissingAuthorization => "missing_authorization",
            InvalidApiKey => "invalid_api_key",
            InvalidJson(_) => "invalid_json",
            InvalidField { .. } => "invalid_field",
            MissingField { .. } => "missing_field",
            MissingUserIdentity { .. } => "missing_user_identity",
            MissingProductIdentity { .. } => "missing_product_identity",
            MissingChannelIdentity { .. } => "missing_channel_identity",
            MissingSaleIdentity => "missing_sale_identity",
            MissingThreadIdentity => "missing_thread_identity",
            MissingMessageIdentity => "missing_message_identity",
            MissingBookingIdentity => "missing_booking_identity",
            MissingBookingScheduledAt => "missing_booking_scheduled_at",
            InvalidIdempotencyKey { .. } => "invalid_idempotency_key",
            IdempotencyKeyReused => "idempotency_key_reused",
            IdentityConflict { .. } => "identity_conflict",
            TooManyIdentities { .. } => "too_many_identities",
            ClientErased => "client_erased",
            PayloadTooLarge { .. } => "payload_too_large",
            TooManyItems { .. } => "too_many_items",
            InvalidEncoding => "invalid_encoding",
            UnsupportedEncoding => "unsupported_encoding",
            NotFound => "not_found",
            UserNotFound => "user_not_found",
            ThreadNotFound => "thread_not_found",
            InvalidCursor => "invalid_cursor",
            CursorExpired => "cursor_expired",
            MethodNotAllowed { .. } => "method_not_allowed",
            RateLimited { .. } => "rate_limited",
            SegmentTooLarge { .. } => "segment_too_large",
            StorageUnavailable => "storage_unavailable",
            Internal => "internal_error",
        }
    }

    /// The request field (dotted path) or header the error is about, if any.
    pub fn param(&self) -> Option<&str> {
        use ApiError::*;
        match self {
            InvalidField { param, .. }
            | MissingField { param }
            | MissingUserIdentity { param }
            | MissingProductIdentity { param }
            | MissingChannelIdentity { param }
            | IdentityConflict { param }
            | TooManyIdentities { param, .. } => Some(param),
            MissingSaleIdentity => Some("sale_id"),
            MissingThreadIdentity => Some("thread_id"),
            MissingMessageIdentity => Some("message_id"),
            MissingBookingIdentity => Some("booking_id"),
            MissingBookingScheduledAt => Some("scheduled_at"),
            UserNotFound => Some("external_user_id"),
            ThreadNotFound => Some("thread_id"),
            InvalidCursor | CursorExpired => Some("cursor"),
            TooManyItems { .. } => Some("batch"),
            InvalidEncoding | UnsupportedEncoding => Some("Content-Encoding"),
            InvalidIdempotencyKey { .. } | IdempotencyKeyReused | ClientErased => {
                Some("Idempotency-Key")
            }
            MissingAuthorization | InvalidApiKey => Some("Authorization"),
            _ => None,
        }
    }

    /// The JSON body: `{"error": {"code", "message", "param"?, "request_id"}}`, and for a
    /// 429 `"rate_limit": {"scope", "limit", "cost"}`.
    pub fn body(&self, request_id: &str) -> serde_json::Value {
        let mut error = json!({
            "code": self.code(),
            "message": self.to_string(),
            "request_id": request_id,
        });
        if let Some(param) = self.param() {
            error["param"] = json!(param);
        }
        if let Some(detail) = self.rate_limit() {
            error["rate_limit"] = detail;
        }
        json!({ "error": error })
    }

    /// A 429's `rate_limit`: which limit was hit (`key` or `org`), its tokens per second,
    /// and what the request costs.
    pub fn rate_limit(&self) -> Option<serde_json::Value> {
        match self {
            ApiError::RateLimited { scope, limit, cost } => {
                Some(json!({ "scope": scope, "limit": limit, "cost": cost }))
            }
            _ => None,
        }
    }

    /// Nests a field error found inside a nested object under that object's name,
    /// so `email` inside `buyer` is reported as `buyer.email`.
    pub fn within(self, parent: &str) -> Self {
        let nest = |param: String| format!("{parent}.{param}");
        use ApiError::*;
        match self {
            InvalidField { param, message } => InvalidField {
                param: nest(param),
                message,
            },
            MissingField { param } => MissingField { param: nest(param) },
            MissingUserIdentity { param } => MissingUserIdentity { param: nest(param) },
            MissingProductIdentity { param } => MissingProductIdentity { param: nest(param) },
            MissingChannelIdentity { param } => MissingChannelIdentity { param: nest(param) },
            IdentityConflict { param } => IdentityConflict { param: nest(param) },
            TooManyIdentities { param, max } => TooManyIdentities {
                param: nest(param),
                max,
            },
            other => other,
        }
    }
}

/// Which limit: the key's own, or its org's (all its keys together).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RateLimitScope {
    #[default]
    Key,
    Org,
}

impl RateLimitScope {
    /// How a 429's message names it.
    pub fn describe(self) -> &'static str {
        match self {
            RateLimitScope::Key => "API key's",
            RateLimitScope::Org => "org's",
        }
    }

    /// The policy's name in the `RateLimit-Policy` / `RateLimit` headers.
    pub fn name(self) -> &'static str {
        match self {
            RateLimitScope::Key => "key",
            RateLimitScope::Org => "org",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    /// A new variant needs a `code()` arm (the match is exhaustive) and appears in
    /// `ApiError::iter()`, so this fails until its code is in `ALL_CODES` too.
    #[test]
    fn all_codes_lists_every_variant() {
        let codes: Vec<&str> = ApiError::iter().map(|error| error.code()).collect();
        assert_eq!(codes, ApiError::ALL_CODES);
    }

    #[test]
    fn body_has_the_documented_shape() {
        let body = ApiError::MissingSaleIdentity.body("req-1");
        assert_eq!(body["error"]["code"], "missing_sale_identity");
        assert_eq!(body["error"]["param"], "sale_id");
        assert_eq!(body["error"]["request_id"], "req-1");
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sale_id"));
    }

    #[test]
    fn a_429_says_which_limit_and_the_cost() {
        let error = ApiError::RateLimited {
            scope: RateLimitScope::Org,
            limit: 400,
            cost: 26,
        };
        let body = error.body("r");
        assert_eq!(
            body["error"]["rate_limit"],
            json!({"scope": "org", "limit": 400, "cost": 26})
        );
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("org's limit of 400"));
    }

    #[test]
    fn internal_errors_say_nothing_internal() {
        let body = ApiError::Internal.body("r");
        assert_eq!(body["error"]["code"], "internal_error");
        assert!(body["error"].get("param").is_none());
        assert_eq!(ApiError::Internal.status(), 500);
    }

    #[test]
    fn nested_errors_name_the_full_path() {
        let error = ApiError::MissingUserIdentity {
            param: "external_user_id".into(),
        }
        .within("buyer");
        assert_eq!(error.param(), Some("buyer.external_user_id"));
    }
}
