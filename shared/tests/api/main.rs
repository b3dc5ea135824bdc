//! End-to-end tests of every endpoint through the real function handler and DynamoDB Local.

mod common;

mod admin;
mod auth;
mod batch;
mod bookings;
mod bounds;
mod changes;
mod conversations;
mod delivery;
mod deploys;
mod erase;
mod events;
mod faults;
mod fixtures;
mod identity;
mod isolation;
mod limits;
mod openapi;
mod ratelimit;
mod reads;
mod reads_bookings;
mod reads_sharded;
mod reads_threads;
mod reads_users;
mod record_properties;
mod record_rules;
mod requests;
mod sales;
mod segment_properties;
mod segments;
mod states;
mod timers;
mod users;
mod write_cost;
