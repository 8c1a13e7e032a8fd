//! Parked work: leads and amoCRM webhook events that crm-worker gave up on (a retry could not
//! help) wait with their error and hint until an operator fixes the cause and re-drives them.
//!
//! Re-driving sets the item's status from `parked` back to `pending`; the table's stream then
//! shows a record that *became* pending, which the worker (and the event source mapping's
//! filter) take as new work. Re-driving something that is not parked changes nothing.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::finding::Finding;
use crate::ports::StoreError;
pub use crate::ports::{ParkedItem, RedriveOutcome, WorkKind, WorkQueues};

/// Every parked lead, then every parked event, at most `limit` of each.
pub async fn list(queues: &dyn WorkQueues, limit: usize) -> Result<Vec<ParkedItem>, StoreError> {
    let mut items = queues.parked(WorkKind::Lead, limit).await?;
    if queues.has_events() {
        items.extend(queues.parked(WorkKind::Event, limit).await?);
    }
    Ok(items)
}

/// The result of re-driving one item, as a finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redriven {
    pub kind: WorkKind,
    pub id: String,
    #[serde(flatten)]
    pub outcome: RedriveOutcome,
}

impl Redriven {
    pub fn finding(&self) -> Finding {
        let check = format!("{} {}", self.kind.as_str(), self.id);
        match &self.outcome {
            RedriveOutcome::Redriven => Finding::ok(
                check,
                "re-driven: pending again, crm-worker takes it from the stream",
            ),
            RedriveOutcome::NotParked { status } => Finding::ok(
                check,
                format!("not parked (status {status}); nothing changed"),
            ),
            RedriveOutcome::NotFound => Finding::problem(
                check,
                "no such lead or event",
                "Copy the id from `rss-ops parked list` (leads: the ULID the API answered with; \
                 events: `rid:…` or `sha256:…`).",
            ),
        }
    }
}

/// Re-drives one item; its kind comes from the id's shape.
pub async fn redrive_one(
    queues: &dyn WorkQueues,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Redriven, StoreError> {
    let id = id.trim();
    let kind = WorkKind::of_id(id);
    let outcome = if kind == WorkKind::Event && !queues.has_events() {
        RedriveOutcome::NotFound
    } else {
        queues.redrive(kind, id, now).await?
    };
    Ok(Redriven {
        kind,
        id: id.to_string(),
        outcome,
    })
}

/// Re-drives every parked lead and event. The ids are collected first (all pages of the
/// index), then re-driven: an item the worker parks again meanwhile waits for the next run
/// instead of looping here.
pub async fn redrive_all(
    queues: &dyn WorkQueues,
    now: DateTime<Utc>,
) -> Result<Vec<Redriven>, StoreError> {
    let parked = list(queues, usize::MAX).await?;
    let mut done = Vec::with_capacity(parked.len());
    for item in parked {
        let outcome = queues.redrive(item.kind, &item.id, now).await?;
        done.push(Redriven {
            kind: item.kind,
            id: item.id,
            outcome,
        });
    }
    Ok(done)
}

/// Parked items as findings (all "not ok": each waits for an operator).
pub fn findings(items: &[ParkedItem]) -> Vec<Finding> {
    if items.is_empty() {
        return vec![Finding::ok("parked", "nothing is parked")];
    }
    items
        .iter()
        .map(|i| {
            let when = i
                .parked_at
                .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                .unwrap_or_else(|| "?".into());
            let source = i
                .source
                .as_deref()
                .map(|s| format!(" from {s}"))
                .unwrap_or_default();
            Finding {
                check: format!("{} {}", i.kind.as_str(), i.id),
                ok: false,
                detail: format!(
                    "parked {when}{source} after {} attempt(s): {}",
                    i.attempts,
                    i.last_error.as_deref().unwrap_or("no error recorded")
                ),
                fix: Some(format!(
                    "{} Then: rss-ops parked redrive {}",
                    i.hint.as_deref().unwrap_or("Fix the cause."),
                    i.id
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;

    /// Items by (kind, id) → (status, updated_at).
    #[derive(Default)]
    struct Queues {
        items: Mutex<HashMap<(WorkKind, String), String>>,
        events: bool,
    }

    impl Queues {
        fn with(items: &[(WorkKind, &str, &str)], events: bool) -> Self {
            Queues {
                items: Mutex::new(
                    items
                        .iter()
                        .map(|(k, id, s)| ((*k, id.to_string()), s.to_string()))
                        .collect(),
                ),
                events,
            }
        }

        fn status(&self, kind: WorkKind, id: &str) -> Option<String> {
            self.items
                .lock()
                .unwrap()
                .get(&(kind, id.to_string()))
                .cloned()
        }
    }

    #[async_trait]
    impl WorkQueues for Queues {
        fn has_events(&self) -> bool {
            self.events
        }

        async fn parked(
            &self,
            kind: WorkKind,
            limit: usize,
        ) -> Result<Vec<ParkedItem>, StoreError> {
            let mut ids: Vec<String> = self
                .items
                .lock()
                .unwrap()
                .iter()
                .filter(|((k, _), s)| *k == kind && s.as_str() == "parked")
                .map(|((_, id), _)| id.clone())
                .collect();
            ids.sort();
            Ok(ids
                .into_iter()
                .take(limit)
                .map(|id| ParkedItem {
                    kind,
                    id,
                    received_at: None,
                    parked_at: None,
                    attempts: 1,
                    source: None,
                    last_error: Some("amoCRM answered 400".into()),
                    hint: Some("Fix AMOCRM_FIELD_SERIAL.".into()),
                    blocked: false,
                })
                .collect())
        }

        async fn count(
            &self,
            _: WorkKind,
            _: &str,
            _: Option<DateTime<Utc>>,
        ) -> Result<u64, StoreError> {
            unreachable!("not used here")
        }

        async fn redrive(
            &self,
            kind: WorkKind,
            id: &str,
            _: DateTime<Utc>,
        ) -> Result<RedriveOutcome, StoreError> {
            let mut items = self.items.lock().unwrap();
            Ok(match items.get_mut(&(kind, id.to_string())) {
                None => RedriveOutcome::NotFound,
                Some(s) if s == "parked" => {
                    *s = "pending".into();
                    RedriveOutcome::Redriven
                }
                Some(s) => RedriveOutcome::NotParked { status: s.clone() },
            })
        }
    }

    #[tokio::test]
    async fn one_id_is_redriven_once_and_its_kind_comes_from_its_shape() {
        let q = Queues::with(
            &[
                (WorkKind::Lead, "01JLEAD", "parked"),
                (WorkKind::Event, "rid:abc", "parked"),
            ],
            true,
        );
        let now = Utc::now();
        let r = redrive_one(&q, " 01JLEAD ", now).await.unwrap();
        assert_eq!(
            (r.kind, r.outcome.clone()),
            (WorkKind::Lead, RedriveOutcome::Redriven)
        );
        assert!(r.finding().ok);
        let again = redrive_one(&q, "01JLEAD", now).await.unwrap();
        assert_eq!(
            again.outcome,
            RedriveOutcome::NotParked {
                status: "pending".into()
            }
        );
        let event = redrive_one(&q, "rid:abc", now).await.unwrap();
        assert_eq!(
            (event.kind, event.outcome),
            (WorkKind::Event, RedriveOutcome::Redriven)
        );
        let missing = redrive_one(&q, "01JNOPE", now).await.unwrap();
        assert!(!missing.finding().ok);
        assert_eq!(
            q.status(WorkKind::Event, "rid:abc").as_deref(),
            Some("pending")
        );
    }

    #[tokio::test]
    async fn all_redrives_every_parked_lead_and_event_and_nothing_else() {
        let q = Queues::with(
            &[
                (WorkKind::Lead, "A", "parked"),
                (WorkKind::Lead, "B", "delivered"),
                (WorkKind::Lead, "C", "parked"),
                (WorkKind::Event, "rid:1", "parked"),
                (WorkKind::Event, "rid:2", "done"),
            ],
            true,
        );
        let done = redrive_all(&q, Utc::now()).await.unwrap();
        let ids: Vec<&str> = done.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, vec!["A", "C", "rid:1"]);
        assert!(done.iter().all(|r| r.outcome == RedriveOutcome::Redriven));
        assert_eq!(q.status(WorkKind::Lead, "B").as_deref(), Some("delivered"));
        assert!(redrive_all(&q, Utc::now()).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn without_an_inbox_events_are_neither_listed_nor_found() {
        let q = Queues::with(&[(WorkKind::Event, "rid:1", "parked")], false);
        assert!(list(&q, 10).await.unwrap().is_empty());
        let r = redrive_one(&q, "rid:1", Utc::now()).await.unwrap();
        assert_eq!(r.outcome, RedriveOutcome::NotFound);
    }

    #[test]
    fn parked_findings_carry_the_hint_and_the_redrive_command() {
        let item = ParkedItem {
            kind: WorkKind::Lead,
            id: "01JLEAD".into(),
            received_at: None,
            parked_at: None,
            attempts: 2,
            source: Some("site".into()),
            last_error: Some("amoCRM answered 400".into()),
            hint: Some("Fix AMOCRM_FIELD_SERIAL.".into()),
            blocked: false,
        };
        let f = &findings(&[item])[0];
        assert!(!f.ok);
        assert!(
            f.detail
                .contains("from site after 2 attempt(s): amoCRM answered 400")
        );
        assert_eq!(
            f.fix.as_deref(),
            Some("Fix AMOCRM_FIELD_SERIAL. Then: rss-ops parked redrive 01JLEAD")
        );
        assert!(findings(&[])[0].ok);
    }
}
