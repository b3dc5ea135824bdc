//! End-to-end tests of every endpoint through the real function handler and DynamoDB Local.

mod common;

mod admin;
mod auth;
mod bookings;
mod conversations;
mod delivery;
mod events;
mod fixtures;
mod isolation;
mod limits;
mod logs;
mod openapi;
mod ratelimit;
mod requests;
mod sales;
mod users;
