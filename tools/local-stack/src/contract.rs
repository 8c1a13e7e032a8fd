//! The API's contract, `api/openapi.yaml`, held against real answers: the front checks every
//! answer a test gets (status documented for its route and method, required headers, content
//! type, body valid against the schema) and the stack fails its test on a violation.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{LazyLock, Mutex};

use serde_json::Value;

/// The document, read once per process.
pub static CONTRACT: LazyLock<Contract> =
    LazyLock::new(|| Contract::load().unwrap_or_else(|e| panic!("api/openapi.yaml: {e}")));

pub fn document_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../api/openapi.yaml")
}

pub struct Contract {
    doc: Value,
    validators: Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>,
}

/// One answer as the caller saw it.
#[derive(Debug, Clone, Copy)]
pub struct Answer<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub status: u16,
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

impl Contract {
    fn load() -> Result<Self, String> {
        let text = std::fs::read_to_string(document_path()).map_err(|e| e.to_string())?;
        let doc: Value = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
        Ok(Contract {
            doc,
            validators: Mutex::new(HashMap::new()),
        })
    }

    pub fn document(&self) -> &Value {
        &self.doc
    }

    /// `(METHOD, path)` of every operation.
    pub fn routes(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (path, item) in self.doc["paths"].as_object().into_iter().flatten() {
            for method in item.as_object().into_iter().flatten().map(|(m, _)| m) {
                out.push((method.to_ascii_uppercase(), path.clone()));
            }
        }
        out.sort();
        out
    }

    /// The statuses documented for a route (`x-unrouted`'s for one not in the document).
    pub fn statuses(&self, method: &str, path: &str) -> Vec<u16> {
        let (responses, _) = self.responses(method, path);
        responses
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(s, _)| s.parse().ok())
            .collect()
    }

    fn responses(&self, method: &str, path: &str) -> (&Value, String) {
        let method = method.to_ascii_lowercase();
        let op = &self.doc["paths"][path][method.as_str()];
        if op.is_object() {
            (
                &op["responses"],
                format!("/paths/{}/{method}/responses", escape(path)),
            )
        } else {
            (&self.doc["x-unrouted"], "/x-unrouted".to_string())
        }
    }

    /// A `$ref` followed, with the JSON pointer of where it led.
    fn resolve<'a>(&'a self, value: &'a Value, pointer: String) -> (&'a Value, String) {
        match value["$ref"].as_str().and_then(|r| r.strip_prefix('#')) {
            Some(target) => match self.doc.pointer(target) {
                Some(v) => self.resolve(v, target.to_string()),
                None => (&Value::Null, target.to_string()),
            },
            None => (value, pointer),
        }
    }

    fn validator(&self, pointer: &str) -> Result<std::sync::Arc<jsonschema::Validator>, String> {
        let mut cache = self.validators.lock().expect("validator cache");
        if let Some(v) = cache.get(pointer) {
            return Ok(v.clone());
        }
        let mut schema = self.doc.clone();
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema".into();
        schema["$ref"] = format!("#{pointer}").into();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .map_err(|e| format!("schema at {pointer}: {e}"))?;
        let validator = std::sync::Arc::new(validator);
        cache.insert(pointer.to_string(), validator.clone());
        Ok(validator)
    }

    /// Whether a JSON value fits the schema at `pointer` (e.g. a request example).
    pub fn fits(&self, pointer: &str, value: &Value) -> Result<(), String> {
        let validator = self.validator(pointer)?;
        let errors: Vec<String> = validator
            .iter_errors(value)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }

    /// Checks one answer; the error says what does not match.
    pub fn check(&self, a: Answer<'_>) -> Result<(), String> {
        let what = format!("{} {} → {}", a.method, a.path, a.status);
        let (responses, pointer) = self.responses(a.method, a.path);
        let status = a.status.to_string();
        let Some(documented) = responses.get(&status) else {
            return Err(format!("{what}: status not documented"));
        };
        let (response, pointer) = self.resolve(documented, format!("{pointer}/{status}"));
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let (header, _) = self.resolve(header, String::new());
            if header["required"].as_bool() == Some(true) && !a.headers.contains_key(name.as_str())
            {
                return Err(format!("{what}: required header {name} missing"));
            }
        }
        let content_type = a
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let Some(content) = response["content"].as_object() else {
            return if a.body.is_empty() {
                Ok(())
            } else {
                Err(format!("{what}: a body where none is documented"))
            };
        };
        let Some(content_type) = content_type.filter(|c| content.contains_key(c)) else {
            return Err(format!(
                "{what}: content type {:?} not documented",
                a.headers.get("content-type")
            ));
        };
        if content_type != "application/json" {
            return Ok(());
        }
        let body: Value =
            serde_json::from_slice(a.body).map_err(|e| format!("{what}: body is not JSON: {e}"))?;
        let schema_pointer = format!("{pointer}/content/{}/schema", escape(&content_type));
        self.fits(&schema_pointer, &body)
            .map_err(|e| format!("{what}: {e}; body {body}"))
    }
}

/// A JSON pointer segment (`/` → `~1`, `~` → `~0`).
fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// What a stack's front saw: answers checked, and the violations.
#[derive(Debug, Default)]
pub struct ContractLog {
    pub checked: std::sync::atomic::AtomicU64,
    pub violations: Mutex<Vec<String>>,
}

impl ContractLog {
    pub fn record(&self, answer: Answer<'_>) {
        self.checked
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Err(violation) = CONTRACT.check(answer) {
            tracing::error!(%violation, "answer breaks api/openapi.yaml");
            self.violations
                .lock()
                .expect("contract log")
                .push(violation);
        }
    }

    /// Adds this stack's count to `target/contract/`, one file per stack, for the README's figure.
    pub fn tally(&self) {
        let checked = self.checked.load(std::sync::atomic::Ordering::Relaxed);
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/contract");
        if checked == 0 || std::fs::create_dir_all(&dir).is_err() {
            return;
        }
        let name = format!("{}-{}", std::process::id(), ulid::Ulid::generate());
        let _ = std::fs::write(dir.join(name), checked.to_string());
    }
}
