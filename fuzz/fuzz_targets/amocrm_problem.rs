//! amoCRM error answers (`Problem::parse`, `CrmError::from_response`, `oauth_error`): never a
//! panic, the hint never empty, the kind follows the status, and a token planted anywhere in the
//! body never comes out in the message, the hint or the stored error.
//!
//! Input: status (2 bytes, big-endian, modulo 600), flags (1 byte: bits 0-1 Content-Type, bit 2
//! a `Retry-After` header, bit 3 plant the JWT, bit 4 plant a `Bearer` token), where to plant
//! (2 bytes), then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared_fuzz::invariants::{self, PLANTED_BEARER, PLANTED_TOKEN};

const CONTENT_TYPES: [Option<&str>; 4] = [
    None,
    Some("application/problem+json"),
    Some("text/html"),
    Some("application/json; charset=utf-8"),
];

fuzz_target!(|data: &[u8]| {
    let Some((header, body)) = data.split_first_chunk::<5>() else {
        return;
    };
    let status = u16::from_be_bytes([header[0], header[1]]) % 600;
    let flags = header[2];
    let mut body = String::from_utf8_lossy(body).into_owned();
    let mut at = usize::from(u16::from_be_bytes([header[3], header[4]])) % (body.len() + 1);
    while !body.is_char_boundary(at) {
        at -= 1;
    }
    if flags & 0b1000 != 0 {
        body.insert_str(at, PLANTED_TOKEN);
    }
    if flags & 0b1_0000 != 0 {
        body.insert_str(at, PLANTED_BEARER);
    }
    let content_type = CONTENT_TYPES[usize::from(flags & 0b11)];
    let retry_after = (flags & 0b100 != 0).then_some("7");
    invariants::crm_error(status, content_type, retry_after, &body);
});
