//! Malformed and hostile HTTP requests, written as raw bytes on fresh connections (so headers,
//! framing and encodings can be anything, not only what an HTTP client library would send).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How the server answered one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Answer {
    /// An HTTP status.
    Status(u16),
    /// Connection closed without a status line (acceptable for broken framing only).
    Closed,
    /// No answer within the timeout: a hang.
    Timeout,
}

/// The request kinds, one per number in `0..KINDS`.
pub const KINDS: u32 = 16;

/// The name of request kind `k`.
pub fn kind_name(k: u32) -> &'static str {
    [
        "random bytes as JSON",
        "binary mode without ce-id",
        "invalid attribute names",
        "invalid JSON",
        "JSON nested 100,000 deep",
        "wrong attribute types",
        "wrong content type",
        "oversized body",
        "invalid UTF-8 in headers",
        "invalid UTF-8 in body",
        "garbage batch",
        "malformed HTTP",
        "64 KiB header",
        "random method and path",
        "CTS type with non-object data",
        "random headers and body",
    ][k as usize % KINDS as usize]
}

fn random_bytes(rng: &mut fastrand::Rng, n: usize) -> Vec<u8> {
    (0..n).map(|_| rng.u8(..)).collect()
}

fn token(rng: &mut fastrand::Rng, n: usize) -> String {
    (0..n).map(|_| rng.alphanumeric()).collect()
}

fn request(method: &str, path: &str, headers: &[(String, Vec<u8>)], body: &[u8]) -> Vec<u8> {
    let mut out =
        format!("{method} {path} HTTP/1.1\r\nhost: sink\r\nconnection: close\r\n").into_bytes();
    for (k, v) in headers {
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(v);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body);
    out
}

fn h(k: &str, v: impl AsRef<[u8]>) -> (String, Vec<u8>) {
    (k.to_owned(), v.as_ref().to_vec())
}

fn binary_headers(rng: &mut fastrand::Rng) -> Vec<(String, Vec<u8>)> {
    vec![
        h("ce-specversion", "1.0"),
        h("ce-id", token(rng, 12)),
        h("ce-source", "urn:hostile"),
        h("ce-type", "org.hostile.test"),
        h("content-type", "application/json"),
    ]
}

/// Request `n` of kind `n % KINDS` (deterministic for a seed), over `max_body` bytes when oversized.
pub fn hostile_request(rng: &mut fastrand::Rng, n: u32, max_body: usize) -> Vec<u8> {
    match n % KINDS {
        0 => {
            let len = rng.usize(0..2048);
            request(
                "POST",
                "/",
                &[h("content-type", "application/json")],
                &random_bytes(rng, len),
            )
        }
        1 => {
            let mut hs = binary_headers(rng);
            hs.retain(|(k, _)| k != "ce-id");
            request("POST", "/", &hs, b"{}")
        }
        2 => {
            let mut hs = binary_headers(rng);
            let bad = [
                "ce-Bad_Name!",
                "ce-\u{e4}\u{f6}x",
                "ce-",
                "ce-data",
                "ce-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa_",
            ];
            hs.push(h(bad[rng.usize(..bad.len())], "x"));
            let body = format!(
                "{{\"specversion\":\"1.0\",\"id\":\"{}\",\"source\":\"urn:h\",\"type\":\"t\",\"Bad-Name\":\"x\",\"{}\":1}}",
                token(rng, 8),
                "\u{1F600}"
            );
            if rng.bool() {
                request("POST", "/", &hs, b"{}")
            } else {
                request(
                    "POST",
                    "/",
                    &[h("content-type", "application/cloudevents+json")],
                    body.as_bytes(),
                )
            }
        }
        3 => {
            let bodies: [&[u8]; 5] = [
                b"{",
                b"{\"specversion\":",
                b"[1,2,",
                b"nul",
                b"{\"a\":\"\\uZZZZ\"}",
            ];
            request(
                "POST",
                "/",
                &[h("content-type", "application/cloudevents+json")],
                bodies[rng.usize(..bodies.len())],
            )
        }
        4 => {
            let depth = 100_000.min(max_body / 2 - 8);
            let mut b = b"{\"specversion\":\"1.0\",\"id\":\"d\",\"source\":\"urn:h\",\"type\":\"t\",\"data\":".to_vec();
            b.extend(std::iter::repeat_n(b'[', depth));
            b.extend(std::iter::repeat_n(b']', depth));
            b.push(b'}');
            let ct = if rng.bool() {
                "application/cloudevents+json"
            } else {
                "application/json"
            };
            let mut hs = binary_headers(rng);
            hs.retain(|(k, _)| k != "content-type");
            hs.push(h("content-type", ct));
            request("POST", "/", &hs, &b)
        }
        5 => {
            let bodies = [
                "{\"specversion\":\"0.3\",\"id\":\"x\",\"source\":\"urn:h\",\"type\":\"t\"}",
                "{\"specversion\":\"1.0\",\"id\":5,\"source\":\"urn:h\",\"type\":\"t\"}",
                "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":[],\"type\":\"t\"}",
                "{\"specversion\":\"1.0\",\"id\":\"\",\"source\":\"\",\"type\":\"\"}",
                "{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"urn:h\",\"type\":\"t\",\"time\":\"yesterday\"}",
                "[]",
                "42",
            ];
            request(
                "POST",
                "/",
                &[h("content-type", "application/cloudevents+json")],
                bodies[rng.usize(..bodies.len())].as_bytes(),
            )
        }
        6 => {
            let cts = [
                "text/plain",
                "application/xml",
                "multipart/form-data; boundary=x",
                "image/png",
                "application/cloudevents+xml",
                "",
                ";;;=",
            ];
            let mut hs = vec![h("content-type", cts[rng.usize(..cts.len())])];
            if rng.bool() {
                hs = vec![];
            }
            request("POST", "/", &hs, b"<event/>")
        }
        7 => {
            let mut hs = binary_headers(rng);
            if rng.bool() {
                hs.retain(|(k, _)| !k.starts_with("ce-"));
                hs.retain(|(k, _)| k != "content-type");
                hs.push(h("content-type", "application/cloudevents+json"));
            }
            request(
                "POST",
                "/",
                &hs,
                &vec![b'a'; max_body + 1 + rng.usize(..4096)],
            )
        }
        8 => {
            let mut hs = binary_headers(rng);
            hs.push(h("ce-subject", [0xff, 0xfe, b'x', 0xc3, 0x28]));
            hs.push(h("ce-myext", [0xe2, 0x82]));
            request("POST", "/", &hs, b"{}")
        }
        9 => {
            let mut b = b"{\"specversion\":\"1.0\",\"id\":\"".to_vec();
            b.extend_from_slice(&[0xff, 0xfe, 0xc3, 0x28]);
            b.extend_from_slice(b"\",\"source\":\"urn:h\",\"type\":\"t\"}");
            request(
                "POST",
                "/",
                &[h("content-type", "application/cloudevents+json")],
                &b,
            )
        }
        10 => {
            let bodies = [
                "[{\"specversion\":\"1.0\"},{},null,1]".to_owned(),
                format!("[{}]", vec!["{}"; 5000].join(",")),
                "{\"not\":\"a list\"}".to_owned(),
            ];
            request(
                "POST",
                "/",
                &[h("content-type", "application/cloudevents-batch+json")],
                bodies[rng.usize(..bodies.len())].as_bytes(),
            )
        }
        11 => {
            let raws: [&[u8]; 6] = [
                b"GARBAGE\r\n\r\n",
                b"POST / HTTP/1.1\r\nhost: x\r\nno colon here\r\n\r\n",
                b"POST / HTTP/1.1\r\nhost: x\r\ncontent-length: -5\r\n\r\n",
                b"POST / HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
                b"POST / HTTP/9.9\r\n\r\n",
                b"\x00\x01\x02\x03\r\n\r\n",
            ];
            raws[rng.usize(..raws.len())].to_vec()
        }
        12 => {
            let mut hs = binary_headers(rng);
            hs.push(h("ce-big", "x".repeat(64 * 1024)));
            request("POST", "/", &hs, b"{}")
        }
        13 => {
            let methods = ["GET", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO", "POST"];
            let paths = [
                "/",
                "/x/../../etc/passwd",
                "/%00",
                "/notifications",
                "/metrics?x=%ff",
                "/readyz/..",
                "*",
            ];
            let len = rng.usize(0..512);
            request(
                methods[rng.usize(..methods.len())],
                paths[rng.usize(..paths.len())],
                &[h("content-type", "application/json")],
                &random_bytes(rng, len),
            )
        }
        14 => {
            let mut hs = binary_headers(rng);
            hs.retain(|(k, _)| k != "ce-type");
            hs.push(h("ce-type", "ecs.apicall.server.deleteserver"));
            let bodies: [&[u8]; 3] = [b"\"a string\"", b"[1,2,3]", b"12"];
            request("POST", "/", &hs, bodies[rng.usize(..bodies.len())])
        }
        _ => {
            let mut hs = Vec::new();
            for _ in 0..rng.usize(0..20) {
                let prefix = if rng.bool() { "ce-" } else { "x-" };
                let n = rng.usize(1..12);
                let name = format!("{prefix}{}", token(rng, n));
                let len = rng.usize(0..64);
                let v: Vec<u8> = random_bytes(rng, len)
                    .into_iter()
                    .filter(|b| *b != b'\r' && *b != b'\n')
                    .collect();
                hs.push((name, v));
            }
            if rng.bool() {
                hs.push(h("content-type", "application/cloudevents+json"));
            }
            let len = rng.usize(0..4096);
            request("POST", "/", &hs, &random_bytes(rng, len))
        }
    }
}

async fn send_raw(addr: &str, req: &[u8]) -> Answer {
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        // The server may answer and close before reading everything (oversized bodies).
        let _ = s.write_all(req).await;
        let _ = s.shutdown().await;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(2).any(|w| w == b"\r\n") {
                        break;
                    }
                }
            }
        }
        std::io::Result::Ok(buf)
    };
    match tokio::time::timeout(Duration::from_secs(20), io).await {
        Err(_) => Answer::Timeout,
        Ok(Err(_)) => Answer::Closed,
        Ok(Ok(buf)) => {
            let line = String::from_utf8_lossy(&buf);
            match line.split_whitespace().nth(1).and_then(|s| s.parse().ok()) {
                Some(code) if line.starts_with("HTTP/") => Answer::Status(code),
                _ => Answer::Closed,
            }
        }
    }
}

/// Sends `count` hostile requests (seeded) to `addr` (`host:port`), `concurrency` at a time; returns
/// the answers by request kind.
pub async fn storm(
    addr: &str,
    count: u32,
    concurrency: usize,
    seed: u64,
    max_body: usize,
) -> BTreeMap<(u32, Answer), u64> {
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..concurrency.max(1) {
        let (next, addr) = (next.clone(), addr.to_owned());
        tasks.spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed.wrapping_add(t as u64));
            let mut out: BTreeMap<(u32, Answer), u64> = BTreeMap::new();
            loop {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if n >= count {
                    return out;
                }
                let req = hostile_request(&mut rng, n, max_body);
                *out.entry((n % KINDS, send_raw(&addr, &req).await))
                    .or_default() += 1;
            }
        });
    }
    let mut all = BTreeMap::new();
    while let Some(r) = tasks.join_next().await {
        for (k, v) in r.expect("storm task") {
            *all.entry(k).or_default() += v;
        }
    }
    all
}
