//! The shared crate of the developer ingest API: every function is a thin `main` over
//! [`http::run`]. Layers, outermost first:
//!
//! - [`http`]: API Gateway request in, JSON response out, request ids, logging.
//! - [`handlers`]: one function per write endpoint; orchestrates parse -> writes -> reply.
//! - [`batch`]: many items of any type in one request, each through its single handler.
//! - [`encoding`]: gzip request bodies, inflated under a hard cap.
//! - [`reads`], [`erase`]: the read endpoints and the erasure of a client.
//! - [`query`], [`cursor`]: query-string parameters and opaque page cursors.
//! - [`input`], [`fields`], [`lifecycle`]: request bodies parsed into validated domain values.
//! - [`auth`]: API key secrets, hashing, the warm-instance cache.
//! - [`ratelimit`]: per-key limits shared by all instances through leased token blocks.
//! - [`store`]: the only code that talks to DynamoDB (key schema in [`store::keys`]).
//! - [`error`]: the one error type and its JSON shape.
//! - [`admin`]: orgs and API keys, for the `admin` CLI (never on the request path).

pub mod admin;
pub mod auth;
pub mod batch;
pub mod cursor;
pub mod encoding;
pub mod endpoint;
pub mod erase;
pub mod error;
pub mod fields;
pub mod handlers;
pub mod http;
pub mod input;
pub mod lifecycle;
pub mod query;
pub mod ratelimit;
pub mod reads;
pub mod store;

pub use endpoint::Endpoint;
pub use error::ApiError;
