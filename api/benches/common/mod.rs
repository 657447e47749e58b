//! What the service's benchmarks share: the sample (the engine benches'
//! helpers) and a keep-alive HTTP load generator.
#![allow(dead_code, unused_imports)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

#[path = "../../../engine/benches/common/mod.rs"]
mod engine_common;
pub use engine_common::{ensure_sample, env};

/// The allocator `veil` itself runs with (src/main.rs).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Adds the consumer `bench` and returns its API key.
pub fn bench_consumer(store: &mut veil_api::Store) -> String {
    let (_, key) = store
        .add_principal(&veil_api::store::NewPrincipal {
            name: "bench",
            role: veil_policies::Role::Consumer,
            org: None,
            region: None,
            subject: None,
        })
        .unwrap();
    key.expose().to_owned()
}

/// `veil serve` in this process on a free loopback port, limits raised so
/// that `connections` connections of one principal never hit them.
pub struct BenchServer {
    pub state: Arc<veil_api::http::AppState>,
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    running: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl BenchServer {
    pub async fn start(dir: &std::path::Path, connections: u64) -> BenchServer {
        let mut config =
            veil_api::http::ServerConfig::new(dir.to_path_buf(), "127.0.0.1:0".parse().unwrap());
        config.requests_per_minute = u32::MAX;
        config.concurrency_per_principal = connections as usize * 2;
        let state = veil_api::http::AppState::open(config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let running = tokio::spawn(veil_api::http::serve(state.clone(), listener, async {
            let _ = stopped.await;
        }));
        BenchServer {
            state,
            addr,
            stop,
            running,
        }
    }

    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.running.await;
    }
}

/// Builds one request; called once per request sent.
pub type MakeRequest = Arc<dyn Fn() -> Request<Full<Bytes>> + Send + Sync>;

pub struct Outcome {
    pub requests: u64,
    pub errors: u64,
    pub seconds: f64,
    pub latencies: Vec<Duration>,
    /// This process's CPU time (user and system, every thread: the server
    /// and the load alike) over the run.
    pub cpu: Duration,
}

/// This process's CPU time so far, user and system, every thread.
pub fn cpu_time() -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |v: libc::timeval| Duration::new(v.tv_sec as u64, v.tv_usec as u32 * 1000);
    t(usage.ru_utime) + t(usage.ru_stime)
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// CPU time per answered request in µs: steadier than the rate on a
    /// machine shared with others, as it does not count time not given.
    pub fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let mut l = self.latencies.clone();
        l.sort();
        l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    }
}

/// Sends requests made by `make` over `connections` keep-alive connections
/// for `seconds`; a request counts as an error unless it answers 2xx.
pub async fn load(
    addr: std::net::SocketAddr,
    connections: u64,
    seconds: u64,
    make: MakeRequest,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let cpu = cpu_time();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .unwrap();
            tokio::spawn(conn);
            let (mut n, mut errors, mut latencies) = (0u64, 0u64, Vec::new());
            while Instant::now() < deadline {
                let t = Instant::now();
                match sender.send_request(make()).await {
                    Ok(response) => {
                        let ok = response.status().is_success();
                        let body = response.into_body().collect().await;
                        if !ok || body.is_err() {
                            errors += 1;
                        }
                    }
                    Err(_) => {
                        errors += 1;
                        break;
                    }
                }
                latencies.push(t.elapsed());
                n += 1;
            }
            (n, errors, latencies)
        }));
    }
    let mut out = Outcome {
        requests: 0,
        errors: 0,
        seconds: 0.0,
        latencies: Vec::new(),
        cpu: Duration::ZERO,
    };
    for t in tasks {
        let (n, e, l) = t.await.unwrap();
        out.requests += n;
        out.errors += e;
        out.latencies.extend(l);
    }
    out.seconds = started.elapsed().as_secs_f64();
    out.cpu = cpu_time() - cpu;
    out
}
