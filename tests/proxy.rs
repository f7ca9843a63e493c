//! The reverse proxy against real upstream servers: balancing, forwarding
//! headers, failures (502, 504), passive and active health, streaming in
//! bounded memory, and WebSockets.

use crate::harness::{Site, client, config_with, raw};
use crate::upstream::{Upstream, dead_port};
use std::time::{Duration, Instant};

fn pool(upstreams: &[String]) -> String {
    let list: Vec<String> = upstreams.iter().map(|u| format!("\"{u}\"")).collect();
    format!("[{}]", list.join(", "))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_across_the_pool() {
    let (a, b, c) = (
        Upstream::start("a").await,
        Upstream::start("b").await,
        Upstream::start("c").await,
    );
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[[route]]\npath = \"/api/*\"\nproxy = {}\n",
            pool(&[a.url(), b.url(), c.url()])
        )),
        &[],
    );
    let http = client();
    let mut names = Vec::new();
    for _ in 0..30 {
        let response = http.get(server.url("/api/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        names.push(response.text().await.unwrap());
    }
    assert!(names.iter().all(|n| n.ends_with(" /api/x")), "{names:?}");
    assert_eq!((a.hits(), b.hits(), c.hits()), (10, 10, 10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_connections_avoids_the_busy_upstream() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[[route]]\nproxy = {}\nbalance = \"least_connections\"\n",
            pool(&[a.url(), b.url()])
        )),
        &[],
    );
    // One slow request holds an upstream; the quick ones go to the other.
    let slow = tokio::spawn(client().get(server.url("/slow?ms=1500")).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy_hits = (a.hits(), b.hits());
    for _ in 0..10 {
        let body = client()
            .get(server.url("/quick"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.ends_with("/quick"), "{body}");
    }
    assert_eq!(slow.await.unwrap().unwrap().status(), 200);
    let (a_quick, b_quick) = (a.hits() - busy_hits.0, b.hits() - busy_hits.1);
    let idle_got = if busy_hits.0 == 1 { b_quick } else { a_quick };
    assert_eq!(
        idle_got, 10,
        "a: {a_quick}, b: {b_quick} while one was busy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_are_set_and_hop_by_hop_headers_removed() {
    let up = Upstream::start("up").await;
    let site = Site::new();
    let routes = format!("[[route]]\nproxy = [\"{}\"]\n", up.url());
    let server = site.serve_config(&config_with(&routes), &[]);
    let answer = raw(
        &server.addr,
        "GET /headers?q=1 HTTP/1.1\r\nHost: shop.example\r\nX-Forwarded-For: 6.6.6.6\r\n\
         Connection: close, x-secret\r\nX-Secret: hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
         X-Kept: yes\r\n\r\n",
    )
    .await;
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let seen: serde_json::Value = serde_json::from_str(body).expect(&answer);
    let headers = &seen["headers"];
    assert_eq!(seen["uri"], "/headers?q=1");
    assert_eq!(headers["host"], "shop.example");
    assert_eq!(headers["x-forwarded-host"], "shop.example");
    assert_eq!(headers["x-forwarded-proto"], "http");
    assert_eq!(
        headers["x-forwarded-for"], "127.0.0.1",
        "an untrusted peer's X-Forwarded-For is replaced"
    );
    assert_eq!(headers["x-real-ip"], "127.0.0.1");
    assert_eq!(headers["x-kept"], "yes");
    for gone in ["x-secret", "keep-alive", "te"] {
        assert!(
            headers.get(gone).is_none(),
            "{gone} was forwarded: {headers}"
        );
    }
    assert_ne!(headers["connection"], "close, x-secret");
    drop(server);

    // Behind a trusted proxy, the chain is kept and extended.
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[firewall]\ntrusted_proxies = [\"127.0.0.1\"]\n{routes}"
        )),
        &[],
    );
    let seen: serde_json::Value = client()
        .get(server.url("/headers"))
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let headers = &seen["headers"];
    assert_eq!(headers["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(headers["x-real-ip"], "203.0.113.9");
    assert_eq!(headers["x-forwarded-proto"], "https");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_upstream_is_502_fast_and_a_slow_one_504() {
    let slow = Upstream::start("slow").await;
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[[route]]\npath = \"/dead/*\"\nproxy = [\"http://{}\"]\n\
             [[route]]\npath = \"/slow\"\nproxy = [\"{}\"]\ntimeout_ms = 300\n",
            dead_port(),
            slow.url()
        )),
        &[],
    );
    let started = Instant::now();
    let response = client()
        .post(server.url("/dead/x"))
        .body("data")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
    let body = response.text().await.unwrap();
    assert!(body.contains("cannot be reached"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    let started = Instant::now();
    let response = client()
        .get(server.url("/slow?ms=3000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 504);
    let body = response.text().await.unwrap();
    assert!(body.contains("did not answer within 300 ms"), "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ejected_upstream_comes_back() {
    let live = Upstream::start("live").await;
    let later = dead_port();
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[[route]]\nproxy = [\"{}\", \"http://{later}\"]\nmax_fails = 1\nfail_timeout_ms = 1000\n",
            live.url()
        )),
        &[],
    );
    // GETs to the dead one are retried on the live one: nothing fails.
    for _ in 0..6 {
        let response = client().get(server.url("/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(live.hits(), 6);
    let upstreams = server.admin_json("/upstreams").await;
    assert_eq!(upstreams[1]["state"], "ejected", "{upstreams}");
    server.wait_log("upstream ejected", Duration::from_secs(5));

    let back = Upstream::start_on("back", later).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..6 {
        let response = client().get(server.url("/x")).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    assert_eq!(
        back.hits(),
        3,
        "round robin again once the fail timeout is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_take_an_upstream_out_and_back() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[[route]]\nproxy = {}\nhealth_check = {{ path = \"/health\", interval_ms = 100, timeout_ms = 500 }}\n",
            pool(&[a.url(), b.url()])
        )),
        &[],
    );
    b.healthy.store(false, std::sync::atomic::Ordering::SeqCst);
    server.wait_log(
        "health check of /health failed: status 503",
        Duration::from_secs(5),
    );
    let before = b.hits();
    for _ in 0..6 {
        assert_eq!(
            client()
                .get(server.url("/x"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(b.hits(), before, "an unhealthy upstream gets no requests");
    b.healthy.store(true, std::sync::atomic::Ordering::SeqCst);
    server.wait_log("health check passes again", Duration::from_secs(5));
    for _ in 0..6 {
        assert_eq!(
            client()
                .get(server.url("/x"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    assert_eq!(b.hits() - before, 3);
}

/// A request body of `left` bytes, made as it is sent.
struct Chunks {
    left: usize,
}

impl futures_core::Stream for Chunks {
    type Item = Result<bytes::Bytes, std::io::Error>;
    fn poll_next(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        const CHUNK: usize = 256 * 1024;
        if self.left == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.left.min(CHUNK);
        self.left -= n;
        std::task::Poll::Ready(Some(Ok(bytes::Bytes::from(vec![b'x'; n]))))
    }
}

fn memory_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_body_streams_both_ways_in_bounded_memory() {
    let up = Upstream::start("echo").await;
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[limits]\nmax_body_bytes = 1073741824\n[[route]]\nproxy = [\"{}\"]\n",
            up.url()
        )),
        &[],
    );
    // Warm up (first connection, pools), then measure.
    assert_eq!(
        client()
            .get(server.url("/x"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let pid = server.child.id();
    let before = memory_kib(pid, "VmRSS:");
    const SIZE: usize = 512 << 20;
    let mut response = client()
        .post(server.url("/echo"))
        .body(reqwest::Body::wrap_stream(Chunks { left: SIZE }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut received = 0;
    while let Some(chunk) = response.chunk().await.unwrap() {
        assert!(chunk.iter().all(|b| *b == b'x'));
        received += chunk.len();
    }
    assert_eq!(received, SIZE);
    let peak = memory_kib(pid, "VmHWM:");
    assert!(
        peak.saturating_sub(before) < 64 * 1024,
        "512 MiB streamed through, and memory grew from {before} KiB to a peak of {peak} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stalls_its_body_does_not_hold_the_upstream() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = Upstream::start("echo").await;
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[limits]\nbody_timeout_ms = 1000\n[[route]]\nproxy = [\"{}\"]\n",
            up.url()
        )),
        &[],
    );
    let mut tcp = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    tcp.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), tcp.read_to_end(&mut answer))
        .await
        .expect("the stalled body still holds the connection")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    // The echo had answered and streamed what came; the cut leaves its
    // response short of its declared length, as the client must see.
    assert!(answer.ends_with("\r\n\r\nabc"), "{answer:?}");
    let stats = server.admin_json("/stats").await;
    assert_eq!(stats["edge"]["body_timeouts"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_passes_through_the_proxy() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let up = Upstream::start("ws").await;
    let site = Site::new();
    let server = site.serve_config(
        &config_with(&format!(
            "[[route]]\npath = \"/live/*\"\nproxy = [\"{}\"]\nstrip_prefix = true\n\
             [firewall]\nmax_connections_per_ip = 1\n",
            up.url()
        )),
        &[],
    );
    let (mut socket, response) =
        tokio_tungstenite::connect_async(format!("ws://{}/live/ws", server.addr))
            .await
            .unwrap();
    assert_eq!(response.status(), 101);
    // The joined connection still counts: a second one from the address is
    // refused while it is open.
    assert!(
        tokio_tungstenite::connect_async(format!("ws://{}/live/ws", server.addr))
            .await
            .is_err(),
        "a second connection got through max_connections_per_ip = 1"
    );
    for i in 0..20 {
        let text = format!("message {i}");
        socket.send(Message::text(text.clone())).await.unwrap();
        let echoed = socket.next().await.unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), text);
    }
    socket
        .send(Message::binary(vec![7u8; 100_000]))
        .await
        .unwrap();
    let echoed = socket.next().await.unwrap().unwrap();
    assert_eq!(echoed.into_data().len(), 100_000);
    socket.close(None).await.unwrap();
}
