//! A service that stays up (issue 18), end to end on the real server: no
//! statement can take the process down, no client can hold its
//! connections, and one process counts the verification caps.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

#[test]
fn no_statement_takes_the_server_down() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    let hostile = [
        format!("SELECT 1{}", "+1".repeat(350)),
        format!(
            "SELECT COUNT(*) FROM legal_persons WHERE industry = 'a'{}",
            " OR industry = 'b'".repeat(1_000)
        ),
        format!("SELECT 1 AS x{}", " UNION ALL SELECT 1".repeat(500)),
        format!(
            "SELECT COUNT(*) FROM legal_persons{}",
            ", legal_persons".repeat(2_000)
        ),
        format!("SELECT {}1{}", "(".repeat(5_000), ")".repeat(5_000)),
    ];
    for sql in &hostile {
        let started = Instant::now();
        let r = server.post_json("/v1/query", Some(&carol), &json!({ "sql": sql }));
        assert_eq!(r.code(), "invalid_sql", "{}", r.text());
        assert!(r.text().len() < 600, "the refusal repeats the statement");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(server.get("/healthz", None).status, 200);
    }
    // An ε too small for the noise's exact arithmetic is refused before
    // anything is charged (it once overflowed in the release); the
    // smallest allowed is answered.
    let dp = |epsilon: f64| {
        server.post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": "SELECT COUNT(*) FROM health_visits", "epsilon": epsilon}),
        )
    };
    for tiny in [1e-20, 1e-300, 0.0009] {
        let r = dp(tiny);
        assert_eq!(r.code(), "bad_request", "{}", r.text());
        assert!(r.text().contains("from 0.001 to 100"), "{}", r.text());
    }
    let r = dp(0.001);
    assert_eq!(r.status, 200, "{}", r.text());
    // Statements up to the limits are answered.
    let sql = format!("SELECT 1{}", " + 1".repeat(200));
    let r = server.post_json("/v1/query", Some(&carol), &json!({ "sql": sql }));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["rows"], json!([[201]]));
}

/// Connects from `local` (any address of 127/8 is this host).
fn connect_from(local: &str, server: &str) -> std::net::TcpStream {
    let socket = connect_bound(local, server);
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    socket
}

/// Binds a client socket to `local` before connecting, with std only:
/// the kernel picks the port.
fn connect_bound(local: &str, server: &str) -> TcpStream {
    use std::os::fd::FromRawFd;
    let server: SocketAddr = server.parse().unwrap();
    let local: std::net::Ipv4Addr = local.parse().unwrap();
    let SocketAddr::V4(server) = server else {
        panic!("IPv4 only")
    };
    // SAFETY: plain socket calls on a descriptor this function owns until
    // it hands it to TcpStream.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
        assert!(fd >= 0);
        let addr = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: port.to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(ip).to_be(),
            },
            sin_zero: [0; 8],
        };
        let size = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        let mine = addr(local, 0);
        assert_eq!(libc::bind(fd, (&raw const mine).cast(), size), 0);
        let theirs = addr(*server.ip(), server.port());
        assert_eq!(libc::connect(fd, (&raw const theirs).cast(), size), 0);
        TcpStream::from_raw_fd(fd)
    }
}

/// Reads until the server closes, or up to `limit`.
fn read_to_close(stream: &mut TcpStream) -> (String, bool) {
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return (String::from_utf8_lossy(&all).into_owned(), true),
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&all).into_owned(), false),
        }
    }
}

#[test]
fn no_client_holds_the_connections() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, _root) = deployment(tmp.path());
    let server = Server::start(
        &dir,
        &[
            "--idle-timeout",
            "2",
            "--max-connections",
            "40",
            "--max-connections-per-peer",
            "20",
        ],
    );
    // One address opens more idle connections than it may hold: the
    // excess is answered 503 in the contract's JSON and closed at once.
    let mut idle: Vec<TcpStream> = (0..30)
        .map(|_| connect_from("127.0.0.1", &server.addr))
        .collect();
    let mut refused = 0;
    for stream in idle.iter_mut().skip(20) {
        let (text, closed) = read_to_close(stream);
        assert!(closed, "a connection past the cap is closed");
        assert!(text.starts_with("HTTP/1.1 503"), "{text}");
        assert!(text.contains(r#""code":"unavailable""#), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("retry-after: 1"),
            "{text}"
        );
        refused += 1;
    }
    assert_eq!(refused, 10);
    // Another address is served meanwhile.
    let mut other = connect_from("127.0.0.2", &server.addr);
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let (text, _) = read_to_close(&mut other);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");

    // A head sent slowly, and a kept-alive connection left idle, are
    // closed after the idle timeout.
    let mut slow = connect_from("127.0.0.2", &server.addr);
    slow.write_all(b"GET /healthz HTTP/1.1\r\nhost:").unwrap();
    let mut kept = connect_from("127.0.0.2", &server.addr);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    for stream in idle.iter_mut().take(20).chain([&mut slow, &mut kept]) {
        let (_, closed) = read_to_close(stream);
        assert!(closed, "the server closes an idle connection");
    }
    let held = started.elapsed();
    assert!(held < Duration::from_secs(8), "{held:?}");
    // The first address is served again.
    let r = server.get("/healthz", None);
    assert_eq!(r.status, 200);
}

#[test]
fn every_wrong_method_is_answered_in_the_contract_json() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, _root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    for (method, path) in [
        ("DELETE", "/v1/query"),
        ("PUT", "/v1/verify"),
        ("POST", "/healthz"),
        ("PATCH", "/v1/catalog"),
    ] {
        let r = server.request(method, path, Some(&carol), &[], None);
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.json()["error"]["code"], "bad_request", "{}", r.text());
        assert!(r.header("allow").is_some(), "{method} {path}");
    }
}

/// Sends raw bytes on a fresh connection; what comes back until close.
fn raw(addr: &str, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(bytes);
    read_to_close(&mut stream).0
}

/// The JSON body of a raw response, which must be the contract's error.
fn contract_error(response: &str, status: u16) -> serde_json::Value {
    assert!(
        response.starts_with(&format!("HTTP/1.1 {status} ")),
        "{response}"
    );
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(json["error"]["code"].is_string(), "{body}");
    json
}

#[test]
fn every_error_is_the_contract_json_and_repeats_nothing_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, carol, root) = deployment(tmp.path());
    let approver = add_principal(&dir, "amy", "approver", &["--org", AUTHORITY]);
    let modeler = add_principal(&dir, "dev", "modeler", &["--org", "a developer"]);
    let subject = add_principal(&dir, "me", "subject", &["--subject", "11010519491231002X"]);
    let server = Server::start(&dir, &[]);
    let addr = server.addr.as_str();
    // Requests hyper cannot read: a target that is not UTF-8, headers past
    // the limit, a request line that is not HTTP, a bad second request on
    // a kept-alive connection.
    let r = raw(addr, b"GET /v1/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(contract_error(&r, 400)["error"]["code"], "bad_request");
    let mut big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 1 << 20));
    big.extend(b"\r\n\r\n");
    contract_error(&raw(addr, &big), 431);
    contract_error(&raw(addr, b"GARBAGE\r\n\r\n"), 400);
    let two = raw(
        addr,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    );
    let second = two.find("HTTP/1.1 400").expect("the second answer");
    assert!(two.starts_with("HTTP/1.1 200"), "{two}");
    contract_error(&two[second..], 400);
    // The server is still there.
    assert_eq!(server.get("/healthz", None).status, 200);

    // The auth scheme is case-insensitive.
    let r = server.request(
        "GET",
        "/v1/budget",
        None,
        &[("Authorization", &format!("bearer {carol}"))],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // Refusals that do not repeat what was sent: an identity number as a
    // key, as a value of the wrong type, as a parameter.
    let secret = "53010219491231002X";
    let sent: Vec<(&str, &str, serde_json::Value)> = vec![
        ("/v1/query", &carol, json!({"sql": "SELECT 1", secret: 1})),
        (
            "/v1/query",
            &carol,
            json!({"sql": "SELECT 1", "epsilon": secret}),
        ),
        (
            "/v1/query",
            &carol,
            json!({"sql": "SELECT 1", "purpose": {secret: secret}}),
        ),
        (
            "/v1/verify",
            &carol,
            json!({"product": "person_identity", secret: 1}),
        ),
        (
            "/v1/verify",
            &carol,
            json!({"product": secret, "subject": secret, "claims": {"name": "x"}}),
        ),
        (
            "/v1/verify",
            &carol,
            json!({"product": "person_identity", "subject": secret, "claims": {secret: 1}}),
        ),
        ("/v1/models", &modeler, json!({"template": secret})),
        ("/v1/models", &root, json!({"template": secret})),
        ("/v1/requests", &carol, json!({"kind": secret})),
    ];
    for (path, key, body) in &sent {
        let r = server.post_json(path, Some(key), body);
        assert!(r.status >= 400, "{path} {body}: {}", r.text());
        assert!(!r.json()["error"]["message"].as_str().unwrap().is_empty());
        assert!(!r.text().contains(secret), "{path} {body}: {}", r.text());
        assert!(!r.text().contains("1949"), "{path} {body}: {}", r.text());
    }
    // SQL that does not parse or plan, with an identity number in it: the
    // message says where, never what (the audit log keeps the SQL asked,
    // as it must).
    let written = "53262119800101001X";
    for sql in [
        format!("SELECT 1 FROM population WHERE id_number = '{written}' {written}"),
        format!("SELECT COUNT(*) FROM population WHERE sex + '{written}' > 1"),
        format!(
            "SELECT diagnosis_category, COUNT(*) AS n FROM health_visits GROUP BY diagnosis_category HAVING n LIKE '{written}'"
        ),
    ] {
        let r = server.post_json(
            "/v1/query",
            Some(&carol),
            &json!({"sql": sql, "epsilon": 0.1}),
        );
        assert!(r.status >= 400, "{sql}: {}", r.text());
        assert!(!r.text().contains("1980"), "{sql}: {}", r.text());
    }
    let r = server.get(&format!("/v1/audit?since={secret}"), Some(&approver));
    assert_eq!(r.code(), "bad_request", "{}", r.text());
    assert!(!r.text().contains(secret), "{}", r.text());
    let r = server.get(
        "/v1/audit?since=2026-01-01T08:00:00%2B08:00",
        Some(&approver),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = server.get(&format!("/v1/me/records?who={secret}"), Some(&subject));
    assert_eq!(r.code(), "bad_request", "{}", r.text());
    assert!(!r.text().contains(secret), "{}", r.text());
    assert_eq!(server.get("/v1/me/records", Some(&subject)).status, 200);
    // Nor does the audit log keep an unknown kind or template as typed.
    drop(server);
    let conn = rusqlite::Connection::open(dir.join("veil.db")).unwrap();
    let typed: Vec<(String, String)> = conn
        .prepare("SELECT endpoint, request FROM audit_log WHERE request LIKE ?1")
        .unwrap()
        .query_map([format!("%{secret}%")], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(
        typed.is_empty(),
        "the audit log repeats what was sent: {typed:?}"
    );
}

#[test]
fn one_process_counts_the_verification_caps() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, _carol, _root) = deployment(tmp.path());
    let server = Server::start(&dir, &[]);
    assert_eq!(server.get("/healthz", None).status, 200);
    // A second server on the same directory would count apart.
    let second = veil(&["serve", "--data-dir", s(&dir), "--listen", "127.0.0.1:0"]);
    assert!(!second.status.success());
    let (_, stderr) = text(&second);
    assert!(
        stderr.contains("verification caps") || stderr.contains("daily caps"),
        "{stderr}"
    );
    // So would `veil verify` beside it.
    let out = veil(&[
        "verify",
        "--data-dir",
        s(&dir),
        "--as",
        "carol",
        "--product",
        "person_identity",
        "--subject",
        "11010519491231002X",
        "--claim",
        "name=x",
    ]);
    assert!(!out.status.success());
    let (stdout, stderr) = text(&out);
    assert!(
        format!("{stdout}{stderr}").contains("daily caps"),
        "{stdout}{stderr}"
    );
    // Once the server is gone, the CLI verifies.
    drop(server);
    let out = veil(&[
        "verify",
        "--data-dir",
        s(&dir),
        "--as",
        "carol",
        "--product",
        "person_identity",
        "--subject",
        "11010519491231002X",
        "--claim",
        "name=x",
    ]);
    assert!(out.status.success(), "{:?}", text(&out));
}
