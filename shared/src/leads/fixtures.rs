//! The one sample lead the unit tests start from: a cart order with every field set. A test
//! changes the fields it is about and says so.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{CartItem, Intent, Lead, LeadRequest, MachineRef, Source};

/// A cart order as the site sends it (before validation lower-cases the e-mail).
pub fn cart_request() -> LeadRequest {
    LeadRequest {
        source: Source::Cart,
        intent: Intent::Parts,
        name: "Иван Петров".into(),
        phone: Some("+79123456789".into()),
        email: Some("Ivan@example.ru".into()),
        telegram_id: Some(123456789),
        telegram_unverified: false,
        message: Some("Нужны запчасти.\nСрочно.".into()),
        equipment: Some(MachineRef {
            model: Some("16К20".into()),
            serial: Some("SN-001".into()),
        }),
        items: vec![
            CartItem {
                sku: Some("FR-16".into()),
                name: "Фреза 16 мм".into(),
                qty: 2,
                price_kopecks: 150_050,
            },
            CartItem {
                sku: None,
                name: "Ремень".into(),
                qty: 1,
                price_kopecks: 10,
            },
        ],
        page_url: Some("https://td-rss.ru/cart".into()),
        utm: BTreeMap::from([
            ("campaign".to_string(), "spring".to_string()),
            ("source".to_string(), "yandex".to_string()),
        ]),
    }
}

/// `request` as accepted: stored under `id` at `received_at`, its e-mail lower-cased.
pub fn accepted(id: &str, received_at: DateTime<Utc>, mut request: LeadRequest) -> Lead {
    request.email = request.email.map(|e| e.to_lowercase());
    Lead {
        id: id.into(),
        received_at,
        request,
    }
}
