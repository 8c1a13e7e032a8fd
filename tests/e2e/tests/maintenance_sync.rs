//! The maintenance sync end to end against moto and the amoCRM sandbox: values changed on
//! either side reach the other, conflicts go to the later change, our own writes coming back
//! are no change, an interrupted run resumes without loss or double push, 10 000 changes go
//! in full batches without a 429, reminders come once per due date, overdue machines are
//! overdue on both sides, and stale pending work is re-driven.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Days, NaiveDate, Utc};
use e2e::*;
use local_stack::LocalStack;
use serde_json::{Value, json};
use shared::leads::LeadStatus;
use shared::maintenance::local::{complete_maintenance, set_maintenance};
use shared::maintenance::{Budget, MaintenanceSync, RunOutcome, Step, StepEnd};
use shared::passport::{Equipment, EquipmentState, Maintenance, MaintenanceStatus as S, SyncMarks};
use shared::ports::{LeadStore, Page, PassportStore, RegisterOutcome, StoreError, SyncStateStore};
use shared::store::DynamoLeadStore;

const PIPELINE: i64 = 10226282;
const WON: i64 = 142;
const MANAGER: i64 = 12380450;

fn today(stack: &LocalStack) -> NaiveDate {
    stack.config.sync.zone.today(Utc::now())
}

fn days_from_today(stack: &LocalStack, days: i64) -> NaiveDate {
    let t = today(stack);
    if days >= 0 {
        t.checked_add_days(Days::new(days as u64)).unwrap()
    } else {
        t.checked_sub_days(Days::new(days.unsigned_abs())).unwrap()
    }
}

/// A token of its own for test set-up, so set-up never eats the stack's rate limit.
fn setup_token(stack: &LocalStack) -> String {
    stack
        .sandbox
        .state
        .new_long_lived_token(chrono_now() + 86_400)
}

/// Creates won deals in the sandbox (250 per request); returns their ids in order.
async fn won_deals(stack: &LocalStack, deals: &[(i64, String)]) -> Vec<i64> {
    let token = setup_token(stack);
    let pacer = shared::amocrm::Pacer::new(5);
    let mut ids = Vec::new();
    for chunk in deals.chunks(250) {
        pacer.wait().await;
        let body: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, (tg, serial))| local_stack::won_deal(&stack.config.amo, i, *tg, serial))
            .collect();
        let resp = http()
            .post(format!("{}/api/v4/leads", stack.sandbox.url))
            .bearer_auth(&token)
            .json(&body)
            .send()
            .await
            .unwrap();
        let (status, answer) = read(resp).await;
        assert_eq!(status, 200, "{answer}");
        ids.extend(
            answer["_embedded"]["leads"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l["id"].as_i64().unwrap()),
        );
    }
    ids
}

/// Equipment as registration writes it (its values wait to be pushed).
fn machine(amo_lead_id: i64, telegram_id: i64, serial: &str, m: Maintenance) -> Equipment {
    let purchased = Utc::now() - chrono::Duration::days(300);
    Equipment {
        owner_telegram_id: telegram_id,
        amo_contact_id: None,
        serial: serial.into(),
        model: Some("16К20".into()),
        purchased_at: purchased,
        amo_lead_id,
        maintenance: m,
        state: EquipmentState::Active,
        updated_at: purchased,
        sync: SyncMarks {
            local_changed_at: Some(purchased),
            ..SyncMarks::default()
        },
    }
}

fn values(status: S, next_due: NaiveDate) -> Maintenance {
    Maintenance { status, next_due }
}

/// One won deal with its machine in the passport; returns the deal id.
async fn sold(stack: &LocalStack, telegram_id: i64, serial: &str, m: Maintenance) -> i64 {
    let id = won_deals(stack, &[(telegram_id, serial.to_string())]).await[0];
    let outcome = stack
        .sync
        .passport
        .register(&machine(id, telegram_id, serial, m))
        .await
        .unwrap();
    assert_eq!(outcome, RegisterOutcome::Registered);
    id
}

async fn stored(stack: &LocalStack, telegram_id: i64, serial: &str) -> Equipment {
    stack
        .sync
        .passport
        .get(telegram_id, serial)
        .await
        .unwrap()
        .expect("equipment in the passport")
}

/// The maintenance values amoCRM shows on a deal.
fn amo_values(stack: &LocalStack, amo_lead_id: i64) -> (Option<S>, Option<NaiveDate>) {
    let lead = stack.sandbox.state.lead(amo_lead_id).expect("deal");
    let ids = stack.config.sync.field_ids().unwrap();
    let field = |id: i64| {
        lead["custom_fields_values"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["field_id"] == id)
            .map(|f| f["values"][0].clone())
    };
    let status = field(ids.status)
        .and_then(|v| v["enum_id"].as_i64())
        .map(|e| ids.status_enums.status(e).expect("a known option"));
    let date = field(ids.next_maintenance)
        .and_then(|v| v["value"].as_i64())
        .and_then(|ts| stack.config.sync.zone.date_of(ts));
    (status, date)
}

/// A manager edits the maintenance fields in amoCRM.
fn manager_sets(stack: &LocalStack, amo_lead_id: i64, status: Option<S>, due: Option<NaiveDate>) {
    let ids = stack.config.sync.field_ids().unwrap();
    let mut fields = Vec::new();
    if let Some(s) = status {
        fields.push(
            json!({"field_id": ids.status, "values": [{"enum_id": ids.status_enums.enum_id(s)}]}),
        );
    }
    if let Some(d) = due {
        let midnight = stack.config.sync.zone.midnight(d).to_rfc3339();
        fields.push(json!({"field_id": ids.next_maintenance, "values": [{"value": midnight}]}));
    }
    stack
        .sandbox
        .state
        .update_lead_as_manager(amo_lead_id, json!({ "custom_fields_values": fields }))
        .unwrap();
}

/// `PATCH /api/v4/leads` requests the sandbox took (429s left out): (all, 504s).
fn patches(stack: &LocalStack) -> (usize, usize) {
    let reqs = stack.sandbox.state.requests();
    let patch = reqs
        .iter()
        // A 429 is amoCRM refusing to look at the request (the client waits and resends it):
        // not a write, so not counted.
        .filter(|r| r.method == "PATCH" && r.path == "/api/v4/leads" && r.status != 429);
    let all: Vec<_> = patch.collect();
    let failed = all.iter().filter(|r| r.status == 504).count();
    (all.len(), failed)
}

fn answered(stack: &LocalStack, status: u16) -> usize {
    stack
        .sandbox
        .state
        .requests()
        .iter()
        .filter(|r| r.status == status)
        .count()
}

fn plenty() -> Budget {
    Budget::from_fn(|| Duration::from_secs(600))
}

#[tokio::test]
async fn changes_on_each_side_reach_the_other() {
    let stack = stack().await;
    let due = days_from_today(&stack, 200);
    let amo_id = sold(&stack, 4242, "SN-1", values(S::Ok, due)).await;

    // Registration's dates go to amoCRM.
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert_eq!(amo_values(&stack, amo_id), (Some(S::Ok), Some(due)));
    assert!(!stored(&stack, 4242, "SN-1").await.needs_push());

    // The manager schedules the visit in amoCRM (no webhook here: the pull brings it).
    let visit = days_from_today(&stack, 190);
    manager_sets(&stack, amo_id, Some(S::Scheduled), Some(visit));
    let (patches_before, _) = patches(&stack);
    let report = stack.sync_once().await;
    assert_eq!(report.pull.applied.applied, 1, "{report:?}");
    let e = stored(&stack, 4242, "SN-1").await;
    assert_eq!(e.maintenance, values(S::Scheduled, visit));
    assert_eq!(patches(&stack).0, patches_before, "nothing to write back");

    // The engineer records the maintenance as done: status and next date reach the deal.
    let done_on = today(&stack);
    let policy = stack.sync.settings.policy.clone();
    let e = complete_maintenance(
        stack.sync.passport.as_ref(),
        &policy,
        4242,
        "SN-1",
        done_on,
        Utc::now(),
    )
    .await
    .unwrap();
    assert_eq!(e.maintenance.status, S::Done);
    assert!(e.maintenance.next_due > days_from_today(&stack, 300));
    stack.sync_once().await;
    assert_eq!(
        amo_values(&stack, amo_id),
        (Some(S::Done), Some(e.maintenance.next_due))
    );

    // The TMA shows what amoCRM shows.
    let (status, body) =
        get_passport(&stack, &format!("tma {}", init_data(&stack, 4242, 10))).await;
    assert_eq!(status, 200);
    assert_eq!(body["equipment"][0]["maintenance"]["status"], "done");
}

#[tokio::test]
async fn a_service_request_in_the_tma_makes_the_machine_due_on_both_sides() {
    let stack = stack().await;
    let due = days_from_today(&stack, 200);
    let amo_id = sold(&stack, 4242, "SN-T", values(S::Ok, due)).await;
    stack.sync_once().await;
    let resp = http()
        .post(format!("{}/passport/service-requests", stack.api_url))
        .header(
            "authorization",
            format!("tma {}", init_data(&stack, 4242, 10)),
        )
        .header("content-type", "application/json")
        .body(json!({"serial": "SN-T", "message": "Пора на ТО"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    assert_eq!(
        stored(&stack, 4242, "SN-T").await.maintenance.status,
        S::Due
    );
    stack.sync_once().await;
    assert_eq!(amo_values(&stack, amo_id), (Some(S::Due), Some(due)));
}

#[tokio::test]
async fn a_patch_without_an_answer_in_time_is_sent_again_in_smaller_batches() {
    let stack = stack_with(|o| {
        o.config_overrides
            .push(("AMOCRM_TIMEOUT_MS".into(), "1000".into()))
    })
    .await;
    let due = days_from_today(&stack, 200);
    let sold = many_sold(&stack, 300, due).await;
    // amoCRM applies the first batch but answers only after the client gave up.
    inject(
        &stack,
        json!({"kind": "timeout", "delay_ms": 2500, "applied": true, "path": "/api/v4/leads"}),
    )
    .await;
    let now = Utc::now();
    let mut report = MaintenanceSync::new_report(now);
    let end = stack
        .sync
        .step(Step::Push, now, &plenty(), &mut report)
        .await;
    assert_eq!(end.unwrap(), StepEnd::Done);
    assert_eq!(report.push.too_heavy, 1, "{:?}", report.push);
    assert_eq!(report.push.written, 300);
    // 250 timed out; then 125 + 125 + 50 (grown back) — resending applied values is harmless.
    assert!(report.push.requests <= 5, "{:?}", report.push);
    for (id, tg, serial) in &sold {
        assert_eq!(amo_values(&stack, *id), (Some(S::Ok), Some(due)));
        assert!(!stored(&stack, *tg, serial).await.needs_push());
    }
}

#[tokio::test]
async fn a_webhook_applies_amocrm_values_at_once_and_the_pull_agrees() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let due = days_from_today(&stack, 200);
    let amo_id = sold(&stack, 4242, "SN-2", values(S::Ok, due)).await;
    stack.sync_once().await;
    stack.deliver_pending().await.unwrap();

    let visit = days_from_today(&stack, 150);
    manager_sets(&stack, amo_id, Some(S::InProgress), Some(visit));
    let e = eventually(
        &stack,
        "the webhook applied the manager's values",
        || async {
            let e = stored(&stack, 4242, "SN-2").await;
            (e.maintenance.status == S::InProgress).then_some(e)
        },
    )
    .await;
    assert_eq!(e.maintenance.next_due, visit);

    // The pull reads the same deal and finds nothing new; nothing goes back.
    let (patches_before, _) = patches(&stack);
    let report = stack.sync_once().await;
    assert_eq!(report.pull.applied.applied, 0, "{report:?}");
    assert_eq!(stored(&stack, 4242, "SN-2").await, e);
    assert_eq!(patches(&stack).0, patches_before);
}

#[tokio::test]
async fn when_both_sides_changed_the_later_change_wins_and_the_conflict_is_reported() {
    let stack = stack().await;
    let due = days_from_today(&stack, 200);
    let amo_later = sold(&stack, 4242, "SN-A", values(S::Ok, due)).await;
    let ours_later = sold(&stack, 4242, "SN-B", values(S::Ok, due)).await;
    stack.sync_once().await;

    // SN-A: we changed it two minutes ago, the manager just now → amoCRM wins.
    let store = stack.sync.passport.as_ref();
    let earlier = Utc::now() - chrono::Duration::seconds(120);
    set_maintenance(store, 4242, "SN-A", values(S::Done, due), earlier)
        .await
        .unwrap();
    manager_sets(&stack, amo_later, Some(S::Scheduled), None);
    // SN-B: the manager changed it now, our change is stamped later → ours wins.
    manager_sets(&stack, ours_later, Some(S::Scheduled), None);
    let later = Utc::now() + chrono::Duration::seconds(120);
    set_maintenance(store, 4242, "SN-B", values(S::InProgress, due), later)
        .await
        .unwrap();

    let report = stack.sync_once().await;
    assert_eq!(report.pull.applied.conflicts, 2, "{report:?}");
    let conflict = |lead: i64| {
        report
            .conflicts
            .iter()
            .find(|c| c.amo_lead_id == lead)
            .unwrap_or_else(|| panic!("no conflict for {lead}: {report:?}"))
    };
    let a = conflict(amo_later);
    assert_eq!((a.ours.as_str(), a.amo.as_str()), ("done", "scheduled"));
    assert_eq!(a.winner, shared::maintenance::conflict::Side::Amo);
    let b = conflict(ours_later);
    assert_eq!(
        (b.ours.as_str(), b.amo.as_str()),
        ("in_progress", "scheduled")
    );
    assert_eq!(b.winner, shared::maintenance::conflict::Side::Ours);

    assert_eq!(
        stored(&stack, 4242, "SN-A").await.maintenance.status,
        S::Scheduled
    );
    assert_eq!(amo_values(&stack, amo_later).0, Some(S::Scheduled));
    assert_eq!(
        stored(&stack, 4242, "SN-B").await.maintenance.status,
        S::InProgress
    );
    assert_eq!(
        amo_values(&stack, ours_later).0,
        Some(S::InProgress),
        "pushed in the same run"
    );
}

#[tokio::test]
async fn our_own_values_coming_back_are_not_a_change() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let due = days_from_today(&stack, 200);
    let amo_id = sold(&stack, 4242, "SN-E", values(S::Ok, due)).await;
    stack.sync_once().await;
    let pushed = stored(&stack, 4242, "SN-E").await;

    // Our PATCH made amoCRM send update webhooks with our values. Before they are processed
    // the engineer changes the machine again.
    let deliveries = stack
        .sandbox
        .state
        .wait_for_deliveries(1, Duration::from_secs(5))
        .await;
    assert!(!deliveries.is_empty(), "amoCRM sent the update webhook");
    let newer = values(S::Scheduled, days_from_today(&stack, 100));
    set_maintenance(
        stack.sync.passport.as_ref(),
        4242,
        "SN-E",
        newer,
        Utc::now(),
    )
    .await
    .unwrap();
    let changed = stored(&stack, 4242, "SN-E").await;
    stack.deliver_pending().await.unwrap();
    assert_eq!(
        stored(&stack, 4242, "SN-E").await,
        changed,
        "the echo of the old write changed nothing"
    );
    assert_ne!(changed.maintenance, pushed.maintenance);

    // The next run pulls the echo (no change) and pushes the newer values once.
    let (before, _) = patches(&stack);
    let report = stack.sync_once().await;
    assert_eq!(report.pull.applied.conflicts, 0, "{report:?}");
    assert_eq!(report.push.written, 1);
    assert_eq!(patches(&stack).0, before + 1);
    assert_eq!(
        amo_values(&stack, amo_id),
        (Some(newer.status), Some(newer.next_due))
    );
    // ...whose own echo is again no change.
    stack.deliver_pending().await.unwrap();
    let report = stack.sync_once().await;
    assert_eq!(report.push.requests, 0, "{report:?}");
    assert_eq!(report.pull.applied.applied, 0, "{report:?}");
}

/// `n` machines of distinct won deals, all waiting for their first push.
async fn many_sold(stack: &LocalStack, n: usize, due: NaiveDate) -> Vec<(i64, i64, String)> {
    let deals: Vec<(i64, String)> = (0..n)
        .map(|i| (100_000 + i as i64, format!("SN-{i:05}")))
        .collect();
    let ids = won_deals(stack, &deals).await;
    let machines: Vec<Equipment> = ids
        .iter()
        .zip(&deals)
        .map(|(id, (tg, serial))| machine(*id, *tg, serial, values(S::Ok, due)))
        .collect();
    bulk_register(stack, &machines).await;
    ids.into_iter()
        .zip(deals)
        .map(|(id, (tg, serial))| (id, tg, serial))
        .collect()
}

/// Writes machines 25 at a time, as registration would write each.
async fn bulk_register(stack: &LocalStack, machines: &[Equipment]) {
    use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
    for chunk in machines.chunks(25) {
        let mut pending: Vec<WriteRequest> = chunk
            .iter()
            .map(|e| {
                WriteRequest::builder()
                    .put_request(
                        PutRequest::builder()
                            .set_item(Some(shared::store::equipment_item(e)))
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
            .collect();
        while !pending.is_empty() {
            let out = stack
                .aws
                .dynamodb
                .batch_write_item()
                .request_items(&stack.resources.passport_table, pending)
                .send()
                .await
                .unwrap();
            pending = out
                .unprocessed_items
                .and_then(|mut u| u.remove(&stack.resources.passport_table))
                .unwrap_or_default();
        }
    }
}

#[tokio::test]
async fn a_run_cut_off_half_way_resumes_without_loss_or_double_push() {
    let stack = stack().await;
    let due = days_from_today(&stack, 200);
    let sold = many_sold(&stack, 600, due).await;
    stack.sandbox.state.clear_requests();

    // The Lambda runs out of time right after its first PATCH.
    let handle = stack.sandbox.state.clone();
    let budget = Budget::from_fn(move || {
        let patched = handle
            .requests()
            .iter()
            .any(|r| r.method == "PATCH" && r.path == "/api/v4/leads");
        if patched {
            Duration::ZERO
        } else {
            Duration::from_secs(600)
        }
    });
    let first = stack.sync_at(Utc::now(), &budget).await;
    assert_eq!(first.outcome, RunOutcome::Incomplete, "{first:?}");
    assert_eq!(first.stopped_in, Some(Step::Push));
    assert_eq!(first.push.written, 250);

    let second = stack.sync_once().await;
    assert_eq!(second.outcome, RunOutcome::Complete, "{second:?}");
    assert_eq!(second.push.written, 350, "only what the first run left");
    assert_eq!(
        second.pull.applied.applied, 0,
        "the first run's writes were recorded"
    );
    assert_eq!(patches(&stack), (3, 0), "ceil(600 / 250) requests in all");
    for (id, _, _) in &sold {
        assert_eq!(
            amo_values(&stack, *id),
            (Some(S::Ok), Some(due)),
            "deal {id}"
        );
    }
}

/// The stack's maintenance sync over another passport store.
fn sync_over(stack: &LocalStack, passport: Arc<dyn PassportStore>) -> MaintenanceSync {
    let s = &stack.sync;
    MaintenanceSync {
        crm: Arc::clone(&s.crm),
        deals: Arc::clone(&s.deals),
        passport,
        state: Arc::clone(&s.state),
        delivery: s.delivery.clone(),
        events: s.events.clone(),
        token: s.token.clone(),
        queues: Arc::clone(&s.queues),
        reach: Arc::clone(&s.reach),
        settings: s.settings.clone(),
    }
}

/// The passport store, with two interpositions on the records after a push: while `broken`
/// is set, recording fails (the function dies between amoCRM's answer and our record); an
/// `edit` is made in the TMA just before the next batch is recorded, and what each
/// `update_many` wrote is kept.
struct BreakingStore {
    inner: Arc<dyn PassportStore>,
    broken: AtomicBool,
    edit: std::sync::Mutex<Option<(i64, String, Maintenance)>>,
    recorded: std::sync::Mutex<Vec<Vec<bool>>>,
}

impl BreakingStore {
    fn new(inner: Arc<dyn PassportStore>, broken: bool) -> Self {
        Self {
            inner,
            broken: AtomicBool::new(broken),
            edit: std::sync::Mutex::default(),
            recorded: std::sync::Mutex::default(),
        }
    }
}

#[async_trait]
impl PassportStore for BreakingStore {
    async fn register(&self, e: &Equipment) -> Result<RegisterOutcome, StoreError> {
        self.inner.register(e).await
    }
    async fn for_owner(&self, id: i64) -> Result<Vec<Equipment>, StoreError> {
        self.inner.for_owner(id).await
    }
    async fn by_deal(&self, id: i64) -> Result<Vec<Equipment>, StoreError> {
        self.inner.by_deal(id).await
    }
    async fn set_state(&self, id: i64, serial: &str, s: EquipmentState) -> Result<(), StoreError> {
        self.inner.set_state(id, serial, s).await
    }
    async fn mark_waiting(&self, id: i64, missing: &str) -> Result<bool, StoreError> {
        self.inner.mark_waiting(id, missing).await
    }
    async fn clear_waiting(&self, id: i64) -> Result<(), StoreError> {
        self.inner.clear_waiting(id).await
    }
    async fn get(&self, id: i64, serial: &str) -> Result<Option<Equipment>, StoreError> {
        self.inner.get(id, serial).await
    }
    async fn get_many(&self, keys: &[(i64, String)]) -> Result<Vec<Equipment>, StoreError> {
        self.inner.get_many(keys).await
    }
    async fn update(&self, current: &Equipment, next: &Equipment) -> Result<bool, StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the function was killed".into()));
        }
        self.inner.update(current, next).await
    }
    async fn update_many(&self, pairs: &[(Equipment, Equipment)]) -> Result<Vec<bool>, StoreError> {
        if self.broken.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("the function was killed".into()));
        }
        let edit = self.edit.lock().unwrap().take();
        if let Some((owner, serial, values)) = edit {
            set_maintenance(self.inner.as_ref(), owner, &serial, values, Utc::now())
                .await
                .expect("the TMA edit");
        }
        let written = self.inner.update_many(pairs).await?;
        self.recorded.lock().unwrap().push(written.clone());
        Ok(written)
    }
    async fn pending_push(
        &self,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<Equipment>, StoreError> {
        self.inner.pending_push(limit, after).await
    }
    async fn due_by(
        &self,
        last: NaiveDate,
        limit: usize,
        after: Option<String>,
    ) -> Result<Page<Equipment>, StoreError> {
        self.inner.due_by(last, limit, after).await
    }
}

#[tokio::test]
async fn a_crash_between_the_patch_and_its_record_does_not_push_twice() {
    let stack = stack().await;
    let due = days_from_today(&stack, 200);
    let sold = many_sold(&stack, 40, due).await;
    let crashing = sync_over(
        &stack,
        Arc::new(BreakingStore::new(Arc::clone(&stack.sync.passport), true)),
    );
    let mut report = MaintenanceSync::new_report(Utc::now());
    let pushed = crashing
        .step(Step::Push, Utc::now(), &plenty(), &mut report)
        .await;
    assert!(pushed.is_err(), "the records failed: {pushed:?}");
    assert_eq!(patches(&stack).0, 1);
    assert!(stored(&stack, sold[0].1, &sold[0].2).await.needs_push());

    // The next run's pull finds amoCRM holding our values and records them: no second PATCH.
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert_eq!(report.pull.applied.applied, 40);
    assert_eq!(report.push.requests, 0);
    assert_eq!(patches(&stack).0, 1);
    for (_, tg, serial) in &sold {
        assert!(!stored(&stack, *tg, serial).await.needs_push());
    }
}

#[tokio::test]
async fn a_tma_edit_while_its_batch_is_recorded_in_one_transaction_stays_and_is_pushed_next() {
    let stack = stack().await;
    assert_eq!(
        stack.config.sync.record_transaction, 100,
        "the deployed default"
    );
    let due = days_from_today(&stack, 200);
    let sold = many_sold(&stack, 30, due).await;
    let (edited_deal, owner, serial) = sold[7].clone();
    let edited = values(S::Scheduled, days_from_today(&stack, 20));
    let store = Arc::new(BreakingStore::new(Arc::clone(&stack.sync.passport), false));
    *store.edit.lock().unwrap() = Some((owner, serial.clone(), edited));
    let sync = sync_over(&stack, store.clone());
    let mut report = MaintenanceSync::new_report(Utc::now());
    let end = sync
        .step(Step::Push, Utc::now(), &plenty(), &mut report)
        .await;
    assert_eq!(end.unwrap(), StepEnd::Done);
    assert_eq!(patches(&stack).0, 1, "one PATCH for the 30");

    // One batch of 30 went to the store at once: the transaction was stopped by the edited
    // machine alone, and the other 29 were written in the next one.
    let recorded = store.recorded.lock().unwrap().clone();
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].len(), 30);
    let refused: Vec<usize> = (0..30).filter(|&i| !recorded[0][i]).collect();
    assert_eq!(
        refused,
        [7],
        "only the edited machine was not written as read"
    );

    // The edit stays and waits for the next push; what amoCRM got is its base now, so the
    // merge knows the edit is ours, not a conflict.
    let machine = stored(&stack, owner, &serial).await;
    assert_eq!(machine.maintenance, edited, "the TMA edit is kept");
    assert!(machine.needs_push());
    assert_eq!(
        machine.sync.amo.status,
        Some(S::Ok),
        "the base is what amoCRM took"
    );
    assert_eq!(amo_values(&stack, edited_deal), (Some(S::Ok), Some(due)));
    for (i, (_, tg, serial)) in sold.iter().enumerate() {
        if i != 7 {
            assert!(!stored(&stack, *tg, serial).await.needs_push(), "{serial}");
        }
    }

    // The next run pushes the edit, and only it.
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert_eq!(report.push.written, 1, "{:?}", report.push);
    assert_eq!(
        amo_values(&stack, edited_deal),
        (Some(S::Scheduled), Some(edited.next_due))
    );
    assert!(!stored(&stack, owner, &serial).await.needs_push());
    assert!(report.conflicts.is_empty(), "{:?}", report.conflicts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_changes_go_in_full_batches_without_a_429() {
    const N: usize = 10_000;
    // One UpdateItem per record: moto copies the whole table for every item of a transaction,
    // so 100-machine transactions on a 10 000-machine table would measure only that.
    let stack = stack_with(|o| {
        o.config_overrides
            .push(("SYNC_RECORD_TRANSACTION".into(), "1".into()))
    })
    .await;
    let due = days_from_today(&stack, 200);
    let started = std::time::Instant::now();
    let sold = many_sold(&stack, N, due).await;
    let setup = started.elapsed();
    stack.sandbox.state.clear_requests();
    let now = Utc::now();
    let budget = plenty();
    let mut report = MaintenanceSync::new_report(now);

    // The pull reads the 10 000 new deals once each (nothing to apply: no values there yet),
    // although 250 to 1250 share each second: a crowded second is read through in id order
    // from its first page, so that page counts twice; a second that ends exactly on a page
    // costs one empty answer.
    let end = stack.sync.step(Step::Pull, now, &budget, &mut report).await;
    assert_eq!(end.unwrap(), StepEnd::Done);
    let crowded = report.pull.crowded_seconds;
    assert!(crowded >= 1, "{:?}", report.pull);
    assert_eq!(
        report.pull.deals,
        N as u64 + 250 * crowded,
        "{:?}",
        report.pull
    );
    assert!(report.pull.requests <= 44 + crowded, "{:?}", report.pull);
    assert_eq!(report.pull.seconds_reread, 0);

    // amoCRM is loaded: the next three write requests answer 504.
    inject(
        &stack,
        json!({"kind": "status", "status": 504, "count": 3, "path": "/api/v4/leads"}),
    )
    .await;
    let push_started = std::time::Instant::now();
    let end = stack.sync.step(Step::Push, now, &budget, &mut report).await;
    assert_eq!(end.unwrap(), StepEnd::Done);
    let push_time = push_started.elapsed();
    let (requests, forced) = patches(&stack);
    let full = N.div_ceil(250);
    assert_eq!(answered(&stack, 429), 0, "never over amoCRM's rate limit");
    assert_eq!(forced, 3, "{report:?}");
    assert_eq!(report.push.too_heavy, 3, "the sync itself saw every 504");
    assert_eq!(report.push.written, N as u64);
    assert!(
        requests - forced <= full + forced,
        "{requests} PATCH requests, {forced} answered 504: {:?}",
        report.push
    );
    assert!(requests <= full + 2 * forced, "{requests} PATCH requests");
    assert_eq!(report.push.batch_size, 250, "grown back to full batches");

    // Every deal carries the values, nothing waits any more, amoCRM never said 429.
    let leads = stack.sandbox.state.leads();
    let ids = stack.config.sync.field_ids().unwrap();
    let carrying = leads
        .iter()
        .filter(|l| {
            l["custom_fields_values"]
                .as_array()
                .is_some_and(|f| f.iter().any(|f| f["field_id"] == ids.status))
        })
        .count();
    assert_eq!(carrying, N);
    let waiting = stack.sync.passport.pending_push(10, None).await.unwrap();
    assert!(waiting.items.is_empty(), "{:?}", waiting.items.first());
    assert_eq!(answered(&stack, 429), 0, "never over amoCRM's rate limit");
    assert!(
        !stored(&stack, sold[N - 1].1, &sold[N - 1].2)
            .await
            .needs_push()
    );
    eprintln!(
        "10k: set-up {setup:?}, pull {} requests, push {push_time:?} ({requests} PATCH requests, \
         {forced} forced 504s)",
        report.pull.requests
    );
}

#[tokio::test]
async fn a_reminder_task_comes_once_per_due_date() {
    let stack = stack().await;
    let due = days_from_today(&stack, 5);
    let amo_id = sold(&stack, 4242, "SN-R", values(S::Ok, due)).await;
    let tasks = |stack: &LocalStack| -> Vec<Value> {
        stack
            .sandbox
            .state
            .tasks()
            .into_iter()
            .filter(|t| t["entity_id"] == amo_id)
            .collect()
    };

    let report = stack.sync_once().await;
    assert_eq!(report.reminders.tasks_created, 1, "{report:?}");
    let task = &tasks(&stack)[0];
    let text = task["text"].as_str().unwrap();
    assert!(text.contains("16К20"), "{text}");
    assert!(text.contains("SN-R"), "{text}");
    assert!(text.contains(&due.format("%d.%m.%Y").to_string()), "{text}");
    assert_eq!(task["task_type_id"], 1);
    assert_eq!(task["responsible_user_id"], MANAGER);
    // «Скоро ТО» on both sides.
    assert_eq!(
        stored(&stack, 4242, "SN-R").await.maintenance.status,
        S::Due
    );
    assert_eq!(amo_values(&stack, amo_id), (Some(S::Due), Some(due)));

    stack.sync_once().await;
    let tomorrow = Utc::now() + chrono::Duration::days(1);
    stack.sync_at(tomorrow, &plenty()).await;
    assert_eq!(tasks(&stack).len(), 1, "one task per due date");

    // The manager moves the date: a reminder for the new date.
    let moved = days_from_today(&stack, 9);
    manager_sets(&stack, amo_id, None, Some(moved));
    stack.sync_once().await;
    let all = tasks(&stack);
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(
        all[1]["text"]
            .as_str()
            .unwrap()
            .contains(&moved.format("%d.%m.%Y").to_string())
    );
}

#[tokio::test]
async fn overdue_equipment_is_overdue_on_both_sides() {
    let stack = stack().await;
    let due = days_from_today(&stack, -3);
    let amo_id = sold(&stack, 4242, "SN-O", values(S::Ok, due)).await;
    let report = stack.sync_once().await;
    assert_eq!(report.reminders.marked_overdue, 1, "{report:?}");
    assert_eq!(
        stored(&stack, 4242, "SN-O").await.maintenance.status,
        S::Overdue
    );
    assert_eq!(amo_values(&stack, amo_id), (Some(S::Overdue), Some(due)));
    let tasks = stack.sandbox.state.tasks();
    assert_eq!(tasks.len(), 1);
    assert!(
        tasks[0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Просрочено ТО")
    );
    // Nothing more to do for it until something changes.
    let again = stack.sync_once().await;
    assert_eq!(
        (again.reminders.checked, again.push.requests),
        (0, 0),
        "{again:?}"
    );
}

#[tokio::test]
async fn stale_pending_leads_and_webhooks_are_redriven_and_parked_ones_left() {
    let stack = stack().await;
    // Three leads whose stream records are never processed: one stays pending, one is parked
    // by an operator, one is fresh.
    let mut ids = Vec::new();
    for phone in ["+79120000001", "+79120000002"] {
        let (status, body) = post_lead(&stack, &site_lead("Иван Петров", phone)).await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["lead_id"].as_str().unwrap().to_string());
    }
    let leads = DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let parked = leads.get(&ids[1]).await.unwrap().unwrap();
    leads
        .save_delivery(&ids[1], LeadStatus::Parked, &parked.delivery, None)
        .await
        .unwrap();
    // A won deal's webhook that was stored but never processed.
    let amo_id = won_deals(&stack, &[(4242, "SN-W".into())]).await[0];
    let hook = format!(
        "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D={}\
         &leads%5Bstatus%5D%5B0%5D%5Bid%5D={amo_id}&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D={WON}\
         &leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=80953554&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D={PIPELINE}",
        stack.options.sandbox.account_id
    );
    let token = stack.options.webhook_token.clone();
    assert_eq!(post_webhook(&stack, &token, &hook, None).await.0, 200);

    // Fresh: nothing is re-driven yet.
    let report = stack.sync_once().await;
    assert_eq!(
        (report.redrive.leads, report.redrive.events),
        (0, 0),
        "{report:?}"
    );

    // Sixteen minutes later the pending ones are fed again; the parked one waits.
    let later: DateTime<Utc> = Utc::now() + chrono::Duration::minutes(16);
    let report = stack.sync_at(later, &plenty()).await;
    assert_eq!(report.redrive.leads, 1, "{report:?}");
    assert_eq!(report.redrive.leads_delivered, 1);
    assert_eq!(report.redrive.events_done, 1);
    let in_amo = sandbox_list(&stack, "leads").await;
    assert!(
        in_amo
            .iter()
            .any(|l| l["name"].as_str().unwrap().contains(&ids[0]))
    );
    assert!(
        !in_amo
            .iter()
            .any(|l| l["name"].as_str().unwrap().contains(&ids[1]))
    );
    assert_eq!(
        leads.get(&ids[1]).await.unwrap().unwrap().status,
        LeadStatus::Parked
    );
    assert_eq!(stored(&stack, 4242, "SN-W").await.amo_lead_id, amo_id);
}

#[tokio::test]
async fn when_the_pull_fails_nothing_is_pushed_and_the_next_run_catches_up() {
    let stack = stack().await;
    let due = days_from_today(&stack, 200);
    let amo_id = sold(&stack, 4242, "SN-F", values(S::Ok, due)).await;
    // amoCRM fails every attempt of the pull's first request.
    inject(
        &stack,
        json!({"kind": "status", "status": 503, "count": 4, "path": "/api/v4/leads"}),
    )
    .await;
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Failed, "{report:?}");
    assert_eq!(report.stopped_in, Some(Step::Pull));
    assert!(report.hint.is_some(), "{report:?}");
    assert_eq!(
        patches(&stack).0,
        0,
        "no push without amoCRM's latest values"
    );
    assert_eq!(stack.sync.state.last_run().await.unwrap(), Some(report));

    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete, "{report:?}");
    assert_eq!(amo_values(&stack, amo_id), (Some(S::Ok), Some(due)));
}

#[tokio::test]
async fn the_maintenance_fields_are_found_again_not_created_twice() {
    let stack = stack().await;
    let tokens = Arc::new(shared::amocrm::LongLivedToken::new(
        Arc::new(shared::secrets::SecretsManagerStore::new(
            stack.aws.secrets.clone(),
        )),
        stack.resources.token_secret_id.clone(),
    ));
    let client = shared::amocrm::AmoClient::new(&stack.config.amo, tokens).unwrap();
    let again = shared::amocrm::maintenance_fields::ensure_maintenance_fields(&client)
        .await
        .unwrap();
    assert_eq!(Some(again), stack.config.sync.field_ids());
    let fields: Value = http()
        .get(format!(
            "{}/api/v4/leads/custom_fields?limit=250",
            stack.sandbox.url
        ))
        .bearer_auth(setup_token(&stack))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let named = |name: &str| {
        fields["_embedded"]["custom_fields"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == name)
            .count()
    };
    assert_eq!((named("Дата следующего ТО"), named("Статус ТО")), (1, 1));
}

#[tokio::test]
async fn a_second_run_while_one_holds_the_lease_is_skipped_and_the_report_is_kept() {
    let stack = stack().await;
    let now = Utc::now();
    assert!(
        stack
            .sync
            .state
            .acquire_lease("another-run", now + chrono::Duration::minutes(5), now)
            .await
            .unwrap()
    );
    assert_eq!(stack.sync_once().await.outcome, RunOutcome::Skipped);
    stack.sync.state.release_lease("another-run").await.unwrap();
    let report = stack.sync_once().await;
    assert_eq!(report.outcome, RunOutcome::Complete);
    assert_eq!(stack.sync.state.last_run().await.unwrap(), Some(report));
}

#[test]
fn the_sample_schedule_event_is_what_the_function_reads() {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events/maintenance-sync-schedule.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let event: aws_lambda_events::event::eventbridge::EventBridgeEvent =
        serde_json::from_str(&text).unwrap();
    assert_eq!(
        (event.source.as_str(), event.detail_type.as_str()),
        ("aws.events", "Scheduled Event")
    );
}

#[tokio::test]
async fn a_default_deploy_syncs_once_the_fields_exist_finding_them_by_name_without_a_redeploy() {
    // No AMOCRM_FIELD_* in the environment and nothing in the state table: a default deploy.
    let stack = stack_with(|o| o.provision_fields = false).await;
    assert!(stack.config.sync.field_ids().is_none());
    // A lead the stream gave up on: the re-drive must still deliver it.
    let (status, _) = post_lead(&stack, &site_lead("Иван", "+79123456789")).await;
    assert_eq!(status, 202);
    let later = Utc::now() + chrono::Duration::hours(1);
    let before = stack
        .sync_at(later, &Budget::from_fn(|| Duration::from_secs(600)))
        .await;
    assert_eq!(before.redrive.leads_delivered, 1, "{before:?}");
    assert!(before.fields_missing, "{before:?}");
    assert_eq!(
        before.outcome,
        RunOutcome::Complete,
        "token upkeep and re-drive ran"
    );
    assert_eq!(before.pull.deals, 0, "nothing pulled without the fields");

    // An administrator makes the two fields by hand in amoCRM.
    let tools = shared::wiring::operator_tools(&stack.config, &stack.aws)
        .await
        .unwrap();
    let ids = shared::amocrm::maintenance_fields::ensure_maintenance_fields(&tools.amo)
        .await
        .unwrap();
    let after = stack.sync_once().await;
    assert!(!after.fields_missing, "{after:?}");
    assert_eq!(after.outcome, RunOutcome::Complete, "{after:?}");
    // Found by name and remembered: the next run reads them from the state table.
    let state = tools.sync_state.clone().unwrap();
    assert_eq!(state.field_ids().await.unwrap(), Some(ids));
}
