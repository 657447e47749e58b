//! `veil serve`: the HTTP API.

use std::net::SocketAddr;

use veil_api::http::{AppState, ServerConfig, serve, shutdown_signal};

use super::{DataDirArg, Failure};

#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    dir: DataDirArg,
    /// Address to listen on; port 0 picks a free one (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Requests one principal may start per minute.
    #[arg(long, default_value_t = 6000)]
    requests_per_minute: u32,
    /// Requests one principal may have in flight at once.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Seconds a connection may take to send a request's head, or stay idle
    /// between requests, before it is closed.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    idle_timeout: u64,
    /// Connections open at once (never more than the file descriptor limit
    /// leaves room for); past it a connection is answered 503 and closed.
    #[arg(long, default_value_t = 4096, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Connections open at once from one address.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections_per_peer: u64,
    /// Also serve Arrow Flight SQL (for ADBC, JDBC and ODBC drivers and BI
    /// tools) on this address; port 0 picks a free one (printed).
    #[arg(long, value_name = "ADDR")]
    flight_sql: Option<SocketAddr>,
    /// Seconds a Flight SQL ticket waits for its `DoGet`.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    ticket_lifetime: u64,
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut config = ServerConfig::new(args.dir.data_dir.clone(), args.listen);
    config.requests_per_minute = args.requests_per_minute;
    config.concurrency_per_principal = args.concurrency;
    config.idle_timeout = std::time::Duration::from_secs(args.idle_timeout);
    config.max_connections = usize::try_from(args.max_connections).unwrap_or(usize::MAX);
    config.max_connections_per_peer =
        usize::try_from(args.max_connections_per_peer).unwrap_or(usize::MAX);
    config.flight_sql = args.flight_sql;
    config.ticket_lifetime = std::time::Duration::from_secs(args.ticket_lifetime);
    run_server(config, None)
}

/// What a banner is told: the HTTP address and the Flight SQL one.
pub type Banner<'a> = &'a dyn Fn(SocketAddr, Option<SocketAddr>);

/// Serves the data directory until SIGTERM or Ctrl-C. `banner` is printed
/// once the socket is bound.
pub fn run_server(config: ServerConfig, banner: Option<Banner<'_>>) -> Result<(), Failure> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (dir, listen) = (config.data_dir.clone(), config.listen);
    runtime.block_on(async {
        let state = AppState::open(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| Failure::Failed(format!("cannot listen on {listen}: {e}")))?;
        let bound = listener.local_addr()?;
        let flight =
            match state.config.flight_sql {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    Failure::Failed(format!("cannot serve Flight SQL on {addr}: {e}"))
                })?),
                None => None,
            };
        let flight_bound = flight.as_ref().map(|l| l.local_addr()).transpose()?;
        match banner {
            Some(print) => print(bound, flight_bound),
            None => {
                println!("veil is serving {} on http://{bound}", dir.display());
                if let Some(f) = flight_bound {
                    println!("Flight SQL on grpc://{f}");
                }
            }
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        // One signal stops both front ends.
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        let until = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        if let Some(listener) = flight {
            let (state, rx) = (state.clone(), stopped.clone());
            tokio::spawn(async move {
                if let Err(e) = veil_api::flight::serve(state, listener, until(rx)).await {
                    tracing::error!(error = %e, "Flight SQL stopped");
                }
            });
        }
        serve(state, listener, until(stopped)).await?;
        Ok(())
    })
}
