//! Requests per second and p99 latency over loopback with 64 keep-alive
//! connections, for `/healthz` and for a small masked query, in the same run.
//! Then `/healthz` over 8 connections alone, and again while 8 connections
//! keep DP queries running (the per-unit bounding path over health_visits):
//! queries run on their own pool, so the second should be close to the
//! first. The server runs in this process on a real port; so does the load.
//!
//! ```sh
//! cargo bench -p veil-api --bench http_load
//! VEIL_BENCH_SECONDS=10 VEIL_BENCH_CONNECTIONS=64 cargo bench -p veil-api --bench http_load
//! ```

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::{MakeRequest, env, load};
use http_body_util::Full;
use hyper::Request;
use veil_api::Store;

fn main() {
    let seconds = env("VEIL_BENCH_SECONDS", 5);
    let connections = env("VEIL_BENCH_CONNECTIONS", 64);
    let persons = env("VEIL_BENCH_PERSONS", 100_000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let sample = dir.join("datasets/sample");
    veil_datasets::generate(
        &sample,
        &veil_datasets::Options { persons, seed: 1 },
        &|_| {},
    )
    .unwrap();
    let key = {
        let mut store = Store::open(&dir).unwrap();
        store
            .set_authority("云南省数据局 (Yunnan Provincial Data Bureau)")
            .unwrap();
        for table in ["population", "health_visits"] {
            veil_api::registry::register(
                &mut store,
                &sample.join(format!("{table}.toml")),
                None,
                "bench",
            )
            .unwrap();
        }
        common::bench_consumer(&mut store)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = common::BenchServer::start(&dir, connections).await;
        let addr = server.addr;

        let healthz: MakeRequest = Arc::new(move || {
            Request::get("/healthz").header("host", "bench").body(Full::new(Bytes::new())).unwrap()
        });
        let body = Bytes::from_static(br#"{"sql": "SELECT name, phone, county_code FROM population WHERE county_code = '530102' LIMIT 10"}"#);
        let auth = format!("Bearer {key}");
        let masked: MakeRequest = Arc::new(move || {
            Request::post("/v1/query")
                .header("host", "bench")
                .header("authorization", auth.as_str())
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .unwrap()
        });
        println!("{connections} connections over loopback, {seconds} s per endpoint, {persons} persons");
        println!("{:<34} {:>10} {:>10} {:>10} {:>8}", "endpoint", "req/s", "p50 (ms)", "p99 (ms)", "errors");
        let mut rates = Vec::new();
        for (name, make) in [("GET /healthz", healthz), ("POST /v1/query (masked, 10 rows)", masked)] {
            let _ = load(addr, connections, 1, make.clone()).await; // warm up
            let o = load(addr, connections, seconds, make).await;
            let rps = o.requests as f64 / o.seconds;
            rates.push(rps);
            println!(
                "{name:<34} {rps:>10.0} {:>10.2} {:>10.2} {:>8}",
                o.percentile(0.50).as_secs_f64() * 1e3,
                o.percentile(0.99).as_secs_f64() * 1e3,
                o.errors
            );
        }
        println!("masked query throughput / healthz throughput = {:.3}", rates[1] / rates[0]);

        let healthz: MakeRequest = Arc::new(move || {
            Request::get("/healthz").header("host", "bench").body(Full::new(Bytes::new())).unwrap()
        });
        let dp_body = Bytes::from_static(
            br#"{"sql": "SELECT diagnosis_category, COUNT(*) FROM health_visits GROUP BY diagnosis_category", "epsilon": 0.001}"#,
        );
        let auth = format!("Bearer {key}");
        let dp: MakeRequest = Arc::new(move || {
            Request::post("/v1/query")
                .header("host", "bench")
                .header("authorization", auth.as_str())
                .header("content-type", "application/json")
                .body(Full::new(dp_body.clone()))
                .unwrap()
        });
        let alone = load(addr, 8, seconds, healthz.clone()).await;
        let (busy, dp_load) = tokio::join!(
            load(addr, 8, seconds, healthz),
            load(addr, 8, seconds + 1, dp)
        );
        println!();
        println!("{:<44} {:>10} {:>10} {:>10} {:>8}", "GET /healthz, 8 connections", "req/s", "p50 (ms)", "p99 (ms)", "errors");
        for (name, o) in [("alone", &alone), ("while 8 DP queries run", &busy)] {
            println!(
                "{name:<44} {:>10.0} {:>10.2} {:>10.2} {:>8}",
                o.rate(),
                o.percentile(0.50).as_secs_f64() * 1e3,
                o.percentile(0.99).as_secs_f64() * 1e3,
                o.errors
            );
        }
        println!(
            "DP queries meanwhile: {} answered ({} errors), p50 {:.0} ms; healthz p99 under DP load / alone = {:.2}",
            dp_load.requests - dp_load.errors,
            dp_load.errors,
            dp_load.percentile(0.50).as_secs_f64() * 1e3,
            busy.percentile(0.99).as_secs_f64() / alone.percentile(0.99).as_secs_f64()
        );
        server.stop().await;
    });
}
