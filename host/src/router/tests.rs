use super::*;

fn route(pattern: &str, plugin: &str, strip_prefix: bool) -> Route {
    Route {
        pattern: Pattern::parse(pattern).unwrap(),
        plugin: plugin.to_owned(),
        strip_prefix,
    }
}

#[test]
fn most_specific_route_wins() {
    let (table, clashes) = RouteTable::build([
        route("/*", "catchall", false),
        route("/api/*", "api", true),
        route("/api/likes", "likes", false),
        route("example.com/api/*", "example", false),
    ]);
    assert!(clashes.is_empty());
    let hit = |host, path| table.lookup(host, path).map(|m| m.plugin.to_owned());
    assert_eq!(hit(None, "/api/likes").as_deref(), Some("likes"));
    assert_eq!(hit(None, "/api/likes/1").as_deref(), Some("api"));
    assert_eq!(hit(None, "/api").as_deref(), Some("api"));
    assert_eq!(hit(None, "/apix").as_deref(), Some("catchall"));
    assert_eq!(
        hit(Some("EXAMPLE.com"), "/api/x").as_deref(),
        Some("example")
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
fn clash_names_both_plugins() {
    let (_, clashes) = RouteTable::build([route("/x", "a", false), route("/x", "b", false)]);
    assert_eq!(clashes.len(), 1);
    assert_eq!(clashes[0].0.plugin, "b");
    assert_eq!(clashes[0].1, "a");
}

#[test]
fn bad_patterns_are_refused() {
    assert!(Pattern::parse("hello").is_err());
    assert!(Pattern::parse("/a/*/b").is_err());
    assert!(Pattern::parse("bad host/x").is_err());
}
