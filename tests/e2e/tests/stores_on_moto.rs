//! The DynamoDB adapters against moto: conditional writes hold under concurrent writers, and the
//! expiry rules (TTL deletes lazily) are applied on read.

use std::sync::Arc;

use chrono::{Duration, Utc};
use e2e::*;
use shared::leads::{Delivery, LeadStatus};
use shared::leads::{Intent, Lead, LeadRequest, Source};
use shared::passport::{Equipment, EquipmentState, Maintenance, MaintenanceStatus};
use shared::ports::{
    Claim, Held, IdempotencyClaim, InboxStore, InsertOutcome, LeadStore, PassportStore,
    RegisterOutcome, StoreError,
};
use shared::store::{DynamoInboxStore, DynamoLeadStore, DynamoPassportStore};
use shared::store::{DynamoStateStore, StateStore, StateTake, TokenHealthRecord};

fn lead(id: &str) -> Lead {
    Lead {
        id: id.into(),
        received_at: Utc::now(),
        request: LeadRequest {
            source: Source::Site,
            intent: Intent::Other,
            name: "Иван".into(),
            phone: Some("+79123456789".into()),
            email: None,
            telegram_id: None,
            telegram_unverified: false,
            message: None,
            equipment: None,
            items: vec![],
            page_url: None,
            utm: Default::default(),
        },
    }
}

#[tokio::test]
async fn concurrent_inserts_with_one_claim_store_one_lead() {
    let stack = stack().await;
    let store = Arc::new(DynamoLeadStore::new(
        stack.aws.dynamodb.clone(),
        &stack.resources.leads_table,
    ));
    let claim = IdempotencyClaim {
        key: "key:same".into(),
        expires_at: Utc::now() + Duration::minutes(10),
    };
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (store, claim) = (store.clone(), claim.clone());
        tasks.push(tokio::spawn(async move {
            store
                .insert(&lead(&format!("L{i:02}")), &claim)
                .await
                .unwrap()
        }));
    }
    let mut created = Vec::new();
    let mut duplicates = Vec::new();
    for (i, t) in tasks.into_iter().enumerate() {
        match t.await.unwrap() {
            InsertOutcome::Created => created.push(format!("L{i:02}")),
            InsertOutcome::Duplicate { lead_id } => duplicates.push(lead_id),
        }
    }
    assert_eq!(created.len(), 1, "{created:?}");
    assert!(
        duplicates.iter().all(|d| *d == created[0]),
        "every repeat names the winner"
    );
    assert_eq!(table_items(&stack).await, 2, "one lead + one claim");

    // An expired claim (TTL has not deleted it yet) is taken over by a new lead.
    let old = IdempotencyClaim {
        key: "key:old".into(),
        expires_at: Utc::now() - Duration::seconds(1),
    };
    assert_eq!(
        store.insert(&lead("M1"), &old).await.unwrap(),
        InsertOutcome::Created
    );
    assert_eq!(
        store.insert(&lead("M2"), &old).await.unwrap(),
        InsertOutcome::Created
    );
}

#[tokio::test]
async fn concurrent_registrations_of_one_machine_register_it_once() {
    let stack = stack().await;
    let store = Arc::new(DynamoPassportStore::new(
        stack.aws.dynamodb.clone(),
        &stack.resources.passport_table,
    ));
    let eq = Equipment {
        owner_telegram_id: 4242,
        amo_contact_id: Some(1),
        serial: "SN-1".into(),
        model: Some("16К20".into()),
        purchased_at: Utc::now(),
        amo_lead_id: 77,
        maintenance: Maintenance {
            status: MaintenanceStatus::Ok,
            next_due: Utc::now().date_naive(),
        },
        state: EquipmentState::Active,
        updated_at: Utc::now(),
        sync: Default::default(),
    };
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (store, eq) = (store.clone(), eq.clone());
        tasks.push(tokio::spawn(
            async move { store.register(&eq).await.unwrap() },
        ));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| **o == RegisterOutcome::Registered)
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(store.for_owner(4242).await.unwrap().len(), 1);
    assert_eq!(store.by_deal(77).await.unwrap().len(), 1);
    store
        .set_state(4242, "SN-1", EquipmentState::Revoked)
        .await
        .unwrap();
    assert_eq!(
        store.register(&eq).await.unwrap(),
        RegisterOutcome::Reactivated
    );
    // The missing-data marker is taken once.
    assert!(store.mark_waiting(78, "Серийный номер").await.unwrap());
    assert!(!store.mark_waiting(78, "Серийный номер").await.unwrap());
    store.clear_waiting(78).await.unwrap();
    assert!(store.mark_waiting(78, "Серийный номер").await.unwrap());
}

#[tokio::test]
async fn one_webhook_is_stored_once_however_often_it_arrives() {
    let stack = stack().await;
    let inbox = Arc::new(DynamoInboxStore::new(
        stack.aws.dynamodb.clone(),
        &stack.resources.inbox_table,
    ));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let inbox = inbox.clone();
        tasks.push(tokio::spawn(async move {
            inbox
                .insert_new("rid:abc", "leads[add][0][id]=1", Utc::now())
                .await
                .unwrap()
        }));
    }
    let mut new = 0;
    for t in tasks {
        new += usize::from(t.await.unwrap());
    }
    assert_eq!(new, 1);
}

#[tokio::test]
async fn the_refresh_lease_admits_one_holder_and_oauth_states_are_single_use() {
    let stack = stack().await;
    let state = Arc::new(DynamoStateStore::new(
        stack.aws.dynamodb.clone(),
        &stack.resources.state_table,
    ));
    let now = Utc::now();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            state
                .acquire_lease(
                    "refresh",
                    &format!("i{i}"),
                    now,
                    now + Duration::seconds(30),
                )
                .await
                .unwrap()
        }));
    }
    let mut holders = 0;
    for t in tasks {
        holders += usize::from(t.await.unwrap());
    }
    assert_eq!(holders, 1);
    // A crashed holder's lease is taken over after it expires, not before.
    let later = now + Duration::seconds(31);
    assert!(
        !state
            .acquire_lease("refresh", "x", now + Duration::seconds(5), later)
            .await
            .unwrap()
    );
    assert!(
        state
            .acquire_lease("refresh", "x", later, later + Duration::seconds(30))
            .await
            .unwrap()
    );
    state
        .release_lease("refresh", "someone-else")
        .await
        .unwrap();
    assert!(
        !state
            .acquire_lease("refresh", "y", later, later + Duration::seconds(30))
            .await
            .unwrap()
    );
    state.release_lease("refresh", "x").await.unwrap();
    assert!(
        state
            .acquire_lease("refresh", "y", later, later + Duration::seconds(30))
            .await
            .unwrap()
    );

    state
        .put_oauth_state("s1", now + Duration::minutes(20))
        .await
        .unwrap();
    state
        .put_oauth_state("s2", now + Duration::minutes(20))
        .await
        .unwrap();
    assert_eq!(
        state.take_oauth_state("s1", now).await.unwrap(),
        StateTake::Taken
    );
    assert_eq!(
        state.take_oauth_state("s1", now).await.unwrap(),
        StateTake::Unknown
    );
    assert_eq!(
        state
            .take_oauth_state("s2", now + Duration::minutes(21))
            .await
            .unwrap(),
        StateTake::Expired
    );

    let incident = TokenHealthRecord {
        hint: Some("re-authorize".into()),
        ..Default::default()
    };
    assert!(
        state
            .mark_reauthorization_required(&incident)
            .await
            .unwrap()
    );
    assert!(
        !state
            .mark_reauthorization_required(&incident)
            .await
            .unwrap(),
        "one alert per incident"
    );
    assert!(
        state
            .token_health()
            .await
            .unwrap()
            .unwrap()
            .reauthorization_required
    );
}

#[tokio::test]
async fn one_runner_at_a_time_holds_a_lead_and_a_lapsed_holder_can_no_longer_write() {
    let stack = stack().await;
    let store = DynamoLeadStore::new(stack.aws.dynamodb.clone(), &stack.resources.leads_table);
    let claim = IdempotencyClaim {
        key: "key:held".into(),
        expires_at: Utc::now() + Duration::minutes(10),
    };
    store.insert(&lead("LHELD"), &claim).await.unwrap();
    let now = Utc::now();
    let soon = now + Duration::seconds(30);
    assert_eq!(
        store.claim_delivery("LHELD", "a", soon, now).await.unwrap(),
        Claim::Claimed
    );
    match store.claim_delivery("LHELD", "b", soon, now).await.unwrap() {
        Claim::HeldUntil(until) => assert_eq!(until.timestamp_millis(), soon.timestamp_millis()),
        other => panic!("b must wait for a: {other:?}"),
    }
    // a saves under its hold; b cannot.
    let progress = Delivery {
        amo_lead_id: Some(31_000_001),
        ..Delivery::default()
    };
    let held = |runner, release| {
        Some(Held {
            runner,
            until: Utc::now() + Duration::seconds(30),
            release,
        })
    };
    store
        .save_delivery("LHELD", LeadStatus::Pending, &progress, held("a", false))
        .await
        .unwrap();
    let stale = Delivery::default();
    assert!(matches!(
        store
            .save_delivery("LHELD", LeadStatus::Pending, &stale, held("b", false))
            .await,
        Err(StoreError::Held(_))
    ));
    // Once a's hold lapses b takes over, and a's late save is refused: the amoCRM lead id
    // b reads stays.
    let later = Utc::now() + Duration::seconds(60);
    assert_eq!(
        store
            .claim_delivery("LHELD", "b", later + Duration::seconds(30), later)
            .await
            .unwrap(),
        Claim::Claimed
    );
    assert!(matches!(
        store
            .save_delivery("LHELD", LeadStatus::Pending, &stale, held("a", true))
            .await,
        Err(StoreError::Held(_))
    ));
    let read = store.get("LHELD").await.unwrap().unwrap();
    assert_eq!(read.delivery.amo_lead_id, Some(31_000_001));
    // b's last save releases the hold; a delivered lead cannot be claimed.
    store
        .save_delivery(
            "LHELD",
            LeadStatus::Delivered,
            &read.delivery,
            held("b", true),
        )
        .await
        .unwrap();
    assert_eq!(
        store
            .claim_delivery("LHELD", "c", soon, Utc::now())
            .await
            .unwrap(),
        Claim::NotPending
    );
}
