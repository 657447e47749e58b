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
