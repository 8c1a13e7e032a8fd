//! `POST /leads` bodies, each read both as JSON and as a form (`shared::leads::intake`), plus the
//! price parser on the same text: never a panic, errors name their field, and an accepted lead
//! has an E.164 phone, an exact total and reads back the same when re-sent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_fuzz::invariants;

fuzz_target!(|body: &[u8]| {
    invariants::intake_json(body);
    invariants::intake_form(body);
    invariants::money(&String::from_utf8_lossy(body));
});
