//! One masked answer of 1,000,000 rows (`SELECT name, phone, county_code
//! FROM population` at 1,000,000 persons, the policy's row cap raised) three
//! ways in the same run, against the same service: over Flight SQL (the
//! crate's own client, GetFlightInfo then DoGet), as an Arrow IPC stream
//! over HTTP and as JSON over HTTP. Rows per second and bytes on the wire,
//! best of three each, and each one's time against Arrow over HTTP.
//!
//! ```sh
//! cargo bench -p veil-api --bench flight
//! VEIL_BENCH_PERSONS=200000 cargo bench -p veil-api --bench flight
//! ```

mod common;

use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use veil_api::Store;

const SQL: &str = "SELECT name, phone, county_code FROM population";

/// One answer: rows, bytes on the wire, time.
struct Run {
    rows: usize,
    bytes: usize,
    time: Duration,
}

async fn http(addr: std::net::SocketAddr, key: &str, accept: &str) -> Run {
    let started = Instant::now();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = serde_json::json!({ "sql": SQL }).to_string();
    let request = hyper::Request::post("/v1/query")
        .header("host", "bench")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .header("accept", accept)
        .body(Full::new(Bytes::from(body)))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let rows = if accept == "application/json" {
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        v["rows"].as_array().unwrap().len()
    } else {
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(&bytes), None)
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum()
    };
    Run {
        rows,
        bytes: bytes.len(),
        time: started.elapsed(),
    }
}

async fn flight(addr: std::net::SocketAddr, key: &str) -> Run {
    let started = Instant::now();
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel.clone());
    client.set_token(key.to_owned());
    let info = client.execute(SQL.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    // The raw messages, to count what crossed the wire, then decoded.
    let mut raw = arrow_flight::flight_service_client::FlightServiceClient::new(channel)
        .max_decoding_message_size(64 << 20);
    let mut request = tonic::Request::new(ticket);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let mut messages = raw.do_get(request).await.unwrap().into_inner();
    let mut data = Vec::new();
    let mut bytes = 0;
    while let Some(m) = messages.next().await {
        let m = m.unwrap();
        bytes += m.data_header.len() + m.data_body.len() + m.app_metadata.len();
        data.push(m);
    }
    let batches = arrow_flight::utils::flight_data_to_batches(&data).unwrap();
    Run {
        rows: batches.iter().map(|b| b.num_rows()).sum(),
        bytes,
        time: started.elapsed(),
    }
}

fn main() {
    let persons = common::env("VEIL_BENCH_PERSONS", 1_000_000u64);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let sample = dir.join("datasets/sample");
    let started = Instant::now();
    veil_datasets::generate(
        &sample,
        &veil_datasets::Options { persons, seed: 1 },
        &|_| {},
    )
    .unwrap();
    eprintln!("generated {persons} persons in {:.1?}", started.elapsed());
    let key = {
        let mut store = Store::open(&dir).unwrap();
        store
            .set_authority("云南省数据局 (Yunnan Provincial Data Bureau)")
            .unwrap();
        let policy = include_str!("../../policies/presets/default.toml")
            .replace("max_rows = 100000", "max_rows = 2000000");
        store.load_policy(&policy, "bench").unwrap();
        veil_api::registry::register(&mut store, &sample.join("population.toml"), None, "bench")
            .unwrap();
        common::bench_consumer(&mut store)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = common::BenchServer::start(&dir, 4).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let flight_addr = listener.local_addr().unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let flight_server = tokio::spawn(veil_api::flight::serve(
            server.state.clone(),
            listener,
            async {
                let _ = stopped.await;
            },
        ));
        let mut results: Vec<(&str, Run)> = Vec::new();
        for (name, which) in [
            ("Arrow IPC over HTTP", 0),
            ("Flight SQL", 1),
            ("JSON over HTTP", 2),
        ] {
            let mut best: Option<Run> = None;
            for _ in 0..3 {
                let run = match which {
                    0 => http(server.addr, &key, "application/vnd.apache.arrow.stream").await,
                    1 => flight(flight_addr, &key).await,
                    _ => http(server.addr, &key, "application/json").await,
                };
                assert_eq!(run.rows as u64, persons.min(2_000_000), "{name}");
                if best.as_ref().is_none_or(|b| run.time < b.time) {
                    best = Some(run);
                }
            }
            results.push((name, best.unwrap()));
        }
        let baseline = results[0].1.time.as_secs_f64();
        println!("a masked answer of {persons} rows ({SQL}), best of 3, same service and run");
        println!(
            "{:<22} {:>10} {:>14} {:>12} {:>16}",
            "transport", "time (s)", "rows/s", "MB", "time / Arrow HTTP"
        );
        for (name, r) in &results {
            let s = r.time.as_secs_f64();
            println!(
                "{:<22} {:>10.3} {:>14.0} {:>12.1} {:>16.2}",
                name,
                s,
                r.rows as f64 / s,
                r.bytes as f64 / 1e6,
                s / baseline
            );
        }
        let _ = stop.send(());
        let _ = flight_server.await;
        server.stop().await;
    });
}
