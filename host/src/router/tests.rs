use super::*;
use crate::config::RouteConfig;

fn route(pattern: &str, plugin: &str, strip_prefix: bool) -> Route {
    Route::plugin(Pattern::parse(pattern).unwrap(), plugin, strip_prefix)
}

fn hit(table: &RouteTable, host: Option<&str>, path: &str) -> Option<String> {
    table
        .lookup(host, path)
        .and_then(|m| m.route.plugin_name().map(str::to_owned))
}

#[test]
fn most_specific_route_wins() {
    let (table, clashes) = RouteTable::build([
        route("/*", "catchall", false),
        route("/api/*", "api", true),
        route("/api/likes", "likes", false),
        route("example.com/api/*", "example", false),
        route("*.example.com/api/*", "sub", false),
        route("*.eu.example.com/api/*", "eu", false),
    ]);
    assert!(clashes.is_empty());
    let hit = |host, path| hit(&table, host, path);
    assert_eq!(hit(None, "/api/likes").as_deref(), Some("likes"));
    assert_eq!(hit(None, "/api/likes/1").as_deref(), Some("api"));
    assert_eq!(hit(None, "/api").as_deref(), Some("api"));
    assert_eq!(hit(None, "/apix").as_deref(), Some("catchall"));
    assert_eq!(
        hit(Some("EXAMPLE.com"), "/api/x").as_deref(),
        Some("example")
    );
    assert_eq!(
        hit(Some("www.example.com"), "/api/x").as_deref(),
        Some("sub")
    );
    assert_eq!(
        hit(Some("a.b.example.com"), "/api/x").as_deref(),
        Some("sub")
    );
    assert_eq!(
        hit(Some("x.eu.example.com"), "/api/x").as_deref(),
        Some("eu")
    );
    assert_eq!(
        hit(Some("badexample.com"), "/api/x").as_deref(),
        Some("api")
    );
    assert_eq!(hit(Some("other.org"), "/api/x").as_deref(), Some("api"));
}

#[test]
fn prefix_is_stripped_for_default_mounts() {
    let (table, _) = RouteTable::build([route("/hello/*", "hello", true)]);
    let m = table.lookup(None, "/hello/echo").unwrap();
    assert_eq!(m.stripped, Some("/hello"));
    assert_eq!(strip("/hello/echo", m.stripped), "/echo");
    assert_eq!(strip("/hello", m.stripped), "/");
    assert!(table.lookup(None, "/helloworld").is_none());
}

#[test]
fn clash_names_both_owners() {
    let (_, clashes) = RouteTable::build([route("/x", "a", false), route("/x", "b", false)]);
    assert_eq!(clashes.len(), 1);
    assert_eq!(clashes[0].0.plugin_name(), Some("b"));
    assert_eq!(clashes[0].1, Owner::Plugin("a".into()));
}

#[test]
fn bad_patterns_are_refused() {
    assert!(Pattern::parse("hello").is_err());
    assert!(Pattern::parse("/a/*/b").is_err());
    assert!(Pattern::parse("bad host/x").is_err());
    assert!(Pattern::parse("*.*.com/x").is_err());
}

fn config(path: &str, plugin: &str) -> RouteConfig {
    RouteConfig {
        path: Some(path.into()),
        plugin: Some(plugin.into()),
        ..RouteConfig::default()
    }
}

#[test]
fn config_routes_clash_by_number() {
    let err = check_routes(&[
        config("/api/*", "a"),
        config("/b", "b"),
        config("/api/*", "c"),
    ])
    .unwrap_err();
    assert!(
        err.contains("[[route]] 3 (/api/*) clashes with [[route]] 1"),
        "{err}"
    );
    let err = build(&[config("/api/*", "a"), config("/api/*", "c")])
        .err()
        .unwrap();
    assert!(
        err.contains("[[route]] 2 (/api/*) clashes with [[route]] 1"),
        "{err}"
    );
}

#[test]
fn a_route_needs_exactly_one_action() {
    let none = RouteConfig::default();
    assert!(check_routes(&[none]).unwrap_err().contains("no action"));
    let two = RouteConfig {
        proxy: Some(vec!["http://127.0.0.1:1".into()]),
        ..config("/x", "a")
    };
    assert!(
        check_routes(&[two])
            .unwrap_err()
            .contains("more than one action")
    );
    let bad_status = RouteConfig {
        redirect: Some("https://x{uri}".into()),
        status: Some(200),
        ..RouteConfig::default()
    };
    assert!(
        check_routes(&[bad_status])
            .unwrap_err()
            .contains("not a redirect")
    );
}

#[test]
fn redirect_fills_placeholders() {
    let redirect = Redirect {
        target: "https://new.example.com/v2{path}?from={uri}".into(),
        status: http::StatusCode::MOVED_PERMANENTLY,
    };
    let uri: http::Uri = "/old/a?b=1".parse().unwrap();
    assert_eq!(
        redirect.location(&uri, "/a"),
        "https://new.example.com/v2/a?from=/old/a?b=1"
    );
}
