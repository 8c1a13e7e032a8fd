//! The printed result: Markdown tables with padded columns, readable in a terminal and
//! pasteable into the README as they are.

use std::fmt::Write;
use std::time::Duration;

pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    notes: Vec<String>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Self {
        Self {
            title: title.to_string(),
            header: header.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn render(&self) -> String {
        let columns = self.header.len();
        let width = |i: usize| {
            std::iter::once(&self.header)
                .chain(&self.rows)
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        };
        let widths: Vec<usize> = (0..columns).map(width).collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = (0..columns)
                .map(|i| {
                    let cell = cells.get(i).map(String::as_str).unwrap_or("");
                    format!("{cell}{}", " ".repeat(widths[i] - cell.chars().count()))
                })
                .collect();
            format!("| {} |", padded.join(" | "))
        };
        let mut out = format!("### {}\n\n{}\n", self.title, line(&self.header));
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        let _ = writeln!(out, "|-{}-|", rule.join("-|-"));
        for row in &self.rows {
            let _ = writeln!(out, "{}", line(row));
        }
        for note in &self.notes {
            let _ = write!(out, "\n{note}\n");
        }
        out
    }
}

/// Milliseconds with one decimal.
pub fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

pub fn opt_ms(d: Option<Duration>) -> String {
    d.map(ms).unwrap_or_else(|| "–".into())
}

/// Bytes as MB (10^6) with two decimals, the unit Lambda's limits use.
pub fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// KiB as MiB with one decimal (what /proc reports, what Lambda's "Max Memory Used" shows).
pub fn mib_of_kib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_to_the_widest_cell() {
        let mut t = Table::new("T", &["a", "bb"]);
        t.row(vec!["long cell".into(), "x".into()]);
        t.note("n");
        assert_eq!(
            t.render(),
            "### T\n\n| a         | bb |\n|-----------|----|\n| long cell | x  |\n\nn\n"
        );
    }

    #[test]
    fn units_are_rounded_for_reading() {
        assert_eq!(ms(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(mb(3_239_723), "3.24 MB");
        assert_eq!(mib_of_kib(10_240), "10.0 MiB");
        assert_eq!(opt_ms(None), "–");
    }
}
