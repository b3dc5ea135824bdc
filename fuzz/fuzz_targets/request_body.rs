//! Every endpoint's body parser, and what the accepted requests turn into (stored items,
//! lifecycle updates), on arbitrary bytes: no panic, bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::fields::Timestamp;
use shared::{input, lifecycle, store::items};

const ORG: &str = "fuzz-org";

fuzz_target!(|body: &[u8]| {
    let now = Timestamp::now();
    if let Ok(user) = input::parse_user(body) {
        items::user(ORG, &user);
    }
    if let Ok(event) = input::parse_event(body, now) {
        if let Ok(change) = lifecycle::lifecycle_update(&event) {
            items::user_for_event(ORG, &event.user, &change, event.occurred_at);
        }
        items::event(ORG, &event, "evt_fuzz", now, Some(("key", "hash")));
    }
    if let Ok(product) = input::parse_product(body) {
        items::product(ORG, &product);
    }
    if let Ok(sale) = input::parse_sale(body) {
        items::sale(ORG, &sale);
    }
    if let Ok(conversation) = input::parse_conversation(body) {
        items::thread(ORG, &conversation);
    }
    if let Ok(message) = input::parse_message(body) {
        items::thread_for_message(ORG, &message);
        items::message(ORG, &message);
    }
    if let Ok(booking) = input::parse_booking(body) {
        items::booking(ORG, &booking);
    }
});
