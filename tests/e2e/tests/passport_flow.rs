//! amoCRM → Digital Passport: a won deal reaches the customer's passport through amoCRM's own
//! webhook, exactly once, and the Mini App sees it with a properly signed initData.

use e2e::*;
use serde_json::{Value, json};

const WON: i64 = 142;
const NEW_REQUEST: i64 = 80953554;

/// A TMA customer's lead, delivered to the sandbox; returns (our id, amoCRM id).
async fn delivered_lead(
    stack: &local_stack::LocalStack,
    telegram_id: i64,
    serial: Option<&str>,
) -> i64 {
    let mut body = site_lead("Иван Петров", "+79123456789");
    body["telegram_id"] = json!(telegram_id);
    body["equipment"] = json!({"model": "16К20", "serial": serial});
    let (status, resp) = post_lead(stack, &body).await;
    assert_eq!(status, 202, "{resp}");
    let our_id = resp["lead_id"].as_str().unwrap().to_string();
    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(stack, "leads").await;
    leads
        .iter()
        .find(|l| l["name"].as_str().is_some_and(|n| n.contains(&our_id)))
        .and_then(|l| l["id"].as_i64())
        .expect("lead in the sandbox")
}

async fn passport_of(stack: &local_stack::LocalStack, telegram_id: i64) -> Vec<Value> {
    let (status, body) =
        get_passport(stack, &format!("tma {}", init_data(stack, telegram_id, 10))).await;
    assert_eq!(status, 200, "{body}");
    body["equipment"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_won_deal_reaches_the_passport_through_the_webhook_and_the_tma_shows_it() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let amo_id = delivered_lead(&stack, 4242, Some("SN-1001")).await;
    assert!(passport_of(&stack, 4242).await.is_empty());

    move_lead(&stack, amo_id, WON).await;
    let equipment = eventually(&stack, "equipment in the passport", || async {
        let e = passport_of(&stack, 4242).await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    assert_eq!(equipment.len(), 1);
    let e = &equipment[0];
    assert_eq!(e["serial"], "SN-1001");
    assert_eq!(e["model"], "16К20");
    assert_eq!(e["amo_lead_id"], amo_id);
    assert_eq!(e["maintenance"]["status"], "ok");
    let purchased = e["purchased_at"].as_str().unwrap();
    let due = e["maintenance"]["next_due"].as_str().unwrap();
    assert_eq!(
        &due[..4],
        &(purchased[..4].parse::<i32>().unwrap() + 1).to_string(),
        "12 months by default"
    );

    // Another user sees nothing of it.
    assert!(passport_of(&stack, 5151).await.is_empty());
}

#[tokio::test]
async fn forged_expired_or_missing_init_data_is_refused() {
    let stack = stack().await;
    let good = init_data(&stack, 4242, 10);
    let forged = good.replace("4242", "4243");
    assert_eq!(get_passport(&stack, &format!("tma {forged}")).await.0, 401);
    let expired = init_data(&stack, 4242, 25 * 3600);
    assert_eq!(get_passport(&stack, &format!("tma {expired}")).await.0, 401);
    assert_eq!(get_passport(&stack, "").await.0, 401);
    assert_eq!(get_passport(&stack, &format!("Bearer {good}")).await.0, 401);
    let signed_by_another_bot = shared::telegram::sign_init_data(
        &[
            ("auth_date", &chrono_now().to_string()),
            ("user", &json!({"id": 4242, "first_name": "X"}).to_string()),
        ],
        "999:another-bot",
    );
    assert_eq!(
        get_passport(&stack, &format!("tma {signed_by_another_bot}"))
            .await
            .0,
        401
    );
    assert_eq!(get_passport(&stack, &format!("tma {good}")).await.0, 200);
}

fn status_hook(amo_id: i64, status: i64, old: i64, account_id: i64) -> String {
    format!(
        "account%5Bsubdomain%5D=new599bd9d13818a&account%5Bid%5D={account_id}\
         &leads%5Bstatus%5D%5B0%5D%5Bid%5D={amo_id}&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D={status}\
         &leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D={old}&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=10226282"
    )
}

#[tokio::test]
async fn duplicate_and_replayed_webhooks_give_one_equipment() {
    let stack = stack().await;
    let amo_id = delivered_lead(&stack, 4242, Some("SN-1")).await;
    // Won in amoCRM without our webhook registered: we replay the hook ourselves.
    move_lead(&stack, amo_id, WON).await;
    let account = stack.options.sandbox.account_id;
    let body = status_hook(amo_id, WON, NEW_REQUEST, account);
    let token = stack.options.webhook_token.clone();
    for _ in 0..3 {
        let (status, resp) = post_webhook(&stack, &token, &body, Some("7f3e-aaaa")).await;
        assert_eq!(status, 200, "{resp}");
    }
    for _ in 0..2 {
        post_webhook(&stack, &token, &body, None).await;
    }
    // The same deal "won again" in a different body.
    post_webhook(
        &stack,
        &token,
        &format!("{body}&leads%5Bstatus%5D%5B0%5D%5Bname%5D=x"),
        None,
    )
    .await;
    stack.deliver_pending().await.unwrap();
    let equipment = passport_of(&stack, 4242).await;
    assert_eq!(equipment.len(), 1, "{equipment:?}");
}

#[tokio::test]
async fn webhooks_without_the_token_or_from_another_account_are_refused_and_nothing_is_stored() {
    let stack = stack().await;
    let body = status_hook(1, WON, NEW_REQUEST, stack.options.sandbox.account_id);
    assert_eq!(post_webhook(&stack, "wrong", &body, None).await.0, 401);
    let resp = http()
        .post(format!("{}/webhook/amocrm", stack.api_url))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let foreign = body.replace("new599bd9d13818a", "someone-else");
    let token = stack.options.webhook_token.clone();
    assert_eq!(post_webhook(&stack, &token, &foreign, None).await.0, 401);
    let (status, resp) = post_webhook(&stack, &token, "{\"not\":\"a webhook\"}", None).await;
    assert_eq!(status, 400, "{resp}");
    let inbox = stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.resources.inbox_table)
        .send()
        .await
        .unwrap();
    assert_eq!(inbox.count(), 0);
}

#[tokio::test]
async fn a_won_deal_without_a_serial_gets_a_note_and_is_registered_once_the_serial_is_filled() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let amo_id = delivered_lead(&stack, 4242, None).await;
    move_lead(&stack, amo_id, WON).await;
    let note = eventually(&stack, "a note about the missing serial", || async {
        sandbox_list(&stack, "notes")
            .await
            .into_iter()
            .find(|n| n["entity_id"] == amo_id && n.to_string().contains("Серийный номер"))
    })
    .await;
    assert!(note.to_string().contains("Цифровой паспорт"), "{note}");
    assert!(passport_of(&stack, 4242).await.is_empty());

    // A manager fills the serial in amoCRM (the UI, not our API token): the update webhook carries it.
    stack
        .sandbox
        .state
        .update_lead_as_manager(
            amo_id,
            json!({"custom_fields_values": [{"field_id": 712629, "values": [{"value": "SN-LATE"}]}]}),
        )
        .expect("manager edit");
    let equipment = eventually(
        &stack,
        "registration after the serial was filled",
        || async {
            let e = passport_of(&stack, 4242).await;
            (!e.is_empty()).then_some(e)
        },
    )
    .await;
    assert_eq!(equipment[0]["serial"], "SN-LATE");
    // The note was added once, not per webhook.
    let notes = sandbox_list(&stack, "notes").await;
    let missing_notes = notes
        .iter()
        .filter(|n| n.to_string().contains("Серийный номер"))
        .count();
    assert_eq!(missing_notes, 1, "{notes:?}");
}

#[tokio::test]
async fn a_reopened_deal_revokes_the_equipment_without_deleting_it() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let amo_id = delivered_lead(&stack, 4242, Some("SN-9")).await;
    move_lead(&stack, amo_id, WON).await;
    eventually(&stack, "registered", || async {
        (!passport_of(&stack, 4242).await.is_empty()).then_some(())
    })
    .await;
    move_lead(&stack, amo_id, NEW_REQUEST).await;
    eventually(&stack, "revoked", || async {
        passport_of(&stack, 4242).await.is_empty().then_some(())
    })
    .await;
    let items = stack
        .aws
        .dynamodb
        .scan()
        .table_name(&stack.resources.passport_table)
        .send()
        .await
        .unwrap();
    let revoked = items
        .items()
        .iter()
        .filter(|i| {
            i.get("state")
                .and_then(|v| v.as_s().ok())
                .map(String::as_str)
                == Some("revoked")
        })
        .count();
    assert_eq!(revoked, 1, "kept as revoked");
}

#[tokio::test]
async fn a_service_request_from_the_tma_becomes_a_service_lead_for_that_machine() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let amo_id = delivered_lead(&stack, 4242, Some("SN-77")).await;
    move_lead(&stack, amo_id, WON).await;
    eventually(&stack, "registered", || async {
        (!passport_of(&stack, 4242).await.is_empty()).then_some(())
    })
    .await;

    let auth = format!("tma {}", init_data(&stack, 4242, 10));
    let post = |body: Value| {
        http()
            .post(format!("{}/passport/service-requests", stack.api_url))
            .header("authorization", auth.clone())
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
    };
    let (status, _) = read(
        post(json!({"serial": "NOPE", "message": "?"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
    let (status, resp) = read(
        post(json!({"serial": "SN-77", "message": "Стучит шпиндель"}))
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{resp}");
    let our_id = resp["lead_id"].as_str().unwrap().to_string();
    let lead = eventually(&stack, "service lead in amoCRM", || async {
        sandbox_list(&stack, "leads")
            .await
            .into_iter()
            .find(|l| l["name"].as_str().is_some_and(|n| n.contains(&our_id)))
    })
    .await;
    assert_eq!(field_value(&lead, 712629).as_deref(), Some("SN-77"));
    assert_eq!(field_value(&lead, 712633).as_deref(), Some("4242"));
    assert_eq!(tag_names(&lead), vec!["tma", "service"]);
    // Someone else's initData cannot ask for service on this machine.
    let other = format!("tma {}", init_data(&stack, 5151, 10));
    let resp = http()
        .post(format!("{}/passport/service-requests", stack.api_url))
        .header("authorization", other)
        .body(json!({"serial": "SN-77", "message": "x"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn a_note_that_failed_is_written_by_the_retry_the_waiting_marker_does_not_swallow_it() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    let amo_id = delivered_lead(&stack, 4343, None).await;
    // amoCRM fails every attempt of the first "serial missing" note.
    inject(
        &stack,
        json!({"kind": "status", "status": 503, "count": 4, "path": "/api/v4/leads/notes"}),
    )
    .await;
    move_lead(&stack, amo_id, WON).await;
    let note = eventually(&stack, "the note, on a later attempt", || async {
        sandbox_list(&stack, "notes")
            .await
            .into_iter()
            .find(|n| n["entity_id"] == amo_id && n.to_string().contains("Серийный номер"))
    })
    .await;
    assert!(note.to_string().contains("Цифровой паспорт"), "{note}");
    let notes = sandbox_list(&stack, "notes").await;
    let about_serial = notes
        .iter()
        .filter(|n| n["entity_id"] == amo_id && n.to_string().contains("Серийный номер"))
        .count();
    assert_eq!(about_serial, 1, "{notes:?}");
}
