//! The likes demo (`plugins/demo/likes`): its JSON API, the notification
//! pushed over a WebSocket, and two users in headless Chromium.

use crate::harness::{Server, Site, client, component, config_with, repo};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

/// Serves the demo plugin as the demo does: its sidecar, and its
/// migrations (from the source folder) through `[migrations] path`.
async fn serve_demo() -> (Site, Server) {
    let site = Site::new();
    let sidecar = std::fs::read_to_string(repo().join("plugins/demo/likes.toml")).unwrap();
    site.put(
        "likes.toml",
        format!("{sidecar}\n[migrations]\npath = \"likes-migrations\"\n"),
    );
    let migrations = site.plugins().join("likes-migrations");
    crate::hot_swap::copy_dir(&repo().join("plugins/demo/likes/migrations"), &migrations);
    site.put("likes.wasm", component("demo/likes"));
    let server = site.serve_config(&config_with(""), &[]);
    server.wait_serving("likes").await;
    (site, server)
}

async fn call(server: &Server, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, server.url(path));
    if let Some(body) = body {
        request = request
            .header("content-type", "application/json")
            .body(body.to_owned());
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = serde_json::from_str(&text).unwrap_or_else(|_| {
        panic!("{path} answered {status} with a body that is not JSON: {text}")
    });
    (status, value)
}

async fn created(server: &Server, path: &str, body: Value) -> Value {
    let (status, value) = call(server, "POST", path, Some(&body.to_string())).await;
    assert_eq!(status, 201, "{path}: {value}");
    value
}

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_api_stores_likes_and_pushes_the_notification() {
    let (_site, server) = serve_demo().await;
    let carol = created(&server, "/api/users", json!({"name": "carol"})).await;
    assert_eq!(carol["name"], "carol");
    let dave = created(&server, "/api/users", json!({"name": "dave"})).await;
    let (carol_id, dave_id) = (carol["id"].as_i64().unwrap(), dave["id"].as_i64().unwrap());
    let post = created(
        &server,
        "/api/posts",
        json!({"author": carol_id, "text": "carol's first post"}),
    )
    .await;
    let post_id = post["id"].as_i64().unwrap();
    assert_eq!(
        post,
        json!({"id": post_id, "author": carol_id, "text": "carol's first post", "likes": 0})
    );
    assert_eq!(
        call(&server, "GET", &format!("/api/posts/{post_id}"), None).await,
        (200, post.clone())
    );

    // Carol listens; Dave likes her post.
    let url = format!("ws://{}/ws?user={carol_id}", server.addr);
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let likes = format!("/api/posts/{post_id}/likes");
    let like = json!({"user": dave_id}).to_string();
    let (status, liked) = call(&server, "POST", &likes, Some(&like)).await;
    assert_eq!((status, liked["likes"].as_i64()), (201, Some(1)));
    let pushed = tokio::time::timeout(Duration::from_secs(5), socket.next())
        .await
        .expect("the notification within 5 s")
        .unwrap()
        .unwrap();
    let Message::Text(pushed) = pushed else {
        panic!("expected text, got {pushed:?}")
    };
    assert_eq!(
        serde_json::from_str::<Value>(&pushed).unwrap(),
        json!({"type": "like", "post": post_id, "from": dave_id})
    );

    // A repeated like counts once and notifies nobody; liking your own
    // post counts and notifies nobody.
    let (status, again) = call(&server, "POST", &likes, Some(&like)).await;
    assert_eq!((status, again["likes"].as_i64()), (200, Some(1)));
    let own = json!({"user": carol_id}).to_string();
    let (status, own) = call(&server, "POST", &likes, Some(&own)).await;
    assert_eq!((status, own["likes"].as_i64()), (201, Some(2)));
    let quiet = tokio::time::timeout(Duration::from_millis(500), socket.next()).await;
    assert!(quiet.is_err(), "unexpected push: {quiet:?}");

    let (status, user) = call(&server, "GET", &format!("/api/users/{carol_id}"), None).await;
    assert_eq!((status, user["unread"].as_i64()), (200, Some(1)));
    let (status, notes) = call(
        &server,
        "GET",
        &format!("/api/users/{carol_id}/notifications"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let notes = notes.as_array().unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["type"], "like");
    assert_eq!(notes[0]["post"], post_id);
    assert_eq!(notes[0]["from"], dave_id);
    assert!(notes[0]["at"].as_str().unwrap().ends_with('Z'), "{notes:?}");
    // Reading them clears the unread count (kept in kv).
    let (_, user) = call(&server, "GET", &format!("/api/users/{carol_id}"), None).await;
    assert_eq!(user["unread"].as_i64(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_to_the_demo_gets_400_or_404_with_a_json_error() {
    let (_site, server) = serve_demo().await;
    let cases: &[(&str, &str, Option<&str>, u16)] = &[
        ("POST", "/api/users", Some("not json"), 400),
        ("POST", "/api/users", Some(r#"{"name": ""}"#), 400),
        ("POST", "/api/users", Some(r#"{"name": 5}"#), 400),
        ("POST", "/api/users", Some(r#"["name"]"#), 400),
        ("POST", "/api/posts", Some(r#"{"author": 1}"#), 400),
        (
            "POST",
            "/api/posts",
            Some(r#"{"author": "1", "text": "x"}"#),
            400,
        ),
        (
            "POST",
            "/api/posts",
            Some(r#"{"author": 99999, "text": "x"}"#),
            404,
        ),
        ("GET", "/api/posts/abc", None, 404),
        ("GET", "/api/posts/99999", None, 404),
        ("GET", "/api/posts/-1", None, 404),
        (
            "POST",
            "/api/posts/99999/likes",
            Some(r#"{"user": 1}"#),
            404,
        ),
        (
            "POST",
            "/api/posts/1/likes",
            Some(r#"{"user": 99999}"#),
            404,
        ),
        ("POST", "/api/posts/1/likes", Some(r#"{}"#), 400),
        ("GET", "/api/users/99999/notifications", None, 404),
        ("GET", "/api/nothing", None, 404),
        ("DELETE", "/api/posts/1", None, 404),
    ];
    for (method, path, body, expected) in cases {
        let (status, value) = call(&server, method, path, *body).await;
        assert_eq!(status, *expected, "{method} {path} {body:?}: {value}");
        assert!(value["error"].is_string(), "{method} {path}: {value}");
    }
    for (query, expected) in [("", 400), ("?user=abc", 400), ("?user=99999", 404)] {
        let url = format!("ws://{}/ws{query}", server.addr);
        match tokio_tungstenite::connect_async(&url).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), expected, "/ws{query}");
                let body: Value =
                    serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
                assert!(body["error"].is_string(), "{body}");
            }
            other => panic!("/ws{query}: expected {expected}, got {other:?}"),
        }
    }
    let page = client().get(server.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<title>likes"));
}

#[tokio::test(flavor = "multi_thread")]
async fn two_users_in_chromium_see_a_like_arrive_live() {
    let script = repo().join("tests/browser/likes.mjs");
    crate::harness::require_tool("chromium", "chromium");
    crate::harness::require_tool("npm", "npm");
    let browser = repo().join("tests/browser");
    if !browser.join("node_modules/playwright-core").is_dir() {
        // Installs the locked playwright-core (the driver only; the browser
        // is Debian's Chromium).
        let installed = std::process::Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--prefix"])
            .arg(&browser)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            installed,
            "cannot install playwright-core: run `npm ci --prefix tests/browser`"
        );
    }
    let (_site, server) = serve_demo().await;
    let screenshot = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("likes.png");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(server.url(""))
        .arg(&screenshot)
        .output()
        .await
        .expect("running node");
    assert!(
        output.status.success(),
        "the browser test failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(screenshot.is_file());
}
