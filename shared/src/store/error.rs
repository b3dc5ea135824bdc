//! SDK errors as API errors, and the item a failed condition returns.

use super::schema::Item;
use crate::error::ApiError;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::types::CancellationReason;

/// The cancellation reasons of a throttled transaction item.
const THROTTLED_REASONS: [&str; 3] = [
    "ThrottlingError",
    "ProvisionedThroughputExceeded",
    "RequestLimitExceeded",
];

/// A transaction DynamoDB cancelled because an item of it was throttled (not for a condition
/// or a conflict): a retryable 503 like every other throttle. `None` for other reasons.
pub(super) fn throttled_transaction(
    operation: &'static str,
    reasons: &[CancellationReason],
) -> Option<ApiError> {
    let throttled = reasons
        .iter()
        .filter_map(CancellationReason::code)
        .any(|code| THROTTLED_REASONS.contains(&code));
    throttled.then(|| {
        tracing::warn!(operation, "transaction cancelled by throttling");
        ApiError::StorageUnavailable
    })
}

/// The existing item returned with a ConditionalCheckFailedException, if that is the error.
pub(super) fn conditional_check_item<E, R>(error: &SdkError<E, R>) -> Option<Item>
where
    E: ConditionalFailure,
{
    match error {
        SdkError::ServiceError(service) => service.err().conditional_item(),
        _ => None,
    }
}

/// Whether the error is the refusal of a write's condition (ConditionalCheckFailed).
pub(super) fn is_condition_failure<E, R>(error: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    error
        .as_service_error()
        .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException"))
}

/// Lets [`conditional_check_item`] serve both UpdateItem's and PutItem's error types.
pub trait ConditionalFailure {
    fn conditional_item(&self) -> Option<Item>;
}

impl ConditionalFailure for aws_sdk_dynamodb::operation::update_item::UpdateItemError {
    fn conditional_item(&self) -> Option<Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => Some(e.item.clone().unwrap_or_default()),
            _ => None,
        }
    }
}

impl ConditionalFailure for aws_sdk_dynamodb::operation::put_item::PutItemError {
    fn conditional_item(&self) -> Option<Item> {
        match self {
            Self::ConditionalCheckFailedException(e) => Some(e.item.clone().unwrap_or_default()),
            _ => None,
        }
    }
}

/// Maps an SDK error to the API: throttling, timeouts, unreachable endpoints and any 5xx
/// answer are a retryable 503; anything else is a 500. The detail goes to the log only.
pub fn storage_error<E>(
    operation: &'static str,
    error: SdkError<E, aws_sdk_dynamodb::config::http::HttpResponse>,
) -> ApiError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    const RETRYABLE_CODES: [&str; 6] = [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "LimitExceededException",
    ];
    let retryable = match &error {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            service.raw().status().is_server_error()
                || service
                    .err()
                    .code()
                    .is_some_and(|code| RETRYABLE_CODES.contains(&code))
        }
        _ => false,
    };
    let detail = aws_sdk_dynamodb::error::DisplayErrorContext(&error);
    if retryable {
        tracing::warn!(operation, error = %detail, "storage unavailable");
        ApiError::StorageUnavailable
    } else {
        tracing::error!(operation, error = %detail, "storage error");
        ApiError::Internal
    }
}
