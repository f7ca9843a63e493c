//! The client of the realtime benchmark. Opens N WebSockets subscribed to
//! one channel, measures what they cost the server while idle, then
//! publishes to the channel R times and times every delivery.
//!
//! 1. reads the server's VmRSS (/proc/PID/status) with no client connected;
//! 2. opens the N connections, at most 256 at a time, each counting as open
//!    once its first message (the welcome) arrived;
//! 3. waits 2 s, reads VmRSS again: (RSS delta) / N is the memory per idle
//!    connection;
//! 4. R rounds: notes t0, POSTs the round number to the publish URL (one
//!    kept-alive HTTP/1.1 connection), and every client notes (now - t0)
//!    when the number reaches it. A round ends when all N have it, or after
//!    10 s; the clients it did not reach by then are missed.
//!
//! Latencies are over every delivery of every round; `last_median_ms` is
//! the median over rounds of the time to the last delivery of the round (a
//! round with misses counts as 10 s). It prints one line of key=value pairs
//! on stdout, progress on stderr.
//!
//! Usage: ws-load --ws URL --publish URL --clients N --rounds R --pid PID

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Connections being opened at once.
const OPENING: usize = 256;
/// How long one connection may take to open and get its welcome.
const OPEN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the connections stay idle before the second RSS reading.
const IDLE: Duration = Duration::from_secs(2);
/// How long a round waits for its last delivery.
const ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// The pause between rounds.
const BETWEEN_ROUNDS: Duration = Duration::from_millis(200);

struct Args {
    ws: String,
    publish: String,
    clients: usize,
    rounds: u32,
    pid: u32,
}

fn usage() -> ! {
    eprintln!("usage: ws-load --ws URL --publish URL --clients N --rounds R --pid PID");
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut ws = None;
    let mut publish = None;
    let mut clients = None;
    let mut rounds = None;
    let mut pid = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| usage());
        match flag.as_str() {
            "--ws" => ws = Some(value),
            "--publish" => publish = Some(value),
            "--clients" => clients = value.parse().ok(),
            "--rounds" => rounds = value.parse().ok(),
            "--pid" => pid = value.parse().ok(),
            _ => usage(),
        }
    }
    match (ws, publish, clients, rounds, pid) {
        (Some(ws), Some(publish), Some(clients), Some(rounds), Some(pid)) => Args {
            ws,
            publish,
            clients,
            rounds,
            pid,
        },
        _ => usage(),
    }
}

/// Raises the soft limit of open files to the hard limit.
fn raise_nofile(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
    if limit.rlim_cur < wanted {
        eprintln!(
            "ws-load: the open-file limit is {}, below the {wanted} this run needs",
            limit.rlim_cur
        );
    }
}

/// VmRSS of process `pid`, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| {
        eprintln!("ws-load: cannot read /proc/{pid}/status: {e}");
        std::process::exit(1);
    });
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// What the clients share with the main task.
struct Shared {
    base: Instant,
    /// When the current round's publish was sent, in ns after `base`.
    t0: AtomicU64,
    /// (round, ns from t0 to the delivery), one per delivery.
    deliveries: mpsc::UnboundedSender<(u32, u64)>,
    /// Connections that ended after they opened.
    closed: AtomicUsize,
}

/// Opens one connection and waits for its first message.
async fn open(
    url: &str,
) -> Result<
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| e.to_string())?;
    match socket.next().await {
        Some(Ok(Message::Text(_) | Message::Binary(_))) => Ok(socket),
        Some(Ok(other)) => Err(format!("first message: {other:?}")),
        Some(Err(e)) => Err(e.to_string()),
        None => Err("closed before its first message".to_owned()),
    }
}

/// One client: opens its connection, reports it open (or why not), then
/// reports every round number it receives.
async fn client(
    url: Arc<str>,
    shared: Arc<Shared>,
    opening: Arc<Semaphore>,
    opened: mpsc::UnboundedSender<Result<(), String>>,
) {
    let permit = opening.acquire().await.expect("semaphore");
    let socket = match tokio::time::timeout(OPEN_TIMEOUT, open(&url)).await {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            let _ = opened.send(Err(e));
            return;
        }
        Err(_) => {
            let _ = opened.send(Err(format!("not open after {OPEN_TIMEOUT:?}")));
            return;
        }
    };
    drop(permit);
    let _ = opened.send(Ok(()));
    drop(opened);
    let mut socket = socket;
    while let Some(frame) = socket.next().await {
        match frame {
            Ok(Message::Text(text)) => {
                let now = shared.base.elapsed().as_nanos() as u64;
                if let Ok(round) = text.as_str().parse::<u32>() {
                    let t0 = shared.t0.load(Ordering::Acquire);
                    let _ = shared.deliveries.send((round, now.saturating_sub(t0)));
                }
            }
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => {} // pings are answered by tungstenite
        }
    }
    shared.closed.fetch_add(1, Ordering::Relaxed);
}

/// A kept-alive HTTP/1.1 connection to the publish URL.
struct Publisher {
    authority: String,
    path: String,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Publisher {
    fn new(url: &str) -> Publisher {
        let rest = url.strip_prefix("http://").unwrap_or_else(|| {
            eprintln!("ws-load: --publish takes an http:// URL");
            std::process::exit(2);
        });
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Publisher {
            authority: authority.to_owned(),
            path: path.to_owned(),
            sender: None,
        }
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = tokio::net::TcpStream::connect(&self.authority)
            .await
            .map_err(|e| format!("connect {}: {e}", self.authority))?;
        let _ = stream.set_nodelay(true);
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        self.sender = Some(sender);
        Ok(())
    }

    /// Readies the connection (opening it if need be), so that a publish
    /// only costs its request.
    async fn ready(&mut self) -> Result<(), String> {
        if let Some(sender) = &mut self.sender
            && sender.ready().await.is_ok()
        {
            return Ok(());
        }
        self.connect().await?;
        let sender = self.sender.as_mut().expect("connected");
        sender.ready().await.map_err(|e| e.to_string())
    }

    /// POSTs `body`; returns the status and the answer.
    async fn post(&mut self, body: String) -> Result<(u16, String), String> {
        let sender = self.sender.as_mut().expect("ready");
        let request = Request::post(&self.path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "text/plain")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| {
            self.sender = None;
            e.to_string()
        })?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok((status, String::from_utf8_lossy(&body).trim().to_owned()))
    }
}

/// The value at percentile `p` (nearest rank) of sorted `values`.
fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    values[rank.clamp(1, values.len()) - 1]
}

fn ms(ns: u64) -> f64 {
    ns as f64 / 1e6
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    raise_nofile(args.clients as u64 + 64);
    let rss_base = rss_kib(args.pid);

    let (deliveries, mut delivered) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        base: Instant::now(),
        t0: AtomicU64::new(0),
        deliveries,
        closed: AtomicUsize::new(0),
    });

    eprintln!(
        "ws-load: opening {} connections to {}",
        args.clients, args.ws
    );
    let started = Instant::now();
    let url: Arc<str> = args.ws.as_str().into();
    let opening = Arc::new(Semaphore::new(OPENING));
    let (opened_tx, mut opened) = mpsc::unbounded_channel();
    for _ in 0..args.clients {
        tokio::spawn(client(
            url.clone(),
            shared.clone(),
            opening.clone(),
            opened_tx.clone(),
        ));
    }
    drop(opened_tx);
    let mut connected = 0usize;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    while let Some(outcome) = opened.recv().await {
        match outcome {
            Ok(()) => connected += 1,
            Err(e) => *errors.entry(e).or_default() += 1,
        }
    }
    let failed: usize = errors.values().sum();
    eprintln!(
        "ws-load: {connected} open, {failed} failed, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (error, count) in &errors {
        eprintln!("ws-load:   {count} x {error}");
    }
    if connected == 0 {
        eprintln!("ws-load: no connection opened");
        std::process::exit(1);
    }

    tokio::time::sleep(IDLE).await;
    let rss_idle = rss_kib(args.pid);
    let per_connection = (rss_idle as f64 - rss_base as f64) / connected as f64;
    eprintln!(
        "ws-load: server RSS {rss_base} KiB before, {rss_idle} KiB with {connected} idle connections: {per_connection:.1} KiB each"
    );

    let mut publisher = Publisher::new(&args.publish);
    let mut latencies: Vec<u64> = Vec::with_capacity(connected * args.rounds as usize);
    let mut lasts: Vec<u64> = Vec::new();
    let mut publish_times: Vec<u64> = Vec::new();
    let mut missed = 0usize;
    let mut reached_min = usize::MAX;
    for round in 1..=args.rounds {
        // Late deliveries of an earlier round are missed ones.
        while delivered.try_recv().is_ok() {}
        if let Err(e) = publisher.ready().await {
            eprintln!("ws-load: cannot reach {}: {e}", args.publish);
            std::process::exit(1);
        }
        let t0 = shared.base.elapsed();
        shared.t0.store(t0.as_nanos() as u64, Ordering::Release);
        let deadline = tokio::time::Instant::now() + ROUND_TIMEOUT;
        let (status, answer) = match publisher.post(round.to_string()).await {
            Ok(answer) => answer,
            Err(e) => {
                eprintln!("ws-load: publish failed: {e}");
                std::process::exit(1);
            }
        };
        publish_times.push((shared.base.elapsed() - t0).as_nanos() as u64);
        if status != 200 {
            eprintln!("ws-load: publish answered {status}: {answer}");
            std::process::exit(1);
        }
        let reached = answer.parse::<usize>().unwrap_or(0);
        reached_min = reached_min.min(reached);
        let mut received = 0usize;
        let mut last = 0u64;
        while received < connected {
            match tokio::time::timeout_at(deadline, delivered.recv()).await {
                Ok(Some((r, latency))) if r == round => {
                    received += 1;
                    last = last.max(latency);
                    latencies.push(latency);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let missing = connected - received;
        missed += missing;
        if missing > 0 {
            last = ROUND_TIMEOUT.as_nanos() as u64;
        }
        lasts.push(last);
        eprintln!(
            "ws-load: round {round}: reached {reached}, received {received}, last after {:.1} ms{}",
            ms(last),
            if missing > 0 {
                format!(", {missing} missed")
            } else {
                String::new()
            }
        );
        tokio::time::sleep(BETWEEN_ROUNDS).await;
    }
    let rss_after = rss_kib(args.pid);

    latencies.sort_unstable();
    lasts.sort_unstable();
    publish_times.sort_unstable();
    println!(
        "clients={connected} failed={failed} rss_base_kib={rss_base} rss_idle_kib={rss_idle} rss_after_kib={rss_after} \
         rss_per_conn_kib={per_connection:.1} p50_ms={:.1} p99_ms={:.1} max_ms={:.1} last_median_ms={:.1} \
         publish_median_ms={:.1} reached_min={} missed={missed} closed={}",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or(0)),
        ms(percentile(&lasts, 50.0)),
        ms(percentile(&publish_times, 50.0)),
        if reached_min == usize::MAX {
            0
        } else {
            reached_min
        },
        shared.closed.load(Ordering::Relaxed),
    );
    // Leave without closing 10,000 sockets one by one.
    std::process::exit(0);
}
