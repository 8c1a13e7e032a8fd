//! The entities the sandbox keeps, in the shape that is convenient to store. Rendering to
//! amoCRM's JSON lives next to each API module; webhook rendering in `webhooks`.

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub is_admin: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub id: i64,
    pub name: String,
    pub sort: i64,
    pub color: String,
    /// 0 = regular stage, 1 = "unsorted" incoming stage (amoCRM's `type`).
    pub kind: i64,
    pub is_editable: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pipeline {
    pub id: i64,
    pub name: String,
    pub sort: i64,
    pub is_main: bool,
    pub statuses: Vec<Status>,
}

impl Pipeline {
    pub fn has_status(&self, status_id: i64) -> bool {
        self.statuses.iter().any(|s| s.id == status_id)
    }

    /// Where a lead lands when only the pipeline is given: the first regular stage.
    pub fn first_working_status(&self) -> i64 {
        self.statuses
            .iter()
            .find(|s| s.kind == 0 && !is_closed_status(s.id))
            .map(|s| s.id)
            .unwrap_or(WON_STATUS_ID)
    }
}

/// Won and lost: the same ids in every pipeline.
pub const WON_STATUS_ID: i64 = 142;
pub const LOST_STATUS_ID: i64 = 143;

pub fn is_closed_status(status_id: i64) -> bool {
    status_id == WON_STATUS_ID || status_id == LOST_STATUS_ID
}

/// Which entity a custom field belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Entity {
    Leads,
    Contacts,
}

/// amoCRM custom field types the sandbox understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    Text,
    Textarea,
    Numeric,
    Price,
    Checkbox,
    Url,
    Date,
    DateTime,
    Birthday,
    Select,
    Multiselect,
    Radiobutton,
    Multitext,
}

impl FieldType {
    /// Types a client may create through `POST /api/v4/{entity}/custom_fields`.
    pub fn parse_creatable(s: &str) -> Option<FieldType> {
        Some(match s {
            "text" => FieldType::Text,
            "textarea" => FieldType::Textarea,
            "numeric" => FieldType::Numeric,
            "price" => FieldType::Price,
            "checkbox" => FieldType::Checkbox,
            "url" => FieldType::Url,
            "date" => FieldType::Date,
            "date_time" => FieldType::DateTime,
            "birthday" => FieldType::Birthday,
            "select" => FieldType::Select,
            "multiselect" => FieldType::Multiselect,
            "radiobutton" => FieldType::Radiobutton,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Textarea => "textarea",
            FieldType::Numeric => "numeric",
            FieldType::Price => "price",
            FieldType::Checkbox => "checkbox",
            FieldType::Url => "url",
            FieldType::Date => "date",
            FieldType::DateTime => "date_time",
            FieldType::Birthday => "birthday",
            FieldType::Select => "select",
            FieldType::Multiselect => "multiselect",
            FieldType::Radiobutton => "radiobutton",
            FieldType::Multitext => "multitext",
        }
    }

    pub fn has_enums(self) -> bool {
        matches!(
            self,
            FieldType::Select
                | FieldType::Multiselect
                | FieldType::Radiobutton
                | FieldType::Multitext
        )
    }

    pub fn is_date(self) -> bool {
        matches!(
            self,
            FieldType::Date | FieldType::DateTime | FieldType::Birthday
        )
    }

    /// Only these may carry several values.
    pub fn is_multi(self) -> bool {
        matches!(self, FieldType::Multiselect | FieldType::Multitext)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FieldEnum {
    pub id: i64,
    pub value: String,
    pub sort: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CustomField {
    pub id: i64,
    pub name: String,
    pub field_type: FieldType,
    pub code: Option<String>,
    pub sort: i64,
    pub entity: Entity,
    pub enums: Vec<FieldEnum>,
}

/// One filled custom field of an entity. `values` are kept exactly as `GET` renders them
/// (`{"value":"…"}`, `{"value":"x","enum_id":1,"enum_code":null}`, `{"value":1711918800}`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldValues {
    pub field_id: i64,
    pub values: Vec<Value>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Tag {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Lead {
    pub id: i64,
    pub name: String,
    pub price: i64,
    pub responsible_user_id: i64,
    pub status_id: i64,
    pub pipeline_id: i64,
    pub loss_reason_id: Option<i64>,
    pub created_by: i64,
    pub updated_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub closed_at: Option<i64>,
    pub custom_fields: Vec<FieldValues>,
    pub tag_ids: Vec<i64>,
    /// Linked contacts; the first is the main one.
    pub contact_ids: Vec<i64>,
    pub company_ids: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Contact {
    pub id: i64,
    pub name: String,
    pub first_name: String,
    pub last_name: String,
    pub responsible_user_id: i64,
    pub created_by: i64,
    pub updated_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub custom_fields: Vec<FieldValues>,
    pub tag_ids: Vec<i64>,
    pub company_ids: Vec<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Company {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Note {
    pub id: i64,
    pub entity_id: i64,
    pub note_type: String,
    pub params: Value,
    pub created_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub responsible_user_id: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Task {
    pub id: i64,
    pub text: String,
    pub complete_till: i64,
    pub task_type_id: i64,
    pub entity_type: String,
    pub entity_id: i64,
    pub responsible_user_id: i64,
    pub duration: i64,
    pub is_completed: bool,
    pub created_by: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A webhook subscription registered through `POST /api/v4/webhooks`.
#[derive(Debug, Clone, Serialize)]
pub struct Subscription {
    pub id: i64,
    pub destination: String,
    pub settings: Vec<String>,
    pub sort: i64,
    pub created_at: i64,
    pub updated_at: i64,
}
