//! The layers of `lib.rs`, checked: the domain modules reach the world only through
//! `ports`. A domain file (outside its `#[cfg(test)]` part, where tests may wire real adapters)
//! that names an adapter module, or an AWS, Lambda, HTTP or reqwest type, fails this test with
//! the file, the line and what it named.

use std::fs;
use std::path::{Path, PathBuf};

/// The domain: lead, passport and maintenance use cases, the webhook use case above the last
/// two, and the operator notice layout they mail.
const DOMAIN: &[&str] = &[
    "leads",
    "passport",
    "maintenance",
    "crm_events.rs",
    "notice.rs",
];

/// Modules and crates the domain must not name.
const FORBIDDEN: &[&str] = &[
    "crate::amocrm",
    "crate::store",
    "crate::mail",
    "crate::secrets",
    "crate::api",
    "crate::worker",
    "crate::wiring",
    "crate::ops",
    "aws_sdk_",
    "aws_config",
    "aws_smithy",
    "aws_lambda_events",
    "lambda_http",
    "lambda_runtime",
    "reqwest",
    "http::",
    "hyper",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
    if path.is_dir() {
        for entry in fs::read_dir(path).expect("readable source folder") {
            rust_files(&entry.expect("entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs")
        // `mod tests;` files hold tests only.
        && path.file_stem().is_some_and(|s| s != "tests")
    {
        out.push(path.to_path_buf());
    }
}

/// The lines before the file's first `#[cfg(test)]` (test modules close every file here).
fn production_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, l)| l.trim() != "#[cfg(test)]")
        .map(|(i, l)| (i + 1, l))
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
}

/// Where each domain file names something it must not.
fn violations() -> Vec<String> {
    let mut files = Vec::new();
    for module in DOMAIN {
        rust_files(&src().join(module), &mut files);
    }
    assert!(
        files.len() > 20,
        "the domain modules were not found: {files:?}"
    );
    let mut found = Vec::new();
    for file in files {
        let text = fs::read_to_string(&file).expect("readable source file");
        for (number, line) in production_lines(&text) {
            for name in FORBIDDEN.iter().filter(|n| line.contains(*n)) {
                let at = file.strip_prefix(src()).unwrap_or(&file).display();
                found.push(format!("src/{at}:{number} names `{name}`: {}", line.trim()));
            }
        }
    }
    found
}

#[test]
fn domain_modules_reach_adapters_only_through_ports() {
    let found = violations();
    assert!(
        found.is_empty(),
        "the domain must speak through `ports` (see lib.rs):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_check_sees_a_forbidden_import() {
    let text = "use crate::ports::Crm;\nuse crate::amocrm::CrmError;\n#[cfg(test)]\nuse crate::store::X;\n";
    let named: Vec<&str> = production_lines(text)
        .flat_map(|(_, l)| FORBIDDEN.iter().copied().filter(move |n| l.contains(*n)))
        .collect();
    assert_eq!(
        named,
        ["crate::amocrm"],
        "test code after #[cfg(test)] is left out"
    );
}
