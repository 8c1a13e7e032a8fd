//! The account every sandbox starts with: the production account's ids (pipeline
//! «Клиенты ООО» 10226282, stage «Заявка» 80953554, manager 12380450, lead fields 712629,
//! 712631, 712633) plus what a real account always has (won/lost stages, PHONE/EMAIL).

use crate::model::{
    CustomField, Entity, FieldEnum, FieldType, LOST_STATUS_ID, Pipeline, Status, User,
    WON_STATUS_ID,
};

/// The admin who "created" the long-lived token and owns the integration: API writes are
/// attributed to this user.
pub const ADMIN_USER_ID: i64 = 12380448;
pub const MANAGER_USER_ID: i64 = 12380450;

pub const MAIN_PIPELINE_ID: i64 = 10226282;
pub const NEW_REQUEST_STATUS_ID: i64 = 80953554;

pub const FIELD_SERIAL: i64 = 712629;
pub const FIELD_MODEL: i64 = 712631;
pub const FIELD_TELEGRAM_ID: i64 = 712633;
pub const FIELD_PHONE: i64 = 712601;
pub const FIELD_EMAIL: i64 = 712603;
pub const FIELD_POSITION: i64 = 712605;

/// Task types: 1 = call ("Связаться"), 2 = meeting ("Встреча").
pub const TASK_TYPES: [(i64, &str); 2] = [(1, "Связаться"), (2, "Встреча")];

pub fn users() -> Vec<User> {
    vec![
        User {
            id: ADMIN_USER_ID,
            name: "Администратор".into(),
            email: "admin@tdrusstankosbyt.ru".into(),
            is_admin: true,
        },
        User {
            id: MANAGER_USER_ID,
            name: "Менеджер по продажам".into(),
            email: "zakaz@tdrusstankosbyt.ru".into(),
            is_admin: false,
        },
    ]
}

fn status(id: i64, name: &str, sort: i64, color: &str, kind: i64) -> Status {
    Status {
        id,
        name: name.into(),
        sort,
        color: color.into(),
        kind,
        is_editable: !(kind == 1 || id == WON_STATUS_ID || id == LOST_STATUS_ID),
    }
}

fn closing_statuses() -> [Status; 2] {
    [
        status(WON_STATUS_ID, "Успешно реализовано", 10000, "#CCFF66", 0),
        status(
            LOST_STATUS_ID,
            "Закрыто и не реализовано",
            11000,
            "#D5D8DB",
            0,
        ),
    ]
}

pub fn pipelines() -> Vec<Pipeline> {
    let mut main = vec![
        status(80953550, "Неразобранное", 10, "#c1c1c1", 1),
        status(NEW_REQUEST_STATUS_ID, "Заявка", 20, "#99ccff", 0),
        status(80953558, "Переговоры", 30, "#ffff99", 0),
        status(80953562, "Счёт выставлен", 40, "#ffcc66", 0),
    ];
    main.extend(closing_statuses());
    let mut service = vec![
        status(80953570, "Заявка на ТО", 10, "#99ccff", 0),
        status(80953574, "ТО запланировано", 20, "#ffff99", 0),
    ];
    service.extend(closing_statuses());
    vec![
        Pipeline {
            id: MAIN_PIPELINE_ID,
            name: "Клиенты ООО".into(),
            sort: 1,
            is_main: true,
            statuses: main,
        },
        Pipeline {
            id: 10226286,
            name: "Сервис и ТО".into(),
            sort: 2,
            is_main: false,
            statuses: service,
        },
    ]
}

fn text_field(id: i64, name: &str, sort: i64, entity: Entity, code: Option<&str>) -> CustomField {
    CustomField {
        id,
        name: name.into(),
        field_type: FieldType::Text,
        code: code.map(Into::into),
        sort,
        entity,
        enums: Vec::new(),
    }
}

fn multitext(id: i64, name: &str, code: &str, sort: i64, enums: &[(i64, &str)]) -> CustomField {
    CustomField {
        id,
        name: name.into(),
        field_type: FieldType::Multitext,
        code: Some(code.into()),
        sort,
        entity: Entity::Contacts,
        enums: enums
            .iter()
            .enumerate()
            .map(|(i, (id, value))| FieldEnum {
                id: *id,
                value: (*value).into(),
                sort: (i as i64 + 1) * 2,
            })
            .collect(),
    }
}

pub fn custom_fields() -> Vec<CustomField> {
    vec![
        text_field(FIELD_SERIAL, "Серийный номер", 501, Entity::Leads, None),
        text_field(FIELD_MODEL, "Модель оборудования", 502, Entity::Leads, None),
        text_field(FIELD_TELEGRAM_ID, "Telegram ID", 503, Entity::Leads, None),
        text_field(
            FIELD_POSITION,
            "Должность",
            2,
            Entity::Contacts,
            Some("POSITION"),
        ),
        multitext(
            FIELD_PHONE,
            "Телефон",
            "PHONE",
            4,
            &[
                (1513001, "WORK"),
                (1513003, "WORKDD"),
                (1513005, "MOB"),
                (1513007, "FAX"),
                (1513009, "HOME"),
                (1513011, "OTHER"),
            ],
        ),
        multitext(
            FIELD_EMAIL,
            "Email",
            "EMAIL",
            6,
            &[(1513013, "WORK"), (1513015, "PRIV"), (1513017, "OTHER")],
        ),
    ]
}
