//! The notice that the long-lived amoCRM token is about to expire (or has), mailed by the
//! sync's token care. Russian, for whoever looks after the integration; never the token.

use chrono::{DateTime, Utc};

use crate::notice::{Notice, days_ru};
use crate::ports::MailMessage;

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

#[cfg(test)]
mod tests {
    use super::*;

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
