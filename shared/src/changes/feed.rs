//! `GET changes/?cursor=&types=&limit=`: an org's changes in a stable order (by
//! `recorded_at`, then id), read only up to a *horizon*, [`visibility_lag`] before now.
//!
//! Why the horizon: the consumer writes a change some time after its `recorded_at` (the
//! write it comes from), so a reader that went past a point could miss a change written
//! there later. The consumer writes a change on time only if it lands before its
//! `recorded_at` is older than the lag (else it writes it late, with a new `recorded_at`
//! ahead of every reader's horizon; see `store::ops::changes`), and readers never read
//! past the horizon: a consumer following `next_cursor` sees every change once. The cost:
//! a change is visible a lag after it happened.

use super::TYPES;
use crate::auth::Caller;
use crate::cursor::FeedCursor;
use crate::error::ApiError;
use crate::fields::Timestamp;
use crate::handlers::Reply;
use crate::query::QueryParams;
use crate::store::Store;
use serde_json::json;
use std::time::Duration;

/// How far behind now readers stop, unless `CHANGES_VISIBILITY_LAG_MS` says otherwise
/// (the consumer and the reader must use the same value: template.yaml sets both).
pub const DEFAULT_VISIBILITY_LAG: Duration = Duration::from_millis(1500);
/// How long changes are kept, and how old a cursor may be.
pub const RETENTION_DAYS: i64 = 30;

pub fn visibility_lag() -> Duration {
    std::env::var("CHANGES_VISIBILITY_LAG_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(DEFAULT_VISIBILITY_LAG, Duration::from_millis)
}

fn ago(now: Timestamp, by: Duration) -> String {
    now.earlier_by(time::Duration::try_from(by).unwrap_or_default())
        .to_stored()
}

/// The `types` parameter: change types separated by commas, each one of [`TYPES`].
fn types(params: &QueryParams) -> Result<Option<Vec<String>>, ApiError> {
    let Some(raw) = params.text("types")? else {
        return Ok(None);
    };
    let mut wanted = Vec::new();
    for name in raw.as_str().split(',') {
        if !TYPES.contains(&name) {
            return Err(ApiError::invalid_field(
                "types",
                format!("`types` lists change types separated by commas; `{name}` is not one"),
            ));
        }
        wanted.push(name.to_owned());
    }
    Ok(Some(wanted))
}

pub async fn changes_list(
    store: &Store,
    caller: &Caller,
    params: &QueryParams,
) -> Result<Reply, ApiError> {
    let org = caller.org_id.as_str();
    let limit = params.limit()?;
    let types = types(params)?;
    let now = Timestamp::now();
    let oldest = ago(now, Duration::from_secs(RETENTION_DAYS as u64 * 86_400));
    let horizon = ago(now, visibility_lag());
    let after = match params.cursor() {
        Some(raw) => {
            let position = FeedCursor::decode(org, raw)?;
            if position.as_str() < oldest.as_str() {
                return Err(ApiError::CursorExpired);
            }
            position
        }
        None => oldest,
    };
    // A cursor ahead of the horizon (from a reader whose clock ran ahead): nothing new yet.
    let page = if after.as_str() >= horizon.as_str() {
        crate::store::ops::changes::FeedPage {
            changes: Vec::new(),
            next: after,
            has_more: false,
        }
    } else {
        store
            .changes_page(org, &after, &horizon, limit, types.as_deref())
            .await?
    };
    Ok(Reply::ok(json!({
        "changes": page.changes,
        "has_more": page.has_more,
        "next_cursor": FeedCursor::encode(org, &page.next),
    })))
}
