//! Telegram Mini App initData (`shared::telegram::verify_init_data`). The first byte picks the
//! mode: even, the rest is a raw initData string (never a panic); odd, the rest describes fields
//! to sign and byte edits to make to the signed string, which must then be refused unless the
//! edits left every decoded field as signed.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use shared_fuzz::invariants::{self, Edit};

#[derive(Debug, Arbitrary)]
struct Signed {
    user_id: i64,
    /// Folded into -100..89_900 s, around the 24 h window.
    age: u32,
    extra: Vec<(String, String)>,
    edits: Vec<FuzzEdit>,
}

#[derive(Debug, Arbitrary)]
enum FuzzEdit {
    Replace(u16, u8),
    Insert(u16, u8),
    Remove(u16),
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode % 2 == 0 {
        invariants::init_data(&String::from_utf8_lossy(rest));
        return;
    }
    let Ok(input) = Signed::arbitrary_take_rest(Unstructured::new(rest)) else {
        return;
    };
    let edits: Vec<Edit> = input
        .edits
        .iter()
        .map(|e| match *e {
            FuzzEdit::Replace(at, byte) => Edit::Replace {
                at: at.into(),
                byte,
            },
            FuzzEdit::Insert(at, byte) => Edit::Insert {
                at: at.into(),
                byte,
            },
            FuzzEdit::Remove(at) => Edit::Remove { at: at.into() },
        })
        .collect();
    let age_secs = i64::from(input.age % 90_000) - 100;
    invariants::init_data_edits(input.user_id, age_secs, &input.extra, &edits);
});
