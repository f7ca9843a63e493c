//! Mounting from the drop-in folder: default mounts, sidecar routes, HTTP/2,
//! mounting and unmounting while serving, and the compiled-code cache.

use crate::harness::{Site, client, component, get};
use std::time::Duration;

const LOAD: Duration = Duration::from_secs(60);

#[tokio::test]
async fn wasm_file_is_mounted_at_its_name_with_the_prefix_stripped() {
    let site = Site::new();
    site.put("hello.wasm", component("demo/hello"));
    let server = site.serve(&[], &[]);
    server.wait_serving("hello").await;

    let (status, body) = get(&server.url("/hello")).await;
    assert_eq!(
        (status, body.as_str()),
        (
            200,
            "Hello from a WebAssembly component, mounted at /hello/\n"
        )
    );

    let echoed = client()
        .post(server.url("/hello/echo"))
        .body("ping")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.text().await.unwrap(), "ping");

    let (_, headers) = get(&server.url("/hello/headers?x=1")).await;
    assert!(
        headers.contains("x-forwarded-prefix: /hello\n"),
        "{headers}"
    );

    // The plugin saw `/nope`, not `/hello/nope`.
    let (status, body) = get(&server.url("/hello/nope")).await;
    assert_eq!(status, 404);
    assert_eq!(body, "hello has no page at /hello/nope\n");

    // Not a mount: the host's own 404; nor is a longer name sharing the prefix.
    assert_eq!(get(&server.url("/other")).await.0, 404);
    assert_eq!(get(&server.url("/helloworld")).await.0, 404);

    let status = server.plugin_status("hello").await.unwrap();
    assert_eq!(status["routes"], serde_json::json!(["/hello/*"]));
    assert_eq!(status["source"]["kind"], "file");
    assert_eq!(status["sha256"].as_str().unwrap().len(), 64);
    assert!(status["loaded_at"].as_str().unwrap().ends_with('Z'));
    assert!(status["last_error"].is_null());

    server.wait_log("status=200 plugin=\"hello\"", Duration::from_secs(5));
}

#[tokio::test]
async fn http2_cleartext_is_served() {
    let site = Site::new();
    site.put("hello.wasm", component("demo/hello"));
    let server = site.serve(&[], &[]);
    server.wait_serving("hello").await;
    let h2 = reqwest::Client::builder()
        .no_proxy()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let response = h2.get(server.url("/hello/version")).send().await.unwrap();
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
    assert_eq!(response.text().await.unwrap(), "hello");
}

#[tokio::test]
async fn sidecar_routes_replace_the_default_mount() {
    let site = Site::new();
    site.put("home.wasm", component("fixtures/home"));
    site.put("home.toml", "routes = [\"/\", \"/about\"]\n");
    site.put("api.wasm", component("demo/hello"));
    site.put(
        "api.toml",
        "routes = [\"/api/v1/*\"]\nstrip_prefix = true\n",
    );
    let server = site.serve(&[], &[]);
    server.wait_serving("home").await;
    server.wait_serving("api").await;

    let (status, page) = get(&server.url("/")).await;
    assert_eq!(status, 200);
    assert!(page.contains("<h1>gatehouse</h1>"));
    assert_eq!(get(&server.url("/about")).await.0, 200);
    assert_eq!(
        get(&server.url("/home")).await.0,
        404,
        "the default mount is replaced"
    );
    assert_eq!(
        get(&server.url("/elsewhere")).await.0,
        404,
        "`/` is exact, not a catch-all"
    );

    let (status, body) = get(&server.url("/api/v1/version")).await;
    assert_eq!((status, body.as_str()), (200, "hello"));
    let (_, headers) = get(&server.url("/api/v1/headers")).await;
    assert!(
        headers.contains("x-forwarded-prefix: /api/v1\n"),
        "{headers}"
    );
    assert_eq!(get(&server.url("/api/version")).await.0, 404);
}

#[tokio::test]
async fn a_new_file_is_mounted_and_a_deleted_one_unmounted_while_serving() {
    let site = Site::new();
    site.put("README.txt", "not a plugin");
    let server = site.serve(&[], &[]);
    assert_eq!(get(&server.url("/hello")).await.0, 404);
    server.wait_log("ignoring README.txt", Duration::from_secs(10));

    site.put_by_rename("hello", &component("demo/hello"));
    server.wait_body("/hello/version", 200, "hello", LOAD).await;

    std::fs::remove_file(site.plugins().join("hello.wasm")).unwrap();
    server
        .wait_body("/hello/version", 404, "no route", LOAD)
        .await;
    assert!(server.plugin_status("hello").await.is_none());
    server.wait_log("unmounted", Duration::from_secs(5));
}

#[tokio::test]
async fn a_restart_reads_compiled_code_from_the_cache() {
    let site = Site::new();
    site.put("hello.wasm", component("demo/hello"));
    let first = site.serve(&[], &[]);
    let status = first.wait_serving("hello").await;
    assert_eq!(status["compiled"], "fresh");
    drop(first);

    let second = site.serve(&[], &[]);
    let status = second.wait_serving("hello").await;
    assert_eq!(status["compiled"], "cache");
    assert_eq!(get(&second.url("/hello/version")).await.1, "hello");
}
