//! The route table: routing by host and path, static folders (validators,
//! ranges, precompressed files, no way out), redirects, CORS, compression,
//! and clashes named.

use crate::harness::{Site, client, component, config_with, raw};
use std::path::Path;
use std::time::Duration;

/// A static folder `www/` beside a `secret.txt` it must never serve.
fn static_site() -> Site {
    let site = Site::new();
    let dir = site.dir.path();
    let www = dir.join("www");
    std::fs::create_dir_all(www.join("docs")).unwrap();
    std::fs::write(dir.join("secret.txt"), "top secret").unwrap();
    std::fs::write(www.join("index.html"), "<h1>home</h1>").unwrap();
    std::fs::write(www.join("docs/index.html"), "<h1>docs</h1>").unwrap();
    std::fs::write(www.join("app.js"), "console.log(1)").unwrap();
    let digits: String = (0..1000)
        .map(|i| char::from(b'0' + (i % 10) as u8))
        .collect();
    std::fs::write(www.join("digits.txt"), &digits).unwrap();
    std::fs::write(www.join("style.css"), "body { color: red }").unwrap();
    std::fs::write(www.join("style.css.gz"), "gzip bytes").unwrap();
    std::fs::write(www.join("style.css.br"), "brotli bytes").unwrap();
    std::os::unix::fs::symlink(dir.join("secret.txt"), www.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(dir, www.join("up")).unwrap();
    std::os::unix::fs::symlink("app.js", www.join("alias.js")).unwrap();
    std::os::unix::fs::symlink("../secret.txt", www.join("relative-leak.txt")).unwrap();
    site
}

fn serve_static(site: &Site, extra: &str) -> crate::harness::Server {
    site.serve_config(
        &config_with(&format!(
            "[[route]]\npath = \"/static/*\"\nstatic = \"www\"\n{extra}"
        )),
        &[],
    )
}

#[tokio::test]
async fn static_files_have_types_validators_and_ranges() {
    let site = static_site();
    let server = serve_static(&site, "");
    let http = client();

    let response = http.get(server.url("/static/app.js")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/javascript");
    let etag = response.headers()["etag"].clone();
    let modified = response.headers()["last-modified"].clone();
    assert_eq!(response.text().await.unwrap(), "console.log(1)");

    let response = http
        .get(server.url("/static/app.js"))
        .header("if-none-match", etag.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    assert_eq!(response.headers()["etag"], etag);
    let response = http
        .get(server.url("/static/app.js"))
        .header("if-modified-since", modified)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 304);
    let response = http
        .get(server.url("/static/app.js"))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let response = http
        .get(server.url("/static/digits.txt"))
        .header("range", "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 206);
    assert_eq!(response.headers()["content-range"], "bytes 10-19/1000");
    assert_eq!(response.text().await.unwrap(), "0123456789");
    let response = http
        .get(server.url("/static/digits.txt"))
        .header("range", "bytes=5000-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 416);

    for (path, body) in [
        ("/static/", "<h1>home</h1>"),
        ("/static/docs/", "<h1>docs</h1>"),
    ] {
        let response = http.get(server.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.headers()["content-type"], "text/html", "{path}");
        assert_eq!(response.text().await.unwrap(), body);
    }
    let response = http
        .get(server.url("/static/nope.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // A folder named without its slash: sent to it under the route's
    // prefix, never to another host, and a prefix the client claims counts
    // for nothing.
    for (path, location) in [
        ("/static/docs", "/static/docs/"),
        ("/static/docs?x=1", "/static/docs/?x=1"),
    ] {
        let answer = raw(
            &server.addr,
            &format!(
                "GET {path} HTTP/1.1\r\nHost: x\r\nX-Forwarded-Prefix: //evil.test\r\nConnection: close\r\n\r\n"
            ),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 308"), "{path}: {answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains(&format!("\r\nlocation: {location}\r\n")),
            "{path}: {answer}"
        );
    }
}

#[tokio::test]
async fn precompressed_files_are_served_when_accepted() {
    let site = static_site();
    let server = serve_static(&site, "");
    let http = client();
    for (accept, encoding, body) in [
        ("br, gzip", Some("br"), "brotli bytes"),
        ("gzip", Some("gzip"), "gzip bytes"),
        ("identity", None, "body { color: red }"),
    ] {
        let response = http
            .get(server.url("/static/style.css"))
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/css");
        assert_eq!(
            response
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            encoding,
            "{accept}"
        );
        assert_eq!(response.text().await.unwrap(), body, "{accept}");
    }
}

#[tokio::test]
async fn there_is_no_way_out_of_a_static_folder() {
    let site = static_site();
    let server = serve_static(&site, "");
    for path in [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/docs/..%2f..%2fsecret.txt",
        "/static/leak.txt",
        "/static/relative-leak.txt",
        "/static/up/secret.txt",
        "/static/%5c..%5csecret.txt",
    ] {
        let answer = raw(
            &server.addr,
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        )
        .await;
        assert!(!answer.contains("top secret"), "{path} leaked: {answer}");
        let status = answer.get(9..12).unwrap_or_default();
        assert!(["404", "400"].contains(&status), "{path}: {answer}");
    }
    // A symlink that stays inside is fine.
    let (status, body) = crate::harness::get(&server.url("/static/alias.js")).await;
    assert_eq!((status, body.as_str()), (200, "console.log(1)"));
}

#[tokio::test]
async fn routes_match_by_host_then_path_and_redirect() {
    let site = static_site();
    let dir = site.dir.path();
    std::fs::create_dir(dir.join("shop")).unwrap();
    std::fs::write(dir.join("shop/index.html"), "shop").unwrap();
    std::fs::create_dir(dir.join("tenants")).unwrap();
    std::fs::write(dir.join("tenants/index.html"), "tenant").unwrap();
    let server = site.serve_config(
        &config_with(
            "[[route]]\npath = \"/*\"\nstatic = \"www\"\n\
             [[route]]\nhost = \"shop.test\"\nstatic = \"shop\"\n\
             [[route]]\nhost = \"*.tenants.test\"\nstatic = \"tenants\"\n\
             [[route]]\nhost = \"old.test\"\nredirect = \"https://shop.test{uri}\"\nstatus = 308\n\
             [[route]]\npath = \"/docs-old/*\"\nredirect = \"/static/docs{path}\"\n",
        ),
        &[],
    );
    let get = |host: &'static str, path: &'static str| {
        let addr = server.addr.clone();
        async move {
            raw(
                &addr,
                &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
            )
            .await
        }
    };
    assert!(get("shop.test", "/").await.ends_with("shop"));
    assert!(get("SHOP.test:8080", "/").await.ends_with("shop"));
    assert!(get("a.tenants.test", "/").await.ends_with("tenant"));
    assert!(get("x.y.tenants.test", "/").await.ends_with("tenant"));
    assert!(get("tenants.test", "/").await.ends_with("<h1>home</h1>"));
    assert!(get("other.test", "/").await.ends_with("<h1>home</h1>"));
    let answer = get("old.test", "/cart?id=3").await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: https://shop.test/cart?id=3"),
        "{answer}"
    );
    // A folder at the root named with two slashes: redirected on this
    // host, not to a host called `docs`.
    let answer = get("any.test", "//docs").await;
    assert!(answer.starts_with("HTTP/1.1 308"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nlocation: /docs/\r\n"),
        "{answer}"
    );
    let answer = get("any.test", "/docs-old/a.html").await;
    assert!(answer.starts_with("HTTP/1.1 301"), "{answer}");
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("location: /static/docs/a.html"),
        "{answer}"
    );
}

#[tokio::test]
async fn cors_preflight_is_answered_by_the_host() {
    let site = static_site();
    let server = serve_static(
        &site,
        "cors = { origins = [\"https://app.test\"], methods = [\"GET\", \"PUT\"], headers = [\"content-type\"], max_age_s = 600 }",
    );
    let http = client();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, server.url("/static/app.js"))
            .header("origin", origin)
            .header("access-control-request-method", "PUT")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let response = preflight("https://app.test").await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "https://app.test");
    assert_eq!(headers["access-control-allow-methods"], "GET,PUT");
    assert_eq!(headers["access-control-allow-headers"], "content-type");
    assert_eq!(headers["access-control-max-age"], "600");
    let response = preflight("https://evil.test").await.unwrap();
    assert!(
        !response
            .headers()
            .contains_key("access-control-allow-origin"),
        "{:?}",
        response.headers()
    );
    let response = http
        .get(server.url("/static/app.js"))
        .header("origin", "https://app.test")
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.test"
    );
    assert_eq!(response.text().await.unwrap(), "console.log(1)");
}

#[tokio::test]
async fn responses_are_compressed_when_a_route_asks() {
    use std::io::Read;
    let site = static_site();
    let text = "gatehouse compresses text. ".repeat(200);
    std::fs::write(site.dir.path().join("www/long.txt"), &text).unwrap();
    let server = serve_static(&site, "compress = true");
    let response = client()
        .get(server.url("/static/long.txt"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let bytes = response.bytes().await.unwrap();
    assert!(bytes.len() < text.len() / 4, "{} bytes", bytes.len());
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&bytes[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(plain, text);
    let response = client()
        .get(server.url("/static/long.txt"))
        .send()
        .await
        .unwrap();
    assert!(!response.headers().contains_key("content-encoding"));
}

fn gatehouse_check(dir: &Path) -> (bool, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .args(["check", "--config", "gatehouse.toml"])
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned()
            + &String::from_utf8_lossy(&output.stdout),
    )
}

#[tokio::test]
async fn clashing_routes_are_errors_that_name_both() {
    let site = static_site();
    let dir = site.dir.path();
    std::fs::write(
        dir.join("gatehouse.toml"),
        "[[route]]\npath = \"/api/*\"\nstatic = \"www\"\n\
         [[route]]\npath = \"/other\"\nstatic = \"www\"\n\
         [[route]]\npath = \"/api/*\"\nproxy = [\"http://127.0.0.1:9\"]\n",
    )
    .unwrap();
    let (ok, output) = gatehouse_check(dir);
    assert!(!ok);
    assert!(
        output.contains("[[route]] 3 (/api/*) clashes with [[route]] 1"),
        "{output}"
    );
    std::fs::write(
        dir.join("gatehouse.toml"),
        "[[route]]\npath = \"/x/*\"\nstatic = \"missing\"\n",
    )
    .unwrap();
    let (ok, output) = gatehouse_check(dir);
    assert!(!ok);
    assert!(
        output.contains("static folder") && output.contains("missing"),
        "{output}"
    );

    // A plugin's route that a [[route]] holds is not mounted, and says so.
    site.put("hello.wasm", component("demo/hello"));
    let server = site.serve_config(
        &config_with("[[route]]\npath = \"/hello/*\"\nstatic = \"www\"\n"),
        &[],
    );
    let status = server
        .wait_plugin("hello", Duration::from_secs(60), |p| {
            p["last_error"].as_str().is_some()
        })
        .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains(
            "route /hello/* of plugin `hello` clashes with the same route of [[route]] 1"
        ),
        "{error}"
    );
    let (status, body) = crate::harness::get(&server.url("/hello/")).await;
    assert_eq!((status, body.as_str()), (200, "<h1>home</h1>"));
}
