//! The typed form of an account webhook: the account it came from and one event per entity
//! changed. Numbers arrive as strings and may be missing or empty: every field but the entity
//! id is optional.

use serde::{Deserialize, Serialize};

use super::custom_fields::{CustomField, custom_field_accessors};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Webhook {
    /// `account[...]`; 2016-era hooks carry only the subdomain.
    pub account: Option<Account>,
    pub events: Vec<Event>,
    /// Entries of a known entity that could not be read (e.g. no numeric id): log them,
    /// the other events of the same body are still good.
    pub skipped: Vec<SkippedEvent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: Option<i64>,
    pub subdomain: Option<String>,
    /// `account[_links][self]`, e.g. `https://example.amocrm.ru`.
    pub base_url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Event {
    Lead {
        action: LeadAction,
        lead: LeadPayload,
    },
    /// Contacts and companies both arrive under `contacts[...]`, told apart by `type`.
    Contact {
        action: ContactAction,
        /// `None` when the hook did not say (e.g. a bare delete).
        kind: Option<ContactKind>,
        contact: ContactPayload,
    },
    /// Any other entity or action (tasks, unsorted, talks, …) with its raw tree.
    Unknown {
        entity: String,
        action: String,
        fields: serde_json::Value,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadAction {
    Add,
    Update,
    Status,
    Responsible,
    Delete,
    Restore,
    Note,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactAction {
    Add,
    Update,
    Delete,
    Restore,
    Responsible,
    Note,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    Contact,
    Company,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LeadPayload {
    pub id: i64,
    pub name: Option<String>,
    pub status_id: Option<i64>,
    /// On `status` and often on `update` events.
    pub old_status_id: Option<i64>,
    pub pipeline_id: Option<i64>,
    pub old_pipeline_id: Option<i64>,
    pub price: Option<i64>,
    pub responsible_user_id: Option<i64>,
    /// On `responsible` events.
    pub old_responsible_user_id: Option<i64>,
    /// `0` for changes made by robots/API.
    pub modified_user_id: Option<i64>,
    pub created_user_id: Option<i64>,
    pub account_id: Option<i64>,
    /// Unix seconds (newer hooks).
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    /// Unix seconds (all hooks).
    pub last_modified: Option<i64>,
    pub date_create: Option<i64>,
    pub tags: Vec<Tag>,
    pub custom_fields: Vec<CustomField>,
    /// The note of a `note` event (its `element_id` is the lead id).
    pub note: Option<NotePayload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ContactPayload {
    pub id: i64,
    pub name: Option<String>,
    /// `type` as sent: `contact` or `company`.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub responsible_user_id: Option<i64>,
    pub modified_user_id: Option<i64>,
    pub created_user_id: Option<i64>,
    pub created_at: Option<i64>,
    pub updated_at: Option<i64>,
    pub last_modified: Option<i64>,
    pub date_create: Option<i64>,
    /// For a contact: its company's name and id.
    pub company_name: Option<String>,
    pub linked_company_id: Option<i64>,
    /// `linked_leads_id[<id>][ID]=<id>`: the map keys are the lead ids.
    pub linked_leads_id: Vec<i64>,
    pub tags: Vec<Tag>,
    pub custom_fields: Vec<CustomField>,
    pub note: Option<NotePayload>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tag {
    pub id: Option<i64>,
    pub name: Option<String>,
}

/// `…[note][0][note][…]`: a note added to a lead or contact.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NotePayload {
    pub id: Option<i64>,
    pub note_type: Option<i64>,
    pub text: Option<String>,
    /// The lead/contact the note belongs to.
    pub element_id: Option<i64>,
    /// 1 contact, 2 lead, 3 company.
    pub element_type: Option<i64>,
    pub created_by: Option<i64>,
}

/// An entry of a known entity that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedEvent {
    pub entity: String,
    pub action: String,
    pub index: String,
    pub reason: String,
}

custom_field_accessors!(LeadPayload);
custom_field_accessors!(ContactPayload);

impl LeadAction {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "add" => Self::Add,
            "update" => Self::Update,
            "status" => Self::Status,
            "responsible" => Self::Responsible,
            "delete" => Self::Delete,
            "restore" => Self::Restore,
            "note" => Self::Note,
            _ => return None,
        })
    }
}

impl ContactAction {
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "add" => Self::Add,
            "update" => Self::Update,
            "delete" => Self::Delete,
            "restore" => Self::Restore,
            "responsible" => Self::Responsible,
            "note" => Self::Note,
            _ => return None,
        })
    }
}

impl Webhook {
    /// The lead events, for consumers that only care about leads.
    pub fn lead_events(&self) -> impl Iterator<Item = (LeadAction, &LeadPayload)> {
        self.events.iter().filter_map(|e| match e {
            Event::Lead { action, lead } => Some((*action, lead)),
            _ => None,
        })
    }
}
