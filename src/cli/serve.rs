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
    raise_open_file_limit(cfg.server.max_connections);
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

/// Descriptors beyond the connections: spool segments, Kafka sockets, the listener, logs.
const FD_MARGIN: u64 = 1024;

/// Raises the open-file soft limit to the hard limit: every connection is a descriptor,
/// and container runtimes often start processes at 1024 whatever the hard limit, which
/// would make `accept` fail (and probes with it) long before `server.max_connections`.
/// Warns when even the hard limit leaves no room for the cap.
fn raise_open_file_limit(max_connections: usize) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return;
    }
    // An unlimited hard limit still stops at the kernel's nr_open (1 Mi by default).
    let target = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!(
                from = lim.rlim_cur,
                to = target,
                "raised the open-file limit"
            );
            lim.rlim_cur = target;
        }
    }
    let need = max_connections as u64 + FD_MARGIN;
    if lim.rlim_cur < need {
        tracing::warn!(
            limit = lim.rlim_cur,
            max_connections,
            "the open-file limit is below server.max_connections + {FD_MARGIN}: connections will fail (too many open files) before the cap; raise LimitNOFILE / ulimit -n or lower max_connections"
        );
    }
}

/// Binds `addr`, returning the listener and the address it got (the port, for `:0`).
async fn bind(
    addr: std::net::SocketAddr,
) -> Result<(tokio::net::TcpListener, std::net::SocketAddr), ServeError> {
    let bound = async {
        let l = tokio::net::TcpListener::bind(addr).await?;
        let local = l.local_addr()?;
        Ok((l, local))
    };
    bound
        .await
        .map_err(|source| ServeError::Bind { addr, source })
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
    crate::sched::configure(cfg.server.background_threads);
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
    // The ops listener first, so that a process that prints its webhook address is
    // already probe-able (tests and scripts read the webhook line as "started").
    let ops_listener = match cfg.server.ops_listen {
        Some(addr) => Some(bind(addr).await?),
        None => None,
    };
    let (listener, local) = bind(cfg.server.listen).await?;
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
    let stop = shutdown::signal();
    let ops_task = ops_listener.map(|(l, ops_local)| {
        println!("callhook ops listening on http://{ops_local}");
        tracing::info!(local = %ops_local, "ops endpoints listening (/metrics, /healthz, /readyz)");
        tokio::spawn(server::run_ops(l, state.clone()))
    });
    println!("callhook listening on {scheme}://{local}");
    tracing::info!(%local, durability = ?cfg.spool.durability, "callhook listening");
    server::run(listener, state, stop).await?;
    tracing::info!("stopped accepting; syncing spool");
    spool.shutdown().await;
    if let Some(f) = forwarder {
        tracing::info!("flushing Kafka");
        let _ = tokio::task::spawn_blocking(move || f.stop()).await;
    }
    if let Some(t) = ops_task {
        t.abort();
    }
    tracing::info!("callhook stopped cleanly");
    Ok(())
}
