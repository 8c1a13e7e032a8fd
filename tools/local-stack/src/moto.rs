//! The moto server (real HTTP implementations of DynamoDB with Streams, SES v2 and Secrets
//! Manager) as a child process on a loopback port.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::{Child, Command};

pub struct Moto {
    pub url: String,
    child: Child,
}

#[derive(Debug, thiserror::Error)]
pub enum MotoError {
    #[error(
        "moto_server not found (looked at $MOTO_SERVER and {0}); run `make deps` (or `make test`, which installs it)"
    )]
    NotInstalled(String),
    #[error("moto_server did not start: {0}")]
    Start(String),
}

/// How moto is started: the venv's python running `tools/scripts/moto_serial.py`, which
/// serves moto's app one request at a time (moto's own server is threaded without locks, so
/// its conditional writes are not atomic under concurrency, unlike DynamoDB's).
/// The venv is found from `$MOTO_SERVER` (its `bin/moto_server`) or `.venv` in the repository.
pub fn locate() -> Result<(PathBuf, PathBuf), MotoError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let bin = match std::env::var("MOTO_SERVER") {
        Ok(p) => Path::new(&p)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        Err(_) => root.join(".venv/bin"),
    };
    let python = bin.join("python3");
    let script = root.join("tools/scripts/moto_serial.py");
    if python.is_file() && bin.join("moto_server").is_file() && script.is_file() {
        return Ok((python, script));
    }
    Err(MotoError::NotInstalled(
        bin.join("moto_server").display().to_string(),
    ))
}

/// A free loopback port (0 asks the OS).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Moto {
    /// Starts moto on `port` (a free one when `None`) and waits until it answers.
    pub async fn start(port: Option<u16>) -> Result<Self, MotoError> {
        let (python, script) = locate()?;
        let port = port.unwrap_or_else(free_port);
        let child = Command::new(&python)
            .arg(&script)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| MotoError::Start(format!("{}: {e}", python.display())))?;
        let url = format!("http://127.0.0.1:{port}");
        let mut moto = Moto { url, child };
        moto.wait_ready().await?;
        Ok(moto)
    }

    async fn wait_ready(&mut self) -> Result<(), MotoError> {
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(MotoError::Start(format!("exited with {status}")));
            }
            if let Ok(r) = http.get(format!("{}/moto-api/", self.url)).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(MotoError::Start("not answering after 30 s".into()))
    }

    /// Mail SES accepted, as moto stores it (`GET /moto-api/data.json` → `ses.Message`).
    pub async fn sent_mail(&self) -> Vec<serde_json::Value> {
        let data: serde_json::Value = reqwest::get(format!("{}/moto-api/data.json", self.url))
            .await
            .expect("moto data")
            .json()
            .await
            .expect("moto data json");
        let mut out = Vec::new();
        // The store is keyed by account and region; collect every message.
        fn collect(v: &serde_json::Value, out: &mut Vec<serde_json::Value>) {
            match v {
                serde_json::Value::Array(items) => out.extend(items.iter().cloned()),
                serde_json::Value::Object(map) => map.values().for_each(|v| collect(v, out)),
                _ => {}
            }
        }
        if let Some(messages) = data.get("ses").and_then(|s| s.get("Message")) {
            collect(messages, &mut out);
        }
        out
    }
}
