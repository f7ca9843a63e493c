//! The command line: bad config and flags give clear errors; `check`
//! validates config and plugins.

use crate::harness::{Site, component};
use std::process::Command;

fn gatehouse(site: &Site, args: &[&str]) -> (bool, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .current_dir(site.dir.path())
        .env("RUST_LOG", "warn")
        .args(args)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_config_key_names_the_key_and_the_file() {
    let site = Site::new();
    std::fs::write(
        site.dir.path().join("gatehouse.toml"),
        "[server]\nplugin_dir = \"x\"\n",
    )
    .unwrap();
    let (ok, _, stderr) = gatehouse(&site, &["serve"]);
    assert!(!ok);
    assert!(stderr.contains("gatehouse.toml"), "{stderr}");
    assert!(stderr.contains("unknown field `plugin_dir`"), "{stderr}");

    let (ok, _, stderr) = gatehouse(&site, &["check", "--config", "missing.toml"]);
    assert!(!ok);
    assert!(
        stderr.contains("missing.toml") && stderr.contains("cannot read"),
        "{stderr}"
    );
}

#[test]
fn bad_flags_say_what_is_wrong() {
    let site = Site::new();
    let (ok, _, stderr) = gatehouse(&site, &["serve", "--listen", "localhost"]);
    assert!(!ok);
    assert!(
        stderr.contains("--listen") && stderr.contains("IP:PORT"),
        "{stderr}"
    );

    let (ok, _, stderr) = gatehouse(&site, &["serve", "--lisen", "127.0.0.1:0"]);
    assert!(!ok);
    assert!(stderr.contains("--lisen"), "{stderr}");

    // A port already taken is named.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (ok, _, stderr) = gatehouse(
        &site,
        &[
            "serve",
            "--listen",
            &addr,
            "--admin",
            "127.0.0.1:0",
            "--plugins",
            "plugins",
        ],
    );
    assert!(!ok);
    assert!(
        stderr.contains(&addr) && stderr.contains("another process"),
        "{stderr}"
    );
}

#[test]
fn check_validates_every_plugin() {
    let site = Site::new();
    site.put("hello.wasm", component("demo/hello"));
    let (ok, stdout, stderr) = gatehouse(&site, &["check"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ok hello"), "{stdout}");

    site.put("broken.wasm", "garbage");
    site.put("hello.toml", "routes = [\"nope\"]\n");
    let (ok, _, stderr) = gatehouse(&site, &["check"]);
    assert!(!ok);
    assert!(stderr.contains("plugin `broken`"), "{stderr}");
    assert!(
        stderr.contains("hello.toml") && stderr.contains("route `nope`"),
        "{stderr}"
    );
}
