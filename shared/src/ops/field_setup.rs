//! Lead custom fields the integration needs but amoCRM does not have until `setup` creates
//! them: the maintenance sync's «Дата следующего ТО» (date) and «Статус ТО» (select with one
//! option per maintenance status).
//!
//! A field is found by its code (set when we create it), else by name and type, so a second
//! run — or a field an administrator made by hand — creates nothing. Missing select options are
//! reported, not added: an administrator decides about fields managers already use.

use async_trait::async_trait;
use serde::Serialize;

use crate::amocrm::AmoClient;
use crate::amocrm::CrmError;
use crate::amocrm::admin::{LeadField, NewLeadField};
use crate::passport::MaintenanceStatus;

/// One lead field to have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// The configuration variable that takes its id.
    pub var: &'static str,
    pub name: String,
    pub code: &'static str,
    pub field_type: &'static str,
    /// Option labels of a select.
    pub options: Vec<String>,
}

/// A field as found or created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnsuredField {
    pub var: &'static str,
    pub field: LeadField,
    pub created: bool,
}

/// A configuration value `setup` hands the operator (for samconfig.toml).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Setting {
    pub var: String,
    pub value: String,
    /// What it is and whether it was created now.
    pub note: String,
}

/// Creates what is missing and returns the settings that name it.
#[async_trait]
pub trait FieldProvisioner: Send + Sync {
    async fn ensure(&self) -> Result<Vec<Setting>, CrmError>;
}

/// The maintenance fields of deals.
pub fn maintenance_specs() -> Vec<FieldSpec> {
    vec![
        FieldSpec {
            var: "AMOCRM_FIELD_NEXT_MAINTENANCE",
            name: "Дата следующего ТО".into(),
            code: "RSS_NEXT_MAINTENANCE",
            field_type: "date",
            options: Vec::new(),
        },
        FieldSpec {
            var: "AMOCRM_FIELD_MAINTENANCE_STATUS",
            name: "Статус ТО".into(),
            code: "RSS_MAINTENANCE_STATUS",
            field_type: "select",
            options: MaintenanceStatus::ALL
                .iter()
                .map(|s| s.title_ru().to_string())
                .collect(),
        },
    ]
}

/// Finds each spec's field, creates the missing ones in one request.
pub async fn ensure_lead_fields(
    amo: &AmoClient,
    specs: &[FieldSpec],
) -> Result<Vec<EnsuredField>, CrmError> {
    let existing = amo.lead_fields().await?;
    let mut found: Vec<Option<LeadField>> = Vec::with_capacity(specs.len());
    for spec in specs {
        found.push(find(&existing, spec)?);
    }
    let missing: Vec<NewLeadField> = specs
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(spec, _)| NewLeadField {
            name: spec.name.clone(),
            field_type: spec.field_type.to_string(),
            code: Some(spec.code.to_string()),
            enums: spec.options.clone(),
        })
        .collect();
    let mut created = amo.create_lead_fields(&missing).await?.into_iter();
    specs
        .iter()
        .zip(found)
        .map(|(spec, field)| {
            let (field, was_created) = match field {
                Some(f) => (f, false),
                None => (
                    created.next().ok_or_else(|| {
                        CrmError::unexpected_response(
                            "POST /api/v4/leads/custom_fields",
                            "fewer fields than requested",
                        )
                    })?,
                    true,
                ),
            };
            check_options(spec, &field)?;
            Ok(EnsuredField {
                var: spec.var,
                field,
                created: was_created,
            })
        })
        .collect()
}

fn find(existing: &[LeadField], spec: &FieldSpec) -> Result<Option<LeadField>, CrmError> {
    let by_code = existing.iter().find(|f| {
        f.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(spec.code))
    });
    let by_name = || {
        existing
            .iter()
            .find(|f| f.name.trim().to_lowercase() == spec.name.to_lowercase())
    };
    let Some(field) = by_code.or_else(by_name) else {
        return Ok(None);
    };
    if field.field_type != spec.field_type {
        return Err(CrmError::permanent(
            format!(
                "lead field {} «{}» is of type {}, {} needs a {} field",
                field.id, field.name, field.field_type, spec.var, spec.field_type
            ),
            format!(
                "Rename that field in amoCRM (Settings → Leads → fields) or change its type, \
                 then run setup again: it creates «{}» as a {} field.",
                spec.name, spec.field_type
            ),
        ));
    }
    Ok(Some(field.clone()))
}

fn check_options(spec: &FieldSpec, field: &LeadField) -> Result<(), CrmError> {
    let missing: Vec<&str> = spec
        .options
        .iter()
        .filter(|o| option_id(field, o).is_none())
        .map(String::as_str)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    Err(CrmError::permanent(
        format!(
            "lead field {} «{}» lacks the options {}",
            field.id,
            field.name,
            missing
                .iter()
                .map(|o| format!("«{o}»"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "Add these options to the field in amoCRM (Settings → Leads → fields → «{}»), \
             spelled exactly so, then run setup again.",
            field.name
        ),
    ))
}

fn option_id(field: &LeadField, label: &str) -> Option<i64> {
    field
        .enums
        .iter()
        .find(|(_, v)| v.trim().to_lowercase() == label.to_lowercase())
        .map(|(id, _)| *id)
}

/// `setup`'s field step for the maintenance sync: the settings it prints are the sync's
/// configuration variables. (The sync's own start-up check is
/// `amocrm::maintenance_fields::ensure_maintenance_fields`, which finds the fields by name.)
pub struct MaintenanceFieldSetup<'a> {
    pub amo: &'a AmoClient,
}

#[async_trait]
impl FieldProvisioner for MaintenanceFieldSetup<'_> {
    async fn ensure(&self) -> Result<Vec<Setting>, CrmError> {
        let specs = maintenance_specs();
        let ensured = ensure_lead_fields(self.amo, &specs).await?;
        let mut settings: Vec<Setting> = ensured
            .iter()
            .map(|e| Setting {
                var: e.var.to_string(),
                value: e.field.id.to_string(),
                note: format!(
                    "«{}» ({}, {})",
                    e.field.name,
                    e.field.field_type,
                    if e.created {
                        "created now"
                    } else {
                        "already there"
                    }
                ),
            })
            .collect();
        if let Some(status) = ensured
            .iter()
            .find(|e| e.var == "AMOCRM_FIELD_MAINTENANCE_STATUS")
        {
            let spec = MaintenanceStatus::ALL
                .iter()
                .filter_map(|s| {
                    option_id(&status.field, s.title_ru()).map(|id| format!("{}={id}", s.as_str()))
                })
                .collect::<Vec<_>>()
                .join(",");
            settings.push(Setting {
                var: "AMOCRM_MAINTENANCE_STATUS_ENUMS".into(),
                value: spec,
                note: "«Статус ТО» option per maintenance status".into(),
            });
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(id: i64, name: &str, code: Option<&str>, t: &str, enums: &[&str]) -> LeadField {
        LeadField {
            id,
            name: name.into(),
            code: code.map(str::to_string),
            field_type: t.into(),
            enums: enums
                .iter()
                .enumerate()
                .map(|(i, v)| (id * 10 + i as i64, v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_field_is_found_by_code_then_by_name_and_its_type_must_fit() {
        let specs = maintenance_specs();
        let by_code = [field(
            5,
            "Renamed",
            Some("RSS_NEXT_MAINTENANCE"),
            "date",
            &[],
        )];
        assert_eq!(find(&by_code, &specs[0]).unwrap().unwrap().id, 5);
        let by_name = [field(6, "дата следующего то", None, "date", &[])];
        assert_eq!(find(&by_name, &specs[0]).unwrap().unwrap().id, 6);
        assert_eq!(find(&[], &specs[0]).unwrap(), None);
        let wrong_type = [field(7, "Дата следующего ТО", None, "text", &[])];
        let e = find(&wrong_type, &specs[0]).unwrap_err();
        assert!(
            e.message.contains("AMOCRM_FIELD_NEXT_MAINTENANCE"),
            "{}",
            e.message
        );
    }

    #[test]
    fn a_select_must_offer_every_status() {
        let specs = maintenance_specs();
        let labels: Vec<&str> = MaintenanceStatus::ALL
            .iter()
            .map(|s| s.title_ru())
            .collect();
        let full = field(8, "Статус ТО", None, "select", &labels);
        check_options(&specs[1], &full).unwrap();
        let partial = field(9, "Статус ТО", None, "select", &labels[..4]);
        let e = check_options(&specs[1], &partial).unwrap_err();
        assert!(
            e.message.contains("«ТО выполнено», «ТО просрочено»"),
            "{}",
            e.message
        );
    }
}
