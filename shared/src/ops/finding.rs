//! One result of an operator check: what was checked, whether it is fine, what was found and,
//! when it is not fine, what to do.

use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Short name of the check (`token`, `pipeline`, `field AMOCRM_FIELD_SERIAL`, …).
    pub check: String,
    pub ok: bool,
    /// What was found (never a token or secret).
    pub detail: String,
    /// The next step when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Finding {
    pub fn ok(check: impl Into<String>, detail: impl Into<String>) -> Self {
        Finding {
            check: check.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
        }
    }

    pub fn problem(
        check: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Finding {
            check: check.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// Whether every finding is ok.
pub fn all_ok(findings: &[Finding]) -> bool {
    findings.iter().all(|f| f.ok)
}

/// Findings as a plain-text table for a terminal: `OK`/`FAIL`, check, detail, and the fix on
/// the next line.
pub fn render_table(findings: &[Finding]) -> String {
    let width = findings
        .iter()
        .map(|f| f.check.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for f in findings {
        let mark = if f.ok { "OK  " } else { "FAIL" };
        let pad = width - f.check.chars().count();
        out.push_str(&format!(
            "{mark}  {}{}  {}\n",
            f.check,
            " ".repeat(pad),
            f.detail
        ));
        if let Some(fix) = &f.fix {
            out.push_str(&format!("      {}  fix: {fix}\n", " ".repeat(width)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_aligns_checks_and_puts_fixes_under_their_finding() {
        let table = render_table(&[
            Finding::ok("token", "long-lived"),
            Finding::problem("pipeline", "10 does not exist", "set AMOCRM_PIPELINE_ID"),
        ]);
        assert_eq!(
            table,
            "OK    token     long-lived\n\
             FAIL  pipeline  10 does not exist\n\
             \x20               fix: set AMOCRM_PIPELINE_ID\n"
        );
        assert!(!all_ok(&[Finding::problem("a", "b", "c")]));
        assert!(all_ok(&[Finding::ok("a", "b")]));
    }
}
