//! Codecs: domain values as the writes that store them, and stored items as typed
//! records and the views clients see. No I/O; uses only the schema layer and `expr`.

pub mod changes;
pub mod client_record;
pub mod items;
pub mod records;
pub mod timers;
pub mod upsert;
