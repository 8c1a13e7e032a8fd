//! The first event each cold start answers: the repository's sample events (`events/`), made
//! valid for the local stack (its webhook token, a Mini App signature with its bot token) and
//! unique per run (idempotency key, phone, webhook request id), so every run takes the same path.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::{Value, json};

pub struct EventContext {
    pub repo_root: PathBuf,
    pub webhook_token: String,
    pub telegram_bot_token: String,
    seq: AtomicU64,
}

impl EventContext {
    pub fn new(repo_root: PathBuf, webhook_token: String, telegram_bot_token: String) -> Self {
        Self {
            repo_root,
            webhook_token,
            telegram_bot_token,
            seq: AtomicU64::new(1),
        }
    }

    fn next(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    fn sample(&self, file: &str) -> Value {
        let path = self.repo_root.join("events").join(file);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("sample event {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("sample event {}: {e}", path.display()))
    }
}

/// A unique Russian mobile number for the n-th synthetic lead.
pub fn phone(n: u64) -> String {
    let n = n % 10_000_000;
    format!(
        "+7 (912) {:03}-{:02}-{:02}",
        n / 10_000,
        (n / 100) % 100,
        n % 100
    )
}

/// The site's JSON form of the n-th synthetic lead (the body of `POST /leads`).
pub fn site_lead(n: u64) -> Value {
    json!({
        "source": "site", "intent": "service", "name": "Нагрузочный Тест",
        "phone": phone(n), "message": "Нужна диагностика станка 16К20",
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `POST /leads` (JSON form of the site), accepted with 202.
pub fn lead_ingest(ctx: &EventContext) -> String {
    let n = ctx.next();
    let mut event = ctx.sample("lead-ingest-post-leads-json.json");
    let mut body: Value =
        serde_json::from_str(event["body"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
    body["phone"] = json!(phone(n));
    event["body"] = json!(body.to_string());
    event["headers"]["idempotency-key"] = json!(uuid::Uuid::new_v4().to_string());
    event.to_string()
}

/// `POST /webhook/amocrm` with the local webhook token: stored in the inbox, 200.
pub fn amocrm_webhook(ctx: &EventContext) -> String {
    let mut event = ctx.sample("amocrm-webhook-status-142.json");
    let token = &ctx.webhook_token;
    event["rawQueryString"] = json!(format!("token={token}"));
    event["queryStringParameters"]["token"] = json!(token);
    event["headers"]["x-amocrm-requestid"] = json!(uuid::Uuid::new_v4().to_string());
    event.to_string()
}

/// `GET /passport` signed for the local bot token: reads the user's passport, 200.
pub fn passport_api(ctx: &EventContext) -> String {
    let mut event = ctx.sample("passport-get.json");
    let now = unix_now().to_string();
    let user = json!({"id": 428113907, "first_name": "Алексей", "username": "a_kuznetsov"});
    let init_data = shared::telegram::sign_init_data(
        &[
            ("auth_date", &now),
            ("query_id", "AAHzYYMZAAAAAPNhgxkBZ2Tq"),
            ("user", &user.to_string()),
        ],
        &ctx.telegram_bot_token,
    );
    event["headers"]["authorization"] = json!(format!("tma {init_data}"));
    event.to_string()
}

/// A stream batch with one INSERT of a lead (the lead is seeded before the runs).
pub fn crm_worker(ctx: &EventContext) -> String {
    ctx.sample("crm-worker-stream-insert.json").to_string()
}

/// A new lead like the crm-worker sample's (new id, the n-th phone), and its stream batch of
/// one INSERT, as DynamoDB Streams would deliver it once the lead is stored.
pub fn new_worker_lead(ctx: &EventContext, n: u64) -> (shared::leads::Lead, String) {
    let mut event = ctx.sample("crm-worker-stream-insert.json");
    let record = &mut event["Records"][0];
    let image = &mut record["dynamodb"]["NewImage"];
    let mut lead: Value =
        serde_json::from_str(image["payload"]["S"].as_str().unwrap_or("{}")).unwrap_or(Value::Null);
    let id = ulid::Ulid::generate().to_string();
    lead["id"] = json!(id);
    lead["request"]["phone"] = json!(phone(n));
    image["payload"]["S"] = json!(lead.to_string());
    image["lead_id"]["S"] = json!(id);
    image["pk"]["S"] = json!(format!("LEAD#{id}"));
    record["dynamodb"]["Keys"]["pk"]["S"] = json!(format!("LEAD#{id}"));
    record["eventID"] = json!(uuid::Uuid::new_v4().simple().to_string());
    let lead = serde_json::from_value(lead).expect("the sample's lead with a new id and phone");
    (lead, event.to_string())
}

/// The EventBridge schedule's event (maintenance-sync reads only the invocation's deadline).
pub fn maintenance_sync(ctx: &EventContext) -> String {
    ctx.sample("maintenance-sync-schedule.json").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> EventContext {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        EventContext::new(root, "hook-token".into(), "123:bot".into())
    }

    #[test]
    fn phones_are_distinct_and_well_formed() {
        assert_eq!(phone(1), "+7 (912) 000-00-01");
        assert_eq!(phone(1_234_567), "+7 (912) 123-45-67");
        assert_ne!(phone(2), phone(3));
    }

    #[test]
    fn each_lead_event_is_a_new_lead() {
        let ctx = ctx();
        let (a, b): (Value, Value) = (
            serde_json::from_str(&lead_ingest(&ctx)).unwrap(),
            serde_json::from_str(&lead_ingest(&ctx)).unwrap(),
        );
        assert_ne!(
            a["headers"]["idempotency-key"],
            b["headers"]["idempotency-key"]
        );
        assert_ne!(a["body"], b["body"]);
        assert!(a["body"].as_str().unwrap().contains("+7 (912) 000-00-01"));
    }

    #[test]
    fn each_worker_lead_is_new_and_its_event_names_it() {
        let ctx = ctx();
        let (a, event) = new_worker_lead(&ctx, 7);
        let (b, _) = new_worker_lead(&ctx, 8);
        assert_ne!(a.id, b.id);
        assert_eq!(a.request.phone.as_deref(), Some("+7 (912) 000-00-07"));
        let event: Value = serde_json::from_str(&event).unwrap();
        let record = &event["Records"][0]["dynamodb"];
        assert_eq!(record["Keys"]["pk"]["S"], format!("LEAD#{}", a.id));
        assert_eq!(record["NewImage"]["lead_id"]["S"], a.id.as_str());
        let payload: shared::leads::Lead =
            serde_json::from_str(record["NewImage"]["payload"]["S"].as_str().unwrap()).unwrap();
        assert_eq!(payload.id, a.id);
    }

    #[test]
    fn webhook_event_carries_the_local_token() {
        let event: Value = serde_json::from_str(&amocrm_webhook(&ctx())).unwrap();
        assert_eq!(event["rawQueryString"], "token=hook-token");
        assert_eq!(event["queryStringParameters"]["token"], "hook-token");
    }

    #[test]
    fn passport_event_is_signed_with_the_given_bot_token() {
        let event: Value = serde_json::from_str(&passport_api(&ctx())).unwrap();
        let auth = event["headers"]["authorization"].as_str().unwrap();
        let init_data = auth.strip_prefix("tma ").unwrap();
        let now = unix_now();
        assert!(shared::telegram::verify_init_data(init_data, "123:bot", now, 3600).is_ok());
        assert!(shared::telegram::verify_init_data(init_data, "999:other", now, 3600).is_err());
    }
}
