//! Verification at scale: one verification in process (p50, p99), a
//! 10,000-subject batch in process and over HTTP, and single verifications
//! per second over loopback with keep-alive against `/healthz` in the same
//! run. The server runs in this process on a real port; so does the load.
//!
//! ```sh
//! VEIL_BENCH_PERSONS=10000000 VEIL_BENCH_DIR=/tmp/veil-10m cargo bench -p veil-api --bench verify
//! ```
//! Settings: VEIL_BENCH_SECONDS (5), VEIL_BENCH_CONNECTIONS (64),
//! VEIL_BENCH_ONLY (an endpoint's name: load that one only).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::DataType;
use bytes::Bytes;
use common::{MakeRequest, ensure_sample, env, load};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use rand::{RngExt, SeedableRng};
use serde_json::json;
use veil_api::Store;
use veil_api::indexes::install_products;
use veil_api::verification::{SubjectDigest, VerifyBody};
use veil_engine::verification::{Claimed, VerifyItem, VerifyRequest};
use veil_policies::{Principal, Role};

/// A person: identity number, name, birth date.
type Person = (String, String, String);

/// Every `step`-th person of the sample, read from the file (the bench plays
/// the data owner who knows the truth).
fn people(path: &std::path::Path, step: usize) -> Vec<Person> {
    let file = std::fs::File::open(path).unwrap();
    let builder =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = builder.schema().clone();
    let indices = ["id_number", "name", "phone"].map(|c| schema.index_of(c).unwrap());
    let mask = parquet::arrow::ProjectionMask::roots(builder.parquet_schema(), indices);
    let mut out = Vec::new();
    let mut row = 0usize;
    for batch in builder.with_projection(mask).build().unwrap() {
        let batch = batch.unwrap();
        let text: Vec<_> = ["id_number", "name", "phone"]
            .iter()
            .map(|c| {
                arrow::compute::cast(batch.column_by_name(c).unwrap(), &DataType::Utf8).unwrap()
            })
            .collect();
        for r in 0..batch.num_rows() {
            // Residents with a phone: two claims each.
            if row.is_multiple_of(step) && !text[2].is_null(r) {
                let v = |i: usize| text[i].as_string::<i32>().value(r).to_owned();
                out.push((v(0), v(1), v(2)));
            }
            row += 1;
        }
    }
    out
}

fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn item(p: &Person) -> VerifyItem {
    VerifyItem {
        subject: p.0.clone(),
        claims: vec![
            ("name".into(), Claimed::Text(p.1.clone())),
            ("phone".into(), Claimed::Text(p.2.clone())),
        ],
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let seconds: u64 = env("VEIL_BENCH_SECONDS", 5);
    let connections: u64 = env("VEIL_BENCH_CONNECTIONS", 64);
    let persons: u64 = env("VEIL_BENCH_PERSONS", 1_000_000);
    let sample = std::env::var("VEIL_BENCH_DIR").map_or_else(
        |_| std::path::PathBuf::from(format!("target/bench-data/{persons}")),
        std::path::PathBuf::from,
    );
    ensure_sample(&sample, persons);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");

    // The default preset, with the identity product's limits out of the way.
    let policy = veil_policies::policy::DEFAULT_PRESET.replacen(
        "per_minute = 12000\ndaily_per_subject = 10",
        "per_minute = 10000000\ndaily_per_subject = 100000\ndaily_subjects = 100000000\ninstitution_daily_subjects = 100000000\ndaily_mismatches = 100000000\ninstitution_daily_mismatches = 100000000",
        1,
    );
    let key = {
        let mut store = Store::open(&dir).unwrap();
        store
            .set_authority("云南省数据局 (Yunnan Provincial Data Bureau)")
            .unwrap();
        store.load_policy(&policy, "bench").unwrap();
        let started = Instant::now();
        veil_api::registry::register(&mut store, &sample.join("population.toml"), None, "bench")
            .unwrap();
        println!(
            "registered population ({persons} persons) with its subject index in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        common::bench_consumer(&mut store)
    };
    let people = people(
        &sample.join("population.parquet"),
        (persons / 200_000).max(1) as usize,
    );
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);

    // In process: the engine's check and answer, then with digests.
    let started = Instant::now();
    let store = Store::open(&dir).unwrap();
    let mut loaded = veil_api::service::load_engine(&store).unwrap();
    install_products(&store, &mut loaded.engine, None, None).unwrap();
    let engine = loaded.engine;
    let table = engine.product_table("person_identity").unwrap();
    println!(
        "loaded the engine and the product table in {:.1} s: {:.0} MB for person_identity (index included), peak RSS {:.0} MB",
        started.elapsed().as_secs_f64(),
        table.bytes() as f64 / 1e6,
        peak_rss_mb()
    );
    let principal = Principal::new("bench", Role::Consumer);
    let now = chrono::Utc::now();
    let verify = |items: &[VerifyItem]| {
        let request = VerifyRequest {
            principal: &principal,
            purpose: None,
            product: "person_identity",
            items,
            now,
        };
        let checked = engine.verify(&request).unwrap();
        checked
            .answer()
            .into_iter()
            .map(|claims| claims.iter().filter(|(_, b)| *b).count())
            .collect::<Vec<usize>>()
    };
    let mut single = Vec::with_capacity(100_000);
    let mut matched = 0usize;
    for _ in 0..100_000 {
        let items = [item(&people[rng.random_range(0..people.len())])];
        let t = Instant::now();
        let passed = verify(&items);
        single.push(t.elapsed());
        matched += passed[0];
    }
    assert_eq!(matched, 200_000, "every true claim matches");
    let digest = SubjectDigest::new(&store.data_dir().master_key().unwrap());
    let mut with_digest = Vec::with_capacity(100_000);
    for _ in 0..100_000 {
        let body = VerifyBody {
            product: "person_identity".into(),
            purpose: None,
            items: vec![item(&people[rng.random_range(0..people.len())])],
            single: true,
        };
        let t = Instant::now();
        let v = veil_api::verification::check(&engine, &principal, &body, &digest, now).unwrap();
        let _ = v.checked.answer();
        with_digest.push(t.elapsed());
    }
    println!("\nin process, 100,000 single verifications of 2 claims each:");
    println!("{:<44} {:>10} {:>10}", "", "p50 (µs)", "p99 (µs)");
    for (name, samples) in [
        ("engine: check + answer", &mut single),
        ("service: + subject digest", &mut with_digest),
    ] {
        println!(
            "{name:<44} {:>10.2} {:>10.2}",
            percentile(samples, 0.5).as_secs_f64() * 1e6,
            percentile(samples, 0.99).as_secs_f64() * 1e6
        );
    }
    let batch: Vec<VerifyItem> = (0..10_000)
        .map(|_| item(&people[rng.random_range(0..people.len())]))
        .collect();
    let mut batches = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        let passed = verify(&batch);
        batches.push(t.elapsed());
        assert_eq!(passed.len(), 10_000);
    }
    println!(
        "{:<44} {:>10.2} {:>10.2}   (ms, 20 runs)",
        "10,000-subject batch: check + answer",
        ms(percentile(&mut batches, 0.5)),
        ms(percentile(&mut batches, 0.99))
    );
    drop(engine);
    drop(store);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let server = common::BenchServer::start(&dir, connections).await;
        let (addr, state) = (server.addr, server.state.clone());
        let auth = format!("Bearer {key}");

        // What one request's parts cost, in process.
        {
            let n = 20_000;
            let hash = veil_api::store::key_hash(&key);
            let t = Instant::now();
            for _ in 0..n {
                state.caller(&hash).unwrap().unwrap();
            }
            let caller_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let texts: Vec<Vec<u8>> = people.iter().take(n).map(|p| json!({"product": "person_identity", "subject": p.0, "claims": {"name": p.1, "phone": p.2}}).to_string().into_bytes()).collect();
            let t = Instant::now();
            let bodies: Vec<VerifyBody> = texts.iter().map(|b| VerifyBody::parse(&serde_json::from_slice(b).unwrap()).unwrap()).collect();
            let parse_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let engine = state.engine();
            let principal = state.caller(&hash).unwrap().unwrap();
            let mut entries = Vec::with_capacity(n);
            let mut out = Vec::new();
            let outcome = veil_api::verification::Outcome::default();
            let (mut check_ns, mut entry_ns, mut answer_ns) = (0u128, 0u128, 0u128);
            for body in &bodies {
                let t = Instant::now();
                let v = veil_api::verification::check(&engine, &principal.principal, body, &state.digest, chrono::Utc::now()).unwrap();
                let answers = v.checked.answer();
                check_ns += t.elapsed().as_nanos();
                let t = Instant::now();
                entries.push(veil_api::verification::audit_entry(&principal.principal, "POST /v1/verify", Some(body), Some((&v, &outcome)), "ok".into()));
                entry_ns += t.elapsed().as_nanos();
                let t = Instant::now();
                out.clear();
                serde_json::to_writer(&mut out, &veil_api::verification::AnswerBody::new(&v.checked, &answers, true, &outcome, "v1", 1)).unwrap();
                answer_ns += t.elapsed().as_nanos();
            }
            let mut store = Store::open(&dir).unwrap();
        store
            .set_authority("云南省数据局 (Yunnan Provincial Data Bureau)")
            .unwrap();
            let signer = store.data_dir().signer().unwrap();
            let t = Instant::now();
            for chunk in entries.chunks(12) {
                store.append_audit(chunk, &signer).unwrap();
            }
            let append_us = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            let per = |ns: u128| ns as f64 / 1e3 / n as f64;
            println!("\none request's parts in process (µs each, mean of {n}):");
            println!("  caller lookup (access generation + cache) {caller_us:.2}");
            println!("  body: JSON parse + read                   {parse_us:.2}");
            println!("  check + digest + answer                   {:.2}", per(check_ns));
            println!("  audit entry built                         {:.2}", per(entry_ns));
            println!("  answer serialised                         {:.2}", per(answer_ns));
            println!("  audit append, batches of 12, durable      {append_us:.2}");
        }

        // One 10,000-subject batch at a time over HTTP, JSON in and out.
        let body = Bytes::from(
            json!({"product": "person_identity", "items": batch.iter().map(|i| json!({
                "subject": i.subject,
                "claims": {"name": match &i.claims[0].1 { Claimed::Text(t) => t.clone(), _ => unreachable!() },
                           "phone": match &i.claims[1].1 { Claimed::Text(t) => t.clone(), _ => unreachable!() }},
            })).collect::<Vec<_>>()})
            .to_string(),
        );
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut over_http = Vec::new();
        for _ in 0..20 {
            let request = Request::post("/v1/verify")
                .header("host", "bench")
                .header("authorization", auth.as_str())
                .header("content-type", "application/json")
                .body(Full::new(body.clone()))
                .unwrap();
            sender.ready().await.unwrap();
            let t = Instant::now();
            let response = sender.send_request(request).await.unwrap();
            assert!(response.status().is_success(), "{}", response.status());
            let _ = response.into_body().collect().await.unwrap();
            over_http.push(t.elapsed());
        }
        println!(
            "{:<44} {:>10.2} {:>10.2}   (ms, 20 runs; {:.2} MB request)",
            "10,000-subject batch over HTTP",
            ms(percentile(&mut over_http, 0.5)),
            ms(percentile(&mut over_http, 0.99)),
            body.len() as f64 / 1e6
        );

        let healthz: MakeRequest = Arc::new(move || {
            Request::get("/healthz")
                .header("host", "bench")
                .body(Full::new(Bytes::new()))
                .unwrap()
        });
        let bodies: Arc<Vec<Bytes>> = Arc::new(
            people
                .iter()
                .take(50_000)
                .map(|p| {
                    Bytes::from(
                        json!({"product": "person_identity", "subject": p.0, "claims": {"name": p.1, "phone": p.2}})
                            .to_string(),
                    )
                })
                .collect(),
        );
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let verify: MakeRequest = Arc::new(move || {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Request::post("/v1/verify")
                .header("host", "bench")
                .header("authorization", auth.as_str())
                .header("content-type", "application/json")
                .body(Full::new(bodies[n % bodies.len()].clone()))
                .unwrap()
        });
        println!("\n{connections} keep-alive connections over loopback, {seconds} s per endpoint");
        println!("{:<44} {:>10} {:>10} {:>10} {:>8} {:>10}", "endpoint", "req/s", "p50 (ms)", "p99 (ms)", "errors", "CPU µs/req");
        let (mut rates, mut cpus) = (Vec::new(), Vec::new());
        let only = std::env::var("VEIL_BENCH_ONLY").unwrap_or_default();
        for (name, make) in [("GET /healthz", healthz), ("POST /v1/verify (1 subject, 2 claims)", verify)] {
            if !only.is_empty() && !name.contains(only.as_str()) {
                rates.push(f64::NAN);
                cpus.push(f64::NAN);
                continue;
            }
            let _ = load(addr, connections, 1, make.clone()).await; // warm up
            let o = load(addr, connections, seconds, make).await;
            rates.push(o.rate());
            cpus.push(o.cpu_us());
            println!(
                "{name:<44} {:>10.0} {:>10.2} {:>10.2} {:>8} {:>10.1}",
                o.rate(),
                ms(o.percentile(0.50)),
                ms(o.percentile(0.99)),
                o.errors,
                o.cpu_us()
            );
        }
        println!("verifications / healthz throughput = {:.3}", rates[1] / rates[0]);
        println!("CPU per verification / per healthz = {:.2}", cpus[1] / cpus[0]);
        println!("peak RSS {:.0} MB", peak_rss_mb());
        server.stop().await;
    });
}
