//! The shared crate of the developer ingest API: every function is a thin `main` over
//! [`http::run`]. Layers, outermost first:
//!
//! - [`http`]: API Gateway request in, JSON response out, request ids, logging.
//! - [`metrics`]: per-request CloudWatch metrics as Embedded Metric Format log lines.
//! - [`handlers`]: one function per write endpoint; orchestrates parse -> writes -> reply.
//! - [`batch`]: many items of any type in one request, each through its single handler.
//! - [`encoding`]: gzip request bodies, inflated under a hard cap.
//! - [`reads`], [`erase`]: the read endpoints and the erasure of a client.
//! - [`views`]: the response objects, explicit types over the store's typed records.
//! - [`idempotency`]: `Idempotency-Key` parsing, event ids, body fingerprints, replays.
//! - [`query`], [`cursor`]: query-string parameters and opaque page cursors.
//! - [`request`]: a write body parsed once into what its handler takes (and its fingerprint).
//! - [`input`], [`fields`]: request bodies parsed into validated domain values.
//! - [`facts`]: what an event tells about its client, in a form that combines in any order.
//! - [`states`]: the client record's computed states (lifecycle stage, billing state).
//! - [`auth`]: API key secrets, hashing, the warm-instance cache.
//! - [`ratelimit`], [`cost`]: per-key and per-org limits in tokens, shared by all instances
//!   through leased token blocks; what each request costs.
//! - [`store`]: the only code that talks to DynamoDB (key schema in `store::schema::keys`).
//! - [`error`]: the one error type and its JSON shape.
//! - [`admin`]: orgs and API keys, for the `admin` CLI (never on the request path).

pub mod admin;
pub mod auth;
pub mod batch;
pub mod changes;
pub mod cost;
pub mod cursor;
pub mod encoding;
pub mod endpoint;
pub mod erase;
pub mod error;
pub mod facts;
pub mod fields;
pub mod handlers;
pub mod http;
pub mod idempotency;
pub mod input;
pub mod metrics;
#[cfg(test)]
mod module_graph;
pub mod query;
pub mod ratelimit;
pub mod reads;
pub mod request;
pub mod segment;
pub mod states;
pub mod store;
pub mod views;

pub use endpoint::Endpoint;
pub use error::ApiError;
