//! `websr-aggregator`: the federated-learning server for websr models.
//!
//! ```sh
//! websr-aggregator --state-dir fl-state --strategy fedavg --min-clients 2 --target-clients 10
//! ```
//!
//! Routes: `POST /v1/join`, `GET /v1/round`, `GET /v1/model`, `POST /v1/update`,
//! `GET /v1/status`, `GET /v1/metrics`, and with `--secure-aggregation` the `/v1/secagg/...`
//! phases (see the crate docs for the wire protocol).
//! Prints `websr-aggregator listening on http://ADDR` on stdout once it accepts connections.

use anyhow::Context;
use clap::Parser;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;
use websr_aggregator::{app, spawn_deadline_ticker, Args, Server};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "websr_aggregator=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let bind = args.bind;
    let config = args.server_config();
    let period = Duration::from_secs_f64((config.round_deadline_secs / 4.0).clamp(0.05, 1.0));
    let state_dir = config.state_dir.clone();
    let server = tokio::task::spawn_blocking(move || Server::open(config))
        .await?
        .with_context(|| format!("opening state directory {}", state_dir.display()))?;
    let state = Arc::new(server);
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .with_context(|| format!("binding {bind}"))?;
    let addr = listener.local_addr()?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "websr-aggregator listening on http://{addr}")?;
    out.flush()?;
    drop(out);
    spawn_deadline_ticker(state.clone(), period);
    axum::serve(listener, app(state))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
