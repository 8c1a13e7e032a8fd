//! Operator notices: a Russian mail that says what happened, gives labelled facts and
//! numbered steps, and closes with one line. Rendered as plain text and as HTML.

use html_escape::encode_text;

use crate::ports::MailMessage;

/// An operator mail: what happened, labelled facts, numbered steps, a closing line; rendered
/// as plain text and as HTML with every value escaped.
pub struct Notice {
    pub subject: String,
    pub intro: String,
    pub before_steps: Vec<(&'static str, String)>,
    pub steps: Vec<String>,
    pub after_steps: Vec<(&'static str, String)>,
    pub footer: &'static str,
}

impl Notice {
    pub fn to(self, to: &str) -> MailMessage {
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
pub fn days_ru(n: i64) -> String {
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
}
