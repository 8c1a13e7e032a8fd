//! The lead as the domain sees it: validated, normalised, independent of transport.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where the request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Site,
    Bot,
    Cart,
    Tma,
}

impl Source {
    pub const ALL: [Source; 4] = [Source::Site, Source::Bot, Source::Cart, Source::Tma];

    pub fn as_str(self) -> &'static str {
        match self {
            Source::Site => "site",
            Source::Bot => "bot",
            Source::Cart => "cart",
            Source::Tma => "tma",
        }
    }

    /// How sales managers read it in amoCRM and in the mail.
    pub fn title_ru(self) -> &'static str {
        match self {
            Source::Site => "сайт",
            Source::Bot => "Telegram-бот",
            Source::Cart => "корзина",
            Source::Tma => "Telegram Mini App",
        }
    }
}

/// What the customer wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Intent {
    Service,
    Parts,
    #[default]
    Other,
}

impl Intent {
    pub fn as_str(self) -> &'static str {
        match self {
            Intent::Service => "service",
            Intent::Parts => "parts",
            Intent::Other => "other",
        }
    }

    pub fn title_ru(self) -> &'static str {
        match self {
            Intent::Service => "сервис",
            Intent::Parts => "запчасти",
            Intent::Other => "обращение",
        }
    }
}

/// The machine a request is about, as the customer named it (a passport machine is
/// `passport::Equipment`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MachineRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<String>,
}

/// One cart line. Money is kept in kopecks so totals are exact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CartItem {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sku: Option<String>,
    pub name: String,
    pub qty: u32,
    pub price_kopecks: i64,
}

impl CartItem {
    pub fn line_total_kopecks(&self) -> i64 {
        self.price_kopecks.saturating_mul(i64::from(self.qty))
    }
}

/// A validated request, as the customer sent it (normalised).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeadRequest {
    pub source: Source,
    pub intent: Intent,
    pub name: String,
    /// E.164, e.g. `+79123456789`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telegram_id: Option<i64>,
    /// The Telegram ID came from the public body and nobody vouched for it (neither Telegram's
    /// signed initData nor the bot's key): the managers check it before the deal is won,
    /// since a won deal registers its machine in that ID's passport.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub telegram_unverified: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equipment: Option<MachineRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub items: Vec<CartItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_url: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub utm: BTreeMap<String, String>,
}

impl LeadRequest {
    /// A site customer's service request with a phone only (the unit tests' fixture).
    #[cfg(test)]
    pub(crate) fn site_service(name: &str) -> Self {
        LeadRequest {
            source: Source::Site,
            intent: Intent::Service,
            name: name.into(),
            phone: Some("+79123456789".into()),
            email: None,
            telegram_id: None,
            telegram_unverified: false,
            message: None,
            equipment: None,
            items: vec![],
            page_url: None,
            utm: Default::default(),
        }
    }

    /// Cart total in kopecks.
    pub fn total_kopecks(&self) -> i64 {
        self.items.iter().map(CartItem::line_total_kopecks).sum()
    }

    /// Cart total in whole roubles, rounded half up (amoCRM's `price` is an integer).
    pub fn total_roubles(&self) -> i64 {
        (self.total_kopecks() + 50) / 100
    }
}

/// An accepted lead: our id (a ULID) plus the request and when it arrived.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lead {
    pub id: String,
    pub received_at: DateTime<Utc>,
    pub request: LeadRequest,
}

/// Where a lead is on its way to amoCRM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LeadStatus {
    /// Stored, waiting for (or in) delivery.
    Pending,
    /// In amoCRM, noted and mailed.
    Delivered,
    /// In amoCRM and noted; the sales copy waits for SES (the sync retries it), so a failing
    /// mail never holds the next leads back.
    Mailing,
    /// Delivery failed for a reason a retry cannot fix; an operator must act.
    Parked,
}

impl LeadStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LeadStatus::Pending => "pending",
            LeadStatus::Delivered => "delivered",
            LeadStatus::Mailing => "mailing",
            LeadStatus::Parked => "parked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(LeadStatus::Pending),
            "delivered" => Some(LeadStatus::Delivered),
            "mailing" => Some(LeadStatus::Mailing),
            "parked" => Some(LeadStatus::Parked),
            _ => None,
        }
    }
}

/// Progress of the delivery steps, persisted after each one so a retry resumes, never repeats.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Delivery {
    pub amo_contact_id: Option<i64>,
    pub amo_lead_id: Option<i64>,
    /// Set just before the amoCRM create call: a retry that finds it set looks the lead up first.
    pub create_started_at: Option<DateTime<Utc>>,
    pub amo_note_id: Option<i64>,
    pub note_started_at: Option<DateTime<Utc>>,
    pub mailed_at: Option<DateTime<Utc>>,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub hint: Option<String>,
    /// Parked because amoCRM refuses our address (whitelist or ban, `CrmErrorKind::Blocked`):
    /// the sync re-drives it by itself once amoCRM answers again.
    #[serde(default)]
    pub blocked: bool,
    /// Attempts at the sales copy since amoCRM had the lead.
    #[serde(default)]
    pub mail_attempts: u32,
}

/// A lead as stored: the lead, its status and delivery progress.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredLead {
    pub lead: Lead,
    pub status: LeadStatus,
    pub delivery: Delivery,
    pub updated_at: DateTime<Utc>,
}
