//! The backfill of machines sold before go-live, as an operator relies on it: cut off half way
//! it resumes where it stopped and registers every machine exactly once; `--since` reads only
//! deals closed from that day; the dry run writes nothing.

use std::sync::atomic::{AtomicBool, Ordering};

use amocrm_sandbox::History;
use async_trait::async_trait;
use e2e::stack_with;
use shared::passport::backfill::{Backfill, BackfillOptions};
use shared::passport::register::Registrar;
use shared::ports::PassportStore;
use shared::ports::{CrmFailure, WonDeals, WonPage};
use shared::wiring::{OperatorTools, operator_tools};

/// amoCRM's won-deals list that fails once on `page` (a network cut mid-run).
struct CutOnce<'a> {
    inner: &'a dyn WonDeals,
    page: u32,
    cut: AtomicBool,
}

#[async_trait]
impl WonDeals for CutOnce<'_> {
    async fn won_deals(
        &self,
        pipelines: &[i64],
        since: Option<i64>,
        page: u32,
    ) -> Result<Option<WonPage>, CrmFailure> {
        if page == self.page && !self.cut.swap(true, Ordering::SeqCst) {
            return Err(CrmFailure::transient("connection reset", "retry"));
        }
        self.inner.won_deals(pipelines, since, page).await
    }
}

fn backfill<'a>(tools: &'a OperatorTools, deals: &'a dyn WonDeals) -> Backfill<'a> {
    Backfill {
        deals,
        registrar: Registrar {
            crm: &tools.amo,
            store: tools.passport.as_deref().expect("PASSPORT_TABLE"),
            policy: &tools.policy,
            fields: tools.passport_fields,
            note_waiting: false,
        },
        cursor: tools.sync_state.as_deref().expect("STATE_TABLE"),
    }
}

fn options(tools: &OperatorTools, since: Option<i64>, dry_run: bool) -> BackfillOptions {
    BackfillOptions {
        pipelines: tools.pipelines.clone(),
        since,
        dry_run,
    }
}

#[tokio::test]
async fn a_backfill_cut_off_half_way_resumes_and_registers_every_machine_once() {
    let stack = stack_with(|o| {
        o.history = Some(History {
            won: 600,
            won_without_serial: 0,
            won_without_telegram: 0,
            lost: 30,
            open: 30,
            old_webhook: false,
            span_days: 600,
        })
    })
    .await;
    let made = stack.history.clone().unwrap();
    let tools = operator_tools(&stack.config, &stack.aws).await.unwrap();
    let passport = tools.passport.clone().unwrap();

    // The dry run reads all three pages and writes nothing.
    let dry = backfill(&tools, &tools.amo)
        .run(&options(&tools, None, true))
        .await
        .unwrap();
    assert_eq!((dry.counts.read, dry.counts.registered), (600, 600));
    assert_eq!(dry.counts.requests, 3, "600 deals: pages of 250, 250, 100");
    assert!(passport.by_deal(made.won[0].0).await.unwrap().is_empty());

    // Cut on the second page: the first page's 250 are in, the cursor says where it stopped.
    let flaky = CutOnce {
        inner: &tools.amo,
        page: 2,
        cut: AtomicBool::new(false),
    };
    let (report, error) = backfill(&tools, &flaky)
        .run(&options(&tools, None, false))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("connection reset"), "{error}");
    assert_eq!(report.counts.registered, 250);
    let again = backfill(&tools, &flaky)
        .run(&options(&tools, None, false))
        .await
        .unwrap();
    assert_eq!(again.resumed_from_page, Some(2));
    assert_eq!(
        again.counts.registered, 600,
        "the first page is not read twice"
    );
    assert_eq!(again.counts.already_there, 0);
    for (deal, serial, owner) in &made.won {
        let machines = passport.by_deal(*deal).await.unwrap();
        assert_eq!(machines.len(), 1, "deal {deal}");
        assert_eq!(
            (&machines[0].serial, machines[0].owner_telegram_id),
            (serial, *owner)
        );
    }

    // A finished backfill run again reads everything and changes nothing.
    let third = backfill(&tools, &tools.amo)
        .run(&options(&tools, None, false))
        .await
        .unwrap();
    assert_eq!(third.resumed_from_page, None);
    assert_eq!(
        (third.counts.registered, third.counts.already_there),
        (0, 600)
    );
}

#[tokio::test]
async fn since_reads_only_the_deals_closed_from_that_day() {
    let stack = stack_with(|o| {
        o.history = Some(History {
            won: 100,
            won_without_serial: 0,
            won_without_telegram: 0,
            lost: 0,
            open: 0,
            old_webhook: false,
            span_days: 100,
        })
    })
    .await;
    let tools = operator_tools(&stack.config, &stack.aws).await.unwrap();
    let lead = |id: i64| stack.sandbox.state.lead(id).unwrap();
    let made = stack.history.clone().unwrap();
    // The 60th deal's close time: it and the 40 after it are in, the 59 before are not.
    let since = lead(made.won[59].0)["closed_at"].as_i64().unwrap();
    let report = backfill(&tools, &tools.amo)
        .run(&options(&tools, Some(since), false))
        .await
        .unwrap();
    assert_eq!(report.counts.read, 41, "{report:?}");
    let passport = tools.passport.clone().unwrap();
    assert!(passport.by_deal(made.won[58].0).await.unwrap().is_empty());
    assert_eq!(passport.by_deal(made.won[59].0).await.unwrap().len(), 1);
}
