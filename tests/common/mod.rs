//! Helpers shared by the end-to-end tests: running the binary, a small
//! deployment, and a minimal HTTP/1.1 client (no dependency, real sockets).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub fn veil(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_veil"))
        .args(args)
        .env_remove("VEIL_DATA_DIR")
        .output()
        .expect("the binary runs")
}

pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

pub use veil_datasets::TABLES;

/// A data directory with a small generated sample registered, a consumer
/// `carol` and an admin `root`. Returns the directory and carol's and root's keys.
pub fn deployment(tmp: &Path) -> (PathBuf, String, String) {
    let dir = tmp.join("data");
    init(&dir);
    let sample = dir.join("datasets/sample");
    assert!(
        veil(&[
            "datasets",
            "generate",
            "--out",
            s(&sample),
            "--persons",
            "2000",
            "--seed",
            "3"
        ])
        .status
        .success()
    );
    for table in TABLES {
        let out = veil(&[
            "datasets",
            "register",
            "--data-dir",
            s(&dir),
            s(&sample.join(format!("{table}.toml"))),
        ]);
        assert!(out.status.success(), "{:?}", text(&out));
    }
    let carol = add_principal(&dir, "carol", "consumer", &[]);
    let root = add_principal(&dir, "root", "admin", &[]);
    (dir, carol, root)
}

/// The sample manifests' approving institution: the data authority every
/// test deployment is set up with.
pub const AUTHORITY: &str = "云南省数据局 (Yunnan Provincial Data Bureau)";

/// `veil init` with [`AUTHORITY`].
pub fn init(dir: &Path) {
    let out = veil(&["init", "--data-dir", s(dir), "--authority", AUTHORITY]);
    assert!(out.status.success(), "{:?}", text(&out));
}

/// Proposes `text` as the policy with `proposer`'s key and approves it with
/// `reviewer`'s, two approvers of the data authority; the approval's answer.
pub fn change_policy(server: &Server, proposer: &str, reviewer: &str, text: &str) -> Response {
    let proposed = server.request(
        "PUT",
        "/v1/policy",
        Some(proposer),
        &[("Content-Type", "application/json")],
        Some(serde_json::json!({"text": text}).to_string().as_bytes()),
    );
    assert_eq!(proposed.status, 202, "{}", proposed.text());
    let id = proposed.json()["id"].as_str().unwrap().to_owned();
    server.post_json(
        &format!("/v1/requests/{id}/approve"),
        Some(reviewer),
        &serde_json::json!({}),
    )
}

/// Adds a principal with `veil principal add` and returns its API key.
pub fn add_principal(dir: &Path, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "principal",
        "add",
        "--data-dir",
        s(dir),
        "--name",
        name,
        "--role",
        role,
    ];
    args.extend_from_slice(extra);
    let out = veil(&args);
    assert!(out.status.success(), "{:?}", text(&out));
    text(&out).0.lines().last().unwrap().to_owned()
}

/// A running `veil serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: String,
}

impl Server {
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--data-dir", s(dir), "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = Command::new(env!("CARGO_BIN_EXE_veil"))
            .args(&args)
            .env("VEIL_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.rsplit("http://").next().unwrap().trim().to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{line}");
        Server { child, addr }
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        key: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Response {
        request(&self.addr, method, path, key, headers, body)
    }

    pub fn get(&self, path: &str, key: Option<&str>) -> Response {
        self.request("GET", path, key, &[], None)
    }

    pub fn post_json(&self, path: &str, key: Option<&str>, body: &serde_json::Value) -> Response {
        self.request(
            "POST",
            path,
            key,
            &[("Content-Type", "application/json")],
            Some(body.to_string().as_bytes()),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`).
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    key: Option<&str>,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Response {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(key) = key {
        head.push_str(&format!("Authorization: Bearer {key}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\n\r\n",
        body.map_or(0, <[u8]>::len)
    ));
    stream.write_all(head.as_bytes()).unwrap();
    if let Some(body) = body {
        let _ = stream.write_all(body);
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    parse(&raw)
}

fn parse(raw: &[u8]) -> Response {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Response {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&raw[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = eol + 2;
        if raw.len() < start + size {
            out.extend_from_slice(&raw[start..]);
            break;
        }
        out.extend_from_slice(&raw[start..start + size]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}
