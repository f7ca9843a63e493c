//! Hot swap: changed files and sources are swapped in under load with no
//! failed request; broken ones leave the last good version serving.

use crate::harness::{Server, Site, client, component, get};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const LOAD: Duration = Duration::from_secs(60);

/// Concurrent clients requesting `/app/version` until stopped; they count
/// every answer that is not a 200 from one of the two versions.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failed: Arc<std::sync::Mutex<Vec<String>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(server: &Server, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(std::sync::Mutex::new(Vec::new()));
        let url = server.url("/app/version");
        let tasks = (0..clients)
            .map(|_| {
                let (stop, ok, failed, url) =
                    (stop.clone(), ok.clone(), failed.clone(), url.clone());
                tokio::spawn(async move {
                    let client = client();
                    while !stop.load(Ordering::Relaxed) {
                        match client.get(&url).send().await {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                let body = response.text().await.unwrap_or_default();
                                if status == 200 && (body == "hello" || body == "hostile") {
                                    ok.fetch_add(1, Ordering::Relaxed);
                                } else {
                                    failed.lock().unwrap().push(format!("{status} {body}"));
                                }
                            }
                            Err(e) => failed.lock().unwrap().push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            ok,
            failed,
            tasks,
        }
    }

    async fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failed = self.failed.lock().unwrap().clone();
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

async fn serving_app() -> (Site, Server) {
    let site = Site::new();
    site.put("app.wasm", component("demo/hello"));
    let server = site.serve(&[], &[]);
    server.wait_body("/app/version", 200, "hello", LOAD).await;
    (site, server)
}

#[tokio::test]
async fn swap_by_rename_under_load_fails_no_request() {
    let (site, server) = serving_app().await;
    let (hello, hostile) = (component("demo/hello"), component("fixtures/hostile"));
    let load = Load::start(&server, 4);
    for (bytes, version) in [
        (&hostile, "hostile"),
        (&hello, "hello"),
        (&hostile, "hostile"),
    ] {
        site.put_by_rename("app", bytes);
        server.wait_body("/app/version", 200, version, LOAD).await;
    }
    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 20, "only {ok} requests ran during the swaps");
    server.wait_log("swapped in a new version", Duration::from_secs(5));
}

#[tokio::test]
async fn swap_by_copy_in_place_under_load_fails_no_request() {
    let (site, server) = serving_app().await;
    let (hello, hostile) = (component("demo/hello"), component("fixtures/hostile"));
    let load = Load::start(&server, 4);

    // A plain copy over the old file.
    std::fs::copy(
        {
            let src = site.dir.path().join("hostile.wasm");
            std::fs::write(&src, &hostile).unwrap();
            src
        },
        site.plugins().join("app.wasm"),
    )
    .unwrap();
    server.wait_body("/app/version", 200, "hostile", LOAD).await;

    // A slow copy: half the file, a pause longer than the debounce, the rest.
    // The half file fails its checks and the old version keeps serving.
    {
        use std::io::Write;
        let mut file = std::fs::File::create(site.plugins().join("app.wasm")).unwrap();
        file.write_all(&hello[..hello.len() / 2]).unwrap();
        file.flush().unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            get(&server.url("/app/version")).await,
            (200, "hostile".to_owned())
        );
        file.write_all(&hello[hello.len() / 2..]).unwrap();
    }
    server.wait_body("/app/version", 200, "hello", LOAD).await;

    let (ok, failed) = load.finish().await;
    assert!(
        failed.is_empty(),
        "{} failed requests, e.g. {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert!(ok > 20, "only {ok} requests ran during the swaps");
}

#[tokio::test]
async fn a_broken_file_keeps_the_previous_version_serving() {
    let (site, server) = serving_app().await;
    for broken in [
        &b"not wasm at all"[..],
        &b"\0asm\x01\0\0\0"[..],
        &component("demo/hello")[..1000],
    ] {
        let before = server.plugin_status("app").await.unwrap()["failed_at"].clone();
        site.put("app.wasm", broken);
        let status = server
            .wait_plugin("app", LOAD, |p| {
                !p["last_error"].is_null() && p["failed_at"] != before
            })
            .await;
        assert_eq!(status["state"], "serving");
        assert_eq!(
            get(&server.url("/app/version")).await,
            (200, "hello".to_owned())
        );
    }
    server.wait_log("the previous version keeps serving", Duration::from_secs(5));

    // A component that imports something the host does not provide, and a
    // core module that is not a component at all.
    let foreign =
        wat::parse_str("(component (import \"acme:nope/thing\" (instance (export \"f\" (func)))))")
            .unwrap();
    site.put("app.wasm", &foreign);
    let status = server
        .wait_plugin("app", LOAD, |p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("does not provide"))
        })
        .await;
    assert!(
        status["last_error"]
            .as_str()
            .unwrap()
            .contains("acme:nope/thing"),
        "{status}"
    );
    site.put("app.wasm", wat::parse_str("(module)").unwrap());
    server
        .wait_plugin("app", LOAD, |p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| !e.contains("does not provide"))
        })
        .await;
    assert_eq!(
        get(&server.url("/app/version")).await,
        (200, "hello".to_owned())
    );

    // A broken sidecar is refused the same way, naming the file and the key.
    site.put("app.wasm", component("fixtures/hostile"));
    site.put("app.toml", "[limits]\ntimeout = 5\n");
    let status = server
        .wait_plugin("app", LOAD, |p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("unknown field `timeout`"))
        })
        .await;
    assert!(status["last_error"].as_str().unwrap().contains("app.toml"));
    assert_eq!(
        get(&server.url("/app/version")).await,
        (200, "hello".to_owned())
    );
}

#[tokio::test]
async fn a_source_plugin_is_built_rebuilt_on_change_and_a_failed_build_keeps_it_serving() {
    let site = Site::new();
    let source = site.plugins().join("greeter");
    copy_dir(&crate::harness::repo().join("plugins/demo/hello"), &source);
    // Builds share a target folder across runs of this test, so only the
    // first run pays for compiling the dependencies.
    let data = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("source-plugin-data");
    let server = site.serve(&["--data", data.to_str().unwrap()], &[]);
    let status = server
        .wait_plugin("greeter", Duration::from_secs(300), |p| {
            p["state"] == "serving"
        })
        .await;
    assert_eq!(status["source"]["kind"], "rust");
    server.wait_body("/greeter", 200, "Hello from", LOAD).await;

    let main = source.join("src/main.rs");
    let code = std::fs::read_to_string(&main).unwrap();
    std::fs::write(&main, code.replace("Hello from", "Howdy from")).unwrap();
    server
        .wait_body("/greeter", 200, "Howdy from", Duration::from_secs(300))
        .await;

    std::fs::write(
        &main,
        code.replace("Hello from", "Howdy from")
            .replace("async fn main", "async fn main("),
    )
    .unwrap();
    let status = server
        .wait_plugin("greeter", Duration::from_secs(300), |p| {
            p["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("did not build"))
        })
        .await;
    let error = status["last_error"].as_str().unwrap();
    assert!(
        error.contains("error") && error.contains("src/main.rs"),
        "the compiler's message: {error}"
    );
    assert_eq!(status["state"], "serving");
    assert_eq!(
        get(&server.url("/greeter")).await.1,
        "Howdy from a WebAssembly component, mounted at /greeter/\n"
    );
    server.wait_log("did not build", Duration::from_secs(5));
}

pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let name = entry.file_name();
        if name == "target" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(&name));
        } else {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}
