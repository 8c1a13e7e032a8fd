//! Injected failures: the bad days of amoCRM on demand. Faults queue up in FIFO order and
//! apply to API calls (including the token endpoint, never control calls), optionally only
//! to paths under a prefix; each fires `count` times.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RateLimitStyle {
    /// nginx HTML body, no `Retry-After` header: what clients meet in the wild.
    #[default]
    Html,
    /// The documented problem JSON with `retry_after`.
    Json,
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}

/// One injected failure, as posted to `POST /_sandbox/faults`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Fault {
    /// Answer `status` (e.g. 500, 502, 503, 504, 402) without doing anything.
    Status {
        status: u16,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        path: Option<String>,
    },
    /// Hold the answer for `delay_ms` (longer than the client's timeout). With `applied`
    /// (the default) the request takes effect first, so a client that gave up and retries
    /// meets the consequences (a duplicate lead); otherwise it answers 504 and changes nothing.
    Timeout {
        #[serde(default = "one")]
        count: u32,
        delay_ms: u64,
        #[serde(default = "yes")]
        applied: bool,
        #[serde(default)]
        path: Option<String>,
    },
    /// Answer 429 as if the limit were hit.
    RateLimit {
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        style: RateLimitStyle,
        #[serde(default)]
        retry_after: Option<u64>,
        #[serde(default)]
        path: Option<String>,
    },
}

impl Fault {
    fn path(&self) -> Option<&str> {
        match self {
            Fault::Status { path, .. }
            | Fault::Timeout { path, .. }
            | Fault::RateLimit { path, .. } => path.as_deref(),
        }
    }

    fn count_mut(&mut self) -> &mut u32 {
        match self {
            Fault::Status { count, .. }
            | Fault::Timeout { count, .. }
            | Fault::RateLimit { count, .. } => count,
        }
    }

    /// Checks what a client posted; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            Fault::Status { status, .. } if !(400..=599).contains(status) => Err(format!(
                "status: {status} is not an error status (400..=599)"
            )),
            Fault::Timeout { delay_ms: 0, .. } => Err("delay_ms: must be above 0".into()),
            _ => Ok(()),
        }
    }
}

#[derive(Debug, Default)]
pub struct FaultQueue {
    queue: VecDeque<Fault>,
}

impl FaultQueue {
    pub fn push(&mut self, fault: Fault) {
        if *fault.clone().count_mut() > 0 {
            self.queue.push_back(fault);
        }
    }

    /// Takes one firing of the oldest fault that applies to `path`.
    pub fn take(&mut self, path: &str) -> Option<Fault> {
        let index = self
            .queue
            .iter()
            .position(|f| f.path().is_none_or(|prefix| path.starts_with(prefix)))?;
        let fault = &mut self.queue[index];
        let fired = fault.clone();
        let count = fault.count_mut();
        *count -= 1;
        if *count == 0 {
            self.queue.remove(index);
        }
        Some(fired)
    }

    pub fn pending(&self) -> Vec<Fault> {
        self.queue.iter().cloned().collect()
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_fire_in_order_by_prefix_and_count() {
        let mut q = FaultQueue::default();
        let complex: Fault = serde_json::from_str(
            r#"{"kind":"status","status":503,"count":2,"path":"/api/v4/leads/complex"}"#,
        )
        .unwrap();
        let any: Fault = serde_json::from_str(r#"{"kind":"rate_limit"}"#).unwrap();
        q.push(complex);
        q.push(any.clone());
        assert_eq!(q.take("/api/v4/account"), Some(any));
        assert_eq!(q.take("/api/v4/account"), None);
        for _ in 0..2 {
            assert!(matches!(
                q.take("/api/v4/leads/complex/x"),
                Some(Fault::Status { status: 503, .. })
            ));
        }
        assert_eq!(q.take("/api/v4/leads/complex"), None);
        assert!(q.pending().is_empty());
    }

    #[test]
    fn posted_faults_are_checked() {
        let bad: Result<Fault, _> = serde_json::from_str(r#"{"kind":"status"}"#);
        assert!(bad.is_err());
        let fault: Fault = serde_json::from_str(r#"{"kind":"status","status":200}"#).unwrap();
        assert!(fault.validate().unwrap_err().starts_with("status"));
    }
}
