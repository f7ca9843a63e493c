//! The edge: TLS (ALPN, SNI, versions, live reload), the https redirect and
//! HSTS, the firewall (allow, deny, forwarded addresses, rate limits,
//! connection caps) and the request limits.

use crate::harness::{Server, Site, component};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// A test CA and leaf certificates it signs, written as PEM files.
struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    /// Writes `<stem>.pem` and `<stem>.key` for `names` into `dir`; returns the leaf DER.
    fn leaf(&self, dir: &Path, stem: &str, names: &[&str]) -> Vec<u8> {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        std::fs::write(dir.join(format!("{stem}.pem.tmp")), cert.pem()).unwrap();
        std::fs::write(dir.join(format!("{stem}.key")), key.serialize_pem()).unwrap();
        std::fs::rename(
            dir.join(format!("{stem}.pem.tmp")),
            dir.join(format!("{stem}.pem")),
        )
        .unwrap();
        cert.der().to_vec()
    }

    fn client(&self, alpn: &[&[u8]]) -> tokio_rustls::TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        crate::harness::tls_connector(roots, alpn)
    }
}

/// A TLS connection to `addr` for `name`: (negotiated ALPN, server leaf DER, stream).
async fn tls_connect(
    pki: &Pki,
    addr: &str,
    name: &str,
    alpn: &[&[u8]],
) -> (
    Option<Vec<u8>>,
    Vec<u8>,
    tokio_rustls::client::TlsStream<TcpStream>,
) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = pki.client(alpn).connect(server_name, tcp).await.unwrap();
    let (_, session) = stream.get_ref();
    let alpn = session.alpn_protocol().map(<[u8]>::to_vec);
    let leaf = session.peer_certificates().unwrap()[0].to_vec();
    (alpn, leaf, stream)
}

/// Sends a raw HTTP/1.1 request and reads the whole response (the request
/// asks the server to close).
async fn raw_request<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    stream: &mut S,
    host: &str,
    path: &str,
) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A TCP connection from a chosen loopback source address.
async fn connect_from(source: &str, addr: &str) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(source.parse().unwrap(), 0))?;
    socket.connect(addr.parse().unwrap()).await
}

/// Whether the server closes `stream` without answering (EOF or reset).
async fn closed_without_answer(stream: &mut TcpStream) -> bool {
    let _ = stream
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .local_address(source.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn hello_site() -> Site {
    let site = Site::new();
    site.put("hello.wasm", component("demo/hello"));
    site
}

async fn ready(server: &Server) {
    server.wait_serving("hello").await;
}

#[tokio::test]
async fn tls_negotiates_h2_picks_the_certificate_by_sni_and_reloads_it_live() {
    let site = hello_site();
    let pki = Pki::new();
    let dir = site.dir.path();
    let a_first = pki.leaf(dir, "a", &["a.test"]);
    let b = pki.leaf(dir, "b", &["b.test", "*.b.test"]);
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\ntls = { cert = \"a.pem\", key = \"a.key\", sni = [{ cert = \"b.pem\", key = \"b.key\" }] }\nhsts = true\n\
         [admin]\naddr = \"127.0.0.1:0\"",
        &[],
    );
    ready(&server).await;
    let addr = server.listener("https", 0);

    let (alpn, leaf, _) = tls_connect(&pki, &addr, "a.test", &[b"h2", b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    assert_eq!(leaf, a_first);
    let (_, leaf, _) = tls_connect(&pki, &addr, "www.b.test", &[b"http/1.1"]).await;
    assert_eq!(leaf, b, "SNI www.b.test gets the *.b.test certificate");
    let (alpn, _, mut stream) = tls_connect(&pki, &addr, "b.test", &[b"http/1.1"]).await;
    assert_eq!(alpn.as_deref(), Some(&b"http/1.1"[..]));
    let response = raw_request(&mut stream, "b.test", "/hello").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response
            .to_ascii_lowercase()
            .contains("strict-transport-security: max-age=31536000"),
        "{response}"
    );

    // An open connection survives a reload and new handshakes get the new certificate.
    let (_, _, mut open) = tls_connect(&pki, &addr, "a.test", &[b"http/1.1"]).await;
    let a_second = pki.leaf(dir, "a", &["a.test"]);
    assert_ne!(a_first, a_second);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, leaf, _) = tls_connect(&pki, &addr, "a.test", &[b"http/1.1"]).await;
        if leaf == a_second {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let response = raw_request(&mut open, "a.test", "/hello").await;
    assert!(
        response.starts_with("HTTP/1.1 200"),
        "the open connection after reload: {response}"
    );
    server.wait_log("reloaded TLS certificates", Duration::from_secs(5));
}

#[tokio::test]
async fn tls_1_1_is_refused_and_1_2_accepted() {
    let site = hello_site();
    let pki = Pki::new();
    pki.leaf(site.dir.path(), "a", &["a.test"]);
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\ntls = { cert = \"a.pem\", key = \"a.key\" }\n[admin]\naddr = \"127.0.0.1:0\"",
        &[],
    );
    let addr = server.listener("https", 0);
    crate::harness::require_tool("openssl", "openssl");
    let s_client = |version: &str| {
        let output = std::process::Command::new("openssl")
            .args([
                "s_client",
                "-connect",
                &addr,
                "-servername",
                "a.test",
                version,
                "-cipher",
                "DEFAULT@SECLEVEL=0",
            ])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("openssl s_client");
        String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr)
    };
    let old = s_client("-tls1_1");
    assert!(
        old.contains("Cipher is (NONE)") && old.contains("alert"),
        "a TLS 1.1 handshake was not refused:\n{old}"
    );
    let current = s_client("-tls1_2");
    assert!(
        current.contains("Protocol  : TLSv1.2") && !current.contains("Cipher is (NONE)"),
        "TLS 1.2 failed:\n{current}"
    );
}

#[tokio::test]
async fn plain_listener_redirects_to_https_except_acme_challenges() {
    let site = hello_site();
    let pki = Pki::new();
    pki.leaf(site.dir.path(), "a", &["a.test"]);
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nredirect_https = true\n\
         [[listener]]\naddr = \"127.0.0.1:0\"\ntls = { cert = \"a.pem\", key = \"a.key\" }\n[admin]\naddr = \"127.0.0.1:0\"",
        &[],
    );
    let https_port = server
        .listener("https", 0)
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(server.url("/hello/x?a=1&b=2"))
        .header("host", "example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 308);
    assert_eq!(
        response.headers()["location"].to_str().unwrap(),
        format!("https://example.com:{https_port}/hello/x?a=1&b=2")
    );
    let challenge = client
        .get(server.url("/.well-known/acme-challenge/unknown"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        challenge.status().as_u16(),
        404,
        "ACME challenges are answered, not redirected"
    );
}

#[tokio::test]
async fn allow_and_deny_by_source_address_and_forwarded_for() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[[listener]]\naddr = \"[::1]:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [firewall]\nallow = [\"127.0.0.0/8\", \"::1\"]\ndeny = [\"127.0.0.2\", \"203.0.113.0/24\"]\ntrusted_proxies = [\"127.0.0.4/32\"]",
        &[],
    );
    ready(&server).await;
    let addr = server.addr.clone();
    let mut denied = connect_from("127.0.0.2", &addr).await.unwrap();
    assert!(
        closed_without_answer(&mut denied).await,
        "127.0.0.2 is denied"
    );
    let response = client_from("127.0.0.3")
        .get(server.url("/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    let v6 = server.listener("http", 1);
    let response = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{v6}/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "::1 is allowed");

    let forwarded = |source: &'static str| {
        let url = server.url("/hello/headers");
        async move {
            let response = client_from(source)
                .get(url)
                .header("x-forwarded-for", "203.0.113.9")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    assert_eq!(
        forwarded("127.0.0.4").await.0,
        403,
        "a trusted proxy forwards a denied client"
    );
    let (status, headers) = forwarded("127.0.0.5").await;
    assert_eq!(
        status, 200,
        "an untrusted peer's X-Forwarded-For is not believed"
    );
    assert!(headers.contains("x-real-ip: 127.0.0.5\n"), "{headers}");

    let stats = server.admin_json("/stats").await;
    assert!(
        stats["edge"]["connections_denied"].as_u64().unwrap() >= 1,
        "{stats}"
    );
    assert_eq!(stats["edge"]["requests_denied"], 1, "{stats}");
}

#[tokio::test]
async fn rate_limit_is_per_address_and_accurate() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[firewall]\nrate = { per_ip = \"5/s\", burst = 10 }",
        &[],
    );
    ready(&server).await;
    let burst = |source: &'static str| {
        let url = server.url("/hello/version");
        async move {
            let client = client_from(source);
            let mut statuses = Vec::new();
            let mut retry_after = None;
            for _ in 0..20 {
                let response = client.get(&url).send().await.unwrap();
                if response.status().as_u16() == 429 {
                    retry_after = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned());
                }
                statuses.push(response.status().as_u16());
            }
            (statuses, retry_after)
        }
    };
    let started = Instant::now();
    let (a, retry_after) = burst("127.0.0.6").await;
    let (b, _) = burst("127.0.0.7").await;
    let elapsed = started.elapsed().as_secs_f64();
    for statuses in [&a, &b] {
        let ok = statuses.iter().filter(|s| **s == 200).count();
        // The burst of 10, plus what 5/s refills while the requests ran.
        let most = 10 + (elapsed * 5.0).ceil() as usize;
        assert!(
            (10..=most).contains(&ok),
            "{ok} allowed of 20 (at most {most}): {statuses:?}"
        );
        assert!(
            statuses.iter().all(|s| *s == 200 || *s == 429),
            "{statuses:?}"
        );
    }
    assert_eq!(retry_after.as_deref(), Some("1"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let response = client_from("127.0.0.6")
        .get(server.url("/hello/version"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "the allowance refills");
}

#[tokio::test]
async fn request_limits_answer_431_and_413_and_cut_slow_headers() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [limits]\nheader_timeout_ms = 1000\nmax_header_bytes = 16384\nmax_body_bytes = 100000",
        &[],
    );
    ready(&server).await;
    let client = reqwest::Client::builder().no_proxy().build().unwrap();

    let big_header = "x".repeat(20_000);
    let response = client
        .get(server.url("/hello"))
        .header("x-big", &big_header)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 431);

    let response = client
        .post(server.url("/hello/echo"))
        .body(vec![b'a'; 200_000])
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status().as_u16(),
        413,
        "declared length over the limit"
    );

    let chunked = |size: usize| {
        let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
            (0..size / 10_000).map(|_| Ok(vec![b'c'; 10_000])).collect();
        reqwest::Body::wrap_stream(futures_util_stream(chunks))
    };
    let response = client
        .post(server.url("/hello/echo"))
        .body(chunked(200_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413, "chunked over the limit");
    let response = client
        .post(server.url("/hello/echo"))
        .body(chunked(50_000))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "chunked within the limit");
    assert_eq!(response.bytes().await.unwrap().len(), 50_000);

    // Slowloris: half a request head, then silence.
    let mut slow = TcpStream::connect(&server.addr).await.unwrap();
    slow.write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(10), slow.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(_) | Err(_))),
        "the slow client was never cut"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "cut after {:?}",
        started.elapsed()
    );

    let stats = server.admin_json("/stats").await;
    assert_eq!(stats["edge"]["bodies_too_large"], 2, "{stats}");
    assert!(
        stats["edge"]["header_timeouts"].as_u64().unwrap() >= 1,
        "{stats}"
    );
}

/// A stream of ready chunks, for a chunked request body.
fn futures_util_stream(
    chunks: Vec<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_core::Stream<Item = Result<Vec<u8>, std::io::Error>> + Send + Sync + 'static {
    struct Chunks(std::vec::IntoIter<Result<Vec<u8>, std::io::Error>>);
    impl futures_core::Stream for Chunks {
        type Item = Result<Vec<u8>, std::io::Error>;
        fn poll_next(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Self::Item>> {
            std::task::Poll::Ready(self.0.next())
        }
    }
    Chunks(chunks.into_iter())
}

#[tokio::test]
async fn connection_caps_refuse_the_excess() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [firewall]\nmax_connections = 3\nmax_connections_per_ip = 2",
        &[],
    );
    ready(&server).await;
    let addr = server.addr.clone();
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = connect_from("127.0.0.8", &addr).await.unwrap();
        stream
            .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(stream);
    }
    let mut third = connect_from("127.0.0.8", &addr).await.unwrap();
    assert!(
        closed_without_answer(&mut third).await,
        "a third connection from one address is refused"
    );
    let mut other = connect_from("127.0.0.9", &addr).await.unwrap();
    other
        .write_all(b"GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 12];
    other.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"HTTP/1.1 200", "another address still gets in");
    let mut fourth = connect_from("127.0.0.10", &addr).await.unwrap();
    assert!(
        closed_without_answer(&mut fourth).await,
        "max_connections in all"
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let response = client_from("127.0.0.8")
        .get(server.url("/hello"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200, "closing frees the slots");
}

#[tokio::test]
async fn proxy_protocol_is_believed_only_from_trusted_proxies() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\nproxy_protocol = true\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [firewall]\ntrusted_proxies = [\"127.0.0.12/32\"]\ndeny = [\"198.51.100.0/24\"]",
        &[],
    );
    ready(&server).await;
    let addr = server.addr.clone();
    let request = "GET /hello/headers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

    let mut v1 = connect_from("127.0.0.12", &addr).await.unwrap();
    v1.write_all(format!("PROXY TCP4 192.0.2.10 127.0.0.1 5555 80\r\n{request}").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    v1.read_to_string(&mut response).await.unwrap();
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains("x-real-ip: 192.0.2.10\n"),
        "{response}"
    );

    // v2, binary: a denied client behind the proxy is closed.
    let mut header = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    header.extend([
        0x21, 0x11, 0, 12, 198, 51, 100, 7, 127, 0, 0, 1, 0x15, 0xb3, 0, 80,
    ]);
    let mut v2 = connect_from("127.0.0.12", &addr).await.unwrap();
    v2.write_all(&header).await.unwrap();
    assert!(
        closed_without_answer(&mut v2).await,
        "198.51.100.7 is denied"
    );

    // From an untrusted peer the header is not read: it is a bad request.
    let mut untrusted = connect_from("127.0.0.13", &addr).await.unwrap();
    untrusted
        .write_all(format!("PROXY TCP4 192.0.2.10 127.0.0.1 5555 80\r\n{request}").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    let _ = untrusted.read_to_string(&mut response).await;
    assert!(!response.contains("x-real-ip: 192.0.2.10"), "{response}");
}

#[tokio::test]
async fn a_sidecar_firewall_overrides_per_route() {
    let site = hello_site();
    site.put("open.wasm", component("demo/hello"));
    site.put(
        "hello.toml",
        "[firewall]\nallow = [\"127.0.0.20/32\"]\nrate = { per_ip = \"2/m\" }\n",
    );
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"",
        &[],
    );
    ready(&server).await;
    server.wait_serving("open").await;
    let before = server.wait_serving("hello").await;
    let status = |source: &'static str, path: &'static str| {
        let url = server.url(path);
        async move {
            client_from(source)
                .get(url)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        status("127.0.0.21", "/hello/version").await,
        403,
        "not in the route's allow list"
    );
    assert_eq!(
        status("127.0.0.21", "/open/version").await,
        200,
        "another route is open"
    );
    assert_eq!(status("127.0.0.20", "/hello/version").await, 200);
    assert_eq!(status("127.0.0.20", "/hello/version").await, 200);
    assert_eq!(
        status("127.0.0.20", "/hello/version").await,
        429,
        "the route's rate"
    );
    assert_eq!(
        status("127.0.0.20", "/open/version").await,
        200,
        "the rate is the route's alone"
    );

    // A new version of the plugin with the same rules keeps counting: the
    // client gets no fresh burst from the swap.
    site.put(
        "hello.toml",
        "[limits]\ntimeout_ms = 20000\n[firewall]\nallow = [\"127.0.0.20/32\"]\nrate = { per_ip = \"2/m\" }\n",
    );
    server
        .wait_plugin("hello", Duration::from_secs(30), |status| {
            status["loaded_at"] != before["loaded_at"]
        })
        .await;
    assert_eq!(
        status("127.0.0.20", "/hello/version").await,
        429,
        "the rate outlives a swap"
    );
}

#[tokio::test]
async fn idle_connections_are_closed_but_running_requests_are_not() {
    let site = hello_site();
    site.put("hostile.wasm", component("fixtures/hostile"));
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n[limits]\nidle_timeout_ms = 1000",
        &[],
    );
    ready(&server).await;
    server.wait_serving("hostile").await;

    // An HTTP/2 connection (prior knowledge) that sends nothing after its preface.
    let mut h2 = TcpStream::connect(&server.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(10), h2.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(_)) => continue, // the server's SETTINGS and their ack
            Err(_) => panic!("the idle HTTP/2 connection was never closed"),
        }
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(5),
        "closed after {elapsed:?}"
    );

    // A request that runs longer than the idle timeout is not idle.
    let response = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap()
        .get(server.url("/hostile/sleep?1800"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.text().await.unwrap(), "slept 1800 ms");
}

/// Connects with a receive buffer of `window` bytes and asks for `path`.
async fn get_with_window(addr: &str, path: &str, window: u32) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(window).unwrap();
    let mut stream = socket.connect(addr.parse().unwrap()).await.unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    stream
}

#[tokio::test]
async fn a_client_that_stops_taking_its_response_is_cut_after_send_timeout() {
    const SIZE: usize = 32 << 20;
    let site = Site::new();
    let www = site.dir.path().join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("big.bin"), vec![b'x'; SIZE]).unwrap();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [limits]\nsend_timeout_ms = 2000\n\
         [[route]]\npath = \"/static/*\"\nstatic = \"www\"\n",
        &[],
    );
    server
        .wait_body("/static/missing", 404, "", Duration::from_secs(30))
        .await;

    // One client reads nothing after asking; another keeps reading, at a
    // few MB/s, for longer than the timeout. (On loopback the server's
    // send buffer grows to megabytes, and the kernel lets the server write
    // again only once a third of it is free: a reader much slower than
    // this would leave it no room for seconds, and be cut.)
    let mut stalled = get_with_window(&server.addr, "/static/big.bin", 4096).await;
    let mut steady = get_with_window(&server.addr, "/static/big.bin", 65536).await;
    let mut buf = vec![0u8; 64 << 10];
    let (started, mut taken) = (Instant::now(), 0);
    while started.elapsed() < Duration::from_secs(3) {
        let n = tokio::time::timeout(Duration::from_secs(2), steady.read(&mut buf))
            .await
            .expect("the steady reader gets data")
            .unwrap();
        assert!(n > 0, "the steady reader was cut after {taken} bytes");
        taken += n;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        taken < SIZE,
        "the steady reader read it all: make the file bigger"
    );
    drop(steady);

    // The stalled one was closed: what the buffers held, then the end.
    let mut got = 0;
    loop {
        let read = tokio::time::timeout(Duration::from_secs(6), stalled.read(&mut buf)).await;
        match read.expect("the stalled client is still connected") {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got < SIZE, "the stalled client got the whole file");
    let stats = server.admin_json("/stats").await;
    assert_eq!(stats["edge"]["send_timeouts"], 1, "{stats}");
}

#[tokio::test]
async fn a_client_that_stops_sending_its_body_is_cut_off_after_body_timeout() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [limits]\nbody_timeout_ms = 1000\n",
        &[],
    );
    ready(&server).await;

    // Sends `head` and the first piece of its body, then nothing: the
    // answer and the end of the connection must come well before the
    // plugin's own 30 s deadline.
    async fn stall(addr: &str, head: &str, piece: &str) -> String {
        let mut tcp = TcpStream::connect(addr).await.unwrap();
        tcp.write_all(format!("{head}{piece}").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(8), tcp.read_to_end(&mut answer))
            .await
            .expect("the stalled body was not cut off")
            .unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    // Chunked: the host reads the body before the plugin runs, and says 408.
    let started = Instant::now();
    let answer = stall(
        &server.addr,
        "POST /hello/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
        "3\r\nabc\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("nothing came for 1000 ms"), "{answer}");
    assert!(started.elapsed() >= Duration::from_millis(900));

    // Declared length: the plugin reads it as it comes, and its read fails.
    let answer = stall(
        &server.addr,
        "POST /hello/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n",
        "abc",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 5"), "{answer}");

    // A slow but steady client keeps going past the timeout: the clock
    // starts again with every piece.
    let mut tcp = TcpStream::connect(&server.addr).await.unwrap();
    tcp.write_all(
        b"POST /hello/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    for piece in [b"ab", b"cd", b"ef", b"gh"] {
        tokio::time::sleep(Duration::from_millis(600)).await;
        tcp.write_all(piece).await.unwrap();
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(8), tcp.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\r\nabcdefgh\r\n"), "{answer}");

    let stats = server.admin_json("/stats").await;
    assert_eq!(stats["edge"]["body_timeouts"], 2, "{stats}");
}

#[tokio::test]
async fn http2_limits_are_advertised_in_the_server_settings() {
    let site = hello_site();
    let server = site.serve_config(
        "[[listener]]\naddr = \"127.0.0.1:0\"\n[admin]\naddr = \"127.0.0.1:0\"\n\
         [limits]\nh2_max_concurrent_streams = 7\nh2_max_frame_size = 32768",
        &[],
    );
    let mut h2 = TcpStream::connect(&server.addr).await.unwrap();
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    // The server's first frame is its SETTINGS: 9-byte header, then 6-byte entries.
    let mut header = [0u8; 9];
    h2.read_exact(&mut header).await.unwrap();
    assert_eq!(header[3], 0x4, "a SETTINGS frame first");
    let length =
        usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let mut payload = vec![0u8; length];
    h2.read_exact(&mut payload).await.unwrap();
    let settings: std::collections::HashMap<u16, u32> = payload
        .chunks(6)
        .map(|e| {
            (
                u16::from_be_bytes([e[0], e[1]]),
                u32::from_be_bytes([e[2], e[3], e[4], e[5]]),
            )
        })
        .collect();
    assert_eq!(
        settings.get(&0x3),
        Some(&7),
        "SETTINGS_MAX_CONCURRENT_STREAMS: {settings:?}"
    );
    assert_eq!(
        settings.get(&0x5),
        Some(&32768),
        "SETTINGS_MAX_FRAME_SIZE: {settings:?}"
    );
    assert_eq!(
        settings.get(&0x6),
        Some(&16384),
        "SETTINGS_MAX_HEADER_LIST_SIZE: {settings:?}"
    );
}
