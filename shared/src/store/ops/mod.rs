//! The store's calls to DynamoDB, over the schema and codec layers.

pub mod backfill;
pub mod changes;
pub mod events_write;
pub mod identity;
pub mod lists;
pub mod orgs;
// Raw queries: only the store builds them (`lists` names every read made outside it).
pub(crate) mod queries;
pub mod table;
pub mod threads;
pub mod timers;
pub mod write;
