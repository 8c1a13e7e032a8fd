//! From the form tree to typed events: `{entity}[{action}][{index}][{field}]=…`.

use super::custom_fields::parse_custom_fields;
use super::form::{Node, parse_int, shorten};
use super::model::{
    Account, ContactAction, ContactKind, ContactPayload, Event, LeadAction, LeadPayload,
    NotePayload, SkippedEvent, Tag, Webhook,
};

/// Top-level keys that make a body an amoCRM webhook. Besides leads and contacts (typed), the
/// others become [`Event::Unknown`].
pub const KNOWN_ENTITIES: &[&str] = &[
    "leads",
    "contacts",
    "companies",
    "customers",
    "task",
    "tasks",
    "unsorted",
    "catalogs",
    "message",
    "talk",
    "notes",
];

/// Reads every known entity of the tree; `None` when there is none (not a webhook).
pub(crate) fn read_webhook(root: &Node) -> Option<Webhook> {
    let mut webhook = Webhook {
        account: root.get("account").map(read_account),
        events: Vec::new(),
        skipped: Vec::new(),
    };
    let mut any_entity = false;
    for (entity, node) in root.entries() {
        if !KNOWN_ENTITIES.contains(&entity) {
            continue;
        }
        any_entity = true;
        read_entity(entity, node, &mut webhook);
    }
    any_entity.then_some(webhook)
}

fn read_account(node: &Node) -> Account {
    Account {
        id: node.int("id"),
        subdomain: node.text("subdomain").map(str::to_owned),
        base_url: node
            .get("_links")
            .and_then(|l| l.text("self"))
            .map(str::to_owned),
    }
}

fn read_entity(entity: &str, node: &Node, webhook: &mut Webhook) {
    if !node.has_children() {
        webhook.skipped.push(skipped(
            entity,
            "",
            "",
            "expected `<entity>[<action>][<n>][...]`",
        ));
        return;
    }
    for (action, items) in node.entries() {
        if !items.has_children() {
            webhook.skipped.push(skipped(
                entity,
                action,
                "",
                "expected `[<n>][...]` after the action",
            ));
            continue;
        }
        for (index, item) in items.entries() {
            match read_event(entity, action, item) {
                Ok(event) => webhook.events.push(event),
                Err(reason) => webhook
                    .skipped
                    .push(skipped(entity, action, index, &reason)),
            }
        }
    }
}

fn read_event(entity: &str, action: &str, item: &Node) -> Result<Event, String> {
    let unknown = || Event::Unknown {
        entity: entity.to_owned(),
        action: action.to_owned(),
        fields: item.to_json(),
    };
    if !item.has_children() {
        return match entity {
            "leads" | "contacts" | "companies" => Err("expected fields, got a plain value".into()),
            _ => Ok(unknown()),
        };
    }
    match entity {
        "leads" => match LeadAction::from_name(action) {
            Some(action) => Ok(Event::Lead {
                action,
                lead: read_lead(item)?,
            }),
            None => Ok(unknown()),
        },
        "contacts" | "companies" => match ContactAction::from_name(action) {
            Some(action) => {
                let contact = read_contact(item)?;
                let kind = contact_kind(entity, &contact);
                Ok(Event::Contact {
                    action,
                    kind,
                    contact,
                })
            }
            None => Ok(unknown()),
        },
        _ => Ok(unknown()),
    }
}

fn read_lead(item: &Node) -> Result<LeadPayload, String> {
    let note = item.get("note").map(read_note);
    Ok(LeadPayload {
        id: entity_id(item, note.as_ref())?,
        name: owned(item.text("name")),
        status_id: item.int("status_id"),
        old_status_id: item.int("old_status_id"),
        pipeline_id: item.int("pipeline_id"),
        old_pipeline_id: item.int("old_pipeline_id"),
        price: item.int("price"),
        responsible_user_id: item.int("responsible_user_id"),
        old_responsible_user_id: item.int("old_responsible_user_id"),
        modified_user_id: item.int("modified_user_id"),
        created_user_id: item.int("created_user_id"),
        account_id: item.int("account_id"),
        created_at: item.int("created_at"),
        updated_at: item.int("updated_at"),
        last_modified: item.int("last_modified"),
        date_create: item.int("date_create"),
        tags: read_tags(item.get("tags")),
        custom_fields: parse_custom_fields(item.get("custom_fields")),
        note,
    })
}

fn read_contact(item: &Node) -> Result<ContactPayload, String> {
    let note = item.get("note").map(read_note);
    Ok(ContactPayload {
        id: entity_id(item, note.as_ref())?,
        name: owned(item.text("name")),
        kind: owned(item.text("type")),
        responsible_user_id: item.int("responsible_user_id"),
        modified_user_id: item.int("modified_user_id"),
        created_user_id: item.int("created_user_id"),
        created_at: item.int("created_at"),
        updated_at: item.int("updated_at"),
        last_modified: item.int("last_modified"),
        date_create: item.int("date_create"),
        company_name: owned(item.text("company_name")),
        linked_company_id: item.int("linked_company_id"),
        linked_leads_id: read_linked_ids(item.get("linked_leads_id")),
        tags: read_tags(item.get("tags")),
        custom_fields: parse_custom_fields(item.get("custom_fields")),
        note,
    })
}

/// The entity id: `[id]`, or for note events the note's `element_id`.
fn entity_id(item: &Node, note: Option<&NotePayload>) -> Result<i64, String> {
    if let Some(id) = item.int("id") {
        return Ok(id);
    }
    if let Some(id) = note.and_then(|n| n.element_id) {
        return Ok(id);
    }
    Err(match item.text("id") {
        Some(text) => format!("`id` is not a number: {:?}", shorten(text, 24)),
        None => "`id` is missing".to_owned(),
    })
}

fn contact_kind(entity: &str, contact: &ContactPayload) -> Option<ContactKind> {
    match contact.kind.as_deref().map(str::trim) {
        Some("contact") => Some(ContactKind::Contact),
        Some("company") => Some(ContactKind::Company),
        _ if entity == "companies" => Some(ContactKind::Company),
        _ => match contact.note.as_ref().and_then(|n| n.element_type) {
            Some(1) => Some(ContactKind::Contact),
            Some(3) => Some(ContactKind::Company),
            _ => None,
        },
    }
}

fn read_note(node: &Node) -> NotePayload {
    NotePayload {
        id: node.int("id"),
        note_type: node.int("note_type").or_else(|| node.int("type")),
        text: owned(node.text("text")),
        element_id: node.int("element_id"),
        element_type: node.int("element_type"),
        created_by: node.int("created_by"),
    }
}

fn read_tags(node: Option<&Node>) -> Vec<Tag> {
    let Some(node) = node else { return Vec::new() };
    node.entries()
        .into_iter()
        .map(|(_, tag)| Tag {
            id: tag.int("id"),
            name: owned(tag.text("name")),
        })
        .filter(|tag| tag.id.is_some() || tag.name.is_some())
        .collect()
}

/// `linked_leads_id[<id>][ID]=<id>`: the `ID` value, else the key itself.
fn read_linked_ids(node: Option<&Node>) -> Vec<i64> {
    let Some(node) = node else { return Vec::new() };
    node.entries()
        .into_iter()
        .filter_map(|(key, link)| {
            link.int("ID")
                .or_else(|| link.int("id"))
                .or_else(|| link.scalar().and_then(parse_int))
                .or_else(|| parse_int(key))
        })
        .collect()
}

fn owned(text: Option<&str>) -> Option<String> {
    text.map(str::to_owned)
}

fn skipped(entity: &str, action: &str, index: &str, reason: &str) -> SkippedEvent {
    SkippedEvent {
        entity: entity.to_owned(),
        action: shorten(action, 40),
        index: shorten(index, 40),
        reason: reason.to_owned(),
    }
}
