//! Texts people read: the amoCRM lead title and note, and the sales mail (Russian).

use super::Lead;

/// The amoCRM lead name. Carries our lead id so a retry can find the lead it created earlier.
pub fn lead_title(lead: &Lead) -> String {
    format!(
        "Заявка {}: {} ({}) — {}",
        lead.id,
        lead.request.intent.title_ru(),
        lead.request.source.title_ru(),
        lead.request.name
    )
}
