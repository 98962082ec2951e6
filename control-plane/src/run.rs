//! Assembles the control plane: store, identity, publisher (with its poll loop), the QUIC
//! channel and the API. [`start`] returns a handle, so tests run the real thing in process;
//! [`run_blocking`] is what `edgeward control-plane` calls.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;

use crate::api::{self, ApiState};
use crate::channel::{self, session::now, Shared};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::publish::Publisher;
use crate::store::Store;

/// How often retention and downsampling run.
const COMPACT_EVERY: Duration = Duration::from_secs(600);

/// Why the control plane could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The operator's input (config, identity files, store path, addresses) is at fault.
    #[error("{0}")]
    Input(String),
    /// The control plane failed.
    #[error("{0}")]
    Internal(String),
}

/// A running control plane.
pub struct Running {
    /// The bound QUIC address.
    pub quic: SocketAddr,
    /// The bound API address.
    pub api: SocketAddr,
    pub publisher: Arc<Publisher>,
    pub store: Arc<Store>,
    pub shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    tasks: Vec<JoinHandle<()>>,
}

/// Opens the store, loads the identity, restores the last published revision kept in the store,
/// publishes the current revision if it is new and valid, and starts serving.
pub async fn start(config: &Config) -> Result<Running, RunError> {
    // The store.
    if let Some(dir) = config
        .store
        .sqlite
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
    {
        std::fs::create_dir_all(dir)
            .map_err(|e| RunError::Input(format!("cannot create `{}`: {e}", dir.display())))?;
    }
    let store =
        Arc::new(Store::open(&config.store.sqlite).map_err(|e| RunError::Input(e.to_string()))?);

    // The identity and its trust domain.
    let identity = channel::load_identity(&config.identity, store.clone())
        .map_err(|e| RunError::Input(format!("{}: {e}", config.file.display())))?;
    tracing::info!(trust_domain = %identity.trust_domain, "control plane identity loaded");

    // The last good revision kept in the store, then the first sync, before any node can
    // connect: a source whose newest revision is invalid leaves the kept one published.
    let metrics = Arc::new(Metrics::default());
    let publisher = Arc::new(Publisher::new(
        config.source.kind.clone(),
        identity.trust_domain.clone(),
        store.clone(),
    ));
    let p = publisher.clone();
    if let Err(e) = tokio::task::spawn_blocking(move || p.restore()).await {
        tracing::error!(error = %e, "restoring the published revision failed");
    }
    let first = api::sync_now(&publisher, &metrics).await;
    tracing::info!(outcome = ?first, "first sync of the desired state");

    // The listeners.
    let endpoint = channel::bind(config.listen.quic, identity.server)
        .map_err(|e| RunError::Input(e.to_string()))?;
    let quic = endpoint
        .local_addr()
        .map_err(|e| RunError::Internal(e.to_string()))?;
    let listener = tokio::net::TcpListener::bind(config.listen.api)
        .await
        .map_err(|e| {
            RunError::Input(format!("cannot listen on {} (API): {e}", config.listen.api))
        })?;
    let api_addr = listener
        .local_addr()
        .map_err(|e| RunError::Internal(e.to_string()))?;
    let shared = Arc::new(Shared::new(
        publisher.clone(),
        store.clone(),
        identity.trust,
        metrics.clone(),
    ));

    // The tasks: channel, API, polling, compaction.
    let mut tasks = vec![tokio::spawn(channel::serve(
        endpoint.clone(),
        shared.clone(),
    ))];
    let api_state = Arc::new(ApiState {
        publisher: publisher.clone(),
        store: store.clone(),
        metrics: metrics.clone(),
    });
    tasks.push(tokio::spawn(api::serve(listener, api_state)));
    tasks.push(tokio::spawn(poll(
        publisher.clone(),
        metrics,
        config.source.poll_interval,
    )));
    let retention = i64::try_from(config.store.retention.as_secs()).unwrap_or(i64::MAX);
    tasks.push(tokio::spawn(compact(store.clone(), retention)));
    tracing::info!(quic = %quic, api = %api_addr, "control plane started");
    Ok(Running {
        quic,
        api: api_addr,
        publisher,
        store,
        shared,
        endpoint,
        tasks,
    })
}

impl Running {
    /// Closes every node connection and stops the tasks.
    pub async fn stop(self) {
        channel::shutdown(&self.endpoint);
        for t in &self.tasks {
            t.abort();
        }
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        tracing::info!("control plane stopped");
    }
}

/// Builds a runtime and runs until SIGINT or SIGTERM: what `edgeward control-plane` calls.
pub fn run_blocking(config: &Config) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("edgeward-cp")
        .build()
        .map_err(|e| RunError::Internal(format!("cannot start the async runtime: {e}")))?;
    runtime.block_on(run_until_signal(config))
}

/// Runs until SIGINT or SIGTERM.
pub async fn run_until_signal(config: &Config) -> Result<(), RunError> {
    let running = start(config).await?;
    let signal = wait_for_signal().await;
    tracing::info!(signal, "stopping");
    running.stop().await;
    Ok(())
}

async fn wait_for_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "SIGINT",
                _ = term.recv() => return "SIGTERM",
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "SIGINT"
}

async fn poll(publisher: Arc<Publisher>, metrics: Arc<Metrics>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        api::sync_now(&publisher, &metrics).await;
    }
}

async fn compact(store: Arc<Store>, retention_secs: i64) {
    let mut tick = tokio::time::interval(COMPACT_EVERY);
    loop {
        tick.tick().await;
        let s = store.clone();
        let done = tokio::task::spawn_blocking(move || s.compact(now(), retention_secs)).await;
        match done {
            Ok(Ok(())) => tracing::debug!("store compacted"),
            Ok(Err(e)) => tracing::error!(error = %e, "store compaction failed"),
            Err(e) => tracing::error!(error = %e, "store compaction task failed"),
        }
    }
}
