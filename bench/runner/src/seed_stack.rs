//! The seed's stack as a process: `bench/baseline/seed_app.py` (FastAPI + BackgroundTasks +
//! aiohttp) under uvicorn on a free loopback port, optionally held to a CPU share from its
//! first instruction, with the functions' environment.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Command;

use crate::cpu_share::CpuCap;
use crate::spawned::Spawned;

/// Python's imports (FastAPI, pydantic, boto3, aiohttp) take seconds at a 0.145 vCPU share.
const START_TIMEOUT: Duration = Duration::from_secs(120);

pub struct SeedApp {
    process: Spawned,
    pub url: String,
    /// Spawn → the port accepts connections (imports, clients, the token read done).
    pub init: Duration,
    /// Spawn → the answer to its first `POST /leads`.
    pub first_answer: Duration,
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

impl SeedApp {
    /// Starts the app (`deliver`: background delivery on) and answers one lead, so what is
    /// measured after is warm.
    pub async fn start(
        python: &Path,
        repo_root: &Path,
        env: &[(String, String)],
        deliver: bool,
        share: Option<f64>,
        http: &reqwest::Client,
        first_lead: &Value,
    ) -> Result<Self, String> {
        let cap = share
            .map(|s| CpuCap::new(&format!("seed-app-{deliver}"), s))
            .transpose()?;
        let port = free_port().map_err(|e| format!("free port: {e}"))?;
        let stderr_path =
            std::env::temp_dir().join(format!("bench-seed-app-{}.stderr", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path).map_err(|e| e.to_string())?;
        let mut command = Command::new(python);
        command
            .args(["-m", "uvicorn", "seed_app:app", "--app-dir"])
            .arg(repo_root.join("bench/baseline"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--no-access-log", "--log-level", "warning"])
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("SEED_DELIVER", if deliver { "1" } else { "0" })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true);
        let mut process = Spawned::spawn("seed app", command, cap, stderr_path)
            .map_err(|e| format!("{e} ({})", python.display()))?;
        let url = format!("http://127.0.0.1:{port}");
        let init = process
            .wait_ready(START_TIMEOUT, || async {
                let listening = tokio::net::TcpStream::connect(("127.0.0.1", port)).await;
                listening.is_ok().then(Instant::now)
            })
            .await?;
        let status = post_lead(http, &url, first_lead).await;
        let first_answer = process.started.elapsed();
        if status != Some(202) {
            return Err(format!(
                "seed app: first POST /leads answered {status:?}: {}",
                process.stderr_tail()
            ));
        }
        Ok(Self {
            process,
            url,
            init,
            first_answer,
        })
    }

    pub fn cpu(&self) -> Duration {
        self.process.cpu()
    }

    pub fn peak_rss_kb(&self) -> Option<u64> {
        self.process.peak_rss_kb()
    }

    /// The background tasks' record, once at least `ended` deliveries have ended.
    pub async fn deliveries(&self, http: &reqwest::Client, ended: u64) -> Result<Value, String> {
        let resp = http
            .get(format!("{}/bench/deliveries?ended={ended}", self.url))
            .send()
            .await
            .map_err(|e| format!("seed app deliveries: {e}"))?;
        resp.json()
            .await
            .map_err(|e| format!("seed app deliveries: {e}"))
    }

    pub fn stderr_tail(&self) -> String {
        self.process.stderr_tail()
    }
}

/// `POST /leads` with a fresh idempotency key: the answer's status, if any.
pub async fn post_lead(http: &reqwest::Client, url: &str, lead: &Value) -> Option<u16> {
    http.post(format!("{url}/leads"))
        .header("idempotency-key", uuid::Uuid::new_v4().to_string())
        .json(lead)
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
