//! Flight SQL's edge cases with the `arrow-flight` crate's own client
//! against a real `veil serve --flight-sql`: tickets are single-use, the
//! caller's own and expiring; tokens and keys are checked on every call;
//! an answer is cut at the policy's `max_rows` and says so in its schema;
//! a refusal is the contract's error and echoes nothing.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use arrow_flight::sql::client::FlightSqlServiceClient;
use common::*;
use futures::TryStreamExt;
use tonic::Code;
use tonic::transport::Channel;

/// A `veil serve` with Flight SQL on a free port, killed when dropped.
struct FlightServer {
    child: Child,
    http: String,
    flight: String,
}

impl FlightServer {
    fn start(dir: &std::path::Path, extra: &[&str]) -> FlightServer {
        let mut args = vec![
            "serve",
            "--data-dir",
            s(dir),
            "--listen",
            "127.0.0.1:0",
            "--flight-sql",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(&args)
            .env("VEIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let (mut first, mut second) = (String::new(), String::new());
        out.read_line(&mut first).unwrap();
        out.read_line(&mut second).unwrap();
        let http = first.rsplit("http://").next().unwrap().trim().to_owned();
        let flight = second.rsplit("grpc://").next().unwrap().trim().to_owned();
        assert!(flight.starts_with("127.0.0.1:"), "{second}");
        FlightServer {
            child,
            http,
            flight,
        }
    }

    fn http(&self) -> Server {
        // For the HTTP calls of the test only; not killed twice.
        Server {
            child: Command::new("true").spawn().unwrap(),
            addr: self.http.clone(),
        }
    }
}

impl Drop for FlightServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn client(addr: &str, token: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    if !token.is_empty() {
        client.set_token(token.to_owned());
    }
    client
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The gRPC code and message of a failed call.
fn status_of(e: &arrow_flight::error::FlightError) -> (Code, String) {
    match e {
        arrow_flight::error::FlightError::Tonic(s) => (s.code(), s.message().to_owned()),
        other => (Code::Unknown, other.to_string()),
    }
}

#[test]
fn tickets_tokens_and_the_row_cap_hold_over_flight_sql() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, root) = deployment(tmp.path());
    let dave = add_principal(&dir, "dave", "consumer", &[]);
    let server = FlightServer::start(&dir, &["--ticket-lifetime", "2"]);
    let rt = runtime();
    rt.block_on(async {
        let mut c = client(&server.flight, &carol).await;
        // A statement: planned and checked, then run once by its ticket.
        let info = c
            .execute("SELECT county_code FROM population".into(), None)
            .await
            .unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        assert!(info.endpoint[0].expiration_time.is_some());
        let batches: Vec<_> = c
            .do_get(ticket.clone())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert!(rows > 100, "{rows}");
        let meta = batches[0].schema().metadata().clone();
        assert_eq!(meta["veil.max_rows"], "100000");
        let privacy: serde_json::Value = serde_json::from_str(&meta["veil.privacy"]).unwrap();
        assert_eq!(privacy["mode"], "plain");
        // The receipt is kept once the stream ended.
        let id = meta["veil.request_id"].clone();
        let receipt = server
            .http()
            .get(&format!("/v1/receipts/{id}"), Some(&carol));
        assert_eq!(receipt.status, 200, "{}", receipt.text());

        // Used: gone.
        let again = c
            .do_get(ticket)
            .await
            .map(|_| ())
            .expect_err("a ticket is single-use");
        assert_eq!(status_of(&again).0, Code::NotFound, "{again}");
        assert!(
            status_of(&again).1.contains("unknown, used, expired"),
            "{again}"
        );

        // Another principal's ticket is not theirs.
        let info = c.execute("SELECT 1 AS one".into(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut d = client(&server.flight, &dave).await;
        let stolen = d
            .do_get(ticket.clone())
            .await
            .map(|_| ())
            .expect_err("not dave's");
        assert_eq!(status_of(&stolen).0, Code::NotFound, "{stolen}");
        // ... and stays carol's until it expires (two seconds here).
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        let expired = c.do_get(ticket).await.map(|_| ()).expect_err("expired");
        assert_eq!(status_of(&expired).0, Code::NotFound, "{expired}");

        // A made-up token, a revoked key: unauthenticated, at once.
        let mut nobody = client(&server.flight, "made-up").await;
        let e = nobody.execute("SELECT 1".into(), None).await.err().unwrap();
        assert_eq!(status_of(&e).0, Code::Unauthenticated, "{e}");
        let token = {
            let mut h = client(&server.flight, "").await;
            h.handshake("dave", &dave).await.unwrap();
            h
        };
        let mut session = token;
        assert!(session.execute("SELECT 1".into(), None).await.is_ok());
        let revoked =
            server
                .http()
                .request("DELETE", "/v1/principals/dave/keys", Some(&root), &[], None);
        assert_eq!(revoked.status, 200);
        let e = session
            .execute("SELECT 1".into(), None)
            .await
            .err()
            .unwrap();
        assert_eq!(status_of(&e).0, Code::Unauthenticated, "{e}");

        // A refusal: the contract's message, nothing of what was sent.
        let e = c
            .execute(
                "SELECT id_number FROM health_visits WHERE id_number = '53262119800101001X'".into(),
                None,
            )
            .await
            .err()
            .unwrap();
        let (code, text) = status_of(&e);
        assert_eq!(code, Code::PermissionDenied, "{text}");
        assert!(!text.contains("53262119800101001X"), "{text}");
        if let arrow_flight::error::FlightError::Tonic(s) = &e {
            assert_eq!(
                s.metadata().get("veil-error-code").unwrap(),
                "policy_denied"
            );
        }
    });

    // Past the policy's row cap the stream is cut, and the schema says the cap.
    let policy = std::fs::read_to_string(repo("policies/presets/default.toml"))
        .unwrap()
        .replace("max_rows = 100000", "max_rows = 7");
    let proposer = add_principal(&dir, "appr", "approver", &["--org", AUTHORITY]);
    let reviewer = add_principal(&dir, "appr2", "approver", &["--org", AUTHORITY]);
    let loaded = change_policy(&server.http(), &proposer, &reviewer, &policy);
    assert_eq!(loaded.json()["state"], "active", "{}", loaded.text());
    rt.block_on(async {
        let mut c = client(&server.flight, &carol).await;
        let prepared = c
            .prepare("SELECT county_code FROM population".into(), None)
            .await
            .unwrap();
        let mut prepared = prepared;
        let info = prepared.execute().await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let batches: Vec<_> = c.do_get(ticket).await.unwrap().try_collect().await.unwrap();
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(rows, 7);
        assert_eq!(batches[0].schema().metadata()["veil.max_rows"], "7");
        prepared.close().await.unwrap();
    });
}
