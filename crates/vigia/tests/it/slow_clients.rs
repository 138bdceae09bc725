//! Slow and idle clients cannot hold the API: half-sent headers, stalled
//! bodies and thousands of silent connections are cut off after the
//! configured timeouts while everyone else is served.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use vigia_testkit::{NatsServer, free_port, workspace_root};

use crate::child::Vigia;
use crate::common::{TestEnv, alone, wait_for};

/// Reads until the server closes the connection; what it sent, and how long it took.
async fn until_closed(mut s: TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut seen = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut seen)).await;
    assert!(read.is_ok(), "the server kept a slow connection open for 10 s");
    (String::from_utf8_lossy(&seen).into_owned(), started.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_cut_off_while_others_are_served() {
    let mut env = TestEnv::start_alone().await;
    env.config.http.header_timeout_ms = 500;
    env.config.http.body_timeout_ms = 500;
    let (running, base) = env.serve().await;
    let addr = base.trim_start_matches("http://").to_owned();

    let mut half_header = TcpStream::connect(&addr).await.expect("connect");
    half_header.write_all(b"GET /health HTTP/1.1\r\nHost: vigia\r\n").await.expect("write");
    let mut stalled_body = TcpStream::connect(&addr).await.expect("connect");
    stalled_body
        .write_all(
            b"POST /api/v1/events HTTP/1.1\r\nHost: vigia\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n[{\"tag\": ",
        )
        .await
        .expect("write");
    let mut idle = Vec::new();
    for _ in 0..1000 {
        idle.push(TcpStream::connect(&addr).await.expect("connect an idle client"));
    }

    // Everyone else is served meanwhile.
    let health = reqwest::get(format!("{base}/health")).await.expect("GET /health");
    assert_eq!(health.status(), 200);

    let (sent, took) = until_closed(half_header).await;
    assert!(!sent.starts_with("HTTP/1.1 2"), "half a header got an answer: {sent}");
    assert!(took < Duration::from_secs(5), "cut after {took:?}");
    let (sent, _) = until_closed(stalled_body).await;
    assert!(sent.starts_with("HTTP/1.1 4"), "a stalled body gets a client error, got: {sent:?}");
    let started = Instant::now();
    for s in idle {
        until_closed(s).await;
    }
    assert!(started.elapsed() < Duration::from_secs(10), "1,000 idle connections closed by the header timeout");

    let health = reqwest::get(format!("{base}/health")).await.expect("GET /health");
    assert_eq!(health.status(), 200, "still serving");

    // A long response is not a slow request: the live stream outlives the timeouts.
    let mut live = reqwest::get(format!("{base}/api/v1/live")).await.expect("GET /live");
    assert_eq!(live.status(), 200);
    tokio::time::sleep(Duration::from_secs(2)).await;
    env.publish_raw("brasil.sul.late", br#"{"value": 1}"#).await;
    let chunk = tokio::time::timeout(Duration::from_secs(5), live.chunk()).await.expect("an event within 5 s");
    let chunk = chunk.expect("the stream is still open").expect("a chunk");
    assert!(String::from_utf8_lossy(&chunk).contains("brasil.sul.late"), "{chunk:?}");
    drop(live);
    running.shutdown().await;
}

/// Idle connections held at once against `vigia serve` in its own process,
/// so that its file descriptors and memory are its own.
const IDLE: usize = 10_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_idle_connections_are_closed_and_memory_stays_bounded() {
    let _turn = alone().await;
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    std::fs::write(
        dir.path().join("vigia.toml"),
        format!(
            "[nats]\nurl = {:?}\nspawn = false\ndir = {:?}\nroots = [\"brasil\"]\n\n\
             [store]\nurl = \"surrealkv://{}\"\n\n[http]\nlisten = \"127.0.0.1:{port}\"\n\
             header_timeout_ms = 5000\n",
            nats.url(),
            workspace_root().join("nats").display().to_string(),
            dir.path().join("db").display()
        ),
    )
    .expect("write vigia.toml");
    let server = Vigia::start(dir.path(), "serve");
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    wait_for("vigia serve to answer", Duration::from_secs(60), || async {
        client.get(format!("{base}/health")).send().await.is_ok_and(|r| r.status() == 200)
    })
    .await;
    let (rss_before, _) = server.memory_kib();

    let mut idle = Vec::with_capacity(IDLE);
    for _ in 0..IDLE {
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.expect("connect an idle client"));
    }
    let health = client.get(format!("{base}/health")).send().await.expect("GET /health with 10,000 idle clients");
    assert_eq!(health.status(), 200, "served while 10,000 clients sit idle");

    let closed = tokio::time::timeout(Duration::from_secs(60), async {
        for mut s in idle {
            let mut seen = Vec::new();
            s.read_to_end(&mut seen).await.expect("read until closed");
        }
    })
    .await;
    assert!(closed.is_ok(), "10,000 idle connections closed by the header timeout");
    let (rss_after, peak) = server.memory_kib();
    // Each idle connection may cost a task and a read buffer (tens of KiB at
    // most), never anything that grows with how long it sits there.
    let per_connection = peak.saturating_sub(rss_before) / IDLE as u64;
    assert!(
        per_connection <= 32,
        "{per_connection} KiB per idle connection (before {rss_before} KiB, peak {peak} KiB)"
    );
    let health = client.get(format!("{base}/health")).send().await.expect("GET /health afterwards");
    assert_eq!(health.status(), 200, "still serving");
    eprintln!(
        "vigia serve RSS: {rss_before} KiB before, {peak} KiB peak, {rss_after} KiB after {IDLE} idle connections"
    );
    assert!(server.sigterm().success(), "vigia serve stops cleanly");
}
