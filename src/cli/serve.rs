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
}

pub fn run(args: ServeArgs) -> Result<(), Failure> {
    let mut config = ServerConfig::new(args.dir.data_dir.clone(), args.listen);
    config.requests_per_minute = args.requests_per_minute;
    config.concurrency_per_principal = args.concurrency;
    run_server(config, None)
}

/// Serves the data directory until SIGTERM or Ctrl-C. `banner` is printed
/// once the socket is bound.
pub fn run_server(
    config: ServerConfig,
    banner: Option<&dyn Fn(SocketAddr)>,
) -> Result<(), Failure> {
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
        match banner {
            Some(print) => print(bound),
            None => println!("veil is serving {} on http://{bound}", dir.display()),
        }
        use std::io::Write;
        let _ = std::io::stdout().flush();
        serve(state, listener, shutdown_signal()).await?;
        Ok(())
    })
}
