//! Config reload: on a change of the file or SIGHUP, a valid config is
//! swapped in with no failed request; an invalid one leaves the old serving.

use crate::harness::{Server, Site, client, config_with};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

fn folders(site: &Site) {
    for (name, body) in [("a", "version a"), ("b", "version b"), ("c", "version c")] {
        let dir = site.dir.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.html"), body).unwrap();
    }
}

fn write_config(site: &Site, text: &str) {
    // Write and rename, as an editor or a deploy would.
    let tmp = site.dir.path().join(".gatehouse.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, site.dir.path().join("gatehouse.toml")).unwrap();
}

fn routes_to(folder: &str) -> String {
    config_with(&format!("[[route]]\nstatic = \"{folder}\"\n"))
}

/// A server routing every path to folder `a`, once it serves it.
async fn serving_a() -> (Site, Server) {
    let site = Site::new();
    folders(&site);
    let server = site.serve_config(&routes_to("a"), &[]);
    server
        .wait_body("/", 200, "version a", Duration::from_secs(5))
        .await;
    (site, server)
}

/// Asks for `/` on a kept connection: the status line, or "" when the
/// server closed the connection instead.
async fn ask(kept: &mut tokio::net::TcpStream) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if kept
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .is_err()
    {
        return String::new();
    }
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), kept.read(&mut buf))
        .await
        .expect("an answer or the end of the connection")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn sighup(server: &Server) {
    let status = std::process::Command::new("kill")
        .args(["-HUP", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_request() {
    let (site, server) = serving_a().await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let seen = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (url, stop, ok, failed, seen) = (
            server.url("/"),
            stop.clone(),
            ok.clone(),
            failed.clone(),
            seen.clone(),
        );
        load.push(tokio::spawn(async move {
            let http = client();
            while !stop.load(Ordering::Relaxed) {
                match http.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        let body = r.text().await.unwrap_or_default();
                        seen.lock().unwrap().insert(body);
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    write_config(&site, &routes_to("b"));
    server
        .wait_body("/", 200, "version b", Duration::from_secs(10))
        .await;
    server.wait_log("config reloaded", Duration::from_secs(5));
    tokio::time::sleep(Duration::from_millis(300)).await;

    // SIGHUP re-reads the file too (here changed without a rename the
    // watcher might still see: the signal is what is asked for).
    std::fs::write(site.dir.path().join("gatehouse.toml"), routes_to("c")).unwrap();
    sighup(&server);
    server
        .wait_body("/", 200, "version c", Duration::from_secs(10))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    for task in load {
        task.await.unwrap();
    }
    server.wait_log("SIGHUP", Duration::from_secs(5));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests; seen {seen:?}"
    );
    assert!(ok.load(Ordering::Relaxed) > 100);
    assert!(seen.contains("version a") && seen.contains("version b") && seen.contains("version c"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_reload_keeps_the_old_config_serving() {
    let (site, server) = serving_a().await;

    write_config(
        &site,
        &format!("{}\n[[route]]\nbogus = 1\n", routes_to("b")),
    );
    server.wait_log("config reload failed", Duration::from_secs(10));
    let logs = server.log_text();
    assert!(logs.contains("unknown field `bogus`"), "{logs}");
    assert_eq!(crate::harness::get(&server.url("/")).await.1, "version a");

    write_config(&site, &routes_to("no-such-folder"));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !server.log_text().contains("no-such-folder") {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(crate::harness::get(&server.url("/")).await.1, "version a");

    write_config(&site, &routes_to("b"));
    server
        .wait_body("/", 200, "version b", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_opens_and_closes_listeners() {
    let (site, server) = serving_a().await;
    let extra = crate::upstream::dead_port();
    write_config(
        &site,
        &format!("{}[[listener]]\naddr = \"{extra}\"\n", routes_to("a")),
    );
    server.wait_log(
        &format!("listening on http://{extra}"),
        Duration::from_secs(10),
    );
    let (status, body) = crate::harness::get(&format!("http://{extra}/")).await;
    assert_eq!((status, body.as_str()), (200, "version a"));
    // The first listener kept serving throughout.
    assert_eq!(crate::harness::get(&server.url("/")).await.1, "version a");

    write_config(&site, &routes_to("a"));
    server.wait_log(
        &format!("closing the listener on {extra}"),
        Duration::from_secs(10),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while tokio::net::TcpStream::connect(extra).await.is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "{extra} still accepts"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(crate::harness::get(&server.url("/")).await.1, "version a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_found_at_start_that_goes_missing_keeps_its_config_serving() {
    let site = Site::new();
    folders(&site);
    // No --config: ./gatehouse.toml is read because it is there.
    write_config(&site, &routes_to("a"));
    let server = site.serve(&[], &[]);
    server
        .wait_body("/", 200, "version a", Duration::from_secs(5))
        .await;
    std::fs::remove_file(site.dir.path().join("gatehouse.toml")).unwrap();
    sighup(&server);
    server.wait_log("config reload failed", Duration::from_secs(10));
    let logs = server.log_text();
    assert!(logs.contains("cannot read the config file"), "{logs}");
    assert_eq!(crate::harness::get(&server.url("/")).await.1, "version a");
    // Back again, it is read as before.
    write_config(&site, &routes_to("b"));
    sighup(&server);
    server
        .wait_body("/", 200, "version b", Duration::from_secs(10))
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_added_by_a_reload_reaches_connections_already_open() {
    let (site, server) = serving_a().await;
    let mut kept = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    assert_eq!(ask(&mut kept).await, "HTTP/1.1 200 OK");

    write_config(
        &site,
        &format!("{}[firewall]\ndeny = [\"127.0.0.1/32\"]\n", routes_to("a")),
    );
    server.wait_log("config reloaded", Duration::from_secs(10));
    assert_eq!(ask(&mut kept).await, "HTTP/1.1 403 Forbidden");
    let stats = server.admin_json("/stats").await;
    assert_eq!(stats["edge"]["requests_denied"], 1, "{stats}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_open_connection_counts_and_rate_allowances() {
    let site = Site::new();
    folders(&site);
    let config = |deny: &str| {
        format!(
            "{}[firewall]\nmax_connections_per_ip = 2\nrate = {{ per_ip = \"1/m\", burst = 3 }}\ndeny = [{deny}]\n",
            routes_to("a")
        )
    };
    let server = site.serve_config(&config(""), &[]);
    let connect = || tokio::net::TcpStream::connect(&server.addr);
    let mut a = connect().await.unwrap();
    assert_eq!(ask(&mut a).await, "HTTP/1.1 200 OK");
    let mut b = connect().await.unwrap();
    assert_eq!(ask(&mut b).await, "HTTP/1.1 200 OK");
    assert_eq!(
        ask(&mut connect().await.unwrap()).await,
        "",
        "a third connection"
    );

    // A reload that changes the firewall, but neither limit.
    write_config(&site, &config("\"203.0.113.0/24\""));
    server.wait_log("config reloaded", Duration::from_secs(10));
    assert_eq!(
        ask(&mut connect().await.unwrap()).await,
        "",
        "a third connection after the reload"
    );
    drop(b);
    let mut c = None;
    for _ in 0..50 {
        // The closed connection's place is freed once the server sees it go.
        let mut next = connect().await.unwrap();
        let status = ask(&mut next).await;
        if !status.is_empty() {
            assert_eq!(status, "HTTP/1.1 200 OK");
            c = Some(next);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        c.is_some(),
        "the place of the closed connection was not freed"
    );
    // That was the third request of a burst of 3 a minute.
    assert_eq!(ask(&mut a).await, "HTTP/1.1 429 Too Many Requests");
}
