//! The store's calls to DynamoDB, over the schema and codec layers.

pub mod backfill;
pub mod events_write;
pub mod identity;
pub mod orgs;
pub mod queries;
pub mod table;
pub mod threads;
pub mod write;
