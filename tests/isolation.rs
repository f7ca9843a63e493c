//! The sandbox: a hostile plugin fails only its own request, within its
//! deadline, and reaches nothing it was not granted.

use crate::harness::{Server, Site, client, component, get};
use std::time::{Duration, Instant};

async fn hostile_site(sidecar: &str, env: &[(&str, &str)]) -> (Site, Server) {
    let site = Site::new();
    site.put("hostile.wasm", component("fixtures/hostile"));
    site.put("hostile.toml", sidecar);
    site.put("hello.wasm", component("demo/hello"));
    let server = site.serve(&[], env);
    server.wait_serving("hostile").await;
    server.wait_serving("hello").await;
    (site, server)
}

#[tokio::test]
async fn each_attack_gets_a_5xx_within_its_deadline_while_others_serve() {
    let (_site, server) = hostile_site("[limits]\ntimeout_ms = 1500\nmemory_mb = 32\n", &[]).await;
    for attack in ["/loop", "/trap", "/stack", "/oom"] {
        // Two of each at once, while another plugin goes on answering.
        let url = server.url(&format!("/hostile{attack}"));
        let started = Instant::now();
        let attacks: Vec<_> = (0..2)
            .map(|_| {
                let url = url.clone();
                tokio::spawn(
                    async move { client().get(&url).send().await.unwrap().status().as_u16() },
                )
            })
            .collect();
        for _ in 0..5 {
            let (status, body) = get(&server.url("/hello/version")).await;
            assert_eq!((status, body.as_str()), (200, "hello"), "during {attack}");
        }
        for attack_request in attacks {
            let status = attack_request.await.unwrap();
            assert!((500..600).contains(&status), "{attack} answered {status}");
        }
        // The deadline is 1.5 s; allow for a loaded machine, not for a hang.
        let elapsed = started.elapsed();
        assert!(
            elapsed < Duration::from_secs(8),
            "{attack} took {elapsed:?}"
        );
    }
    let (status, _) = get(&server.url("/hostile/loop")).await;
    assert_eq!(status, 504, "a loop is cut at the deadline");
    let (status, body) = get(&server.url("/hostile/trap")).await;
    assert_eq!(status, 500);
    assert!(body.contains("trapped"), "{body}");
    // The plugin itself still serves, and the host logged each failure.
    assert_eq!(
        get(&server.url("/hostile/ok")).await,
        (200, "ok".to_owned())
    );
    server.wait_log("plugin failed: trapped", Duration::from_secs(5));
    // What the plugin printed (its panic message) is logged under its name.
    let line = server.wait_log(
        "the hostile plugin traps on purpose",
        Duration::from_secs(5),
    );
    assert!(
        line.contains("WARN")
            && line.contains(r#"plugin="hostile""#)
            && line.contains(r#"stream="stderr""#),
        "{line}"
    );
}

#[tokio::test]
async fn only_granted_environment_variables_are_visible() {
    let env = [
        ("GATEHOUSE_TEST_GRANTED", "yes"),
        ("GATEHOUSE_TEST_SECRET", "hidden"),
    ];
    let (_site, server) =
        hostile_site("[grants]\nenv = [\"GATEHOUSE_TEST_GRANTED\"]\n", &env).await;
    let (_, granted) = get(&server.url("/hostile/env?GATEHOUSE_TEST_GRANTED")).await;
    assert_eq!(granted, "GATEHOUSE_TEST_GRANTED=yes");
    let (_, secret) = get(&server.url("/hostile/env?GATEHOUSE_TEST_SECRET")).await;
    assert_eq!(secret, "GATEHOUSE_TEST_SECRET is unset");
    let (_, path) = get(&server.url("/hostile/env?PATH")).await;
    assert_eq!(path, "PATH is unset");
    assert_eq!(get(&server.url("/hostile/env-count")).await.1, "1");
}

#[tokio::test]
async fn files_sockets_and_outbound_http_are_denied() {
    let (site, server) = hostile_site("", &[]).await;
    let secret = site.dir.path().join("secret.txt");
    std::fs::write(&secret, "top secret").unwrap();

    for path in ["/etc/passwd", secret.to_str().unwrap(), "secret.txt"] {
        let (status, body) = get(&server.url(&format!("/hostile/file?{path}"))).await;
        assert_eq!(status, 200);
        assert!(body.starts_with("denied"), "reading {path}: {body}");
    }

    let (_, body) = get(&server.url(&format!("/hostile/socket?{}", server.admin))).await;
    assert!(
        body.starts_with("denied"),
        "a socket to the admin API: {body}"
    );

    let (_, body) =
        get(&server.url(&format!("/hostile/outbound?http://{}/health", server.admin))).await;
    assert!(
        body.starts_with("denied") && body.contains("HttpRequestDenied"),
        "outbound: {body}"
    );
}

#[tokio::test]
async fn a_plugin_printing_in_a_loop_cannot_flood_the_log() {
    let (_site, server) = hostile_site("", &[]).await;
    let (status, body) = get(&server.url("/hostile/shout?20000")).await;
    assert_eq!((status, body.as_str()), (200, "shouted 20000 lines"));
    assert_eq!(
        get(&server.url("/hello/version")).await,
        (200, "hello".to_owned())
    );
    // The next line that gets through says how many were dropped.
    tokio::time::sleep(Duration::from_millis(50)).await;
    get(&server.url("/hostile/shout?1")).await;
    let line = server.wait_log("lines of output", Duration::from_secs(5));
    assert!(
        line.contains("hostile") && line.contains("dropped"),
        "{line}"
    );
    let shouts = server
        .log_text()
        .lines()
        .filter(|l| l.contains("shout "))
        .count();
    assert!((1000..1200).contains(&shouts), "{shouts} lines logged");
}

#[tokio::test]
async fn memory_mb_caps_all_of_an_instances_memories_together() {
    // Two core modules of 40 MiB each: under a 64 MiB cap apiece, past it
    // together. The handler returns no response, so a start that got past
    // the cap shows as that.
    let two_memories = |pages: u32| {
        wat::parse_str(format!(
            r#"(component
              (import "wasi:http/types@0.2.0" (instance $types
                (export "incoming-request" (type (sub resource)))
                (export "response-outparam" (type (sub resource)))))
              (alias export $types "incoming-request" (type $req))
              (alias export $types "response-outparam" (type $out))
              (core module $a (memory (export "memory") {pages}))
              (core module $b
                (memory (export "memory") {pages})
                (func (export "handle") (param i32 i32)))
              (core instance $ia (instantiate $a))
              (core instance $ib (instantiate $b))
              (func $handle (param "request" (own $req)) (param "response-out" (own $out))
                (canon lift (core func $ib "handle")))
              (instance $handler (export "handle" (func $handle)))
              (export "wasi:http/incoming-handler@0.2.0" (instance $handler)))"#
        ))
        .unwrap()
    };
    let site = Site::new();
    site.put("wide.wasm", two_memories(640));
    site.put("wide.toml", "[limits]\nmemory_mb = 64\n");
    site.put("narrow.wasm", two_memories(400));
    site.put("narrow.toml", "[limits]\nmemory_mb = 64\n");
    let server = site.serve(&[], &[]);
    server.wait_serving("wide").await;
    server.wait_serving("narrow").await;

    // Not 503: trying again cannot help.
    let (status, body) = get(&server.url("/wide/")).await;
    assert_eq!((status, body.contains("trapped")), (500, true), "{body}");
    let line = server.wait_log("past its memory_mb of 64 MiB", Duration::from_secs(5));
    assert!(line.contains("wide"), "{line}");
    // 2 x 25 MiB fits: it starts, and fails only for giving no response.
    let (status, _) = get(&server.url("/narrow/")).await;
    assert_eq!(status, 500);
    let line = server.wait_log("returned without a response", Duration::from_secs(5));
    assert!(line.contains("narrow"), "{line}");
}
