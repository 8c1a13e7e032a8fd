//! amoCRM account webhook bodies: `shared::amocrm::webhook::parse_webhook` never panics, and
//! what it reads survives the inbox's JSON round trip and any percent-encoding of the pairs.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_fuzz::invariants;

fuzz_target!(|body: &[u8]| invariants::webhook(body));
