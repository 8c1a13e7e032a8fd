//! Property tests of the parsers that read untrusted input, on stable and inside `make test`: the
//! properties of the cargo-fuzz targets (`fuzz/`, `make fuzz`), from the same `invariants`
//! module, fed by proptest with arbitrary bytes and with inputs shaped like the real thing
//! (webhook captures with random edits, lead bodies, signed initData, amoCRM error bodies).
//! 256 cases per property keeps the whole file at a few seconds.

mod invariants;

use std::path::PathBuf;

use invariants::{Edit, PLANTED_BEARER, PLANTED_TOKEN};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::{Map, Value, json};
use shared::leads::intake::{Intake, parse_form, parse_json};

const CASES: u32 = 256;

/// `s` with form-urlencoding applied (`+` for spaces, `%XX` for the rest).
fn encode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

// ---------------------------------------------------------------------------------------------
// amoCRM webhooks

/// Bodies built from the keys real webhooks use, with odd indexes and values mixed in; brackets
/// literal or percent-encoded.
fn webhook_body() -> impl Strategy<Value = String> {
    let entity = prop::sample::select(vec![
        "leads",
        "contacts",
        "companies",
        "account",
        "task",
        "unsorted",
        "other",
    ]);
    let action = prop::sample::select(vec![
        "add",
        "update",
        "status",
        "delete",
        "note",
        "responsible",
        "restore",
        "x",
    ]);
    let index = prop::sample::select(vec!["0", "1", "10", "", "abc", "9982719"]);
    let field = prop::sample::select(vec![
        "id",
        "name",
        "status_id",
        "old_status_id",
        "price",
        "type",
        "responsible_user_id",
        "custom_fields][0][id",
        "custom_fields][0][values][0][value",
        "custom_fields][0][values][0][enum",
        "custom_fields][0][values][value",
        "custom_fields][1][values][0",
        "custom_fields][0][code",
        "tags][0][name",
        "tags][0][id",
        "note][0][note][element_id",
        "note][0][note][text",
        "linked_leads_id][77][ID",
        "_links][self",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "",
            "123",
            "-5",
            " 42 ",
            "abc",
            "Иван Петров",
            "1615845600",
            "02.02.1978",
            "2021-03-16 10:00:00",
            "99999999999999999999",
            "contact",
            "company",
        ])
        .prop_map(str::to_owned),
        any::<String>(),
    ];
    let pair = (entity, action, index, field, value, any::<bool>()).prop_map(
        |(entity, action, index, field, value, encoded)| {
            let key = if entity == "account" {
                format!("account[{field}]")
            } else {
                format!("{entity}[{action}][{index}][{field}]")
            };
            let key = if encoded { encode(&key) } else { key };
            format!("{key}={}", encode(&value))
        },
    );
    prop::collection::vec(pair, 0..12).prop_map(|pairs| pairs.join("&"))
}

fn captures() -> Vec<Vec<u8>> {
    let dir = std::env::var_os("AMOCRM_CAPTURES_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/captures/amocrm"
            ))
        });
    let mut bodies: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("amoCRM captures not found at {}: {e}", dir.display()))
        .map(|entry| entry.expect("readable captures dir").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "txt"))
        .map(|path| std::fs::read(&path).expect("readable capture"))
        .collect();
    bodies.sort();
    assert!(
        bodies.len() >= 5,
        "expected the webhook captures in {}",
        dir.display()
    );
    bodies
}

/// A byte edit biased towards the bytes that matter to a form parser.
fn edit() -> impl Strategy<Value = Edit> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"%&=+[]0aAfF \n\r\t".to_vec()),
    ];
    prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(at, byte)| Edit::Replace { at, byte }),
        (any::<usize>(), byte).prop_map(|(at, byte)| Edit::Insert { at, byte }),
        any::<usize>().prop_map(|at| Edit::Remove { at }),
    ]
}

fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits {
        let len = bytes.len();
        match *edit {
            Edit::Replace { at, byte } if len > 0 => bytes[at % len] = byte,
            Edit::Insert { at, byte } => bytes.insert(at % (len + 1), byte),
            Edit::Remove { at } if len > 0 => {
                bytes.remove(at % len);
            }
            _ => {}
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn webhook_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        invariants::webhook(&body);
    }

    #[test]
    fn webhook_shaped_bodies(body in webhook_body()) {
        invariants::webhook(body.as_bytes());
    }
}

#[test]
fn webhook_captures_with_random_edits() {
    let captures = captures();
    let mut runner = TestRunner::new(ProptestConfig::with_cases(CASES));
    let input = (0..captures.len(), prop::collection::vec(edit(), 0..6));
    runner
        .run(&input, |(i, edits)| {
            invariants::webhook(&apply(captures[i].clone(), &edits));
            Ok(())
        })
        .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Lead intake

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        9 => "[А-Яа-яA-Za-z0-9 .,'-]{1,30}",
        1 => any::<String>(),
    ]
}

/// Some(value) most of the time, else the key is left out.
fn optional(value: impl Strategy<Value = Value>) -> impl Strategy<Value = Option<Value>> {
    prop::option::weighted(0.8, value)
}

fn price() -> impl Strategy<Value = Value> {
    prop_oneof![
        12 => "[0-9]{1,3}( [0-9]{3}){0,2}([.,][0-9]{1,2})?( ₽)?".prop_map(Value::from),
        6 => (0..2_000_000_u32).prop_map(Value::from),
        1 => (0.0..1e9_f64).prop_map(Value::from),
        1 => "-{1,3}[0-9]{1,3}([.,][0-9]{0,3})?".prop_map(Value::from),
        1 => any::<String>().prop_map(Value::from),
    ]
}

fn cart_item() -> impl Strategy<Value = Value> {
    let qty = prop_oneof![
        16 => (1..=10_000_i64).prop_map(Value::from),
        1 => (0..12_000_i64).prop_map(Value::from),
        2 => "[0-9]{1,6}".prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
    ];
    (optional(text().prop_map(Value::from)), text(), qty, price()).prop_map(
        |(sku, name, qty, price)| {
            let mut item = json!({"name": name, "qty": qty, "price": price});
            if let Some(sku) = sku {
                item["sku"] = sku;
            }
            item
        },
    )
}

/// `POST /leads` JSON bodies: mostly plausible, every field sometimes wrong or missing.
fn lead_json() -> impl Strategy<Value = Value> {
    let source = prop_oneof![
        19 => prop::sample::select(vec!["site", "bot", "cart", "tma", "SITE", "Tma"]),
        1 => Just("web"),
    ];
    let intent = prop_oneof![
        19 => prop::sample::select(vec!["service", "parts", "other", "Parts"]),
        1 => Just("buy"),
    ];
    let phone = prop_oneof![
        16 => prop::sample::select(vec![
            "+7 912 345-67-89", "8 (912) 345-67-89", "9123456789", "+44 20 7946 0958",
            "+8 912 345 67 89", "+81 3 1234 5678",
        ]).prop_map(str::to_owned),
        1 => prop::sample::select(vec!["12-ab", "+0123456789", "8 912 345"]).prop_map(str::to_owned),
        2 => "[+]?[0-9 ().-]{0,20}",
        1 => any::<String>(),
    ];
    let email = prop_oneof![
        9 => "[a-zA-Z0-9_%+-]{1,10}(\\.[a-zA-Z0-9_%+-]{1,10})?@[a-zA-Zа-я0-9-]{1,10}\\.[a-zа-я]{2,4}",
        1 => any::<String>(),
    ];
    let telegram_id = prop_oneof![
        8 => (1..i64::MAX).prop_map(Value::from),
        1 => any::<i64>().prop_map(Value::from),
        1 => "[0-9]{1,20}".prop_map(Value::from),
    ];
    let equipment = (
        optional(text().prop_map(Value::from)),
        optional(text().prop_map(Value::from)),
    )
        .prop_map(|(model, serial)| json!({"model": model, "serial": serial}));
    let page_url = prop_oneof![
        9 => "[hH][tT][tT][pP][sS]?://[a-z0-9.-]{1,20}(:[0-9]{1,5})?(/[a-z0-9/?=&%-]{0,20})?",
        1 => any::<String>(),
    ];
    let utm_key = || prop_oneof![9 => "[a-z_]{1,12}", 1 => any::<String>()];
    let utm = prop_oneof![
        9 => prop::collection::btree_map(utm_key(), text(), 0..6),
        1 => prop::collection::btree_map(utm_key(), text(), 0..24),
    ];
    let contact = (
        optional(phone.prop_map(Value::from)),
        optional(email.prop_map(Value::from)),
        optional(telegram_id),
    );
    (
        (
            source,
            optional(intent.prop_map(Value::from)),
            optional(text().prop_map(Value::from)),
        ),
        contact,
        (
            optional(
                prop_oneof![9 => "[А-Яа-я .,\n\r\t]{0,200}", 1 => any::<String>()]
                    .prop_map(Value::from),
            ),
            optional(equipment),
            prop::collection::vec(cart_item(), 0..3),
        ),
        (
            optional(page_url.prop_map(Value::from)),
            optional(utm.prop_map(|m| json!(m))),
            optional(text().prop_map(Value::from)),
            prop::bool::weighted(0.05),
        ),
    )
        .prop_map(
            |(
                (source, intent, name),
                (phone, email, telegram_id),
                (message, equipment, items),
                (page_url, utm, utm_source, spam),
            )| {
                let mut body = Map::new();
                body.insert("source".into(), source.into());
                let fields = [
                    ("intent", intent),
                    ("name", name),
                    ("phone", phone),
                    ("email", email),
                    ("telegram_id", telegram_id),
                    ("message", message),
                    ("equipment", equipment),
                    ("page_url", page_url),
                    ("utm", utm),
                    ("utm_source", utm_source),
                    ("website", spam.then(|| json!("http://spam.example"))),
                ];
                for (key, value) in fields {
                    if let Some(value) = value {
                        body.insert(key.into(), value);
                    }
                }
                if !items.is_empty() {
                    body.insert("items".into(), items.into());
                }
                Value::Object(body)
            },
        )
}

/// The same body as an HTML form would send it: `a[b][0]=…`, every value a string.
fn as_form(body: &Value) -> String {
    fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        let key = |k: &str| {
            if prefix.is_empty() {
                k.to_owned()
            } else {
                format!("{prefix}[{k}]")
            }
        };
        match value {
            Value::Object(fields) => {
                for (k, v) in fields {
                    flatten(&key(k), v, out);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter().enumerate() {
                    flatten(&key(&i.to_string()), v, out);
                }
            }
            Value::String(s) => out.push((prefix.to_owned(), s.clone())),
            Value::Null => {}
            other => out.push((prefix.to_owned(), other.to_string())),
        }
    }
    let mut pairs = Vec::new();
    flatten("", body, &mut pairs);
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn intake_any_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
        invariants::intake_json(&body);
        invariants::intake_form(&body);
    }

    #[test]
    fn intake_lead_bodies_as_json_and_as_forms(body in lead_json()) {
        invariants::intake_json(body.to_string().as_bytes());
        invariants::intake_form(as_form(&body).as_bytes());
    }

    #[test]
    fn prices_in_any_spelling(text in prop_oneof![
        "-{0,2}[0-9]{0,4}( [0-9]{3}){0,3}([.,][0-9]{0,3})?( ?₽)?",
        any::<String>(),
    ]) {
        invariants::money(&text);
    }
}

/// The properties about accepted leads are only as good as the share of generated bodies that
/// validate: keep the generator producing real leads.
#[test]
fn generated_lead_bodies_are_often_valid() {
    let mut runner = TestRunner::deterministic();
    let strategy = lead_json();
    let (mut from_json, mut from_form, total) = (0, 0, 300);
    for _ in 0..total {
        let body = strategy.new_tree(&mut runner).unwrap().current();
        from_json += matches!(parse_json(body.to_string().as_bytes()), Ok(Intake::Lead(_))) as u32;
        from_form += matches!(parse_form(as_form(&body).as_bytes()), Ok(Intake::Lead(_))) as u32;
    }
    assert!(
        from_json * 5 >= total,
        "only {from_json}/{total} JSON bodies were leads"
    );
    assert!(
        from_form * 5 >= total,
        "only {from_form}/{total} form bodies were leads"
    );
}

// ---------------------------------------------------------------------------------------------
// Telegram initData

fn init_data_shaped() -> impl Strategy<Value = String> {
    (
        prop_oneof!["[0-9]{0,12}", any::<String>()],
        any::<String>(),
        prop_oneof!["[0-9a-fA-F]{64}", "[0-9a-f ]{0,70}", any::<String>()],
        any::<String>(),
    )
        .prop_map(|(auth_date, user, hash, tail)| {
            format!(
                "auth_date={}&user={}&hash={}{tail}",
                encode(&auth_date),
                encode(&user),
                encode(&hash)
            )
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn init_data_any_text(text in prop_oneof![any::<String>(), init_data_shaped()]) {
        invariants::init_data(&text);
    }

    #[test]
    fn signed_init_data_refuses_every_edit_that_changes_data(
        user_id in any::<i64>(),
        age_secs in -200_i64..90_000,
        extra in prop::collection::vec(
            (
                prop_oneof!["[a-z_]{1,10}", any::<String>()],
                prop_oneof!["[a-z0-9=\n ]{0,10}", any::<String>()],
            ),
            0..4,
        ),
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        invariants::init_data_edits(user_id, age_secs, &extra, &edits);
    }
}

// ---------------------------------------------------------------------------------------------
// amoCRM error bodies

/// Text that sometimes carries a planted token somewhere inside.
fn problem_text() -> impl Strategy<Value = String> {
    let planted = (
        "[ -~]{0,40}",
        prop::sample::select(vec![PLANTED_TOKEN, PLANTED_BEARER]),
        "[ -~]{0,40}",
    )
        .prop_map(|(before, token, after)| format!("{before}{token}{after}"));
    prop_oneof![3 => any::<String>(), 2 => planted]
}

fn problem_body() -> impl Strategy<Value = String> {
    let validation = prop::collection::vec(
        (
            optional(problem_text().prop_map(Value::from)),
            problem_text(),
            problem_text(),
            problem_text(),
        )
            .prop_map(|(request_id, code, path, detail)| {
                json!({"request_id": request_id, "errors": [{"code": code, "path": path, "detail": detail}]})
            }),
        0..3,
    );
    (
        (
            optional(problem_text().prop_map(Value::from)),
            optional(problem_text().prop_map(Value::from)),
            optional(problem_text().prop_map(Value::from)),
            optional(problem_text().prop_map(Value::from)),
        ),
        optional(prop_oneof![
            any::<u64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[0-9]{0,6}".prop_map(Value::from),
        ]),
        optional(validation.prop_map(Value::from)),
    )
        .prop_map(
            |((title, detail, hint, trace_id), retry_after, validation)| {
                let fields = [
                    ("title", title),
                    ("detail", detail),
                    ("hint", hint),
                    ("trace_id", trace_id),
                    ("retry_after", retry_after),
                    ("validation-errors", validation),
                ];
                let body: Map<String, Value> = fields
                    .into_iter()
                    .filter_map(|(k, v)| Some((k.to_owned(), v?)))
                    .collect();
                Value::Object(body).to_string()
            },
        )
}

fn html_page() -> impl Strategy<Value = String> {
    problem_text().prop_map(|title| format!("<html><head><title>{title}</title></head></html>"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn crm_error_bodies(
        status in prop_oneof![
            prop::sample::select(vec![400_u16, 401, 402, 403, 404, 405, 422, 429, 500, 503]),
            any::<u16>(),
        ],
        content_type in prop::option::of(prop::sample::select(vec![
            "application/problem+json", "text/html", "application/json",
        ])),
        retry_after in prop::option::of(prop_oneof!["[0-9]{1,4}", any::<String>()]),
        body in prop_oneof![problem_body(), html_page(), any::<String>()],
    ) {
        invariants::crm_error(status, content_type, retry_after.as_deref(), &body);
    }
}
