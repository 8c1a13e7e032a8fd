//! What a sync run did, step by step: the report kept as `SYNC#last_run`, shown by
//! `GET /health` and returned by the function. Plain data, no port.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::conflict::Conflict;
use crate::ports::common::TokenKind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunOutcome {
    /// Every step finished.
    Complete,
    /// Time ran out (or amoCRM asked us to slow down): the next run resumes.
    Incomplete,
    /// A step failed; the others ran. `error` and `hint` say what to do.
    Failed,
    /// Another run held the lease.
    Skipped,
}

impl RunOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            RunOutcome::Complete => "complete",
            RunOutcome::Incomplete => "incomplete",
            RunOutcome::Failed => "failed",
            RunOutcome::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Token,
    Pull,
    Push,
    Reminders,
    Redrive,
}

/// What a run did (kept as `SYNC#last_run`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub outcome: RunOutcome,
    /// Where the run stopped when it did not finish.
    pub stopped_in: Option<Step>,
    /// Reports written before the token step have none.
    #[serde(default)]
    pub token: TokenStats,
    pub pull: PullStats,
    pub push: PushStats,
    pub reminders: ReminderStats,
    pub redrive: RedriveStats,
    /// The first conflicts of the run (all are logged and counted in `pull`).
    pub conflicts: Vec<Conflict>,
    /// Neither configured nor found in the account: pull, push and reminders did not run.
    #[serde(default)]
    pub fields_missing: bool,
    pub error: Option<String>,
    pub hint: Option<String>,
}

impl RunReport {
    pub(crate) fn new(started_at: DateTime<Utc>) -> Self {
        Self {
            started_at,
            finished_at: started_at,
            outcome: RunOutcome::Complete,
            stopped_in: None,
            token: TokenStats::default(),
            pull: PullStats::default(),
            push: PushStats::default(),
            reminders: ReminderStats::default(),
            redrive: RedriveStats::default(),
            conflicts: Vec::new(),
            fields_missing: false,
            error: None,
            hint: None,
        }
    }
}

/// What the upkeep found and did (part of the run report; never the token itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenStats {
    pub kind: Option<TokenKind>,
    pub expires_at: Option<DateTime<Utc>>,
    /// The OAuth pair in use is a fresh one (refreshed by this run, or by another instance
    /// while it waited).
    pub refreshed: bool,
    /// A due refresh failed for a reason that may pass; the current token still works.
    pub postponed: Option<String>,
    /// The expiry notice this run mailed: days ahead, 0 when the token has expired.
    pub notice_days: Option<i64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullStats {
    pub requests: u64,
    pub deals: u64,
    #[serde(flatten)]
    pub applied: ApplyStats,
    pub cursor: Option<i64>,
    /// Crowded seconds read a second time because a deal read there changed meanwhile.
    pub seconds_reread: u64,
    /// Seconds holding a full page of deals: each read through in id order from its first
    /// page, so that page's deals count twice in `deals`.
    #[serde(default)]
    pub crowded_seconds: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushStats {
    /// Machines whose values amoCRM accepted.
    pub written: u64,
    /// `PATCH /api/v4/leads` requests, accepted or not.
    pub requests: u64,
    /// Answers that made the batch shrink: 504 or no answer in time.
    pub too_heavy: u64,
    /// Machines whose values amoCRM refused (not retried until they change).
    pub refused: u64,
    /// The batch size the run ended with.
    pub batch_size: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReminderStats {
    /// Machines read from the due-date index.
    pub checked: u64,
    pub marked_due: u64,
    pub marked_overdue: u64,
    pub tasks_created: u64,
    /// Tasks an interrupted run had created, found and recorded.
    pub tasks_found: u64,
    /// Machines whose deal amoCRM no longer has (no task possible).
    pub deals_missing: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedriveStats {
    pub leads: u64,
    pub leads_delivered: u64,
    pub leads_parked: u64,
    pub events: u64,
    pub events_done: u64,
    pub events_parked: u64,
    /// Parked because amoCRM refused our address, and set back to pending this run.
    #[serde(default)]
    pub unblocked: u64,
    /// Still parked that way: amoCRM refused our address again.
    #[serde(default)]
    pub still_blocked: u64,
    /// Leads in amoCRM whose sales copy SES had not taken: tried again, and sent.
    #[serde(default)]
    pub mails: u64,
    #[serde(default)]
    pub mails_sent: u64,
}

/// What applying readings did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApplyStats {
    /// Machines whose values or base changed.
    pub applied: u64,
    /// Readings equal to what we knew (our own writes coming back among them).
    pub unchanged: u64,
    /// Readings older than what we already confirmed, or for revoked machines.
    pub ignored: u64,
    /// Deals in the window that carry maintenance values but have no equipment.
    pub unmatched: u64,
    /// Deals of pipelines the sync does not cover, or without maintenance values.
    pub skipped: u64,
    pub conflicts: u64,
}

impl ApplyStats {
    pub fn add(&mut self, o: &ApplyStats) {
        self.applied += o.applied;
        self.unchanged += o.unchanged;
        self.ignored += o.ignored;
        self.unmatched += o.unmatched;
        self.skipped += o.skipped;
        self.conflicts += o.conflicts;
    }
}
