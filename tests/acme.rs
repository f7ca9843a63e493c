//! ACME end to end against Pebble, the ACME test server (Debian package
//! `pebble`), started here: issuance over HTTP-01 and TLS-ALPN-01, and
//! renewal swapped in live.

use crate::harness::{Server, Site};
use rcgen::{CertificateParams, KeyPair};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A child process killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pebble and its fake DNS (every name resolves to 127.0.0.1), validating
/// HTTP-01 on `http_port` and TLS-ALPN-01 on `tls_port`; certificates live
/// `validity` seconds.
struct Pebble {
    _dns: Daemon,
    _pebble: Daemon,
    directory: String,
    management: String,
    /// The CA file of Pebble's own API certificate.
    api_ca: std::path::PathBuf,
}

impl Pebble {
    fn start(dir: &Path, http_port: u16, tls_port: u16, validity: u64) -> Pebble {
        crate::harness::require_tool("pebble", "pebble");
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let api_ca = dir.join("pebble-api.pem");
        std::fs::write(&api_ca, cert.pem()).unwrap();
        std::fs::write(dir.join("pebble-api.key"), key.serialize_pem()).unwrap();
        let (api, management, dns_port) = (free_port(), free_port(), free_port());
        let config = serde_json::json!({ "pebble": {
            "listenAddress": format!("127.0.0.1:{api}"),
            "managementListenAddress": format!("127.0.0.1:{management}"),
            "certificate": dir.join("pebble-api.pem"),
            "privateKey": dir.join("pebble-api.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity,
        }});
        std::fs::write(dir.join("pebble.json"), config.to_string()).unwrap();
        let dns = Daemon(
            Command::new("pebble-challtestsrv")
                .args([
                    "-defaultIPv4",
                    "127.0.0.1",
                    "-defaultIPv6",
                    "",
                    "-dns01",
                    &format!("127.0.0.1:{dns_port}"),
                ])
                .args([
                    "-http01",
                    "",
                    "-https01",
                    "",
                    "-tlsalpn01",
                    "",
                    "-management",
                    &format!("127.0.0.1:{}", free_port()),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble-challtestsrv (Debian package pebble)"),
        );
        let pebble = Daemon(
            Command::new("pebble")
                .arg("-config")
                .arg(dir.join("pebble.json"))
                .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
                .env("PEBBLE_VA_NOSLEEP", "1")
                .env("PEBBLE_WFE_NONCEREJECT", "0")
                .env("PEBBLE_AUTHZREUSE", "0")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("pebble (Debian package pebble)"),
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", api)).is_err() {
            assert!(Instant::now() < deadline, "pebble did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Pebble {
            _dns: dns,
            _pebble: pebble,
            directory: format!("https://127.0.0.1:{api}/dir"),
            management: format!("127.0.0.1:{management}"),
            api_ca,
        }
    }

    /// Pebble's issuing root, from its management API.
    async fn root(&self) -> rustls_pki_types::CertificateDer<'static> {
        let mut roots = rustls::RootCertStore::empty();
        let api_ca = std::fs::read(&self.api_ca).unwrap();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&api_ca) {
            roots.add(cert.unwrap()).unwrap();
        }
        let body = https_get(roots, &self.management, "127.0.0.1", "/roots/0").await;
        let pem = &body[body.find("-----BEGIN").expect("a PEM root")..];
        rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }
}

use rustls_pki_types::pem::PemObject;

/// A GET over TLS trusting `roots`, returning the response text.
async fn https_get(roots: rustls::RootCertStore, addr: &str, name: &str, path: &str) -> String {
    let (_, mut stream) = tls_to(roots, addr, name).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response).await;
    String::from_utf8_lossy(&response).into_owned()
}

/// A verified TLS connection: the server's leaf certificate and the stream.
async fn tls_to(
    roots: rustls::RootCertStore,
    addr: &str,
    name: &str,
) -> Result<
    (
        Vec<u8>,
        tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    ),
    std::io::Error,
> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let server_name = rustls_pki_types::ServerName::try_from(name.to_owned()).unwrap();
    let stream = crate::harness::tls_connector(roots, &[b"http/1.1"])
        .connect(server_name, tcp)
        .await?;
    let leaf = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    Ok((leaf, stream))
}

/// Waits until the TLS listener serves a certificate for `name` that chains
/// to `root` and differs from `not`; returns it.
async fn wait_for_certificate(
    server: &Server,
    root: &rustls_pki_types::CertificateDer<'static>,
    name: &str,
    not: Option<&[u8]>,
    timeout: Duration,
) -> Vec<u8> {
    let addr = server.listener("https", 0);
    let deadline = Instant::now() + timeout;
    loop {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root.clone()).unwrap();
        if let Ok((leaf, mut stream)) = tls_to(roots, &addr, name).await
            && Some(leaf.as_slice()) != not
        {
            let request =
                format!("GET /hello HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut response = Vec::new();
            let _ = stream.read_to_end(&mut response).await;
            assert!(
                response.starts_with(b"HTTP/1.1 200"),
                "{}",
                String::from_utf8_lossy(&response)
            );
            return leaf;
        }
        if Instant::now() > deadline {
            panic!(
                "no certificate from Pebble was served within {timeout:?}; logs:\n{}",
                server.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn acme_site() -> Site {
    let site = Site::new();
    site.put("hello.wasm", crate::harness::component("demo/hello"));
    site
}

#[tokio::test]
async fn http01_issues_a_certificate_and_renews_it_live() {
    let site = acme_site();
    let (http_port, tls_port) = (free_port(), free_port());
    let pebble = Pebble::start(site.dir.path(), http_port, tls_port, 30);
    let server = site.serve_config(
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:{http_port}\"\nredirect_https = true\n\
             [[listener]]\naddr = \"127.0.0.1:{tls_port}\"\n\
             tls = {{ acme = {{ domains = [\"acme.test\"], email = \"ops@acme.test\", directory = \"{}\", directory_ca = \"{}\" }} }}\n\
             [admin]\naddr = \"127.0.0.1:0\"",
            pebble.directory,
            pebble.api_ca.display()
        ),
        &[],
    );
    server.wait_serving("hello").await;
    let root = pebble.root().await;
    let first =
        wait_for_certificate(&server, &root, "acme.test", None, Duration::from_secs(60)).await;
    assert!(site.data().join("acme/acme.test.crt.pem").exists());
    // 30-second certificates are renewed a third of their life before the end.
    let second = wait_for_certificate(
        &server,
        &root,
        "acme.test",
        Some(&first),
        Duration::from_secs(60),
    )
    .await;
    assert_ne!(first, second);
}

#[tokio::test]
async fn tls_alpn01_issues_a_certificate_with_no_plain_listener() {
    let site = acme_site();
    let tls_port = free_port();
    let pebble = Pebble::start(site.dir.path(), free_port(), tls_port, 3600);
    let server = site.serve_config(
        &format!(
            "[[listener]]\naddr = \"127.0.0.1:{tls_port}\"\n\
             tls = {{ acme = {{ domains = [\"alpn.test\"], directory = \"{}\", directory_ca = \"{}\" }} }}\n\
             [admin]\naddr = \"127.0.0.1:0\"",
            pebble.directory,
            pebble.api_ca.display()
        ),
        &[],
    );
    server.wait_serving("hello").await;
    let root = pebble.root().await;
    wait_for_certificate(&server, &root, "alpn.test", None, Duration::from_secs(60)).await;
    server.wait_log("obtained and swapped in", Duration::from_secs(5));
}
