//! Every write endpoint's body parser, on arbitrary bytes: the one parse each body goes through
//! (`WriteRequest::parse`, with and without an `Idempotency-Key` for events, whose keyed path
//! parses the JSON once and hashes its fingerprint), then what the parsed value is asked for
//! (its records, cost and user). No panic, bounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::idempotency::IdempotencyKey;
use shared::request::{ObjectType, WriteRequest};

fuzz_target!(|body: &[u8]| {
    for kind in ObjectType::ALL {
        let keys = match kind {
            ObjectType::Event => vec![None, IdempotencyKey::parse("fuzz-key").ok()],
            _ => vec![None],
        };
        for key in keys {
            if let Ok(request) = WriteRequest::parse(kind, body, key) {
                request.records();
                request.cost();
                request.user();
            }
        }
    }
});
