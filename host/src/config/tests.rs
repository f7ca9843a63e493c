use super::*;

#[test]
fn empty_file_gives_defaults() {
    let config = Config::parse("", Path::new("gatehouse.toml")).unwrap();
    assert_eq!(config.listeners[0].addr.to_string(), "127.0.0.1:8080");
    assert_eq!(config.admin.addr.to_string(), "127.0.0.1:9901");
    assert_eq!(config.server.plugins, PathBuf::from("plugins"));
}

#[test]
fn unknown_key_names_key_and_file() {
    let err = Config::parse("[server]\nplugin = \"x\"\n", Path::new("/etc/g.toml")).unwrap_err();
    let text = err.to_string();
    assert!(text.starts_with("/etc/g.toml:"), "{text}");
    assert!(text.contains("unknown field `plugin`"), "{text}");
}

#[test]
fn listen_flag_replaces_listeners() {
    let mut config = Config::default();
    config
        .apply(&Overrides {
            listen: vec!["127.0.0.1:1".into(), "[::1]:2".into()],
            ..Overrides::default()
        })
        .unwrap();
    assert_eq!(config.listeners.len(), 2);
    let err = config
        .apply(&Overrides {
            listen: vec!["localhost".into()],
            ..Overrides::default()
        })
        .unwrap_err();
    assert!(err.to_string().contains("--listen"), "{err}");
}

#[test]
fn sidecar_rejects_bad_limits_and_routes() {
    let file = Path::new("p.toml");
    assert!(Sidecar::parse("[limits]\ntimeout_ms = 0\n", file).is_err());
    let err = Sidecar::parse("[limits]\nkv_mb = 0\n", file).unwrap_err();
    assert!(
        err.to_string().contains("kv_mb must be between 1 and"),
        "{err}"
    );
    assert_eq!(
        Sidecar::parse("[limits]\nkv_mb = 2\n", file)
            .unwrap()
            .limits
            .kv_mb,
        2
    );
    let err = Sidecar::parse("[limits]\noutbound_concurrency = 0\n", file).unwrap_err();
    assert!(
        err.to_string()
            .contains("outbound_concurrency must be between 1 and"),
        "{err}"
    );
    assert!(Sidecar::parse("routes = [\"no-slash\"]\n", file).is_err());
    let ok = Sidecar::parse(
        "routes = [\"/a\", \"/b/*\", \"example.com/\"]\n[grants]\nenv=[\"X\"]\n",
        file,
    )
    .unwrap();
    assert_eq!(ok.grants.env, vec!["X".to_owned()]);
}

#[test]
fn limits_that_would_stop_every_request_are_refused_with_the_fix() {
    for (limits, says) in [
        ("header_timeout_ms = 0", "use at least 100"),
        ("idle_timeout_ms = 0", "use at least 100"),
        ("h2_max_concurrent_streams = 0", "use at least 1"),
        ("body_timeout_ms = 10", "use at least 1000"),
    ] {
        let text = format!("[limits]\n{limits}\n");
        let error = Config::parse(&text, Path::new("g.toml"))
            .unwrap_err()
            .to_string();
        let key = limits.split(' ').next().unwrap();
        assert!(error.contains(key) && error.contains(says), "{error}");
    }
    let text = "[limits]\nheader_timeout_ms = 100\nidle_timeout_ms = 100\n";
    assert!(Config::parse(text, Path::new("g.toml")).is_ok());
}

#[test]
fn an_hsts_value_browsers_would_ignore_is_refused_with_the_fix() {
    let listener = |hsts: &str| {
        format!(
            "[[listener]]\naddr = \"127.0.0.1:8443\"\ntls = {{ cert = \"a.pem\", key = \"a.key\" }}\nhsts = {hsts}\n"
        )
    };
    let file = Path::new("g.toml");
    for good in [
        "true",
        "false",
        "\"max-age=63072000; includeSubDomains; preload\"",
        "\"max-age=\\\"600\\\"\"",
    ] {
        Config::parse(&listener(good), file).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
    for (bad, why) in [
        ("\"includeSubDomains\"", "has no max-age"),
        ("\"max-age=a year\"", "not a number of seconds"),
        ("\"max-age=60\\n\"", "not a valid header value"),
        (
            "31536000",
            "true, false, or a Strict-Transport-Security value",
        ),
    ] {
        let text = Config::parse(&listener(bad), file).unwrap_err().to_string();
        assert!(text.contains(why), "{bad}: {text}");
    }
    let text = Config::parse(&listener("\"preload\""), file)
        .unwrap_err()
        .to_string();
    assert!(text.contains("max-age=SECONDS"), "{text}");
}

#[test]
fn relative_sqlite_paths_are_taken_from_the_config_folder() {
    let text = "[databases.a]\nurl = \"sqlite://data/a.db\"\n\
                [databases.b]\nurl = \"sqlite:b.db?mode=rwc\"\n\
                [databases.c]\nurl = \"sqlite:///srv/c.db\"\n\
                [databases.d]\nurl = \"sqlite:/srv/d.db\"\n\
                [databases.e]\nurl = \"sqlite::memory:\"\n\
                [databases.f]\nurl = \"postgres://app@db/app\"\n\
                [databases.g]\nurl = \"sqlite:file:/srv/g.db?mode=ro\"\n\
                [databases.h]\nurl = \"sqlite://file:h.db\"\n";
    let config = Config::parse(text, Path::new("gatehouse.toml")).unwrap();
    let url = |name: &str| config.databases[name].url_from(Path::new("/etc/gatehouse"));
    assert_eq!(url("a"), "sqlite:///etc/gatehouse/data/a.db");
    assert_eq!(url("b"), "sqlite:///etc/gatehouse/b.db?mode=rwc");
    assert_eq!(url("c"), "sqlite:///srv/c.db");
    assert_eq!(url("d"), "sqlite:/srv/d.db");
    assert_eq!(url("e"), "sqlite::memory:");
    assert_eq!(url("f"), "postgres://app@db/app");
    assert_eq!(url("g"), "sqlite:file:/srv/g.db?mode=ro");
    assert_eq!(url("h"), "sqlite://file:h.db");
}
