//! The mail that the OAuth integration needs re-authorization (Russian, no secrets).

use crate::notice::Notice;
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
