//! What a request costs in rate-limit tokens ([`crate::ratelimit`]). Most cost one; those
//! that cause many times an ordinary request's DynamoDB work cost more, so that a key's and
//! an org's tokens per second bound the work they cause, not only their request count.
//! The table is in docs/api-guide.md (Rate limits).

use crate::query::{QueryParams, DEFAULT_LIMIT};
use crate::store::keys::OrgList;
use crate::store::FILTERED_PAGE_CALLS;

/// Items a list page may read per token: an ordinary request reads or writes a handful.
pub const ITEMS_PER_TOKEN: usize = 250;
/// Service objects of a booking per token beyond its first (each is a product upsert).
pub const SERVICES_PER_TOKEN: usize = 5;

/// A page of an org-wide list: one token per [`ITEMS_PER_TOKEN`] items its queries may
/// read: with `users/` conditions, up to `3 × (limit + 1)` items a shard (the ceiling of
/// `Store::sharded_page`), else about `limit + 1`.
pub fn list_page(list: OrgList, params: &QueryParams) -> u32 {
    // A bad limit is refused by the handler; it costs what the default page would.
    let limit = params.limit().unwrap_or(DEFAULT_LIMIT);
    let filtered = list == OrgList::Users && params.any_besides_pagination();
    let calls = if filtered { FILTERED_PAGE_CALLS } else { 1 };
    let items = list.shards() as usize * (limit + 1) * calls;
    items.div_ceil(ITEMS_PER_TOKEN).max(1) as u32
}

/// A page of the change feed: one token, four with a `types` filter (its Queries read up
/// to 200 items each to fill a page).
pub fn changes_page(params: &QueryParams) -> u32 {
    if params.any_besides_pagination() {
        4
    } else {
        1
    }
}

/// `stats/users/`: it reads the whole segment, whose size is known only once read; priced
/// as the largest filtered `users/` page (64 shards × 101 items × 3 calls / 250).
pub const USERS_STATS: u32 = 78;

/// A booking upsert with `services` service objects.
pub fn booking(services: usize) -> u32 {
    1 + services.div_ceil(SERVICES_PER_TOKEN) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(list: OrgList, query: &str) -> u32 {
        let allowed = ["inactive_days", "status", "from", "to"];
        list_page(list, &QueryParams::parse(Some(query), &allowed).unwrap())
    }

    #[test]
    fn documented_costs() {
        assert_eq!(page(OrgList::Users, ""), 7);
        assert_eq!(page(OrgList::Users, "limit=100"), 26);
        assert_eq!(page(OrgList::Users, "limit=100&inactive_days=30"), 78);
        assert_eq!(page(OrgList::Users, "limit=1"), 1);
        assert_eq!(page(OrgList::Inbox, "status=awaiting_reply"), 1);
        assert_eq!(page(OrgList::Bookings, "limit=100&from=a&to=b"), 4);
        assert_eq!(booking(0), 1);
        assert_eq!(booking(5), 2);
        assert_eq!(booking(50), 11);
    }
}
