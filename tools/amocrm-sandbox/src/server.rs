//! Starting and stopping a sandbox: binds the listener, starts the webhook sender, serves the
//! router until `shutdown()` or drop.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::api;
use crate::config::SandboxConfig;
use crate::handle::SandboxHandle;
use crate::state::Shared;
use crate::webhooks;

/// The amoCRM imitation. `Sandbox::start` runs one in the current tokio runtime.
pub struct Sandbox;

impl Sandbox {
    /// Binds `addr` (`127.0.0.1:0` picks a free port) and serves until the returned value is
    /// dropped or shut down.
    pub async fn start(cfg: SandboxConfig, addr: SocketAddr) -> std::io::Result<RunningSandbox> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let url = format!("http://{local}");
        let (hooks_tx, hooks_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(cfg, hooks_tx));
        let _ = shared.base_url.set(url.clone());
        let sender = tokio::spawn(webhooks::run_sender(Arc::downgrade(&shared), hooks_rx));
        let app = api::router(shared.clone()).into_make_service_with_connect_info::<SocketAddr>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let stopped = async {
                let _ = stop_rx.await;
            };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stopped)
                .await
            {
                tracing::error!(error = %e, "sandbox server stopped with an error");
            }
        });
        tracing::info!(url = %url, "amoCRM sandbox listening");
        Ok(RunningSandbox {
            url,
            addr: local,
            state: SandboxHandle::new(shared),
            stop: Some(stop_tx),
            server: Some(server),
            sender,
        })
    }
}

/// A sandbox that is serving. Dropping it stops the server.
pub struct RunningSandbox {
    /// `http://127.0.0.1:PORT` — use it as the amoCRM base URL.
    pub url: String,
    pub addr: SocketAddr,
    /// In-process control and inspection.
    pub state: SandboxHandle,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<()>>,
    sender: JoinHandle<()>,
}

impl RunningSandbox {
    /// Stops accepting requests and waits (up to 2 s) for open ones to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let abort = server.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for RunningSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.sender.abort();
    }
}
