//! Plugins in every supported language: `gatehouse new`, then serving the
//! source folder (built by gatehouse), kv and sql from the template, a build
//! error that keeps the previous version serving, `gatehouse build` and
//! `gatehouse doctor`.

use crate::harness::{Server, Site, client, config_with, repo};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

/// Installs the toolchains (idempotent: quick when they are there).
fn toolchains() {
    static INSTALLED: Once = Once::new();
    INSTALLED.call_once(|| {
        let status = Command::new(repo().join("scripts/install-toolchains"))
            .status()
            .expect("running scripts/install-toolchains");
        assert!(status.success(), "scripts/install-toolchains failed");
    });
}

fn gatehouse(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(args)
        .output()
        .expect("running gatehouse")
}

/// `gatehouse new NAME --lang LANG --dir <site>/plugins`.
fn new_plugin(site: &Site, name: &str, lang: &str) {
    let plugins = site.plugins();
    let output = gatehouse(&[
        "new",
        name,
        "--lang",
        lang,
        "--dir",
        plugins.to_str().unwrap(),
    ]);
    assert!(
        output.status.success(),
        "gatehouse new failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn get(server: &Server, path: &str) -> (u16, String) {
    let response = client().get(server.url(path)).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Waits (a first build takes a while) until the plugin serves.
async fn wait_built(server: &Server, name: &str) {
    server
        .wait_plugin(name, Duration::from_secs(300), |p| p["state"] == "serving")
        .await;
}

/// New, serve, then two visits counted in kv and a query through sql.
async fn template_serves(lang: &str) {
    toolchains();
    let site = Site::new();
    let name = format!("hello-{lang}");
    new_plugin(&site, &name, lang);
    let server = site.serve_config(&config_with(""), &[]);
    wait_built(&server, &name).await;
    let first = get(&server, &format!("/{name}/")).await;
    assert_eq!(
        first,
        (200, format!("Hello from {name}! Visit number 1.\n"))
    );
    let second = get(&server, &format!("/{name}/")).await;
    assert_eq!(
        second,
        (200, format!("Hello from {name}! Visit number 2.\n"))
    );
    let db = get(&server, &format!("/{name}/db")).await;
    assert_eq!(db, (200, "hello from sql\n".to_owned()));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rust_plugin_from_the_template_counts_visits() {
    template_serves("rust").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_plugin_from_the_template_counts_visits_and_queries() {
    template_serves("python").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_javascript_plugin_from_the_template_counts_visits_and_queries() {
    template_serves("js").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_c_plugin_from_the_template_counts_visits_and_queries() {
    template_serves("c").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_python_build_error_keeps_the_previous_version_serving() {
    toolchains();
    let site = Site::new();
    new_plugin(&site, "py", "python");
    let server = site.serve_config(&config_with(""), &[]);
    wait_built(&server, "py").await;
    assert_eq!(get(&server, "/py/").await.0, 200);

    let app = site.plugins().join("py/app.py");
    let good = std::fs::read_to_string(&app).unwrap();
    std::fs::write(&app, format!("{good}\ndef broken(:\n")).unwrap();
    let status = server
        .wait_plugin("py", Duration::from_secs(120), |p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("SyntaxError"))
        })
        .await;
    assert_eq!(status["state"], "serving", "{status}");
    let (code, body) = get(&server, "/py/").await;
    assert_eq!(code, 200, "{body}");
    assert!(body.starts_with("Hello from py!"), "{body}");
}

#[test]
fn new_refuses_bad_names_languages_and_existing_folders() {
    let site = Site::new();
    let dir = site.plugins();
    let dir = dir.to_str().unwrap();
    let refused = gatehouse(&["new", "Bad.Name", "--lang", "rust", "--dir", dir]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("not a plugin name"));
    let refused = gatehouse(&["new", "ok", "--lang", "cobol", "--dir", dir]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown language `cobol`"));
    assert!(
        gatehouse(&["new", "ok", "--lang", "js", "--dir", dir])
            .status
            .success()
    );
    assert!(site.plugins().join("ok/wit/world.wit").is_file());
    assert!(site.plugins().join("ok.toml").is_file());
    let again = gatehouse(&["new", "ok", "--lang", "python", "--dir", dir]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
}

#[test]
fn build_writes_a_component_and_doctor_reports_the_toolchains() {
    toolchains();
    let site = Site::new();
    let dir = site.plugins();
    assert!(
        gatehouse(&[
            "new",
            "built",
            "--lang",
            "python",
            "--dir",
            dir.to_str().unwrap()
        ])
        .status
        .success()
    );
    let out = site.dir.path().join("out.wasm");
    let built = gatehouse(&[
        "build",
        dir.join("built").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(std::fs::read(&out).unwrap().starts_with(b"\0asm"));

    let doctor = gatehouse(&["doctor"]);
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(doctor.status.success(), "{report}");
    for lang in ["rust", "python", "js", "c", "zig"] {
        assert!(
            report
                .lines()
                .any(|l| l.starts_with(lang) && l.contains(" ok ")),
            "{report}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_zig_plugin_from_the_template_runs_as_cgi() {
    toolchains();
    let site = Site::new();
    new_plugin(&site, "hello-zig", "zig");
    let server = site.serve_config(&config_with(""), &[]);
    wait_built(&server, "hello-zig").await;
    for _ in 0..2 {
        let response = client()
            .get(server.url("/hello-zig/"))
            .header("user-agent", "the test")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            response.text().await.unwrap(),
            "Hello from hello-zig! A Zig CGI program greets the test.\n"
        );
    }
    // The program's own Status header.
    assert_eq!(
        get(&server, "/hello-zig/nothing").await,
        (404, "not found\n".into())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cgi_module_is_held_to_its_deadline_and_the_host_keeps_serving() {
    let site = Site::new();
    // A WASI command that never ends, and one that writes no CGI headers.
    let looping = wat::parse_str(
        r#"(module (memory (export "memory") 1) (func (export "_start") (loop (br 0))))"#,
    )
    .unwrap();
    let silent =
        wat::parse_str(r#"(module (memory (export "memory") 1) (func (export "_start")))"#)
            .unwrap();
    site.put("spin.wasm", looping);
    site.put("spin.toml", "[limits]\ntimeout_ms = 300\n");
    site.put("silent.wasm", silent);
    // One that sleeps an hour in poll_oneoff: no wasm runs meanwhile, so
    // only the host's own timer can end it.
    let sleeping = wat::parse_str(
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff"
            (func $poll (param i32 i32 i32 i32) (result i32)))
          (memory (export "memory") 1)
          ;; one subscription at 0: tag 0 (clock) at 8, clock 1 (monotonic) at 16
          (data (i32.const 16) "\01")
          (func (export "_start")
            (i64.store (i32.const 24) (i64.const 3600000000000))
            (drop (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128)))))"#,
    )
    .unwrap();
    site.put("nap.wasm", sleeping);
    site.put("nap.toml", "[limits]\ntimeout_ms = 300\n");
    let server = site.serve_config(&config_with(""), &[]);
    server.wait_serving("nap").await;
    server.wait_serving("spin").await;
    server.wait_serving("silent").await;
    let started = std::time::Instant::now();
    assert_eq!(get(&server, "/spin/").await.0, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let started = std::time::Instant::now();
    assert_eq!(get(&server, "/nap/").await.0, 504);
    assert!(started.elapsed() < Duration::from_secs(5));
    let (status, body) = get(&server, "/silent/").await;
    assert_eq!(status, 500, "{body}");
    // Logged as the response goes out: read once the log reader has it.
    server.wait_log("wrote no valid CGI response", Duration::from_secs(5));
}

#[test]
fn a_missing_toolchain_is_named_with_the_command_that_installs_it() {
    let site = Site::new();
    let dir = site.plugins();
    assert!(
        gatehouse(&[
            "new",
            "lonely",
            "--lang",
            "python",
            "--dir",
            dir.to_str().unwrap()
        ])
        .status
        .success()
    );
    // A PATH with none of the plugin builders on it.
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["build", dir.join("lonely").to_str().unwrap()])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("componentize-py is not installed: pip install componentize-py"),
        "{stderr}"
    );
    let doctor = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("doctor")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert!(!doctor.status.success());
    let report = String::from_utf8_lossy(&doctor.stdout);
    assert!(
        report.contains("python  missing  fix: pip install componentize-py"),
        "{report}"
    );
}
