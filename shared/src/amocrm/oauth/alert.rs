//! The mails about the amoCRM token: re-authorization needed, a long-lived token about to
//! expire (Russian, no secrets).

use chrono::{DateTime, Utc};
use html_escape::encode_text;

use crate::ports::MailMessage;
use crate::store::TokenHealthRecord;

/// The one alert of an incident: what broke, what it means for leads, what to do.
pub fn reauthorization_mail(
    to: &str,
    record: &TokenHealthRecord,
    start_url: &str,
    secret_id: &str,
) -> MailMessage {
    let when = record
        .since
        .map(|t| t.format("%d.%m.%Y %H:%M UTC").to_string())
        .unwrap_or_else(|| "только что".to_string());
    let answer = record
        .last_error
        .clone()
        .unwrap_or_else(|| "нет текста".to_string());
    let hint = record.hint.clone().unwrap_or_default();
    let steps = [
        "Проверьте в amoCRM → Настройки → Интеграции → эта интеграция → «Ключи и доступы»: \
         секретный ключ должен совпадать с полем amocrm_client_secret секрета приложения \
         (APP_SECRET_ID), а Redirect URI должен быть ровно https://api.td-rss.ru/webhook/amocrm."
            .to_string(),
        format!(
            "Запустите повторную авторизацию: выполните запрос GET {start_url} с заголовком \
             X-Admin-Key (ключ администратора из секрета приложения), откройте адрес из \
             заголовка Location в браузере, где вы вошли в amoCRM как администратор, и нажмите \
             «Разрешить». Страница ответа скажет, удалось ли."
        ),
        format!(
            "Если OAuth не нужен: сгенерируйте долгосрочный токен в «Ключах и доступах» и \
             положите его в секрет {secret_id} как {{\"kind\":\"long_lived\",\"access_token\":\"…\"}}."
        ),
    ];
    let intro = format!(
        "Интеграция РусСтанкоСбыт ↔ amoCRM не смогла обновить токен доступа amoCRM ({when}): \
         amoCRM отказал окончательно, повторять запрос бесполезно. Пока интеграцию не \
         авторизуют заново, новые заявки сохраняются у нас, но в amoCRM не попадают — их нужно \
         будет отправить повторно."
    );
    Notice {
        subject: "amoCRM: интеграции нужна повторная авторизация".to_string(),
        intro,
        before_steps: vec![("Ответ amoCRM", answer)],
        steps: steps.to_vec(),
        after_steps: vec![("Подсказка для инженера (англ.)", hint)],
        footer: "Это письмо отправляется один раз за инцидент.",
    }
    .to(to)
}

/// The notice that a long-lived token expires in `days` days (0: it has expired). Russian,
/// for whoever looks after the integration; names the secret, never the token.
pub fn expiry_notice_mail(
    to: &str,
    expires_at: DateTime<Utc>,
    days: i64,
    secret_id: &str,
    start_url: &str,
) -> MailMessage {
    let when = expires_at.format("%d.%m.%Y %H:%M UTC").to_string();
    let (subject, intro) = if days <= 0 {
        (
            "amoCRM: долгосрочный токен интеграции истёк".to_string(),
            format!(
                "Долгосрочный токен amoCRM интеграции РусСтанкоСбыт истёк {when}. Новые заявки \
                 сохраняются у нас, но в amoCRM не попадают, пока токен не заменят; после замены \
                 их нужно будет отправить повторно."
            ),
        )
    } else {
        let left = days_ru(days);
        (
            format!("amoCRM: долгосрочный токен интеграции истекает через {left}"),
            format!(
                "Долгосрочный токен amoCRM интеграции РусСтанкоСбыт истекает {when} (осталось \
                 {left}). После этого заявки перестанут попадать в amoCRM. Замените токен \
                 заранее."
            ),
        )
    };
    let steps = [
        "В amoCRM откройте Настройки → Интеграции → эта интеграция → «Ключи и доступы» и \
         сгенерируйте новый долгосрочный токен (выберите срок действия)."
            .to_string(),
        format!(
            "Положите его в AWS Secrets Manager, секрет {secret_id}, в виде \
             {{\"kind\":\"long_lived\",\"access_token\":\"…\"}}. Функции подхватят его в течение \
             5 минут, перезапуск не нужен."
        ),
        format!(
            "Или перейдите на OAuth, где токен обновляется сам: выполните запрос GET {start_url} \
             с заголовком X-Admin-Key и откройте адрес из заголовка Location в браузере, где вы \
             вошли в amoCRM как администратор."
        ),
    ];
    Notice {
        subject,
        intro,
        before_steps: Vec::new(),
        steps: steps.to_vec(),
        after_steps: Vec::new(),
        footer: "Предупреждения приходят за 30, 7 и 1 день до срока и в день, когда он истёк, — \
                 каждое один раз.",
    }
    .to(to)
}

/// An operator mail: what happened, labelled facts, numbered steps, a closing line; rendered
/// as plain text and as HTML with every value escaped.
struct Notice {
    subject: String,
    intro: String,
    before_steps: Vec<(&'static str, String)>,
    steps: Vec<String>,
    after_steps: Vec<(&'static str, String)>,
    footer: &'static str,
}

impl Notice {
    fn to(self, to: &str) -> MailMessage {
        let facts_text = |facts: &[(&str, String)]| {
            facts
                .iter()
                .map(|(label, value)| format!("{label}: {value}\n\n"))
                .collect::<String>()
        };
        let facts_html = |facts: &[(&str, String)]| {
            facts
                .iter()
                .map(|(label, value)| format!("<p><b>{label}:</b> {}</p>", encode_text(value)))
                .collect::<String>()
        };
        let numbered = self
            .steps
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{}. {s}", i + 1))
            .collect::<Vec<_>>()
            .join("\n");
        let text = format!(
            "{}\n\n{}Что сделать:\n{numbered}\n\n{}{}\n",
            self.intro,
            facts_text(&self.before_steps),
            facts_text(&self.after_steps),
            self.footer,
        );
        let html = format!(
            "<p>{}</p>{}<p><b>Что сделать:</b></p><ol>{}</ol>{}<p>{}</p>",
            encode_text(&self.intro),
            facts_html(&self.before_steps),
            self.steps
                .iter()
                .map(|s| format!("<li>{}</li>", encode_text(s)))
                .collect::<String>(),
            facts_html(&self.after_steps),
            encode_text(self.footer),
        );
        MailMessage {
            to: vec![to.to_string()],
            reply_to: None,
            subject: self.subject,
            html,
            text,
            lead_id: None,
        }
    }
}

/// "1 день", "3 дня", "7 дней", "21 день", "11 дней".
fn days_ru(n: i64) -> String {
    let word = match (n % 10, n % 100) {
        (_, 11..=14) => "дней",
        (1, _) => "день",
        (2..=4, _) => "дня",
        _ => "дней",
    };
    format!("{n} {word}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_counts_read_as_russian() {
        let read: Vec<String> = [1, 2, 5, 7, 11, 14, 21, 22, 30, 111].map(days_ru).to_vec();
        assert_eq!(
            read,
            [
                "1 день",
                "2 дня",
                "5 дней",
                "7 дней",
                "11 дней",
                "14 дней",
                "21 день",
                "22 дня",
                "30 дней",
                "111 дней"
            ]
        );
    }

    #[test]
    fn the_notice_names_the_date_the_secret_and_what_to_do() {
        let at = DateTime::parse_from_rfc3339("2026-12-28T09:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let m = expiry_notice_mail(
            "ops@td-rss.ru",
            at,
            7,
            "rss/amocrm-token",
            "https://api.td-rss.ru/oauth/start",
        );
        assert_eq!(m.to, ["ops@td-rss.ru"]);
        assert!(m.subject.contains("через 7 дней"), "{}", m.subject);
        for part in [
            "28.12.2026 09:30 UTC",
            "rss/amocrm-token",
            "Ключи и доступы",
            "/oauth/start",
        ] {
            assert!(m.text.contains(part), "{part} missing: {}", m.text);
        }
        let expired = expiry_notice_mail("ops@td-rss.ru", at, 0, "s", "u");
        assert!(expired.subject.contains("истёк"), "{}", expired.subject);
    }
}
