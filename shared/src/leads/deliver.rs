//! Delivering an accepted lead: contact, amoCRM lead, note, sales mail, each step recorded so
//! a retry resumes where the last attempt stopped and never creates a second amoCRM lead.
//!
//! One runner at a time: the stream worker and the sync's re-drive may meet on the same lead,
//! so an attempt first claims the lead's hold (renewed by every save, released by the last) and
//! every save is conditional on still holding it. A runner that finds the lead held waits for a
//! short hold to lapse (its holder may have died) or leaves it to the holder.

use std::sync::Arc;

use chrono::Utc;
use tracing::{error, info, warn};

use super::render;
use super::{Delivery, LeadStatus, StoredLead};
use crate::metrics::{self, Metric};
use crate::ports::{
    Claim, ContactLink, Crm, CrmErrorKind, CrmFailure, Held, LeadStore, Notifier, NotifyError,
    StoreError,
};

/// A runner finding the lead held waits for the hold to lapse when it ends within this (a
/// holder that died); a longer hold belongs to a runner at work.
const MAX_WAIT_FOR_HOLD: std::time::Duration = std::time::Duration::from_secs(5);
/// Attempts at the sales copy before it is parked for an operator (the first by the worker,
/// the rest by the sync's runs: with the hourly schedule, SES failing for five hours).
pub const MAX_MAIL_ATTEMPTS: u32 = 6;

/// Where the sales copy goes and how it links back to amoCRM.
#[derive(Debug, Clone)]
pub struct MailSettings {
    pub sales_mailbox: String,
    pub amo_base_url: String,
}

pub struct Deliverer<'a> {
    pub store: &'a dyn LeadStore,
    pub crm: &'a dyn Crm,
    pub notifier: &'a dyn Notifier,
    pub mail: &'a MailSettings,
    /// How long a runner's hold lasts past its last save (longer than any one step).
    pub hold: chrono::Duration,
}

/// What a delivery needs, owned: held by those that deliver over and over (crm-worker, the
/// sync's re-drive), each lending a `Deliverer` per run.
#[derive(Clone)]
pub struct LeadDelivery {
    pub store: Arc<dyn LeadStore>,
    pub crm: Arc<dyn Crm>,
    pub notifier: Arc<dyn Notifier>,
    pub mail: MailSettings,
    pub hold: chrono::Duration,
}

impl LeadDelivery {
    pub fn deliverer(&self) -> Deliverer<'_> {
        Deliverer {
            store: self.store.as_ref(),
            crm: self.crm.as_ref(),
            notifier: self.notifier.as_ref(),
            mail: &self.mail,
            hold: self.hold,
        }
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered {
        amo_lead_id: i64,
    },
    /// Nothing to do: already delivered or parked, or no such lead.
    Skipped,
    /// A retry can help: the stream should deliver this record again.
    Retry {
        reason: String,
    },
    /// A retry cannot help: kept with the error and a hint for an operator.
    Parked {
        error: String,
        hint: String,
    },
    /// Another runner is delivering it: a retry finds it done.
    Busy,
    /// amoCRM refuses our address (a ban, the IP whitelist): the lead stays pending, marked
    /// blocked, and the sync delivers it once amoCRM answers again. The record needs no retry.
    Waiting {
        error: String,
        hint: String,
    },
}

/// A lead refused with 403 this many times although amoCRM answered in between is parked for
/// an operator: the refusal is about this lead (the token user's rights), not our address.
pub const MAX_BLOCKED_ATTEMPTS: u32 = 5;

/// Why a step failed, as the delivery loop needs to know it.
enum StepError {
    Transient {
        error: String,
        hint: String,
    },
    Permanent {
        error: String,
        hint: String,
    },
    /// amoCRM refuses our address: the lead waits, and the sync delivers it once amoCRM
    /// answers again.
    Blocked {
        error: String,
        hint: String,
    },
    /// Our hold lapsed and another runner took the lead: it carries on, we stop.
    Lost,
}

impl From<CrmFailure> for StepError {
    fn from(e: CrmFailure) -> Self {
        let retryable = e.is_retryable();
        let (error, hint) = (e.message, e.hint);
        if retryable {
            StepError::Transient { error, hint }
        } else if e.kind == CrmErrorKind::Blocked {
            StepError::Blocked { error, hint }
        } else {
            StepError::Permanent { error, hint }
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        if matches!(e, StoreError::Held(_)) {
            return StepError::Lost;
        }
        let hint = "DynamoDB failed; the stream retries the record".to_string();
        StepError::Transient {
            error: e.to_string(),
            hint,
        }
    }
}

impl From<NotifyError> for StepError {
    fn from(e: NotifyError) -> Self {
        if e.is_transient() {
            StepError::Transient {
                error: e.to_string(),
                hint: "SES is unavailable; retried".into(),
            }
        } else {
            StepError::Permanent {
                error: e.to_string(),
                hint: "SES rejected the mail: check that MAIL_FROM is a verified SES identity \
                       and, in the SES sandbox, that SALES_MAILBOX is verified too"
                    .into(),
            }
        }
    }
}

impl Deliverer<'_> {
    /// Runs the remaining steps for `lead_id`.
    pub async fn deliver(&self, lead_id: &str) -> Outcome {
        let runner = ulid::Ulid::generate().to_string();
        match self.claim(lead_id, &runner).await {
            Ok(Claim::Claimed) => {}
            Ok(Claim::NotPending) => return Outcome::Skipped,
            Ok(Claim::HeldUntil(until)) => {
                info!(lead_id, held_until = %until, "another runner is delivering this lead");
                return Outcome::Busy;
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
        }
        let outcome = self.deliver_held(lead_id, &runner).await;
        if matches!(outcome, Outcome::Skipped) {
            // Nothing was run (gone or not pending after all): let the hold go at once.
            self.release(lead_id, &runner).await;
        }
        outcome
    }

    /// Claims the lead. While another runner holds it, and its hold ends within
    /// `MAX_WAIT_FOR_HOLD`, asks again every 100 ms: the holder finishing (or its hold lapsing,
    /// when it died) ends the wait.
    async fn claim(&self, lead_id: &str, runner: &str) -> Result<Claim, StoreError> {
        let give_up = tokio::time::Instant::now() + MAX_WAIT_FOR_HOLD;
        loop {
            let now = Utc::now();
            let claim = self
                .store
                .claim_delivery(lead_id, runner, now + self.hold, now)
                .await?;
            let Claim::HeldUntil(until) = claim else {
                return Ok(claim);
            };
            let lapses_in = (until - now).to_std().unwrap_or_default();
            if lapses_in > MAX_WAIT_FOR_HOLD || tokio::time::Instant::now() >= give_up {
                return Ok(claim);
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Best effort: a hold that is not released lapses by itself.
    async fn release(&self, lead_id: &str, runner: &str) {
        if let Ok(Some(stored)) = self.store.get(lead_id).await {
            let _ = self
                .store
                .save_delivery(
                    lead_id,
                    stored.status,
                    &stored.delivery,
                    Some(self.held(runner, true)),
                )
                .await;
        }
    }

    /// An attempt's last save, which releases the hold; if it fails, the stream retries.
    async fn last_save(
        &self,
        lead_id: &str,
        runner: &str,
        status: LeadStatus,
        delivery: &Delivery,
    ) -> Result<(), Outcome> {
        self.store
            .save_delivery(lead_id, status, delivery, Some(self.held(runner, true)))
            .await
            .map_err(|e| Outcome::Retry {
                reason: e.to_string(),
            })
    }

    fn held<'r>(&self, runner: &'r str, release: bool) -> Held<'r> {
        Held {
            runner,
            until: Utc::now() + self.hold,
            release,
        }
    }

    async fn deliver_held(&self, lead_id: &str, runner: &str) -> Outcome {
        let stored = match self.store.get(lead_id).await {
            Ok(Some(stored)) => stored,
            Ok(None) => {
                warn!(
                    lead_id,
                    "stream record for a lead that is not stored; skipped"
                );
                return Outcome::Skipped;
            }
            Err(e) => {
                return Outcome::Retry {
                    reason: e.to_string(),
                };
            }
        };
        if !matches!(stored.status, LeadStatus::Pending | LeadStatus::Mailing) {
            return Outcome::Skipped;
        }
        let mut delivery = stored.delivery.clone();
        delivery.attempts += 1;
        match self.run_steps(&stored, &mut delivery, runner).await {
            Err(StepError::Lost) => {
                warn!(lead_id, "another runner took the lead over; it carries on");
                Outcome::Busy
            }
            Ok(amo_lead_id) => {
                delivery.last_error = None;
                delivery.hint = None;
                delivery.blocked = false;
                // amoCRM has the lead: the sales copy is a step of its own, and a failing SES
                // never holds this lead, or the ones behind it, back.
                let status = self.mail(&stored, &mut delivery, amo_lead_id).await;
                if let Err(retry) = self.last_save(lead_id, runner, status, &delivery).await {
                    return retry;
                }
                if status == LeadStatus::Parked {
                    return Outcome::Parked {
                        error: delivery.last_error.clone().unwrap_or_default(),
                        hint: delivery.hint.clone().unwrap_or_default(),
                    };
                }
                info!(
                    lead_id,
                    amo_lead_id,
                    attempts = delivery.attempts,
                    "lead delivered"
                );
                metrics::count(Metric::LeadsDelivered);
                Outcome::Delivered { amo_lead_id }
            }
            Err(StepError::Transient { error: err, hint }) => {
                warn!(lead_id, error = %err, hint = %hint, "delivery failed, will retry");
                metrics::count(Metric::LeadsRetried);
                delivery.last_error = Some(err.clone());
                delivery.hint = Some(hint);
                // Best effort: the retry does not depend on this write.
                let _ = self
                    .store
                    .save_delivery(
                        lead_id,
                        LeadStatus::Pending,
                        &delivery,
                        Some(self.held(runner, true)),
                    )
                    .await;
                Outcome::Retry { reason: err }
            }
            Err(StepError::Blocked { error: err, hint })
                if delivery.attempts <= MAX_BLOCKED_ATTEMPTS =>
            {
                // One incident, one alert (the call recorder's); the lead just waits.
                warn!(lead_id, error = %err, "amoCRM refuses our address; the lead waits pending");
                delivery.last_error = Some(err.clone());
                delivery.hint = Some(hint.clone());
                delivery.blocked = true;
                match self
                    .last_save(lead_id, runner, LeadStatus::Pending, &delivery)
                    .await
                {
                    Ok(()) => Outcome::Waiting { error: err, hint },
                    Err(retry) => retry,
                }
            }
            Err(failure @ (StepError::Permanent { .. } | StepError::Blocked { .. })) => {
                let (err, hint, blocked) = match failure {
                    StepError::Blocked { error, hint } => (error, hint, true),
                    StepError::Permanent { error, hint } | StepError::Transient { error, hint } => {
                        (error, hint, false)
                    }
                    StepError::Lost => unreachable!("matched above"),
                };
                error!(lead_id, alert = true, blocked, error = %err, hint = %hint, "lead parked");
                metrics::count(Metric::LeadsParked);
                delivery.last_error = Some(err.clone());
                delivery.hint = Some(hint.clone());
                delivery.blocked = blocked;
                match self
                    .last_save(lead_id, runner, LeadStatus::Parked, &delivery)
                    .await
                {
                    Ok(()) => Outcome::Parked { error: err, hint },
                    Err(retry) => retry,
                }
            }
        }
    }

    async fn run_steps(
        &self,
        stored: &StoredLead,
        d: &mut Delivery,
        runner: &str,
    ) -> Result<i64, StepError> {
        let lead = &stored.lead;
        let amo_lead_id = match d.amo_lead_id {
            Some(id) => id,
            None => self.create_crm_lead(stored, d, runner).await?,
        };
        if d.amo_note_id.is_none() {
            let existing = match d.note_started_at {
                Some(_) => {
                    self.crm
                        .find_note(amo_lead_id, &render::note_marker(lead))
                        .await?
                }
                None => None,
            };
            let note_id = match existing {
                Some(id) => id,
                None => {
                    d.note_started_at = Some(Utc::now());
                    self.save(stored, d, runner).await?;
                    self.crm
                        .add_note(amo_lead_id, &render::note_text(lead))
                        .await?
                }
            };
            d.amo_note_id = Some(note_id);
            self.save(stored, d, runner).await?;
        }
        Ok(amo_lead_id)
    }

    /// The sales copy, once amoCRM has the lead: `Delivered` once SES took it, `Mailing` while
    /// SES fails (the sync's re-drive tries again), `Parked` with the hint once it keeps
    /// failing or SES refuses it for good.
    async fn mail(&self, stored: &StoredLead, d: &mut Delivery, amo_lead_id: i64) -> LeadStatus {
        if d.mailed_at.is_some() {
            return LeadStatus::Delivered;
        }
        let lead = &stored.lead;
        let mail = render::sales_mail(
            lead,
            Some(amo_lead_id),
            &self.mail.amo_base_url,
            &self.mail.sales_mailbox,
        );
        d.mail_attempts += 1;
        match self.notifier.send(&mail).await {
            Ok(()) => {
                d.mailed_at = Some(Utc::now());
                LeadStatus::Delivered
            }
            Err(e) => {
                let permanent = !e.is_transient();
                let keeps_failing = d.mail_attempts >= MAX_MAIL_ATTEMPTS;
                let (err, hint) = match StepError::from(e) {
                    StepError::Transient { error, hint } | StepError::Permanent { error, hint } => {
                        (error, hint)
                    }
                    StepError::Blocked { error, hint } => (error, hint),
                    StepError::Lost => unreachable!("a mail error is not a lost hold"),
                };
                d.last_error = Some(format!("the sales copy was not sent: {err}"));
                if permanent || keeps_failing {
                    error!(lead_id = %lead.id, alert = true, attempts = d.mail_attempts, error = %err, "lead in amoCRM, sales copy parked");
                    metrics::count(Metric::LeadsParked);
                    d.hint = Some(format!(
                        "{hint}. The lead is in amoCRM (id {amo_lead_id}); only the copy to the \
                         sales mailbox is missing. Fix SES, then re-drive it: it sends only the mail."
                    ));
                    LeadStatus::Parked
                } else {
                    warn!(lead_id = %lead.id, attempts = d.mail_attempts, error = %err, "sales copy not sent; the sync retries it");
                    d.hint = Some(format!(
                        "{hint}. The lead is in amoCRM; the sync sends the copy again on its \
                         next runs ({MAX_MAIL_ATTEMPTS} attempts in all)."
                    ));
                    LeadStatus::Mailing
                }
            }
        }
    }

    /// Steps 1–2: find or create the contact, then the lead, recording the intent first so a
    /// crash between amoCRM's answer and our write is healed by looking the lead up.
    async fn create_crm_lead(
        &self,
        stored: &StoredLead,
        d: &mut Delivery,
        runner: &str,
    ) -> Result<i64, StepError> {
        let lead = &stored.lead;
        if d.create_started_at.is_some()
            && let Some(started) = d.create_started_at
            && let Some(found) = self.crm.find_lead_for(lead, started).await?
        {
            info!(lead_id = %lead.id, amo_lead_id = found.lead_id, "found the amoCRM lead of an earlier attempt");
            d.amo_lead_id = Some(found.lead_id);
            d.amo_contact_id = found.contact_id.or(d.amo_contact_id);
            self.save(stored, d, runner).await?;
            return Ok(found.lead_id);
        }
        if d.amo_contact_id.is_none() {
            let req = &lead.request;
            for query in [req.phone.as_deref(), req.email.as_deref()]
                .into_iter()
                .flatten()
            {
                if let Some(id) = self.crm.find_contact(query).await? {
                    d.amo_contact_id = Some(id);
                    break;
                }
            }
        }
        let link = d
            .amo_contact_id
            .map_or(ContactLink::CreateNew, ContactLink::Existing);
        d.create_started_at = Some(Utc::now());
        self.save(stored, d, runner).await?;
        let created = self.crm.create_lead(lead, link).await?;
        d.amo_lead_id = Some(created.lead_id);
        d.amo_contact_id = created.contact_id.or(d.amo_contact_id);
        self.save(stored, d, runner).await?;
        Ok(created.lead_id)
    }

    async fn save(&self, stored: &StoredLead, d: &Delivery, runner: &str) -> Result<(), StepError> {
        self.store
            .save_delivery(
                &stored.lead.id,
                LeadStatus::Pending,
                d,
                Some(self.held(runner, false)),
            )
            .await
            .map_err(StepError::from)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use async_trait::async_trait;

    use super::*;
    use crate::amocrm::testkit::{CannedServer, client_for};

    use crate::ports::MailMessage;
    use crate::store::MemoryLeadStore;

    /// SES answering with `error` (or taking the mail when `None`); counts the sends.
    struct Ses {
        error: Option<NotifyError>,
        sent: Mutex<u32>,
    }

    #[async_trait]
    impl Notifier for Ses {
        async fn send(&self, _: &MailMessage) -> Result<(), NotifyError> {
            *self.sent.lock().unwrap() += 1;
            match &self.error {
                Some(NotifyError::Unavailable(m)) => Err(NotifyError::Unavailable(m.clone())),
                Some(NotifyError::Rejected(m)) => Err(NotifyError::Rejected(m.clone())),
                None => Ok(()),
            }
        }
    }

    /// A lead already in amoCRM with its note: only the sales copy is left.
    async fn in_amocrm(store: &MemoryLeadStore, mail_attempts: u32) -> String {
        let id = "01JMAILMAILMAILMAILMAILMAIL";
        let d = Delivery {
            amo_lead_id: Some(31_000_001),
            amo_note_id: Some(9_001),
            mail_attempts,
            ..Delivery::default()
        };
        store.with_lead(id, LeadStatus::Mailing, &d).await;
        id.to_string()
    }

    async fn deliver_with(ses: &Ses, mail_attempts: u32) -> (Outcome, StoredLead) {
        let server = CannedServer::start(Vec::new()).await;
        let crm = client_for(&server, "tok").0;
        let store = MemoryLeadStore::default();
        let id = in_amocrm(&store, mail_attempts).await;
        let mail = MailSettings {
            sales_mailbox: "zakaz@tdrusstankosbyt.ru".into(),
            amo_base_url: server.base_url.clone(),
        };
        let outcome = Deliverer {
            store: &store,
            crm: &crm,
            notifier: ses,
            mail: &mail,
            hold: chrono::Duration::seconds(5),
        }
        .deliver(&id)
        .await;
        assert!(server.requests().is_empty(), "amoCRM is not asked again");
        (outcome, store.get(&id).await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn a_failing_ses_leaves_the_lead_delivered_to_amocrm_and_the_copy_waiting() {
        let ses = Ses {
            error: Some(NotifyError::Unavailable("Throttling".into())),
            sent: Mutex::new(0),
        };
        let (outcome, after) = deliver_with(&ses, 0).await;
        assert_eq!(
            outcome,
            Outcome::Delivered {
                amo_lead_id: 31_000_001
            }
        );
        assert_eq!(after.status, LeadStatus::Mailing);
        assert_eq!(after.delivery.mail_attempts, 1);
        assert!(after.delivery.mailed_at.is_none());
    }

    #[tokio::test]
    async fn a_copy_that_keeps_failing_or_is_refused_is_parked_with_its_hint() {
        let down = Ses {
            error: Some(NotifyError::Unavailable("Throttling".into())),
            sent: Mutex::new(0),
        };
        let (outcome, after) = deliver_with(&down, MAX_MAIL_ATTEMPTS - 1).await;
        assert!(matches!(outcome, Outcome::Parked { .. }), "{outcome:?}");
        assert_eq!(after.status, LeadStatus::Parked);
        let hint = after.delivery.hint.unwrap();
        assert!(
            hint.contains("only the copy to the sales mailbox is missing"),
            "{hint}"
        );

        let refused = Ses {
            error: Some(NotifyError::Rejected(
                "Email address is not verified".into(),
            )),
            sent: Mutex::new(0),
        };
        let (outcome, after) = deliver_with(&refused, 0).await;
        assert!(matches!(outcome, Outcome::Parked { .. }), "{outcome:?}");
        assert!(after.delivery.hint.unwrap().contains("MAIL_FROM"));
    }

    #[tokio::test]
    async fn once_ses_takes_it_the_lead_is_delivered_and_not_mailed_again() {
        let ses = Ses {
            error: None,
            sent: Mutex::new(0),
        };
        let (outcome, after) = deliver_with(&ses, 2).await;
        assert_eq!(
            outcome,
            Outcome::Delivered {
                amo_lead_id: 31_000_001
            }
        );
        assert_eq!(after.status, LeadStatus::Delivered);
        assert!(after.delivery.mailed_at.is_some());
        assert_eq!(*ses.sent.lock().unwrap(), 1);
    }

    /// A new lead delivered against amoCRM answering 403 to everything, after `attempts`
    /// earlier attempts.
    async fn refused_with(attempts: u32) -> (Outcome, StoredLead) {
        let forbidden = r#"{"title":"Forbidden","status":403}"#;
        let server = CannedServer::start(
            (0..4)
                .map(|_| crate::amocrm::testkit::Canned::json(403, forbidden))
                .collect(),
        )
        .await;
        let crm = client_for(&server, "tok").0;
        let store = MemoryLeadStore::default();
        let id = "01JBLOCKBLOCKBLOCKBLOCKBLOC";
        let d = Delivery {
            attempts,
            ..Delivery::default()
        };
        store.with_lead(id, LeadStatus::Pending, &d).await;
        let ses = Ses {
            error: None,
            sent: Mutex::new(0),
        };
        let mail = MailSettings {
            sales_mailbox: "zakaz@tdrusstankosbyt.ru".into(),
            amo_base_url: server.base_url.clone(),
        };
        let outcome = Deliverer {
            store: &store,
            crm: &crm,
            notifier: &ses,
            mail: &mail,
            hold: chrono::Duration::seconds(5),
        }
        .deliver(id)
        .await;
        (outcome, store.get(id).await.unwrap().unwrap())
    }

    #[tokio::test]
    async fn a_lead_refused_with_403_waits_pending_marked_blocked_instead_of_being_parked() {
        let (outcome, after) = refused_with(0).await;
        assert!(matches!(outcome, Outcome::Waiting { .. }), "{outcome:?}");
        assert_eq!(after.status, LeadStatus::Pending);
        assert!(after.delivery.blocked);
        assert!(after.delivery.hint.is_some());
        assert_eq!(after.delivery.attempts, 1);
    }

    #[tokio::test]
    async fn a_lead_refused_again_and_again_while_amocrm_answers_is_parked_for_an_operator() {
        let (outcome, after) = refused_with(MAX_BLOCKED_ATTEMPTS).await;
        assert!(matches!(outcome, Outcome::Parked { .. }), "{outcome:?}");
        assert_eq!(after.status, LeadStatus::Parked);
        assert!(after.delivery.blocked);
    }
}
