//! `callhook serve`: load config, recover the spool, serve until SIGTERM/SIGINT, drain.

use std::process::ExitCode;
use std::sync::Arc;

use super::ServeArgs;
use crate::config::Config;
use crate::forward::{Forwarder, KafkaStatus};
use crate::server::{self, AppState};
use crate::spool::Spool;
use crate::{shutdown, telemetry};

pub fn run(args: &ServeArgs) -> ExitCode {
    let cfg = match Config::load(args.config.as_deref(), &args.overrides()) {
        Ok(c) => Arc::new(c),
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::logging::init(&cfg.log);
    shutdown::exit_on_critical_panic();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(cfg)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "callhook stopped");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Why `serve` could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Spool(#[from] crate::spool::OpenError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Kafka(#[from] crate::forward::ForwardError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

async fn serve(cfg: Arc<Config>) -> Result<(), ServeError> {
    let metrics = telemetry::metrics::install();
    telemetry::metrics::spawn_upkeep(metrics.clone());
    let (spool, rec) = Spool::open(cfg.spool_config())?;
    metrics::gauge!("callhook_spool_recovered_records").set(rec.tail_records as f64);
    metrics::gauge!("callhook_spool_recovery_cut_bytes").set(rec.cut_bytes as f64);
    tracing::info!(
        dir = %cfg.spool.data_dir.display(),
        segments = rec.segments.len(),
        next_seq = rec.next_seq.0,
        tail_records = rec.tail_records,
        cut_bytes = rec.cut_bytes,
        "spool recovered"
    );
    let addr = cfg.server.listen;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| ServeError::Bind { addr, source })?;
    let kafka = Arc::new(KafkaStatus::new(cfg.kafka.enabled()));
    let state = Arc::new(AppState::new(
        cfg.clone(),
        spool.clone(),
        metrics,
        kafka.clone(),
    )?);
    // Kafka is optional: the spool is the sink until brokers are configured.
    let forwarder = if cfg.kafka.enabled() {
        tracing::info!(
            brokers = cfg.kafka.brokers.as_deref().unwrap_or(""),
            "Kafka fan-out on"
        );
        Some(Forwarder::start(&cfg.kafka, spool.clone(), kafka)?)
    } else {
        None
    };
    // Tests and scripts read this line to find an ephemeral port.
    let scheme = if cfg.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    println!("callhook listening on {scheme}://{local}");
    tracing::info!(%local, durability = ?cfg.spool.durability, "callhook listening");
    server::run(listener, state, shutdown::signal()).await?;
    tracing::info!("stopped accepting; syncing spool");
    spool.shutdown().await;
    if let Some(f) = forwarder {
        tracing::info!("flushing Kafka");
        let _ = tokio::task::spawn_blocking(move || f.stop()).await;
    }
    tracing::info!("callhook stopped cleanly");
    Ok(())
}
