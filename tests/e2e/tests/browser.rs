//! The reference page of `make run` in headless Chromium: the site's lead form and the Mini App
//! preview, served from an origin other than the API's, so every call crosses real CORS. The
//! test starts Debian's chromedriver itself; screenshots of each state go to `target/browser/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use e2e::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

const WON: i64 = 142;

/// chromedriver as a child process on a free loopback port, killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    async fn start() -> Driver {
        let binary = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new(&binary)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {binary} ({e}): `make test` installs Debian's chromium and \
                     chromium-driver (tools/scripts/deps.sh); set CHROMEDRIVER to use another"
                )
            });
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(
                Instant::now() < deadline,
                "{binary} did not listen on {port}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Driver { child, url }
    }

    async fn browser(&self) -> Browser {
        let chrome = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
        let caps = json!({
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1200,1600", "--lang=ru"],
            }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let client = ClientBuilder::rustls()
            .expect("TLS roots")
            .capabilities(caps)
            .connect(&self.url)
            .await
            .unwrap_or_else(|e| panic!("headless Chromium ({chrome}) did not start: {e}"));
        Browser { client }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Browser {
    client: Client,
}

impl Browser {
    async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(el) => el.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Polls the text of `css` until `ready` holds, or panics with what it showed last.
    async fn wait_text(&self, css: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css).await;
            if ready(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{css} still shows {text:?}; page errors: {:?}",
                self.text("#lead-errors").await + &self.text("#tma-errors").await
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn fill(&self, name: &str, value: &str) {
        let field = self
            .client
            .find(Locator::Css(&format!("#lead-form [name={name}]")))
            .await
            .unwrap_or_else(|e| panic!("field {name}: {e}"));
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    async fn click(&self, css: &str) {
        self.client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
        std::fs::create_dir_all(&dir).expect("screenshot folder");
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }
}

#[tokio::test]
async fn the_lead_form_shows_field_errors_retries_a_503_and_its_lead_becomes_a_deal() {
    let stack = stack().await;
    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.client.goto(&stack.page_url).await.expect("page");

    // A bad phone: the API's Russian message beside the phone field, nothing stored.
    browser.fill("name", "Иван Петров").await;
    browser.fill("phone", "12345").await;
    browser.fill("model", "16К20").await;
    browser.click("#lead-form button[type=submit]").await;
    let phone_error = browser
        .wait_text("[data-error-for=phone]", |t| !t.is_empty())
        .await;
    assert_eq!(
        phone_error,
        "Телефон должен быть российским номером, например +7 912 345-67-89"
    );
    let invalid = browser
        .client
        .find(Locator::Css("#lead-form [name=phone]"))
        .await
        .unwrap()
        .attr("class")
        .await
        .unwrap();
    assert_eq!(invalid.as_deref(), Some("invalid"));
    browser.screenshot("lead-form-bad-phone").await;
    assert_eq!(
        table_items(&stack).await,
        0,
        "a refused lead stores nothing"
    );

    // The store is briefly unreachable: the page reads the exposed Retry-After and retries.
    stack
        .unavailable_leads
        .store(1, std::sync::atomic::Ordering::SeqCst);
    browser.fill("phone", "8 (912) 345-67-89").await;
    browser.fill("serial", "SN-B-501").await;
    browser.click("#lead-form button[type=submit]").await;
    let busy = browser
        .wait_text("#lead-result", |t| t.starts_with("Сервис занят"))
        .await;
    assert_eq!(
        busy, "Сервис занят, повторим через 1 с…",
        "Retry-After is readable from the page"
    );
    browser.screenshot("lead-form-retrying").await;
    assert_eq!(
        browser.text("[data-error-for=phone]").await,
        "",
        "the old error is gone"
    );

    let accepted = browser
        .wait_text("#lead-result", |t| t.starts_with("Заявка принята"))
        .await;
    browser.screenshot("lead-form-accepted").await;
    let lead_id = accepted
        .strip_prefix("Заявка принята, номер ")
        .and_then(|rest| rest.split('.').next())
        .unwrap_or_else(|| panic!("no lead id in {accepted:?}"))
        .to_string();
    assert_eq!(lead_id.len(), 26, "a ULID: {lead_id}");

    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    let deals: Vec<&Value> = leads
        .iter()
        .filter(|l| l["name"].as_str().is_some_and(|n| n.contains(&lead_id)))
        .collect();
    assert_eq!(deals.len(), 1, "one deal for one submission: {leads:?}");
    assert_eq!(field_value(deals[0], 712629).as_deref(), Some("SN-B-501"));
    let contacts = sandbox_list(&stack, "contacts").await;
    assert!(
        contacts
            .iter()
            .any(|c| c.to_string().contains("+79123456789")),
        "the contact has the normalised phone: {contacts:?}"
    );
    browser.client.close().await.expect("close");
}

#[tokio::test]
async fn the_mini_app_preview_lists_a_machine_won_in_amocrm_and_sends_a_service_request() {
    let stack = stack().await;
    stack.register_webhook().await.unwrap();
    // The bot's server vouches for the customer's Telegram ID with the bot key.
    let body = json!({"source": "bot", "intent": "service", "name": "Пётр", "telegram_id": 4711,
                      "phone": "+79031112233",
                      "equipment": {"model": "16К20", "serial": "SN-TMA-77"}});
    let bot_key = stack.options.bot_api_key.clone();
    let (status, resp) = post_lead_with(&stack, &body, &[("x-bot-key", bot_key.as_str())]).await;
    assert_eq!(status, 202, "{resp}");
    let our_id = resp["lead_id"].as_str().unwrap().to_string();
    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    let amo_id = amo_lead_named(&leads, &our_id)["id"]
        .as_i64()
        .expect("the deal's id");

    let driver = Driver::start().await;
    let browser = driver.browser().await;
    browser.client.goto(&stack.page_url).await.expect("page");
    browser.click("#tma-open").await;
    browser
        .wait_text("#tma-errors", |t| t == "В паспорте пока нет оборудования.")
        .await;
    browser.screenshot("mini-app-empty").await;

    // The manager wins the deal; amoCRM's webhook registers the machine.
    move_lead(&stack, amo_id, WON).await;
    eventually(&stack, "the machine in the passport", || async {
        let (_, passport) =
            get_passport(&stack, &format!("tma {}", init_data(&stack, 4711, 0))).await;
        (passport["equipment"].as_array().map(Vec::len) == Some(1)).then_some(())
    })
    .await;

    browser.click("#tma-open").await;
    let machine = browser
        .wait_text("#passport-list li[data-serial='SN-TMA-77']", |t| {
            !t.is_empty()
        })
        .await;
    assert!(
        machine.starts_with("16К20, № SN-TMA-77: "),
        "the preview names the machine: {machine:?}"
    );
    assert!(machine.contains("следующее ТО до "), "{machine:?}");
    assert_eq!(browser.text("#tma-errors").await, "");
    browser.screenshot("mini-app-passport").await;

    browser
        .click("#passport-list li[data-serial='SN-TMA-77'] button")
        .await;
    let sent = browser
        .wait_text("#tma-result", |t| t.starts_with("Заявка на сервис принята"))
        .await;
    browser.screenshot("mini-app-service-request").await;
    let request_id = sent
        .strip_prefix("Заявка на сервис принята, номер ")
        .and_then(|rest| rest.strip_suffix('.'))
        .unwrap_or_else(|| panic!("no lead id in {sent:?}"))
        .to_string();

    stack.deliver_pending().await.unwrap();
    let leads = sandbox_list(&stack, "leads").await;
    let request = amo_lead_named(&leads, &request_id);
    assert_eq!(field_value(request, 712629).as_deref(), Some("SN-TMA-77"));
    assert_eq!(field_value(request, 712633).as_deref(), Some("4711"));
    assert!(
        !tag_names(request).contains(&"Telegram ID не подтверждён".to_string()),
        "initData vouched for the ID: {:?}",
        tag_names(request)
    );
    browser.client.close().await.expect("close");
}
