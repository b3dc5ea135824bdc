//! The key schema: every item's PK/SK and index keys, and the index names, are defined
//! here and nowhere else (`table.rs` beside it declares the same indexes for table creation).
//!
//! Tenant data is always under `ORG#<org_id>#...`. Org ids cannot contain `#` (the admin
//! CLI enforces `[a-z0-9_-]`), and every app-chosen id is the *last* component of its key,
//! after a fixed entity prefix, so no id can forge another org's or another entity's key.
//! API keys are the one platform-level item (`APIKEY#<key_id>`): a request finds its org
//! through them, so they cannot be under an org.

use super::{s, Item};
use crate::fields::{Email, Id, Timestamp};
use crate::input::UserIdentity;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ItemKey {
    pub pk: String,
    pub sk: String,
}

/// The table key as the map DynamoDB takes (`Key` of GetItem, UpdateItem, DeleteItem...).
pub fn key_attributes(key: &ItemKey) -> Item {
    Item::from([
        (TABLE_PK.to_owned(), s(&key.pk)),
        (TABLE_SK.to_owned(), s(&key.sk)),
    ])
}

/// The table key of a stored item.
pub fn key_of(item: &Item) -> Option<ItemKey> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    Some(ItemKey {
        pk: text(TABLE_PK)?,
        sk: text(TABLE_SK)?,
    })
}

/// DynamoDB's limits on a key attribute, in UTF-8 bytes: the table's and every GSI's.
pub const MAX_PARTITION_KEY_BYTES: usize = 2_048;
pub const MAX_SORT_KEY_BYTES: usize = 1_024;
/// A stored time: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
const STORED_TIME_BYTES: usize = 24;
/// Org ids are at most 64 bytes (`admin::validate_org_id`).
pub const MAX_ORG_ID_BYTES: usize = 64;
/// The most bytes a sort key adds around an app id: `BOOKING#<time>#<id>` ([`child_sort`],
/// the longest kind). Partition keys add `ORG#<org>#MESSAGEID#` at most, far below 2,048
/// minus an id: the sort keys decide.
const LONGEST_SORT_KEY_AROUND_AN_ID: usize = "BOOKING#".len() + STORED_TIME_BYTES + 1;
/// Most UTF-8 bytes of an app-chosen id (991), so that every key it goes into fits
/// (`every_key_of_the_longest_ids_fits` below builds them all).
pub const MAX_ID_BYTES: usize = MAX_SORT_KEY_BYTES - LONGEST_SORT_KEY_AROUND_AN_ID;
// `fields` states the bound ids are parsed with (it sits below the store): the same one.
const _: () = assert!(crate::fields::MAX_ID_BYTES == MAX_ID_BYTES);

/// The table's key attributes.
pub const TABLE_PK: &str = "PK";
pub const TABLE_SK: &str = "SK";

impl ItemKey {
    fn new(pk: String, sk: &str) -> Self {
        ItemKey {
            pk,
            sk: sk.to_owned(),
        }
    }

    /// The partition key as a log line may show it (see [`loggable_pk`]).
    pub fn loggable(&self) -> String {
        loggable_pk(&self.pk)
    }
}

/// A partition key with no personal data, for logs: an email in it (an email-only user's
/// key, an email alias) becomes a short SHA-256 of the key, so one key still reads as the
/// same in every line and no address is ever logged. Emails are the last component of
/// their keys (see the module documentation), so everything after the marker goes.
pub fn loggable_pk(pk: &str) -> String {
    use sha2::Digest;
    for marker in ["#email#", "#EMAIL#"] {
        if let Some(at) = pk.find(marker) {
            let digest = hex::encode(sha2::Sha256::digest(pk.as_bytes()));
            return format!("{}{marker}sha256:{}", &pk[..at], &digest[..16]);
        }
    }
    pk.to_owned()
}

/// The GSI1 keys of an item that belongs to a parent (a user's sales, bookings, events
/// and threads; a thread's messages), sorted by time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParentIndexKey {
    pub gsi1pk: String,
    pub gsi1sk: String,
}

pub fn org(org_id: &str) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}"), "ORG")
}

pub fn api_key(key_id: &str) -> ItemKey {
    ItemKey::new(format!("APIKEY#{key_id}"), "APIKEY")
}

/// A key's rate-limit counter for one 1-second window (platform-level, like API keys).
pub fn rate_limit_window(key_id: &str, window: u64) -> ItemKey {
    ItemKey::new(format!("RATELIMIT#{key_id}#{window}"), "RATELIMIT")
}

/// Whose budget a rate-limit counter counts: one key's, or all the keys of an org.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateCounter<'a> {
    Key(&'a str),
    Org(&'a str),
}

/// The counter of `counter` for one 1-second window. Key ids are hex, so `ORG#` cannot
/// be mistaken for one.
pub fn rate_counter(counter: RateCounter<'_>, window: u64) -> ItemKey {
    match counter {
        RateCounter::Key(key_id) => rate_limit_window(key_id, window),
        RateCounter::Org(org_id) => {
            ItemKey::new(format!("RATELIMIT#ORG#{org_id}#{window}"), "RATELIMIT")
        }
    }
}

/// A key no item has: read once at cold start to open the connection.
pub fn warm_up() -> ItemKey {
    ItemKey::new("WARMUP".to_owned(), "WARMUP")
}

/// GSI1 partition listing an org's API keys.
pub fn org_api_keys(org_id: &str) -> String {
    format!("ORG#{org_id}#APIKEYS")
}

/// What every key of an org's items starts with.
pub fn org_prefix(org_id: &str) -> String {
    format!("ORG#{org_id}#")
}

/// `ext#<external_user_id>` or `email#<email>`: a user's identity inside its keys.
fn identity_key(identity: &UserIdentity) -> String {
    match identity {
        UserIdentity::External(id) => format!("ext#{id}"),
        UserIdentity::Email(email) => format!("email#{}", email.as_str()),
    }
}

pub fn user_pk(org_id: &str, identity: &UserIdentity) -> String {
    format!("ORG#{org_id}#USER#{}", identity_key(identity))
}

/// The key of the user whose PK is `user_pk` (as stored in a reference such as
/// `merged_into`).
pub fn user_key_of(user_pk: &str) -> ItemKey {
    ItemKey::new(user_pk.to_owned(), "USER")
}

pub fn user(org_id: &str, identity: &UserIdentity) -> ItemKey {
    ItemKey::new(user_pk(org_id, identity), "USER")
}

pub fn product(org_id: &str, id: &Id) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#PRODUCT#{id}"), "PRODUCT")
}

pub fn sale(org_id: &str, id: &Id) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#SALE#{id}"), "SALE")
}

pub fn channel(org_id: &str, id: &Id) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#CHANNEL#{id}"), "CHANNEL")
}

pub fn thread_pk(org_id: &str, thread_id: &Id) -> String {
    format!("ORG#{org_id}#THREAD#{thread_id}")
}

pub fn thread(org_id: &str, thread_id: &Id) -> ItemKey {
    ItemKey::new(thread_pk(org_id, thread_id), "THREAD")
}

/// Messages live in their thread's item collection: one Query reads a whole thread.
pub fn message(org_id: &str, thread_id: &Id, message_id: &Id) -> ItemKey {
    ItemKey {
        pk: thread_pk(org_id, thread_id),
        sk: format!("{MESSAGE}#{message_id}"),
    }
}

/// The alias of an email: it names the identified user (`external_user_id`) that owns it.
pub fn email_alias(org_id: &str, email: &Email) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#EMAIL#{}", email.as_str()), "EMAIL")
}

/// Where a message is: message ids are unique in an org, this item names the thread.
pub fn message_locator(org_id: &str, message_id: &Id) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#MESSAGEID#{message_id}"), "MESSAGEID")
}

pub fn booking(org_id: &str, id: &Id) -> ItemKey {
    booking_of_id(org_id, id.as_str())
}

/// A booking's key from its stored id (a timer's booking).
pub fn booking_of_id(org_id: &str, booking_id: &str) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#BOOKING#{booking_id}"), "BOOKING")
}

pub fn event(org_id: &str, event_id: &str) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#EVENT#{event_id}"), "EVENT")
}

/// The change feed of one org for one UTC day (`YYYY-MM-DD`): its changes sorted by
/// [`change_sort`]. A day per partition keeps each Query bounded and lets old days age out.
pub fn changes_partition(org_id: &str, day: &str) -> String {
    format!("ORG#{org_id}#CHANGES#{day}")
}

/// A change's place in its day: `<recorded_at>#<change id>` (fixed-width times sort as text).
pub fn change_sort(recorded_at: &str, change_id: &str) -> String {
    format!("{recorded_at}#{change_id}")
}

pub fn change(org_id: &str, recorded_at: &str, change_id: &str) -> ItemKey {
    let day = recorded_at.get(..10).unwrap_or(recorded_at);
    ItemKey::new(
        changes_partition(org_id, day),
        &change_sort(recorded_at, change_id),
    )
}

/// The marker that says a change written late (off its deterministic key) exists: what
/// makes a redelivery of a late stream record add nothing.
pub fn change_marker(org_id: &str, change_id: &str) -> ItemKey {
    ItemKey::new(format!("ORG#{org_id}#CHANGEID#{change_id}"), "CHANGEID")
}

/// The timers of one booking (issue 26): one item per slot (`TIMER#reminder#<minutes>`,
/// `TIMER#ended`), replaced when the booking moves, so an old schedule's timer is gone.
pub fn booking_timer(org_id: &str, booking_id: &str, slot: &str) -> ItemKey {
    ItemKey::new(
        format!("ORG#{org_id}#TIMER#BOOKING#{booking_id}"),
        &format!("TIMER#{slot}"),
    )
}

/// A client's lifecycle timer (its next transition): `ORG#<org>#TIMER#USER#<identity>`.
/// Org ids have no `#`, so the first `#USER#` of a user PK follows the org.
pub fn client_timer(user_pk: &str) -> ItemKey {
    ItemKey::new(
        user_pk.replacen("#USER#", "#TIMER#USER#", 1),
        "TIMER#lifecycle",
    )
}

/// Shards of each due minute in GSI2: a busy minute's timers spread over this many
/// partitions; a sweep reads every shard of every minute it covers.
pub const DUE_SHARDS: u32 = 4;

/// GSI2 partition of the timers due in one minute (`YYYY-MM-DDTHH:MM`), across orgs: the
/// sweeper reads a minute's timers without knowing the orgs (sorted by due time).
pub fn due_bucket(minute: &str, shard: u32) -> String {
    format!("DUE#{minute}#{shard}")
}

/// Where a sweeper (by name: the deployed one, a test's) stopped reading due minutes.
pub fn sweeper_watermark(name: &str) -> ItemKey {
    ItemKey::new(format!("SWEEPER#{name}"), "WATERMARK")
}

/// A user's identity from its PK (`...#USER#ext#<id>` or `...#USER#email#<email>`).
pub fn identity_of_user_pk(pk: &str) -> Option<(&'static str, &str)> {
    let (_, identity) = pk.split_once("#USER#")?;
    if let Some(id) = identity.strip_prefix("ext#") {
        return Some(("ext", id));
    }
    identity
        .strip_prefix("email#")
        .map(|email| ("email", email))
}

/// The kinds of children listed under a parent in GSI1 (sort keys `<KIND>#...`).
pub const EVENT: &str = "EVENT";
pub const SALE: &str = "SALE";
pub const BOOKING: &str = "BOOKING";
pub const THREAD: &str = "THREAD";
pub const MESSAGE: &str = "MESSAGE";
/// Email aliases, under the client they name.
pub const EMAIL: &str = "EMAIL";
/// Changes of a client, listed under it (so erasing it finds them).
pub const CHANGE: &str = "CHANGE";

/// What the sort keys of one kind of child start with.
pub fn kind_prefix(kind: &str) -> String {
    format!("{kind}#")
}

/// GSI1 partition listing all orgs (sorted by org id).
pub const ORGS_LIST: &str = "ORGS";

/// `<KIND>#<time>#<id>` under the parent's partition in GSI1.
pub fn under_parent(parent_pk: String, kind: &str, at: &str, id: &str) -> ParentIndexKey {
    ParentIndexKey {
        gsi1pk: parent_pk,
        gsi1sk: child_sort(kind, at, id),
    }
}

/// The GSI1 sort key of a child: `<KIND>#<time>#<id>`. Written on every upsert that sends
/// the time, with or without the parent, so a re-dated child moves in its parent's list.
pub fn child_sort(kind: &str, at: &str, id: &str) -> String {
    format!("{kind}#{at}#{id}")
}

/// Threads are listed under their contact by id (their last message time changes).
pub fn thread_under_user(user_pk: String, thread_id: &Id) -> ParentIndexKey {
    ParentIndexKey {
        gsi1pk: user_pk,
        gsi1sk: format!("{THREAD}#{thread_id}"),
    }
}

/// The email aliases a client owns are listed under it in GSI1 (`EMAIL#<email>`), so its
/// erasure finds every one of them, not only its current email's.
pub fn alias_under_user(user_pk: String, email: &Email) -> ParentIndexKey {
    ParentIndexKey {
        gsi1pk: user_pk,
        gsi1sk: format!("{EMAIL}#{}", email.as_str()),
    }
}

/// A message is listed under its contact in GSI2 (`(<contact's PK>, MESSAGE#<message_id>)`;
/// message ids are unique in an org), so erasing the contact finds its messages whatever
/// thread they are in, and whoever that thread's contact is now.
pub fn message_under_contact(contact_pk: String, message_id: &Id) -> (String, String) {
    (contact_pk, format!("{MESSAGE}#{message_id}"))
}

/// The thread id in a message's or thread's PK (`ORG#<org>#THREAD#<thread_id>`).
pub fn thread_id_of<'a>(org_id: &str, pk: &'a str) -> Option<&'a str> {
    pk.strip_prefix(&format!("ORG#{org_id}#THREAD#"))
}

/// An index the store queries, and the attributes of its keys (a page's cursor holds
/// their values: the table key plus the index key, as DynamoDB's LastEvaluatedKey does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Index {
    Table,
    Gsi1,
    Gsi2,
}

impl Index {
    /// The global secondary indexes (`table.rs` creates them).
    pub const GSIS: [Index; 2] = [Index::Gsi1, Index::Gsi2];

    pub const fn name(self) -> Option<&'static str> {
        match self {
            Index::Table => None,
            Index::Gsi1 => Some("GSI1"),
            Index::Gsi2 => Some("GSI2"),
        }
    }

    /// (partition, sort) attributes of this index.
    pub const fn key(self) -> (&'static str, &'static str) {
        match self {
            Index::Table => (TABLE_PK, TABLE_SK),
            Index::Gsi1 => ("GSI1PK", "GSI1SK"),
            Index::Gsi2 => ("GSI2PK", "GSI2SK"),
        }
    }

    /// Every attribute of a position in this index: the table key, then the index key.
    pub fn position_attributes(self) -> Vec<&'static str> {
        let (pk, sk) = self.key();
        let mut names = vec![TABLE_PK, TABLE_SK];
        if self != Index::Table {
            names.extend([pk, sk]);
        }
        names
    }
}

// GSI2: org-wide lists ordered by time. Each item type that has GSI2 keys uses them for
// one list only: users (the segment, by last activity), threads awaiting a reply (the
// inbox, by waiting time) and bookings (by scheduled time). Besides, messages are listed
// under their contact's PK ([`message_under_contact`]), which is no list's partition.
//
// Each list is spread over a fixed number of partition keys (shards), `<list>#<shard>`,
// the shard a hash of the record's id, so that one org's writes spread over that many
// partitions (DynamoDB takes at most 1,000 write units per second per partition key).
// Reads query every shard and merge them (`ops::queries`, `Store::sharded_page`).

/// An org-wide list of GSI2, spread over shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgList {
    /// Users by last activity (the segment): every event writes one (twice when it moves
    /// the key), so the most shards (the counts are chosen in docs/data-model.md, Sharded
    /// lists, from `make bench`'s partition-heat simulation).
    Users,
    /// Threads whose last message is inbound (sparse: a reply removes the keys).
    Inbox,
    /// Bookings by `scheduled_at`.
    Bookings,
}

impl OrgList {
    pub const ALL: [OrgList; 3] = [OrgList::Users, OrgList::Inbox, OrgList::Bookings];

    /// Shards of the list. Changing a count moves records between partitions: a
    /// migration (`admin table migrate-shards` rewrites the keys of a list's old partitions).
    pub const fn shards(self) -> u32 {
        match self {
            OrgList::Users => 64,
            OrgList::Inbox => 8,
            OrgList::Bookings => 8,
        }
    }

    /// The list's partition key before it was sharded (what the migration reads).
    pub fn unsharded(self, org_id: &str) -> String {
        match self {
            OrgList::Users => format!("ORG#{org_id}#USERS"),
            OrgList::Inbox => format!("ORG#{org_id}#INBOX#awaiting_reply"),
            OrgList::Bookings => format!("ORG#{org_id}#BOOKINGS"),
        }
    }

    /// The partition key of the record with `record_id` (see [`shard_of`]).
    pub fn partition(self, org_id: &str, record_id: &str) -> String {
        let shard = shard_of(record_id, self.shards());
        format!("{}#{shard}", self.unsharded(org_id))
    }

    /// Every partition key of the list, shard 0 first.
    pub fn partitions(self, org_id: &str) -> Vec<String> {
        (0..self.shards())
            .map(|shard| format!("{}#{shard}", self.unsharded(org_id)))
            .collect()
    }
}

/// A stable hash of a record id (the first 8 bytes of its SHA-256): the same on every
/// machine and version, as stored keys depend on it.
fn id_hash(id: &str) -> u64 {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(id.as_bytes());
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// The shard of a record id among `shards`.
pub fn shard_of(record_id: &str, shards: u32) -> u32 {
    (id_hash(record_id) % u64::from(shards)) as u32
}

/// GSI2 partition of a user in the org's users, sorted by last activity.
pub fn users_by_activity(org_id: &str, identity: &UserIdentity) -> String {
    OrgList::Users.partition(org_id, &identity_key(identity))
}

/// Seconds in the period a user's activity key moves at most once in.
const ACTIVITY_PERIOD_SECS: i64 = 86_400;

/// The user's activity sort key for a last activity at `at`: the start of the user's
/// current 24-hour period, then the identity. Each user's periods start at its own time of
/// day (a hash of its identity), so an event moves a user's index entry (a delete and a
/// put) at most once per 24 hours of activity, and the moves of an org's users spread over
/// the day instead of coming all after midnight. The key is at most 24 hours before the
/// exact `last_activity_at` (kept on the item, which the segment filters on).
pub fn user_activity_sort(at: Timestamp, identity: &UserIdentity) -> String {
    activity_sort(at, &identity_key(identity))
}

fn activity_sort(at: Timestamp, identity: &str) -> String {
    let phase = (id_hash(identity) >> 32) as i64 % ACTIVITY_PERIOD_SECS;
    let seconds = at.unix_seconds();
    let period_start = seconds - (seconds + phase).rem_euclid(ACTIVITY_PERIOD_SECS);
    let start = time::OffsetDateTime::from_unix_timestamp(period_start)
        .map_or(at, Timestamp::from_offset_date_time);
    format!("{}#{identity}", start.to_stored())
}

/// The GSI2 keys a record listed in the unsharded partition of `list` has now: its shard,
/// and (users) the activity key of its `last_activity_at`. From the record's table PK;
/// `None` for a PK that is not one of the list's records.
pub fn sharded_keys(
    list: OrgList,
    org_id: &str,
    pk: &str,
    sort: &str,
    last_activity_at: Option<Timestamp>,
) -> Option<(String, String)> {
    let entity = match list {
        OrgList::Users => "USER",
        OrgList::Inbox => "THREAD",
        OrgList::Bookings => "BOOKING",
    };
    let id = pk.strip_prefix(&format!("ORG#{org_id}#{entity}#"))?;
    let sort = match list {
        OrgList::Users => activity_sort(last_activity_at?, id),
        _ => sort.to_owned(),
    };
    Some((list.partition(org_id, id), sort))
}

/// GSI2 partition of a thread in the org's threads whose last message is inbound.
pub fn inbox_awaiting_reply(org_id: &str, thread_id: &Id) -> String {
    OrgList::Inbox.partition(org_id, thread_id.as_str())
}

pub fn inbox_sort(waiting_since: &str, thread_id: &Id) -> String {
    format!("{waiting_since}#{thread_id}")
}

/// GSI2 partition of a booking in the org's bookings, sorted by `scheduled_at`.
pub fn bookings_by_schedule(org_id: &str, booking_id: &Id) -> String {
    OrgList::Bookings.partition(org_id, booking_id.as_str())
}

pub fn booking_schedule_sort(scheduled_at: &str, booking_id: &Id) -> String {
    format!("{scheduled_at}#{booking_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loggable_keys_hold_no_email() {
        let email: Email = "Ann.Lee+x@Example.com".parse().unwrap();
        let email_only = user("acme", &UserIdentity::Email(email.clone()));
        let alias = email_alias("acme", &email);
        for key in [&email_only, &alias] {
            let logged = key.loggable();
            assert!(!logged.to_lowercase().contains("ann.lee"), "{logged}");
            assert!(!logged.to_lowercase().contains("example.com"), "{logged}");
            assert!(logged.starts_with("ORG#acme#"), "{logged}");
            assert_eq!(logged, key.loggable(), "the same key logs the same");
        }
        assert_ne!(email_only.loggable(), alias.loggable());
        let identified = user("acme", &UserIdentity::External(id("u1")));
        assert_eq!(
            identified.loggable(),
            identified.pk,
            "opaque ids stay readable"
        );
    }

    fn id(raw: &str) -> Id {
        serde_json::from_value(serde_json::json!(raw)).unwrap()
    }

    #[test]
    fn every_key_of_the_longest_ids_fits() {
        // An id of MAX_ID_BYTES (4-byte characters and one ASCII byte), the longest org.
        let raw: String = std::iter::repeat_n('𝄞', MAX_ID_BYTES / 4)
            .chain(std::iter::repeat_n('x', MAX_ID_BYTES % 4))
            .collect();
        assert_eq!(raw.len(), MAX_ID_BYTES);
        let id = id(&raw);
        let org = "o".repeat(MAX_ORG_ID_BYTES);
        let email: Email = format!("{}@x.co", "e".repeat(240)).parse().unwrap();
        let latest =
            Timestamp::from_offset_date_time(time::macros::datetime!(9999-12-31 23:59:59.999 UTC));
        let at = latest.to_stored();
        assert_eq!(at.len(), STORED_TIME_BYTES);
        let ext = UserIdentity::External(id.clone());
        let by_email = UserIdentity::Email(email.clone());
        let mut partitions = vec![
            users_by_activity(&org, &ext),
            inbox_awaiting_reply(&org, &id),
            bookings_by_schedule(&org, &id),
            user_pk(&org, &by_email),
        ];
        let mut sorts = vec![
            user_activity_sort(latest, &ext),
            user_activity_sort(latest, &by_email),
            inbox_sort(&at, &id),
            booking_schedule_sort(&at, &id),
            thread_under_user(user_pk(&org, &ext), &id).gsi1sk,
            alias_under_user(user_pk(&org, &ext), &email).gsi1sk,
            message_under_contact(user_pk(&org, &ext), &id).1,
        ];
        for kind in [EVENT, SALE, BOOKING, THREAD, MESSAGE] {
            sorts.push(child_sort(kind, &at, id.as_str()));
        }
        let table_keys = [
            user(&org, &ext),
            product(&org, &id),
            sale(&org, &id),
            channel(&org, &id),
            thread(&org, &id),
            message(&org, &id, &id),
            email_alias(&org, &email),
            message_locator(&org, &id),
            booking(&org, &id),
        ];
        for key in table_keys {
            partitions.push(key.pk);
            sorts.push(key.sk);
        }
        for pk in partitions {
            assert!(pk.len() <= MAX_PARTITION_KEY_BYTES, "{}", pk.len());
        }
        for sk in sorts {
            assert!(sk.len() <= MAX_SORT_KEY_BYTES, "{}: {sk}", sk.len());
        }
    }

    #[test]
    fn tenant_keys_start_with_the_org() {
        let identity = UserIdentity::External(id("u1"));
        assert_eq!(user("acme", &identity).pk, "ORG#acme#USER#ext#u1");
        assert!(sale("acme", &id("ORG#other"))
            .pk
            .starts_with("ORG#acme#SALE#"));
    }

    #[test]
    fn records_spread_over_every_shard_and_stay_in_theirs() {
        let shards = OrgList::Users.shards();
        let mut seen = std::collections::HashSet::new();
        for n in 0..1000 {
            let identity = UserIdentity::External(id(&format!("u{n}")));
            let partition = users_by_activity("acme", &identity);
            assert_eq!(partition, users_by_activity("acme", &identity));
            assert!(OrgList::Users.partitions("acme").contains(&partition));
            seen.insert(partition);
        }
        assert_eq!(seen.len(), shards as usize);
        // Stored keys depend on the hash: it never changes.
        assert_eq!(shard_of("ext#u1", 32), shard_of("ext#u1", 32));
        assert_eq!(
            OrgList::Bookings.partition("o", "b1"),
            format!("ORG#o#BOOKINGS#{}", shard_of("b1", 8))
        );
    }

    #[test]
    fn the_activity_key_moves_once_per_24_hours() {
        let identity = UserIdentity::External(id("u1"));
        let at = |raw: &str| raw.parse::<Timestamp>().unwrap();
        let first = at("2026-03-01T10:00:00Z");
        let key = user_activity_sort(first, &identity);
        let start: Timestamp = key.split('#').next().unwrap().parse().unwrap();
        assert!(start.unix_seconds() <= first.unix_seconds());
        assert!(first.unix_seconds() - start.unix_seconds() < 86_400);
        let moved = (0..48 * 60)
            .map(|minute| first.later_by(time::Duration::minutes(minute)))
            .map(|t| user_activity_sort(t, &identity))
            .collect::<std::collections::BTreeSet<_>>();
        assert!(moved.len() <= 3, "{moved:?}");
        assert!(moved.iter().all(|k| k.ends_with("#ext#u1")));
    }

    #[test]
    fn migrated_keys_are_the_keys_new_writes_give() {
        let identity = UserIdentity::External(id("u1"));
        let at: Timestamp = "2026-03-01T10:00:00Z".parse().unwrap();
        let pk = user("acme", &identity).pk;
        assert_eq!(
            sharded_keys(OrgList::Users, "acme", &pk, "old", Some(at)),
            Some((
                users_by_activity("acme", &identity),
                user_activity_sort(at, &identity)
            ))
        );
        let thread_pk = thread("acme", &id("t1")).pk;
        assert_eq!(
            sharded_keys(OrgList::Inbox, "acme", &thread_pk, "s#t1", None),
            Some((inbox_awaiting_reply("acme", &id("t1")), "s#t1".to_owned()))
        );
        assert_eq!(
            sharded_keys(OrgList::Bookings, "acme", &thread_pk, "s", None),
            None
        );
        assert_eq!(
            sharded_keys(OrgList::Users, "other", &pk, "s", Some(at)),
            None
        );
    }

    #[test]
    fn external_ids_and_emails_never_share_a_key() {
        let by_id = user("acme", &UserIdentity::External(id("a@b.c")));
        let by_email = user("acme", &UserIdentity::Email("a@b.c".parse().unwrap()));
        assert_ne!(by_id, by_email);
    }
}
