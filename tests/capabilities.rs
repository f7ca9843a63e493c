//! The capabilities a plugin reaches by grant: sql on SQLite and on the
//! machine's Postgres, kv, outbound HTTP, env and secrets, and plugin
//! migrations, through the `fixtures/capabilities` component.

use crate::harness::{Server, Site, client, component, config_with, get};
use crate::upstream::Upstream;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The machine's Postgres (trust auth), database `test`.
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A table name no other test (or test run) uses.
fn table(prefix: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Mounts the fixture as `name` with `sidecar`.
fn mount(site: &Site, name: &str, sidecar: &str) {
    site.put(&format!("{name}.toml"), sidecar);
    site.put(&format!("{name}.wasm"), component("fixtures/capabilities"));
}

/// Sends a request to the plugin and returns the status and JSON body
/// (`null` when the body is not JSON).
async fn call(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, server.url(path));
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn execute(
    server: &Server,
    plugin: &str,
    db: &str,
    sql: &str,
    params: Value,
) -> (u16, Value) {
    call(
        server,
        "POST",
        &format!("/{plugin}/sql/execute?db={db}"),
        Some(json!({"sql": sql, "params": params})),
    )
    .await
}

async fn query(server: &Server, plugin: &str, db: &str, sql: &str, params: Value) -> (u16, Value) {
    call(
        server,
        "POST",
        &format!("/{plugin}/sql/query?db={db}"),
        Some(json!({"sql": sql, "params": params})),
    )
    .await
}

/// Asserts a call failed with `bad-statement`.
fn bad_statement((status, body): (u16, Value)) {
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("bad-statement")),
        "{body}"
    );
}

/// A server whose plugin `app` is granted the SQLite database `own` (the
/// file `own.db` in its data folder), with `grants` lines besides.
async fn app_on_own_sqlite(grants: &str) -> (Site, Server) {
    let site = Site::new();
    mount(
        &site,
        "app",
        &format!("[grants]\n{grants}databases = [\"own\"]\n"),
    );
    let config = config_with(&format!(
        "[databases.own]\nurl = \"sqlite://{}\"\n",
        site.data().join("own.db").display()
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    (site, server)
}

/// A server whose plugin `app` is granted the Postgres database `pg`.
async fn app_on_postgres() -> (Site, Server) {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"pg\"]\n");
    let config = config_with(&format!("[databases.pg]\nurl = \"{POSTGRES}\"\n"));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    (site, server)
}

async fn ok(result: (u16, Value)) -> Value {
    assert_eq!(result.0, 200, "{}", result.1);
    result.1
}

/// Runs `sql` (no parameters) through `plugin` on `db`; it must succeed.
async fn run(server: &Server, plugin: &str, db: &str, sql: &str) -> Value {
    ok(execute(server, plugin, db, sql, json!([])).await).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_values_round_trip_with_numbered_placeholders() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"main\"]\n");
    let server = site.serve(&[], &[]);
    server.wait_serving("app").await;

    ok(execute(
        &server,
        "app",
        "main",
        "CREATE TABLE kinds (i INTEGER, r REAL, t TEXT, b BLOB, n TEXT)",
        json!([]),
    )
    .await)
    .await;
    // $2 before $1: the numbers, not the order of appearance, pick the value.
    let inserted = ok(execute(
        &server,
        "app",
        "main",
        "INSERT INTO kinds (t, i, r, b, n) VALUES ($2, $1, $3, $4, $5)",
        json!([
            {"integer": -9007199254740993i64},
            {"text": "héllo 'quoted'"},
            {"real": 1.5},
            {"blob": [0, 255, 7]},
            null
        ]),
    )
    .await)
    .await;
    assert_eq!(inserted, json!({"affected": 1}));

    let rows = ok(query(
        &server,
        "app",
        "main",
        "SELECT i, r, t, b, n FROM kinds",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(rows["columns"], json!(["i", "r", "t", "b", "n"]));
    assert_eq!(
        rows["rows"],
        json!([[
            {"integer": -9007199254740993i64},
            {"real": 1.5},
            {"text": "héllo 'quoted'"},
            {"blob": [0, 255, 7]},
            null
        ]])
    );
    // No rows still names the columns.
    let none = ok(query(
        &server,
        "app",
        "main",
        "SELECT t, i FROM kinds WHERE i = $1",
        json!([{"integer": 0}]),
    )
    .await)
    .await;
    assert_eq!(none, json!({"columns": ["t", "i"], "rows": []}));
    // The embedded database is a file in the data folder.
    assert!(site.data().join("main.db").is_file());
}

/// The admin API's count of SQLite reads that ran in place, and of those
/// handed to the pool, for database `db`.
async fn reads(server: &Server, db: &str) -> (u64, u64) {
    let stats = server.admin_json("/stats").await;
    let counts = &stats["databases"][db];
    (
        counts["reads_in_place"].as_u64().unwrap(),
        counts["reads_handed_to_pool"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_reads_run_in_place_and_see_what_the_pool_wrote() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"main\"]\n");
    let server = site.serve(&[], &[]);
    server.wait_serving("app").await;
    let count = async || {
        let rows = ok(query(
            &server,
            "app",
            "main",
            "SELECT count(*) AS n FROM t",
            json!([]),
        )
        .await)
        .await;
        rows["rows"][0][0]["integer"].as_i64().unwrap()
    };
    ok(execute(
        &server,
        "app",
        "main",
        "CREATE TABLE t (x INTEGER)",
        json!([]),
    )
    .await)
    .await;

    // Each read in place sees the write the pool committed just before it.
    for n in 1..=20 {
        ok(execute(
            &server,
            "app",
            "main",
            "INSERT INTO t VALUES ($1)",
            json!([{"integer": n}]),
        )
        .await)
        .await;
        assert_eq!(count().await, n);
    }
    // A read preempted past its 1 ms budget (on a busy machine) is
    // run by the pool instead, and sees the same.
    let (in_place, _) = reads(&server, "main").await;
    assert!(in_place >= 18, "{in_place} reads ran in place");

    // Placeholders bind by number, as on the pool.
    let rows = ok(query(
        &server,
        "app",
        "main",
        "SELECT $2 || '-' || $1, $1 + 1",
        json!([{"integer": 1}, {"text": "two"}]),
    )
    .await)
    .await;
    assert_eq!(rows["rows"], json!([[{"text": "two-1"}, {"integer": 2}]]));

    // A read that is more than one statement, or a WITH that writes, goes to
    // the pool and runs whole.
    let before = reads(&server, "main").await;
    ok(query(
        &server,
        "app",
        "main",
        "SELECT 1; DELETE FROM t WHERE x > 10",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(count().await, 10);
    ok(query(
        &server,
        "app",
        "main",
        "WITH doomed AS (SELECT 5) DELETE FROM t WHERE x > (SELECT * FROM doomed) RETURNING x",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(count().await, 5);
    let after = reads(&server, "main").await;
    assert_eq!(after.1 - before.1, 2, "{before:?} then {after:?}");

    // A table that changes shape is read as it is now, not as cached.
    ok(execute(
        &server,
        "app",
        "main",
        "ALTER TABLE t ADD COLUMN y TEXT DEFAULT 'y'",
        json!([]),
    )
    .await)
    .await;
    let rows = ok(query(
        &server,
        "app",
        "main",
        "SELECT * FROM t WHERE x = 1",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        rows,
        json!({"columns": ["x", "y"], "rows": [[{"integer": 1}, {"text": "y"}]]})
    );

    // A PRAGMA behind a comment that only Postgres would nest changes
    // nothing for later calls, in place or on the pool.
    for pragma in ["short_column_names = 0", "full_column_names = 1"] {
        let hidden = format!("/* /* */ PRAGMA {pragma} -- */ SELECT\n");
        ok(query(&server, "app", "main", &hidden, json!([])).await).await;
    }
    // LIKE runs in place too: SQLite's own, which may take long in one
    // step, is replaced by one the budget stops.
    let before = reads(&server, "main").await;
    for _ in 0..12 {
        let rows = ok(query(
            &server,
            "app",
            "main",
            "SELECT x, 'a' LIKE 'A' AS same FROM t WHERE x = 1",
            json!([]),
        )
        .await)
        .await;
        assert_eq!(
            rows,
            json!({"columns": ["x", "same"], "rows": [[{"integer": 1}, {"integer": 1}]]})
        );
        let rows = ok(query(
            &server,
            "app",
            "main",
            "SELECT x FROM t WHERE x = 1",
            json!([]),
        )
        .await)
        .await;
        assert_eq!(rows["columns"], json!(["x"]));
    }
    let after = reads(&server, "main").await;
    // A read preempted past its budget is run by the pool instead.
    let (in_place, pooled) = (after.0 - before.0, after.1 - before.1);
    assert_eq!(in_place + pooled, 24, "{before:?} then {after:?}");
    assert!(in_place >= 20, "{before:?} then {after:?}");
    // What the pool refuses is refused in place too; `$0` names no
    // parameter, and nothing breaks for the next call.
    bad_statement(query(&server, "app", "main", "SELECT 1;\u{2003};", json!([])).await);
    bad_statement(query(&server, "app", "main", "SELECT $0", json!([{"integer": 1}])).await);
    assert_eq!(count().await, 5);

    // A value too big to build in place is built by the pool.
    let before = reads(&server, "main").await;
    let rows = ok(query(
        &server,
        "app",
        "main",
        "SELECT hex(zeroblob(600000)) AS h",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        rows["rows"][0][0]["text"].as_str().unwrap().len(),
        1_200_000
    );
    let after = reads(&server, "main").await;
    assert_eq!(after.1 - before.1, 1, "{before:?} then {after:?}");

    // A read longer than the budget in place is finished by the pool, with
    // the same answer, the first time and after.
    let long = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 2000000) \
                SELECT sum(i) FROM r";
    for _ in 0..2 {
        let before = reads(&server, "main").await;
        let rows = ok(query(&server, "app", "main", long, json!([])).await).await;
        assert_eq!(rows["rows"], json!([[{"integer": 2_000_001_000_000_i64}]]));
        let after = reads(&server, "main").await;
        assert_eq!(after.1 - before.1, 1, "{before:?} then {after:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_values_map_to_the_nearest_value() {
    let (_site, server) = app_on_postgres().await;

    let t = table("kinds");
    ok(execute(
        &server,
        "app",
        "pg",
        &format!(
            "CREATE TABLE {t} (flag BOOL, small INT2, num INT4, big INT8, f FLOAT8, price NUMERIC(12,3), \
             name TEXT, code VARCHAR(8), data BYTEA, id UUID, doc JSONB, at TIMESTAMPTZ, local TIMESTAMP, \
             day DATE, ints INT4[], tags TEXT[], missing TEXT)"
        ),
        json!([]),
    )
    .await)
    .await;
    // Text arrives typed by the column it goes to, as with an untyped literal.
    ok(execute(
        &server,
        "app",
        "pg",
        &format!(
            "INSERT INTO {t} (flag, small, num, big, f, price, name, code, data, id, doc, at, local, day, ints, tags, missing) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, ARRAY[1, 2, 3], ARRAY['a', 'b'], $15)"
        ),
        json!([
            {"integer": 1},
            {"integer": -32768},
            {"integer": 2147483647},
            {"integer": 9007199254740993i64},
            {"real": 0.25},
            {"text": "12345.678"},
            {"text": "zoë"},
            {"integer": 42},
            {"blob": [1, 2, 3]},
            {"text": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
            {"text": "{\"likes\": 3}"},
            {"text": "2026-11-22T10:30:00+01:00"},
            {"text": "2026-11-22T10:30:00"},
            {"text": "2026-11-22"},
            null
        ]),
    )
    .await)
    .await;
    let rows = ok(query(
        &server,
        "app",
        "pg",
        &format!("SELECT * FROM {t} WHERE big = $1 AND flag = $2"),
        json!([{"integer": 9007199254740993i64}, {"integer": 1}]),
    )
    .await)
    .await;
    assert_eq!(
        rows["rows"][0],
        json!([
            {"integer": 1},
            {"integer": -32768},
            {"integer": 2147483647},
            {"integer": 9007199254740993i64},
            {"real": 0.25},
            {"text": "12345.678"},
            {"text": "zoë"},
            {"text": "42"},
            {"blob": [1, 2, 3]},
            {"text": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"},
            {"text": "{\"likes\": 3}"},
            {"text": "2026-11-22T09:30:00Z"},
            {"text": "2026-11-22T10:30:00"},
            {"text": "2026-11-22"},
            {"text": "[1,2,3]"},
            {"text": "[\"a\",\"b\"]"},
            null
        ])
    );

    // No rows still names the columns.
    let none = ok(query(
        &server,
        "app",
        "pg",
        &format!("SELECT big, flag FROM {t} WHERE big = $1"),
        json!([{"integer": -1}]),
    )
    .await)
    .await;
    assert_eq!(none, json!({"columns": ["big", "flag"], "rows": []}));

    // JSON passes as text both ways, as Postgres holds it: no digit of a
    // number is lost, and `json` keeps its key order, spacing and repeated
    // keys (`jsonb` keeps the last and orders them its own way).
    let doc =
        r#"{"zeta": 1, "alpha": 12345678901234567890.123456789012345678901234567890,  "zeta": 2}"#;
    let docs = ok(query(
        &server,
        "app",
        "pg",
        "SELECT $1::json, $2::jsonb, $3::jsonb",
        json!([{"text": doc}, {"text": doc}, {"integer": 9007199254740993i64}]),
    )
    .await)
    .await;
    assert_eq!(
        docs["rows"][0],
        json!([
            {"text": doc},
            {"text": r#"{"zeta": 2, "alpha": 12345678901234567890.123456789012345678901234567890}"#},
            {"text": "9007199254740993"}
        ])
    );
    let (status, body) = query(
        &server,
        "app",
        "pg",
        "SELECT $1::jsonb",
        json!([{"text": "{likes: 3}"}]),
    )
    .await;
    bad_statement((status, body.clone()));
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("parameter $1 is not valid JSON for JSONB")
            && message.contains("column 2"),
        "{body}"
    );

    // A numeric arrives as Postgres writes it, at any length and scale.
    let numbers = ok(query(
        &server,
        "app",
        "pg",
        "SELECT 12345678901234567890123456789012345678.0123456789::numeric, \
         '-0.0010'::numeric, 'NaN'::numeric, 0::numeric(5,2), 100000000::numeric, \
         '-Infinity'::numeric, 1e-40::numeric",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        numbers["rows"][0],
        json!([
            {"text": "12345678901234567890123456789012345678.0123456789"},
            {"text": "-0.0010"},
            {"text": "NaN"},
            {"text": "0.00"},
            {"text": "100000000"},
            {"text": "-Infinity"},
            {"text": "0.0000000000000000000000000000000000000001"}
        ])
    );

    // A numeric parameter arrives exactly as Postgres's own parser reads the
    // same text, whatever its length, scale or notation.
    let long = format!("-{}.{}", "9".repeat(300), "1".repeat(200));
    for number in [
        json!({"text": long}),
        json!({"text": "1.50"}),
        json!({"text": "-0.000"}),
        json!({"text": "1.5e-30"}),
        json!({"text": "12E5"}),
        json!({"text": " nan "}),
        json!({"text": "Infinity"}),
        json!({"text": format!("1e{}", 131_071)}),
        json!({"integer": i64::MIN}),
        json!({"real": 0.1}),
        json!({"real": -2.5e-7}),
    ] {
        let text = match (&number["text"], &number["integer"], &number["real"]) {
            (Value::String(text), _, _) => text.clone(),
            (_, Value::Number(i), _) | (_, _, Value::Number(i)) => i.to_string(),
            _ => unreachable!(),
        };
        let rows = ok(query(
            &server,
            "app",
            "pg",
            "SELECT $1::numeric::text, $2::text::numeric::text",
            json!([number, {"text": text}]),
        )
        .await)
        .await;
        assert_eq!(rows["rows"][0][0], rows["rows"][0][1], "{number}");
    }
    let (status, body) = query(
        &server,
        "app",
        "pg",
        "SELECT $1::numeric",
        json!([{"text": "1.2.3"}]),
    )
    .await;
    assert!(
        body["message"].as_str().unwrap().contains("`1.2.3`"),
        "{body}"
    );
    bad_statement((status, body));

    // A value that does not fit its placeholder says which and how to fix it.
    let (status, body) = execute(
        &server,
        "app",
        "pg",
        &format!("INSERT INTO {t} (id) VALUES ($1)"),
        json!([{"text": "not-a-uuid"}]),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "bad-statement");
    assert!(body["message"].as_str().unwrap().contains("$1"), "{body}");

    // Infinite times and dates arrive as Postgres writes them; `char(n)`
    // takes text.
    let rows = ok(query(
        &server,
        "app",
        "pg",
        "SELECT 'infinity'::timestamptz AS a, '-infinity'::timestamp AS b, \
         'infinity'::date AS c, '-infinity'::date AS d, $1::char(3) AS e, \
         ARRAY[1, NULL]::int4[] AS f, ARRAY['x', NULL] AS g",
        json!([{"text": "abc"}]),
    )
    .await)
    .await;
    assert_eq!(
        rows["rows"][0],
        json!([
            {"text": "infinity"},
            {"text": "-infinity"},
            {"text": "infinity"},
            {"text": "-infinity"},
            {"text": "abc"},
            {"text": "[1,null]"},
            {"text": "[\"x\",null]"}
        ])
    );
    // And go back in as they came out.
    let infinite = json!([
        {"text": "infinity"},
        {"text": "-infinity"},
        {"text": "-infinity"},
        {"text": "infinity"}
    ]);
    let rows = ok(query(
        &server,
        "app",
        "pg",
        "SELECT $1::timestamptz AS a, $2::timestamptz AS b, $3::timestamp AS c, $4::date AS d",
        infinite.clone(),
    )
    .await)
    .await;
    assert_eq!(rows["rows"][0], infinite);

    ok(execute(&server, "app", "pg", &format!("DROP TABLE {t}"), json!([])).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_statement_takes_at_most_2048_parameters() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"main\"]\n");
    let server = site.serve(&[], &[]);
    server.wait_serving("app").await;
    let statement = |n: usize, numbered: bool| {
        let list: Vec<String> = (1..=n)
            .map(|i| {
                if numbered {
                    format!("${i}")
                } else {
                    "?".to_owned()
                }
            })
            .collect();
        format!(
            "SELECT count(*) AS n FROM (SELECT 1 AS one) WHERE one IN ({})",
            list.join(",")
        )
    };
    let params = |n: usize| Value::from((1..=n).map(|i| json!({"integer": i})).collect::<Vec<_>>());
    let rows = ok(query(&server, "app", "main", &statement(2048, true), params(2048)).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 1}]]));
    // More is refused before SQLite parses it (its lookups of numbered
    // parameters grow with the square of their number), or by SQLite's
    // limit for other placeholders, in a read in place and on the pool.
    // Each placeholder is looked up among those before it: repeats count.
    let all = statement(2048, true);
    let repeated = format!("{}{})", &all[..all.len() - 1], ",$2048".repeat(10_000));
    for (sql, params) in [
        (repeated, params(2048)),
        (statement(2049, true), params(2049)),
        (statement(2049, false), params(2049)),
        (statement(2049, false), json!([])),
    ] {
        for (status, body) in [
            query(&server, "app", "main", &sql, params.clone()).await,
            execute(&server, "app", "main", &sql, params.clone()).await,
        ] {
            bad_statement((status, body.clone()));
            let message = body["message"].as_str().unwrap();
            assert!(
                message.contains("at most 2048") || message.contains("too many SQL variables"),
                "{message}"
            );
        }
    }
}

/// Runs the batch, constraint and bad-statement checks on database `db`.
async fn batches_are_all_or_nothing(server: &Server, db: &str) {
    let t = table("accounts");
    ok(execute(
        server,
        "app",
        db,
        &format!("CREATE TABLE {t} (id INTEGER PRIMARY KEY, owner TEXT NOT NULL UNIQUE)"),
        json!([]),
    )
    .await)
    .await;
    let insert = format!("INSERT INTO {t} (id, owner) VALUES ($1, $2)");
    let (status, body) = call(
        server,
        "POST",
        &format!("/app/sql/batch?db={db}"),
        Some(json!({"statements": [
            {"sql": insert, "params": [{"integer": 1}, {"text": "ada"}]},
            {"sql": insert, "params": [{"integer": 2}, {"text": "bob"}]},
        ]})),
    )
    .await;
    assert_eq!((status, body), (200, json!({"affected": [1, 1]})));

    // The second statement breaks the unique constraint: the first is undone.
    let (status, body) = call(
        server,
        "POST",
        &format!("/app/sql/batch?db={db}"),
        Some(json!({"statements": [
            {"sql": insert, "params": [{"integer": 3}, {"text": "cy"}]},
            {"sql": insert, "params": [{"integer": 4}, {"text": "ada"}]},
        ]})),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "constraint");
    let rows = ok(query(
        server,
        "app",
        db,
        &format!("SELECT id FROM {t} ORDER BY id"),
        json!([]),
    )
    .await)
    .await;
    assert_eq!(rows["rows"], json!([[{"integer": 1}], [{"integer": 2}]]));

    let (status, body) = execute(server, "app", db, &insert, json!([{"integer": 9}, null])).await;
    assert_eq!(
        (status, &body["error"]),
        (409, &json!("constraint")),
        "{body}"
    );
    let (status, body) = query(server, "app", db, "SELEC nothing", json!([])).await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("bad-statement")),
        "{body}"
    );
    let (status, body) = query(
        server,
        "app",
        db,
        "SELECT * FROM no_such_table_here",
        json!([]),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (400, &json!("bad-statement")),
        "{body}"
    );
    // A parameter too few or too many is a mistake said so, on both
    // databases (SQLite itself would bind a missing one as NULL).
    for params in [
        json!([{"integer": 9}]),
        json!([{"integer": 9}, {"integer": 1}, null]),
    ] {
        let (status, body) = execute(server, "app", db, &insert, params).await;
        assert_eq!(
            (status, &body["error"]),
            (400, &json!("bad-statement")),
            "{db}: {body}"
        );
        assert!(
            body["message"].as_str().unwrap().contains("placeholder"),
            "{body}"
        );
    }

    ok(execute(server, "app", db, &format!("DROP TABLE {t}"), json!([])).await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_constraints_and_bad_statements_on_sqlite_and_postgres() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"main\", \"pg\"]\n");
    let config = config_with(&format!("[databases.pg]\nurl = \"{POSTGRES}\"\n"));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    batches_are_all_or_nothing(&server, "main").await;
    batches_are_all_or_nothing(&server, "pg").await;

    // Every kind of constraint is `constraint`, and every mistake in a
    // statement `bad-statement`, not only the kinds sqlx names.
    let (strict, booked) = (table("strict"), table("booked"));
    for (db, sql) in [
        ("main", format!("CREATE TABLE {strict} (n INTEGER) STRICT")),
        (
            "pg",
            format!(
                "CREATE TABLE {booked} (during INT4RANGE, EXCLUDE USING gist (during WITH &&))"
            ),
        ),
    ] {
        run(&server, "app", db, &sql).await;
    }
    let insert = format!("INSERT INTO {booked} VALUES ($1)");
    ok(execute(&server, "app", "pg", &insert, json!([{"text": "[1,5)"}])).await).await;
    for (db, sql, params, kind) in [
        // SQLITE_CONSTRAINT_DATATYPE
        (
            "main",
            format!("INSERT INTO {strict} VALUES ($1)"),
            json!([{"text": "one"}]),
            "constraint",
        ),
        // SQLITE_ERROR_MISSING_COLLSEQ
        (
            "main",
            "SELECT 'a' = 'b' COLLATE no_such_collation".to_owned(),
            json!([]),
            "bad-statement",
        ),
        // 23P01, exclusion_violation
        (
            "pg",
            insert.clone(),
            json!([{"text": "[3,8)"}]),
            "constraint",
        ),
    ] {
        let (_, body) = execute(&server, "app", db, &sql, params).await;
        assert_eq!(body["error"], kind, "{db}: {sql}: {body}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn calls_without_a_grant_return_not_granted() {
    let site = Site::new();
    mount(&site, "bare", "");
    mount(
        &site,
        "some",
        "[grants]\ndatabases = [\"main\", \"ghost\"]\n",
    );
    let server = site.serve(&[], &[]);
    server.wait_serving("bare").await;
    server.wait_serving("some").await;

    let (status, body) = query(&server, "bare", "main", "SELECT 1", json!([])).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "not-granted");
    assert!(
        body["message"].as_str().unwrap().contains("`main`"),
        "{body}"
    );
    let (status, body) = call(&server, "GET", "/bare/kv/x", None).await;
    assert_eq!(
        (status, &body["error"]),
        (403, &json!("not-granted")),
        "{body}"
    );

    // Granted but not configured: said so, with the table to add.
    let (status, body) = query(&server, "some", "ghost", "SELECT 1", json!([])).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("[databases.ghost]"),
        "{body}"
    );
    // Only the granted database is reachable.
    let (status, _) = query(&server, "some", "other", "SELECT 1", json!([])).await;
    assert_eq!(status, 403);
    let rows = ok(query(&server, "some", "main", "SELECT 1 AS one", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 1}]]));
}

/// A TCP forwarder in front of Postgres that can be taken down and up.
struct Forwarder {
    addr: SocketAddr,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Forwarder {
    async fn start(addr: SocketAddr) -> Forwarder {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let spawned = tasks.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect("127.0.0.1:5432").await
                    {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                spawned.lock().unwrap().push(task.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Forwarder { addr, tasks }
    }

    /// Closes the listener and every forwarded connection.
    fn down(&self) {
        for task in self.tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

/// A plugin `app` granted database `pg`, which is Postgres reached through
/// a forwarder (with `options` in its table), once it answered a first
/// query.
async fn serve_through_forwarder(options: &str) -> (Forwarder, Site, Server) {
    let forwarder = Forwarder::start("127.0.0.1:0".parse().unwrap()).await;
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"pg\"]\n");
    let config = config_with(&format!(
        "[databases.pg]\nurl = \"postgres://postgres@{}/test\"\n{options}\n",
        forwarder.addr
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    let rows = ok(query(&server, "app", "pg", "SELECT 41 + 1 AS answer", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 42}]]));
    (forwarder, site, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_that_goes_down_gives_unavailable_quickly_and_comes_back() {
    let (forwarder, _site, server) = serve_through_forwarder("acquire_timeout_ms = 1000").await;
    let select = || query(&server, "app", "pg", "SELECT 41 + 1 AS answer", json!([]));

    forwarder.down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    for _ in 0..3 {
        let started = Instant::now();
        let (status, body) = select().await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "unavailable");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "took {:?}",
            started.elapsed()
        );
    }

    let _back = Forwarder::start(forwarder.addr).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = select().await;
        if status == 200 {
            assert_eq!(body["rows"], json!([[{"integer": 42}]]));
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_connection_broken_while_idle_is_replaced_before_a_call_uses_it() {
    let (forwarder, _site, server) = serve_through_forwarder("max_connections = 1").await;
    let select = || query(&server, "app", "pg", "SELECT 41 + 1 AS answer", json!([]));

    // The server restarts while the pooled connection sits idle: the pool
    // finds it dead before handing it out, and the call gets a new one.
    forwarder.down();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _back = Forwarder::start(forwarder.addr).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(ok(select().await).await["rows"], json!([[{"integer": 42}]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_namespaces_ttl_limits_and_listing() {
    let site = Site::new();
    mount(&site, "alpha", "[grants]\nkv = true\n");
    mount(&site, "beta", "[grants]\nkv = true\n");
    mount(
        &site,
        "gamma",
        "[grants]\nkv = true\ndatabases = [\"main\"]\n",
    );
    // Bodies up to 4 MiB reach the plugin, so the kv limit is the one hit.
    let server = site.serve_config(&config_with("[limits]\nmax_body_bytes = 4194304\n"), &[]);
    server.wait_serving("alpha").await;
    server.wait_serving("beta").await;
    server.wait_serving("gamma").await;
    let http = client();

    for key in ["user:1", "user:2", "post:1"] {
        let response = http
            .put(server.url(&format!("/alpha/kv/{key}")))
            .body(format!("value of {key}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
    }
    let response = http
        .get(server.url("/alpha/kv/user:1"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "value of user:1");

    // beta has a namespace of its own.
    assert_eq!(call(&server, "GET", "/beta/kv/user:1", None).await.0, 404);
    // Both reads ran in place on the host's SQLite file.
    let kv = &server.admin_json("/stats").await["kv"];
    assert_eq!(kv["reads_in_place"], 2, "{kv}");
    // Nor can it reach the store through sql: kv lives apart from `main`,
    // and a granted SQLite database cannot ATTACH another file.
    bad_statement(
        query(
            &server,
            "gamma",
            "main",
            "SELECT * FROM gatehouse_kv",
            json!([]),
        )
        .await,
    );
    let host_db = site.data().join("gatehouse.db");
    assert!(host_db.is_file());
    let attach = format!("ATTACH DATABASE '{}' AS host", host_db.display());
    let (status, body) = execute(&server, "gamma", "main", &attach, json!([])).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("outside the granted database"),
        "{body}"
    );
    assert_eq!(
        call(&server, "GET", "/beta/kv?prefix=", None).await.1,
        json!([])
    );
    assert_eq!(
        call(&server, "GET", "/alpha/kv?prefix=user:", None).await.1,
        json!(["user:1", "user:2"])
    );
    assert_eq!(
        call(&server, "GET", "/alpha/kv?prefix=&limit=1", None)
            .await
            .1,
        json!(["post:1"])
    );
    assert_eq!(
        call(&server, "DELETE", "/alpha/kv/post:1", None).await.1,
        json!({"deleted": true})
    );
    assert_eq!(
        call(&server, "DELETE", "/alpha/kv/post:1", None).await.1,
        json!({"deleted": false})
    );

    // TTL: there, then gone.
    let response = http
        .put(server.url("/alpha/kv/session?ttl_ms=400"))
        .body("s3cr3t")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(call(&server, "GET", "/alpha/kv/session", None).await.0, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(call(&server, "GET", "/alpha/kv/session", None).await.0, 404);
    assert_eq!(
        call(&server, "GET", "/alpha/kv?prefix=sess", None).await.1,
        json!([])
    );

    // Limits, with the number in the message.
    let response = http
        .put(server.url("/alpha/kv/big"))
        .body(vec![b'x'; (1 << 20) + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "too-large");
    assert!(
        body["message"].as_str().unwrap().contains("1048576"),
        "{body}"
    );
    let long_key = "k".repeat(513);
    let (status, body) = call(&server, "GET", &format!("/alpha/kv/{long_key}"), None).await;
    assert_eq!(
        (status, &body["error"]),
        (413, &json!("too-large")),
        "{body}"
    );
}

/// PUTs `bytes` bytes at `key` of `plugin` (`?ttl_ms=` when given) and
/// returns the status and the JSON body.
async fn put_kv(server: &Server, plugin: &str, key: &str, bytes: usize, ttl: &str) -> (u16, Value) {
    let response = client()
        .put(server.url(&format!("/{plugin}/kv/{key}{ttl}")))
        .body(vec![b'v'; bytes])
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// `plugin` has `[limits] kv_mb = 1`; `other` has the default.
async fn kv_quota_holds(server: &Server, plugin: &str, other: &str) {
    const VALUE: usize = 300 << 10;
    for key in ["a", "b", "c"] {
        assert_eq!(put_kv(server, plugin, key, VALUE, "").await.0, 204);
    }
    let (status, body) = call(server, "POST", &format!("/{plugin}/kv/n/increment"), None).await;
    assert_eq!((status, body), (200, json!({"value": 1})));
    // Keys and values now hold 921605 bytes, and 4 entries 64 each; `f`
    // (and its 64) leaves 74 of 1 MiB free, less than a new counter takes.
    assert_eq!(put_kv(server, plugin, "f", 126_576, "").await.0, 204);
    // A value that would pass 1 MiB is refused with the numbers and the key
    // to raise, and nothing is stored.
    let (status, body) = put_kv(server, plugin, "d", VALUE, "").await;
    assert_eq!(
        (status, &body["error"]),
        (413, &json!("too-large")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("1048502") && message.contains("1048576") && message.contains("kv_mb"),
        "{message}"
    );
    assert_eq!(
        call(server, "GET", &format!("/{plugin}/kv/d"), None)
            .await
            .0,
        404
    );
    // So is a new counter; an existing one still counts.
    let (status, _) = call(server, "POST", &format!("/{plugin}/kv/p/increment"), None).await;
    assert_eq!(status, 413);
    let (status, body) = call(server, "POST", &format!("/{plugin}/kv/n/increment"), None).await;
    assert_eq!((status, body), (200, json!({"value": 2})));
    // Another plugin's namespace is its own.
    assert_eq!(put_kv(server, other, "d", VALUE, "").await.0, 204);
    // Rewriting a value at the same size, or smaller, goes through.
    assert_eq!(put_kv(server, plugin, "a", VALUE, "").await.0, 204);
    assert_eq!(put_kv(server, plugin, "a", 1, "").await.0, 204);
    // The room freed by shrinking `a` takes a short-lived value.
    assert_eq!(
        put_kv(server, plugin, "brief", VALUE, "?ttl_ms=300")
            .await
            .0,
        204
    );
    assert_eq!(put_kv(server, plugin, "d", VALUE, "").await.0, 413);
    // Once it expires, its bytes count no more.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(put_kv(server, plugin, "d", VALUE, "").await.0, 204);
    // Deleting frees room too.
    assert_eq!(put_kv(server, plugin, "e", VALUE, "").await.0, 413);
    assert_eq!(
        call(server, "DELETE", &format!("/{plugin}/kv/b"), None)
            .await
            .0,
        200
    );
    assert_eq!(put_kv(server, plugin, "e", VALUE, "").await.0, 204);
    let (_, keys) = call(server, "GET", &format!("/{plugin}/kv?prefix="), None).await;
    assert_eq!(keys, json!(["a", "c", "d", "e", "f", "n"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugins_kv_store_holds_no_more_than_its_kv_mb_on_sqlite_and_postgres() {
    let sidecar = "[limits]\nkv_mb = 1\n[grants]\nkv = true\n";
    let site = Site::new();
    mount(&site, "small", sidecar);
    mount(&site, "other", "[grants]\nkv = true\n");
    let server = site.serve_config(&config_with("[limits]\nmax_body_bytes = 4194304\n"), &[]);
    server.wait_serving("small").await;
    server.wait_serving("other").await;
    kv_quota_holds(&server, "small", "other").await;
    drop(server);

    // With Postgres as `main` (shared by every run: names of this run).
    let (small, other) = (table("small"), table("other"));
    let site = Site::new();
    mount(&site, &small, sidecar);
    mount(&site, &other, "[grants]\nkv = true\n");
    let config = config_with(&format!(
        "[limits]\nmax_body_bytes = 4194304\n[databases.main]\nurl = \"{POSTGRES}\"\n"
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving(&small).await;
    server.wait_serving(&other).await;
    kv_quota_holds(&server, &small, &other).await;
}

/// Fires `n` increments of 1 at once and checks none was lost.
async fn increments_lose_nothing(server: &Server, plugin: &str) {
    let key = table("counter");
    let n = 200;
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let url = server.url(&format!("/{plugin}/kv/{key}/increment?delta=1"));
            tokio::spawn(async move {
                let response = client().post(url).send().await.unwrap();
                assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
                let body: Value = response.json().await.unwrap();
                body["value"].as_i64().unwrap()
            })
        })
        .collect();
    let mut seen = Vec::new();
    for task in tasks {
        seen.push(task.await.unwrap());
    }
    seen.sort_unstable();
    // Every increment saw its own value: 1, 2, …, n.
    assert_eq!(seen, (1..=n).collect::<Vec<i64>>());
    let (_, body) = call(
        server,
        "POST",
        &format!("/{plugin}/kv/{key}/increment?delta=-5"),
        None,
    )
    .await;
    assert_eq!(body, json!({"value": n - 5}));
    // Past i64::MAX is an error that says so, and the value stays.
    let url = |delta: i64| format!("/{plugin}/kv/{key}/increment?delta={delta}");
    let (status, body) = call(server, "POST", &url(i64::MAX), None).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("overflow"),
        "{body}"
    );
    let (_, body) = call(server, "POST", &url(0), None).await;
    assert_eq!(body, json!({"value": n - 5}));

    // Only an integer as SQLite writes one counts as one, on both: the
    // value stays as it was.
    for text in ["007", " 5", "+5", "5 ", "-0", "5.0"] {
        let key = format!("{key}-odd");
        client()
            .put(server.url(&format!("/{plugin}/kv/{key}")))
            .body(text)
            .send()
            .await
            .unwrap();
        let (status, body) = call(
            server,
            "POST",
            &format!("/{plugin}/kv/{key}/increment"),
            None,
        )
        .await;
        assert_eq!(status, 500, "{text:?}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("not an integer"),
            "{text:?}: {body}"
        );
        let (status, kept) = get(&server.url(&format!("/{plugin}/kv/{key}"))).await;
        assert_eq!((status, kept.as_str()), (200, text));
    }
    // A key with a NUL in it is not written, alike (Postgres text cannot
    // hold it); reading or deleting one finds nothing.
    for request in [
        client()
            .put(server.url(&format!("/{plugin}/kv/a%00b")))
            .body("1"),
        client().post(server.url(&format!("/{plugin}/kv/a%00b/increment"))),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 500);
        let body = response.text().await.unwrap();
        assert!(body.contains("NUL character"), "{body}");
    }
    assert_eq!(
        get(&server.url(&format!("/{plugin}/kv/a%00b"))).await.0,
        404
    );
    let (status, keys) = get(&server.url(&format!("/{plugin}/kv?prefix=a%00"))).await;
    assert_eq!((status, keys.as_str()), (200, "[]"));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_increments_lose_no_update_on_sqlite_and_postgres() {
    let site = Site::new();
    mount(&site, "counter", "[grants]\nkv = true\n");
    let server = site.serve(&[], &[]);
    server.wait_serving("counter").await;
    increments_lose_nothing(&server, "counter").await;
    // A text value cannot be incremented, and says so.
    client()
        .put(server.url("/counter/kv/word"))
        .body("hello")
        .send()
        .await
        .unwrap();
    let (status, body) = call(&server, "POST", "/counter/kv/word/increment", None).await;
    assert_eq!(status, 500, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("not an integer"),
        "{body}"
    );
    drop(server);

    // With Postgres as `main`, kv lives there.
    let site = Site::new();
    mount(&site, "counter", "[grants]\nkv = true\n");
    let config = config_with(&format!("[databases.main]\nurl = \"{POSTGRES}\"\n"));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("counter").await;
    increments_lose_nothing(&server, "counter").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_finishes_its_work_when_its_client_leaves_first() {
    use tokio::io::AsyncWriteExt;
    let site = Site::new();
    mount(&site, "app", "[grants]\nkv = true\n");
    let server = site.serve(&[], &[]);
    server.wait_serving("app").await;

    // The client sends its request and hangs up long before the answer.
    let mut stream = tokio::net::TcpStream::connect(&server.addr).await.unwrap();
    stream
        .write_all(
            b"PUT /app/kv/late?after_ms=500 HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\ndone",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);

    // The plugin still wrote what it was asked to.
    let start = Instant::now();
    loop {
        let response = client()
            .get(server.url("/app/kv/late"))
            .send()
            .await
            .unwrap();
        if response.status() == 200 {
            assert_eq!(response.text().await.unwrap(), "done");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the write never happened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_reaches_granted_origins_only() {
    let upstream = Upstream::start("api").await;
    let site = Site::new();
    mount(
        &site,
        "caller",
        &format!(
            "[grants]\noutbound = [\"http://{}\", \"http://*.invalid\", \"http://exact.invalid\"]\n",
            upstream.addr
        ),
    );
    mount(&site, "sealed", "");
    let server = site.serve(&[], &[]);
    server.wait_serving("caller").await;
    server.wait_serving("sealed").await;

    let allowed = format!("http://{}/headers", upstream.addr);
    let (status, body) = fetch(&server, "caller", &allowed, "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status"], 200);
    // Twice, on the pooled client.
    assert_eq!(fetch(&server, "caller", &allowed, "").await.0, 200);
    // User info in the URL is sent as basic auth, not in the Host header.
    let with_user = format!("http://someone:p%40ss@{}/headers", upstream.addr);
    let (status, body) = fetch(&server, "caller", &with_user, "").await;
    assert_eq!((status, &body["status"]), (200, &json!(200)), "{body}");
    let seen: Value = serde_json::from_str(body["body"].as_str().unwrap()).unwrap();
    assert_eq!(seen["headers"]["host"], upstream.addr.to_string(), "{seen}");
    // base64 of `someone:p@ss`
    assert_eq!(
        seen["headers"]["authorization"], "Basic c29tZW9uZTpwQHNz",
        "{seen}"
    );

    // Another port of the same host, the admin API, and a plugin with no
    // grant: denied with the wasi:http code for it.
    let admin = server.admin_url("/plugins");
    for (plugin, url) in [
        (
            "caller",
            format!("http://{}/", crate::upstream::dead_port()),
        ),
        ("caller", admin.clone()),
        ("caller", format!("https://{}/", upstream.addr)),
        ("sealed", allowed.clone()),
        (
            "caller",
            "http://someone:hunter2@denied.example.org/path?api_key=sekret".to_owned(),
        ),
    ] {
        let (status, body) = fetch(&server, plugin, &url, "").await;
        assert_eq!(status, 502, "{plugin} {url}: {body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("HttpRequestDenied"),
            "{plugin} {url}: {body}"
        );
    }
    // A granted name that does not resolve (`.invalid` never does) gets the
    // DNS error code, through a wildcard grant and an exact one.
    for url in ["http://nothing.invalid/", "http://exact.invalid/"] {
        let (status, body) = fetch(&server, "caller", url, "").await;
        assert_eq!(status, 502, "{url}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("DnsError"),
            "{url}: {body}"
        );
    }
    server.wait_log("denied.example.org", Duration::from_secs(5));
    // The log names the origin only: user info, paths and queries may carry
    // credentials.
    let log = server.log_text();
    assert!(!log.contains("hunter2") && !log.contains("sekret"), "{log}");
}

/// `GET /PLUGIN/fetch?url=URL&EXTRA` on the capabilities fixture.
async fn fetch(server: &Server, plugin: &str, url: &str, extra: &str) -> (u16, Value) {
    let url = percent_encoding::utf8_percent_encode(url, percent_encoding::NON_ALPHANUMERIC);
    call(
        server,
        "GET",
        &format!("/{plugin}/fetch?url={url}&{extra}"),
        None,
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_requests_in_flight_stay_within_the_plugins_concurrency() {
    let upstream = Upstream::start("api").await;
    let site = Site::new();
    let grant = format!("[grants]\noutbound = [\"http://{}\"]\n", upstream.addr);
    mount(
        &site,
        "caller",
        &format!("[limits]\noutbound_concurrency = 2\n{grant}"),
    );
    mount(&site, "other", &grant);
    let server = site.serve(&[], &[]);
    server.wait_serving("caller").await;
    server.wait_serving("other").await;
    let slow = format!("http://{}/slow?ms=400", upstream.addr);

    // Six requests, each with one call out: two at a time reach the
    // upstream, the rest wait for a slot and then go.
    let calls = (0..6).map(|_| fetch(&server, "caller", &slow, ""));
    for (status, body) in futures_util::future::join_all(calls).await {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], 200, "{body}");
    }
    assert_eq!(upstream.slow.peak(), 2);

    // A call that finds no slot within its connect timeout gets
    // `connection-limit-reached`; another plugin's calls are not held up.
    let busy = format!("http://{}/slow?ms=3000", upstream.addr);
    let holders =
        futures_util::future::join_all((0..2).map(|_| fetch(&server, "caller", &busy, "")));
    let late = async {
        let start = Instant::now();
        while upstream.slow.now() < 2 {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "the slots never filled"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let waited = fetch(&server, "caller", &slow, "connect_ms=300");
        let free = fetch(&server, "other", &slow, "connect_ms=300");
        tokio::join!(waited, free)
    };
    let (held, ((status, body), (other_status, other_body))) = tokio::join!(holders, late);
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("ConnectionLimitReached"),
        "{body}"
    );
    assert_eq!(other_status, 200, "{other_body}");
    server.wait_log("outbound_concurrency stayed full", Duration::from_secs(5));
    for (status, body) in held {
        assert_eq!(status, 200, "{body}");
    }
}

/// A listener on 127.0.0.1 whose accept queue is full: a further connection
/// to it is never answered (Linux drops its SYN), as to a host behind a
/// firewall that drops packets. Keep the returned streams alive with it.
async fn unanswered_port() -> (tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(0).unwrap();
    let addr = listener.local_addr().unwrap();
    // The first connection fills the queue; a dropped SYN is sent again
    // only after a second, so a probe unanswered for one is unanswered.
    let mut queued = vec![tokio::net::TcpStream::connect(addr).await.unwrap()];
    loop {
        let connect = tokio::net::TcpStream::connect(addr);
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(stream) => queued.push(stream.unwrap()),
            Err(_) => return (listener, queued),
        }
        assert!(queued.len() < 64, "the accept queue of {addr} never filled");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outbound_timeouts_are_the_plugins_connect_and_first_byte() {
    let upstream = Upstream::start("api").await;
    let (unanswered, _queued) = unanswered_port().await;
    let unanswered = unanswered.local_addr().unwrap();
    let site = Site::new();
    mount(
        &site,
        "caller",
        &format!(
            "[grants]\noutbound = [\"http://{}\", \"http://{unanswered}\"]\n",
            upstream.addr
        ),
    );
    let server = site.serve(&[], &[]);
    server.wait_serving("caller").await;
    let error = |body: &Value| body["error"].as_str().unwrap_or_default().to_owned();

    // A call that must fail with `code`, and well before the host's
    // defaults would have ended it.
    let fails_with = async |url: &str, extra: &str, code: &str| {
        let start = Instant::now();
        let (status, body) = fetch(&server, "caller", url, extra).await;
        assert_eq!(status, 502, "{body}");
        assert!(error(&body).contains(code), "{body}");
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{:?}",
            start.elapsed()
        );
    };

    // A connection that is never answered ends at the plugin's connect
    // timeout, not the host's default of 10 s.
    let unanswered = format!("http://{unanswered}/");
    fails_with(&unanswered, "connect_ms=300", "ConnectionTimeout").await;

    // The first-byte timeout runs from the connection: a head 1.5 s late
    // misses a 300 ms one, however long the connect timeout (before, the
    // two added up and this call got its answer).
    let late = format!("http://{}/slow?ms=1500", upstream.addr);
    let both = "connect_ms=5000&first_byte_ms=300";
    fails_with(&late, both, "ConnectionReadTimeout").await;

    // Again after a quick call has left a connection in the pool; and a head
    // in time arrives.
    let quick = format!("http://{}/slow?ms=0", upstream.addr);
    let (status, body) = fetch(&server, "caller", &quick, "").await;
    assert_eq!(status, 200, "{body}");
    fails_with(&late, "first_byte_ms=300", "ConnectionReadTimeout").await;
    let (status, body) = fetch(&server, "caller", &late, "first_byte_ms=5000").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["body"], "api slow", "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn env_grants_expose_named_variables_and_secrets_only() {
    let site = Site::new();
    std::fs::write(site.dir.path().join("token.txt"), "tok-from-file\r\n").unwrap();
    // Only the line ending of a file's last line is dropped.
    std::fs::write(site.dir.path().join("lines.txt"), "line 1\nline 2\n\n").unwrap();
    mount(
        &site,
        "app",
        "[grants]\nenv = [\"API_TOKEN\", \"LINES\", \"GH_VISIBLE\", \"STRIPE_KEY\"]\n",
    );
    let config = config_with(
        "[secrets]\nAPI_TOKEN = { file = \"token.txt\" }\nLINES = { file = \"lines.txt\" }\n\
         STRIPE_KEY = { env = \"GH_STRIPE_SOURCE\" }\n",
    );
    let server = site.serve_config(
        &config,
        &[
            ("GH_VISIBLE", "shown"),
            ("GH_HIDDEN", "never"),
            ("GH_STRIPE_SOURCE", "sk_test_1"),
        ],
    );
    server.wait_serving("app").await;
    let server = &server;
    let text = |path: &'static str| async move {
        let response = client().get(server.url(path)).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    assert_eq!(
        text("/app/env/API_TOKEN").await,
        (200, "tok-from-file".into())
    );
    assert_eq!(
        text("/app/env/LINES").await,
        (200, "line 1\nline 2\n".into())
    );
    assert_eq!(text("/app/env/GH_VISIBLE").await, (200, "shown".into()));
    assert_eq!(text("/app/env/STRIPE_KEY").await, (200, "sk_test_1".into()));
    assert_eq!(text("/app/env/GH_HIDDEN").await.0, 404);
    assert_eq!(text("/app/env/GH_STRIPE_SOURCE").await.0, 404);
    assert_eq!(text("/app/env/PATH").await.0, 404);
}

#[tokio::test]
async fn a_secret_that_cannot_be_read_stops_the_start_with_its_name() {
    let site = Site::new();
    let config = config_with("[secrets]\nDB_PASSWORD = { env = \"GH_NOT_SET_ANYWHERE\" }\n");
    let file = site.dir.path().join("gatehouse.toml");
    std::fs::write(&file, config).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&file)
        .env_remove("GH_NOT_SET_ANYWHERE")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DB_PASSWORD") && stderr.contains("GH_NOT_SET_ANYWHERE"),
        "{stderr}"
    );
    // Set, but not text: said so, not "not set".
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .args(["serve", "--config"])
        .arg(&file)
        .env(
            "GH_NOT_SET_ANYWHERE",
            <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"\xff\xfe"),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("DB_PASSWORD") && stderr.contains("not UTF-8"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_entry_on_the_hosts_own_file_or_with_a_bad_url_stops_the_start() {
    let site = Site::new();
    let start = |databases: String| {
        let file = site.dir.path().join("gatehouse.toml");
        std::fs::write(&file, config_with(&databases)).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gatehouse"))
            .args(["serve", "--config"])
            .arg(&file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > Duration::from_secs(20) {
                child.kill().unwrap();
                panic!("the server started with {databases}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let output = child.wait_with_output().unwrap();
        assert!(!output.status.success());
        String::from_utf8_lossy(&output.stderr).into_owned()
    };
    // The host's file keeps every plugin's kv store: under any name SQLite
    // opens it by (a `file:` URI, percent-encoded or with an authority), or
    // another link to it.
    let own = site.data().join("gatehouse.db");
    std::fs::create_dir_all(site.data()).unwrap();
    std::fs::write(&own, b"").unwrap();
    let alias = site.data().join("alias.db");
    std::fs::hard_link(&own, &alias).unwrap();
    let own = own.display().to_string();
    for url in [
        format!("sqlite://{own}"),
        format!("sqlite:file:{own}"),
        format!("sqlite:file:{own}?mode=rw"),
        format!(
            "sqlite:file://localhost{}",
            own.replace("gatehouse.db", "gate%68ouse.db")
        ),
        format!("sqlite://{}", alias.display()),
    ] {
        let stderr = start(format!("[databases.reports]\nurl = \"{url}\"\n"));
        assert!(
            stderr.contains("reports") && stderr.contains("host's own file"),
            "{url}: {stderr}"
        );
    }
    // A misspelt scheme is named without the password beside it.
    let stderr = start(
        "[databases.pg]\nurl = \"postgress://app:Hunter2Secret@db.internal/app\"\n".to_owned(),
    );
    assert!(
        stderr.contains("postgress://app:***@db.internal"),
        "{stderr}"
    );
    assert!(!stderr.contains("Hunter2Secret"), "{stderr}");
}

/// Writes `files` into the folder `<name>-migrations` beside the plugins
/// folder; returns the folder and a sidecar granting `database` that
/// applies them.
fn migrations_folder(
    site: &Site,
    name: &str,
    database: &str,
    files: &[(&str, &str)],
) -> (std::path::PathBuf, String) {
    let folder = site.dir.path().join(format!("{name}-migrations"));
    std::fs::create_dir(&folder).unwrap();
    for (file, sql) in files {
        std::fs::write(folder.join(file), sql).unwrap();
    }
    let sidecar = format!(
        "[grants]\ndatabases = [\"{database}\"]\n[migrations]\npath = \"../{name}-migrations\"\n"
    );
    (folder, sidecar)
}

const NOTES: (&str, &str) = (
    "0001_notes.sql",
    "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL);",
);

#[tokio::test(flavor = "multi_thread")]
async fn plugin_migrations_apply_once_per_plugin_and_a_failing_one_keeps_the_old_version() {
    let site = Site::new();
    let (migrations, sidecar) = migrations_folder(&site, "notes", "main", &[NOTES]);
    mount(&site, "notes", &sidecar);
    // A second plugin numbering its migrations from 1 too: its own history.
    let tags = (
        "0001_tags.sql",
        "CREATE TABLE tags (name TEXT PRIMARY KEY);",
    );
    let (_, tags_sidecar) = migrations_folder(&site, "tags", "main", &[tags]);
    mount(&site, "tags", &tags_sidecar);
    let server = site.serve(&[], &[]);
    let first = server.wait_serving("notes").await;
    server.wait_serving("tags").await;
    ok(execute(
        &server,
        "notes",
        "main",
        "INSERT INTO notes (body) VALUES ($1)",
        json!([{"text": "one"}]),
    )
    .await)
    .await;
    ok(query(&server, "tags", "main", "SELECT * FROM tags", json!([])).await).await;

    // A good migration and a broken one after it: the load fails, nothing
    // of either stays (a load's migrations apply in one transaction), and
    // the version that was serving keeps serving on the schema it knows.
    std::fs::write(
        migrations.join("0002_color.sql"),
        "ALTER TABLE notes ADD COLUMN color TEXT;",
    )
    .unwrap();
    std::fs::write(
        migrations.join("0003_broken.sql"),
        "ALTER TABLE notes RENAME COLUMN body TO text; CREATE TABLE oops (;",
    )
    .unwrap();
    site.put("notes.toml", format!("{sidecar}# touched\n"));
    let failed = server
        .wait_plugin("notes", Duration::from_secs(60), |s| {
            !s["last_error"].is_null()
        })
        .await;
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("0003_broken"), "{error}");
    assert_eq!(failed["state"], "serving");
    assert_eq!(failed["loaded_at"], first["loaded_at"]);
    bad_statement(
        query(
            &server,
            "notes",
            "main",
            "SELECT color FROM notes",
            json!([]),
        )
        .await,
    );
    ok(query(
        &server,
        "notes",
        "main",
        "SELECT body FROM notes",
        json!([]),
    )
    .await)
    .await;

    // Fixed: applied once, and the data of the first stays.
    std::fs::write(
        migrations.join("0003_broken.sql"),
        "CREATE INDEX notes_by_color ON notes (color);",
    )
    .unwrap();
    site.put("notes.toml", format!("{sidecar}# fixed\n"));
    server
        .wait_plugin("notes", Duration::from_secs(60), |s| {
            s["last_error"].is_null()
        })
        .await;
    let rows = ok(query(
        &server,
        "notes",
        "main",
        "SELECT body, color FROM notes",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(rows["rows"], json!([[{"text": "one"}, null]]));
    let history = ok(query(
        &server,
        "notes",
        "main",
        "SELECT plugin, version FROM gatehouse_plugin_migrations ORDER BY plugin, version",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        history["rows"],
        json!([
            [{"text": "notes"}, {"integer": 1}],
            [{"text": "notes"}, {"integer": 2}],
            [{"text": "notes"}, {"integer": 3}],
            [{"text": "tags"}, {"integer": 1}]
        ])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_that_begins_or_ends_its_own_transaction_fails_its_load_and_is_not_recorded() {
    let site = Site::new();
    // Postgres is shared between runs: a name of its own for the plugin
    // (its history) and its table.
    let pg_table = table("ended");
    let cases = [
        // Refused before anything runs.
        (
            "wrapped",
            "main",
            "BEGIN;\nCREATE TABLE wrapped (x INTEGER);\nCOMMIT;\n".to_owned(),
        ),
        // Found out after: what ran before the COMMIT stays.
        (
            "ended",
            "main",
            "CREATE TABLE ended_a (x INTEGER); COMMIT; CREATE TABLE ended_b (x INTEGER);"
                .to_owned(),
        ),
        (
            pg_table.as_str(),
            "pg",
            format!(
                "CREATE TABLE {pg_table} (x INTEGER); COMMIT; CREATE TABLE {pg_table}_b (x INTEGER);"
            ),
        ),
    ];
    for (plugin, database, sql) in &cases {
        let (_, sidecar) =
            migrations_folder(&site, plugin, database, &[("0001_first.sql", sql.as_str())]);
        mount(&site, plugin, &sidecar);
    }
    mount(
        &site,
        "reader",
        "[grants]\ndatabases = [\"main\", \"pg\"]\n",
    );
    let server = site.serve_config(
        &config_with(&format!("[databases.pg]\nurl = \"{POSTGRES}\"\n")),
        &[],
    );
    server.wait_serving("reader").await;
    for (plugin, database, _) in &cases {
        let failed = server
            .wait_plugin(plugin, Duration::from_secs(60), |s| {
                !s["last_error"].is_null()
            })
            .await;
        assert_eq!(failed["state"], "failed", "{failed}");
        let error = failed["last_error"].as_str().unwrap();
        let expected = if *plugin == "wrapped" {
            "0001_first opens a transaction of its own (BEGIN)"
        } else {
            "0001_first ends the transaction it runs in"
        };
        assert!(error.contains(expected), "{plugin}: {error}");
        let history = ok(query(
            &server,
            "reader",
            database,
            "SELECT count(*) AS n FROM gatehouse_plugin_migrations WHERE plugin = $1",
            json!([{"text": plugin}]),
        )
        .await)
        .await;
        assert_eq!(history["rows"], json!([[{"integer": 0}]]), "{plugin}");
    }
    // Not a database that is down: not tried again by itself.
    assert!(
        !server.log_text().contains("trying again"),
        "{}",
        server.log_text()
    );
    bad_statement(
        query(
            &server,
            "reader",
            "main",
            "SELECT * FROM wrapped",
            json!([]),
        )
        .await,
    );
    run(
        &server,
        "reader",
        "pg",
        &format!("DROP TABLE IF EXISTS {pg_table}, {pg_table}_b"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_reload_adds_databases_and_reads_secrets_again() {
    let site = Site::new();
    let token = site.dir.path().join("token.txt");
    std::fs::write(&token, "first").unwrap();
    mount(
        &site,
        "app",
        "[grants]\ndatabases = [\"extra\"]\nenv = [\"TOKEN\"]\n",
    );
    let secrets = "[secrets]\nTOKEN = { file = \"token.txt\" }\n";
    let server = site.serve_config(&config_with(secrets), &[]);
    server.wait_serving("app").await;
    let (status, body) = query(&server, "app", "extra", "SELECT 1", json!([])).await;
    assert_eq!(status, 403, "{body}");
    server.wait_log(
        "granted database `extra` is not configured",
        Duration::from_secs(5),
    );

    std::fs::write(&token, "second").unwrap();
    std::fs::write(
        site.dir.path().join("gatehouse.toml"),
        config_with(&format!(
            "{secrets}[databases.extra]\nurl = \"sqlite://extra.db\"\n"
        )),
    )
    .unwrap();
    server.wait_log("config reloaded", Duration::from_secs(10));
    let rows = ok(query(&server, "app", "extra", "SELECT 2 AS two", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 2}]]));
    // Relative to the config file's folder.
    assert!(site.dir.path().join("extra.db").is_file());
    let response = client()
        .get(server.url("/app/env/TOKEN"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.text().await.unwrap(), "second");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_reload_that_adds_or_replaces_a_database_applies_plugin_migrations_to_it() {
    let site = Site::new();
    let (_, sidecar) = migrations_folder(&site, "notes", "store", &[NOTES]);
    mount(&site, "notes", &sidecar);
    let config = site.dir.path().join("gatehouse.toml");
    let server = site.serve_config(&config_with(""), &[]);
    let failed = server
        .wait_plugin("notes", Duration::from_secs(60), |s| {
            !s["last_error"].is_null()
        })
        .await;
    assert_eq!(failed["state"], "failed");
    let error = failed["last_error"].as_str().unwrap();
    assert!(error.contains("[databases.store]"), "{error}");

    // The reload that adds the database loads the plugin: nothing in the
    // plugins folder changed.
    let store =
        |file: &str| config_with(&format!("[databases.store]\nurl = \"sqlite://{file}\"\n"));
    std::fs::write(&config, store("store-a.db")).unwrap();
    server
        .wait_plugin("notes", Duration::from_secs(30), |s| {
            s["state"] == "serving"
        })
        .await;
    let insert = "INSERT INTO notes (body) VALUES ('on a')";
    run(&server, "notes", "store", insert).await;

    // The same name on a new file: the plugin's tables are made there
    // before the reload takes effect, without touching the plugin.
    std::fs::write(&config, store("store-b.db")).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.log_text().matches("config reloaded").count() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            server.log_text()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    run(&server, "notes", "store", insert).await;
    let rows = ok(query(
        &server,
        "notes",
        "store",
        "SELECT body FROM notes",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(rows["rows"], json!([[{"text": "on a"}]]));
    assert!(site.dir.path().join("store-b.db").is_file());
    let status = server.plugin_status("notes").await.unwrap();
    assert!(status["last_error"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread")]
async fn kv_works_at_once_after_a_reload_moves_main_to_a_new_postgres_database() {
    let site = Site::new();
    mount(&site, "owner", "[grants]\ndatabases = [\"pg\"]\n");
    mount(&site, "counter", "[grants]\nkv = true\n");
    let database = table("gh_main");
    let pg = format!("[databases.pg]\nurl = \"{POSTGRES}\"\n");
    let config = site.dir.path().join("gatehouse.toml");
    let server = site.serve_config(&config_with(&pg), &[]);
    server.wait_serving("owner").await;
    server.wait_serving("counter").await;
    run(
        &server,
        "owner",
        "pg",
        &format!("CREATE DATABASE {database}"),
    )
    .await;
    let increment = || call(&server, "POST", "/counter/kv/n/increment", None);
    assert_eq!(increment().await, (200, json!({"value": 1})));

    // `main` (and with it the kv store) moves to a database with none of
    // the host's tables: they are made before the reload is said done.
    let url = POSTGRES.replace("/test", &format!("/{database}"));
    std::fs::write(
        &config,
        config_with(&format!("{pg}[databases.main]\nurl = \"{url}\"\n")),
    )
    .unwrap();
    server.wait_log("config reloaded", Duration::from_secs(10));
    assert_eq!(increment().await, (200, json!({"value": 1})));
    assert_eq!(increment().await, (200, json!({"value": 2})));

    // Its connections go with it.
    run(
        &server,
        "owner",
        "pg",
        &format!("DROP DATABASE {database} WITH (FORCE)"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_source_folder_ships_its_migrations() {
    let site = Site::new();
    let source = site.plugins().join("stocked");
    crate::hot_swap::copy_dir(&crate::harness::repo().join("plugins/demo/hello"), &source);
    std::fs::create_dir(source.join("migrations")).unwrap();
    std::fs::write(
        source.join("migrations/0001_stock.sql"),
        "CREATE TABLE IF NOT EXISTS stock (sku TEXT PRIMARY KEY, count INTEGER NOT NULL);",
    )
    .unwrap();
    site.put("stocked.toml", "[grants]\ndatabases = [\"main\"]\n");
    mount(&site, "reader", "[grants]\ndatabases = [\"main\"]\n");
    // The same data folder as the other source-plugin test: its build
    // folder already holds the compiled dependencies.
    let data = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("source-plugin-data");
    let server = site.serve(&["--data", data.to_str().unwrap()], &[]);
    server
        .wait_plugin("stocked", Duration::from_secs(300), |p| {
            p["state"] == "serving"
        })
        .await;
    server.wait_serving("reader").await;
    ok(query(
        &server,
        "reader",
        "main",
        "SELECT count(*) AS n FROM stock",
        json!([]),
    )
    .await)
    .await;
    let history = ok(query(
        &server,
        "reader",
        "main",
        "SELECT version, description FROM gatehouse_plugin_migrations WHERE plugin = $1",
        json!([{"text": "stocked"}]),
    )
    .await)
    .await;
    assert_eq!(
        history["rows"],
        json!([[{"integer": 1}, {"text": "stock"}]])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_call_leaves_no_transaction_or_session_setting_on_a_pooled_connection() {
    let site = Site::new();
    mount(
        &site,
        "app",
        "[grants]\ndatabases = [\"one\", \"check\", \"pg\"]\n",
    );
    // `one` has a single connection, so a transaction left open on it would
    // swallow the next call; `check` reads the same file apart.
    let file = site.data().join("shared.db");
    let config = config_with(&format!(
        "[databases.one]\nurl = \"sqlite://{0}\"\nmax_connections = 1\n\
         [databases.check]\nurl = \"sqlite://{0}\"\n\
         [databases.pg]\nurl = \"{POSTGRES}\"\n",
        file.display()
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;

    ok(execute(
        &server,
        "app",
        "one",
        "CREATE TABLE t (x INTEGER)",
        json!([]),
    )
    .await)
    .await;
    for opener in [
        "BEGIN",
        "SAVEPOINT s",
        "BEGIN IMMEDIATE; INSERT INTO t VALUES (0)",
    ] {
        let (status, body) = execute(&server, "app", "one", opener, json!([])).await;
        assert_eq!(status, 400, "{opener}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains("batch"),
            "{body}"
        );
    }
    ok(execute(&server, "app", "one", "INSERT INTO t VALUES (1)", json!([])).await).await;
    // Committed: another pool sees it, and nothing of the refused calls.
    let rows = ok(query(&server, "app", "check", "SELECT x FROM t", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 1}]]));
    // Temporary objects that would hide the shared table from the next
    // caller, or act on its writes: each call that makes one ends its
    // connection, so the inserts after them reach the shared table.
    for temp in [
        "CREATE TEMP TABLE t (x INTEGER)",
        "CREATE TEMPORARY TRIGGER swallow BEFORE INSERT ON main.t BEGIN SELECT RAISE(IGNORE); END",
    ] {
        run(&server, "app", "one", temp).await;
        run(&server, "app", "one", "INSERT INTO t VALUES (2)").await;
    }
    let rows = ok(query(
        &server,
        "app",
        "check",
        "SELECT x FROM t ORDER BY x",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        rows["rows"],
        json!([[{"integer": 1}], [{"integer": 2}], [{"integer": 2}]])
    );

    // A batch is one transaction, the host's to end: a statement that ends
    // it fails the batch, and nothing after it runs. The failing batches and
    // the insert after them must then run as on a fresh connection, the
    // insert committed.
    let batch = async |statements: Value| {
        call(
            &server,
            "POST",
            "/app/sql/batch?db=one",
            Some(json!({ "statements": statements })),
        )
        .await
    };
    for ender in [
        "COMMIT",
        "END TRANSACTION",
        "INSERT INTO t VALUES (3); ROLLBACK",
        // A transaction begun again is not the batch's.
        "ROLLBACK; BEGIN",
        "COMMIT; BEGIN",
    ] {
        let (status, body) = batch(json!([
            {"sql": "INSERT INTO t VALUES (3)", "params": []},
            {"sql": ender, "params": []},
            {"sql": "INSERT INTO t VALUES (4)", "params": []},
        ]))
        .await;
        assert_eq!(status, 400, "{ender}: {body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .contains("ended the batch's transaction"),
            "{ender}: {body}"
        );
        let (status, body) = batch(json!([
            {"sql": "INSERT INTO t VALUES (5)", "params": []},
            {"sql": "INSERT INTO nowhere VALUES (5)", "params": []},
        ]))
        .await;
        assert_eq!(status, 400, "{body}");
    }
    run(&server, "app", "one", "INSERT INTO t VALUES (6)").await;
    let rows = ok(query(
        &server,
        "app",
        "check",
        "SELECT x FROM t WHERE x > 2 ORDER BY x",
        json!([]),
    )
    .await)
    .await;
    // The first two batches committed their 3 themselves, and so did the
    // last; the third and fourth rolled theirs back.
    assert_eq!(
        rows["rows"],
        json!([
            [{"integer": 3}],
            [{"integer": 3}],
            [{"integer": 3}],
            [{"integer": 6}]
        ])
    );
    // A batch's own savepoints are the plugin's to use.
    let (status, body) = batch(json!([
        {"sql": "INSERT INTO t VALUES (7)", "params": []},
        {"sql": "SAVEPOINT a", "params": []},
        {"sql": "INSERT INTO t VALUES (8)", "params": []},
        {"sql": "ROLLBACK TO a", "params": []},
        {"sql": "RELEASE a", "params": []},
    ]))
    .await;
    assert_eq!(status, 200, "{body}");
    let rows = ok(query(
        &server,
        "app",
        "check",
        "SELECT x FROM t WHERE x > 6 ORDER BY x",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(rows["rows"], json!([[{"integer": 7}]]));

    for command in [
        "BEGIN",
        "  start transaction",
        "SET search_path TO elsewhere",
        "-- a comment\nreset all",
        "/* nested /* */ */ BEGIN",
        "COMMIT",
        "end",
        "ROLLBACK",
        "DEALLOCATE ALL",
        "DISCARD ALL",
        "PREPARE mine AS SELECT 1",
        "COPY (SELECT 1) TO STDOUT",
    ] {
        let (status, body) = execute(&server, "app", "pg", command, json!([])).await;
        assert_eq!(status, 400, "{command}: {body}");
        assert_eq!(body["error"], "bad-statement", "{command}: {body}");
    }
    // A result the host would have to buffer without bound is refused.
    for (db, huge) in [
        ("one", "SELECT zeroblob(100000000)"),
        (
            "one",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20) SELECT zeroblob(8000000) FROM n",
        ),
        (
            "pg",
            "SELECT repeat('x', 8000000) FROM generate_series(1, 20)",
        ),
        // Millions of rows of nothing cost the host memory too.
        ("pg", "SELECT FROM generate_series(1, 3000000)"),
        (
            "one",
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2000000) SELECT NULL FROM n",
        ),
    ] {
        let (status, body) = query(&server, "app", db, huge, json!([])).await;
        assert_eq!(status, 400, "{huge}: {body}");
    }
    let rows = ok(query(&server, "app", "pg", "SELECT 'setting' AS word", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"text": "setting"}]]));
}

/// Asserts a call got `unavailable` because its statement ran past the
/// statement timeout.
fn stopped_at_timeout(status: u16, body: &Value) {
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.contains("statement_timeout_ms"), "{body}");
}

/// Serves plugin `app` granted `slow`: a SQLite database of `connections`
/// pooled connections and a 300 ms statement timeout.
async fn serve_slow_sqlite(connections: u32) -> (Site, Server) {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"slow\"]\n");
    let config = config_with(&format!(
        "[databases.slow]\nurl = \"sqlite://{}\"\nmax_connections = {connections}\n\
         statement_timeout_ms = 300\nacquire_timeout_ms = 2000\n",
        site.data().join("slow.db").display()
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    (site, server)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_runaway_sqlite_statement_is_stopped_at_its_timeout_and_frees_its_connection() {
    // Two connections, so three runaway statements also queue for one.
    let (_site, server) = serve_slow_sqlite(2).await;
    // 100,000 rows, then a trigger that takes a millisecond or so per row.
    for statement in [
        "CREATE TABLE a (x INTEGER)",
        "INSERT INTO a WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r \
         WHERE i < 100000) SELECT i FROM r",
        "CREATE TABLE b (x INTEGER)",
        "CREATE TRIGGER slow AFTER UPDATE ON a BEGIN INSERT INTO b SELECT count(*) FROM \
         (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 20000) \
         SELECT i FROM r); END",
    ] {
        ok(execute(&server, "app", "slow", statement, json!([])).await).await;
    }

    let forever = "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) \
                   SELECT count(*) FROM r";
    // Each row runs the trigger's own program, which must not restart the
    // statement's clock.
    let every_row_runs_a_trigger = "UPDATE a SET x = x + 1 RETURNING x";
    let started = Instant::now();
    let runaways = [forever, forever, every_row_runs_a_trigger]
        .map(|sql| async { query(&server, "app", "slow", sql, json!([])).await });
    for (status, body) in futures_util::future::join_all(runaways).await {
        stopped_at_timeout(status, &body);
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    // Nothing of the stopped update stays, and both connections serve again,
    // a statement led by a comment included.
    for _ in 0..4 {
        let started = Instant::now();
        let rows = ok(query(
            &server,
            "app",
            "slow",
            "-- a comment\nSELECT (SELECT sum(x) FROM a) + (SELECT count(*) FROM b) AS n",
            json!([]),
        )
        .await)
        .await;
        assert_eq!(rows["rows"], json!([[{"integer": 5_000_050_000_i64}]]));
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}

/// SQLite's LIKE, GLOB and trim() can run for minutes in one call, which
/// the statement clock between steps cannot stop; instr() and replace()
/// compare at every byte. On a granted database they stop at the timeout
/// or finish in linear time, and the connection serves on.
#[tokio::test(flavor = "multi_thread")]
async fn slow_sqlite_string_functions_stop_at_the_statement_timeout() {
    let (_site, server) = serve_slow_sqlite(1).await;
    // n letters a, made in SQL so the request stays small.
    let a = |n: u32| format!("replace(hex(zeroblob({n})), '00', 'a')");
    let (long, short) = (a(1 << 20), a(10_000));
    let runaways = [
        format!("SELECT {long} LIKE '%' || {short} || {short} || 'b' AS x"),
        format!("SELECT {long} LIKE '%' || replace({short}, 'a', '_a') || 'b' AS x"),
        format!("SELECT {long} GLOB '*' || replace({short}, 'a', '[a]') || 'b' AS x"),
        format!("SELECT trim({long}, replace({short}, 'a', 'b') || 'a') AS x"),
    ];
    for sql in &runaways {
        let started = Instant::now();
        let (status, body) = query(&server, "app", "slow", sql, json!([])).await;
        stopped_at_timeout(status, &body);
        // Not the minutes SQLite's own functions take.
        assert!(started.elapsed() < Duration::from_secs(30), "{sql}");
    }
    // Longer than a read in place may take, well within the statement
    // timeout: stopped in place, answered by the pool.
    let before = reads(&server, "slow").await;
    let sql = format!("SELECT {} LIKE '%' || {} || 'b' AS x", a(50_000), a(200));
    let rows = ok(query(&server, "app", "slow", &sql, json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 0}]]));
    let after = reads(&server, "slow").await;
    assert_eq!(after.1 - before.1, 1, "{before:?} then {after:?}");
    // SQLite's own take hours over these; here they are linear.
    let needle = format!("{} || 'b'", a(1 << 20));
    for (sql, expected) in [
        (
            format!("SELECT instr({}, {needle}) AS x", a(4 << 20)),
            json!({"integer": 0}),
        ),
        (
            format!("SELECT length(replace({}, {needle}, 'x')) AS x", a(4 << 20)),
            json!({"integer": 4 << 20}),
        ),
    ] {
        let rows = ok(query(&server, "app", "slow", &sql, json!([])).await).await;
        assert_eq!(rows["rows"], json!([[expected]]), "{sql}");
    }
    // The same answers as SQLite's on everyday input.
    let rows = ok(query(
        &server,
        "app",
        "slow",
        "SELECT 'Straße' LIKE 'st%E', 'abc' GLOB 'a[b-c]?', '100%' LIKE '100!%' ESCAPE '!', \
         instr('héllo', 'l'), replace('a-b-c', '-', '+'), trim('xxhixx', 'x')",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        rows["rows"],
        json!([[{"integer": 1}, {"integer": 1}, {"integer": 1}, {"integer": 3}, {"text": "a+b+c"}, {"text": "hi"}]])
    );
    // The pragma that would put SQLite's LIKE back is refused.
    let (status, body) = execute(
        &server,
        "app",
        "slow",
        "PRAGMA case_sensitive_like = 1",
        json!([]),
    )
    .await;
    bad_statement((status, body.clone()));
    assert!(body["message"].as_str().unwrap().contains("GLOB"), "{body}");
}

/// A pragma that would set every SQLite database of the host (its memory,
/// its temporary files) is refused, so the host's own database and other
/// plugins' serve on.
#[tokio::test(flavor = "multi_thread")]
async fn pragmas_that_would_reach_every_sqlite_database_are_refused() {
    let (_site, server) = app_on_own_sqlite("kv = true\n").await;
    for pragma in [
        "hard_heap_limit = 65536",
        "soft_heap_limit = 1",
        "temp_store_directory = '/nonexistent'",
        "main.HARD_HEAP_LIMIT = 1",
    ] {
        let sql = format!("PRAGMA {pragma}");
        let (status, body) = execute(&server, "app", "own", &sql, json!([])).await;
        bad_statement((status, body.clone()));
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains("every SQLite database"), "{body}");
    }
    // The pragmas that stay on their connection still run.
    run(&server, "app", "own", "PRAGMA cache_size = 100").await;
    // The host's own database (kv) and the plugin's serve on.
    let http = client();
    for _ in 0..3 {
        let put = http.put(server.url("/app/kv/k")).body(vec![b'v'; 100_000]);
        assert_eq!(put.send().await.unwrap().status(), 204);
        let rows = ok(query(
            &server,
            "app",
            "own",
            "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 100000) \
             SELECT count(DISTINCT hex(randomblob(8))) AS n FROM r",
            json!([]),
        )
        .await)
        .await;
        assert_eq!(rows["rows"], json!([[{"integer": 100_000}]]));
    }
}

/// Plain VACUUM rebuilds a granted SQLite database through a private
/// temporary one; ATTACH of a file and VACUUM INTO, which would reach files
/// outside the grant, are refused and write nothing.
#[tokio::test(flavor = "multi_thread")]
async fn vacuum_runs_and_files_outside_the_grant_stay_out_of_reach() {
    let (site, server) = app_on_own_sqlite("").await;
    let pages = async || {
        let rows = ok(query(&server, "app", "own", "PRAGMA page_count", json!([])).await).await;
        rows["rows"][0][0]["integer"].as_i64().unwrap()
    };
    run(&server, "app", "own", "CREATE TABLE t (x BLOB)").await;
    run(
        &server,
        "app",
        "own",
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r WHERE i < 300) \
         INSERT INTO t SELECT randomblob(8000) FROM r",
    )
    .await;
    run(&server, "app", "own", "DELETE FROM t WHERE rowid > 10").await;
    let before = pages().await;
    assert!(before > 500, "{before} pages");
    run(&server, "app", "own", "VACUUM").await;
    let after = pages().await;
    assert!(after < 50, "{before} pages before VACUUM, {after} after");
    let rows = ok(query(&server, "app", "own", "SELECT count(*) FROM t", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 10}]]));

    // No file outside the grant: not the host's own, not a new one.
    let copy = site.data().join("copy.db");
    let host_db = site.data().join("gatehouse.db");
    for (sql, params) in [
        (format!("VACUUM INTO '{}'", copy.display()), json!([])),
        (format!("ATTACH '{}' AS host", host_db.display()), json!([])),
        (format!("ATTACH '{}' AS copy", copy.display()), json!([])),
        (
            "ATTACH $1 AS copy".to_owned(),
            json!([{"text": copy.display().to_string()}]),
        ),
        ("ATTACH ':memory:' AS m".to_owned(), json!([])),
    ] {
        let (status, body) = execute(&server, "app", "own", &sql, params).await;
        bad_statement((status, body.clone()));
        let message = body["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("outside the granted database"),
            "{sql}: {body}"
        );
    }
    assert!(!copy.exists());
    // A private temporary database may be attached; the connection that
    // holds it is not pooled, so VACUUM still finds its slot free.
    run(&server, "app", "own", "ATTACH '' AS scratch").await;
    for _ in 0..3 {
        run(&server, "app", "own", "VACUUM").await;
    }
    assert_eq!(pages().await, after);
}

/// SQLite's planner recurses once per WITH table (or view) that reads the
/// one before, with no bound of its own: a chain that overflows a 2 MiB
/// thread stack is answered, a statement text long enough for a chain
/// deeper than the host's stacks is refused, and the host serves on.
#[tokio::test(flavor = "multi_thread")]
async fn deep_chains_of_sqlite_with_tables_leave_the_host_serving() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"main\"]\n");
    let config = config_with("[limits]\nmax_body_bytes = 4194304\n");
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    let chain = |depth: usize| {
        let with = (1..depth)
            .map(|i| format!("c{i} AS (SELECT DISTINCT x FROM c{})", i - 1))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "WITH c0 AS (SELECT 1 AS x), {with} SELECT x FROM c{}",
            depth - 1
        )
    };
    let rows = ok(query(&server, "app", "main", &chain(8_000), json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 1}]]));
    // A statement text over a mebibyte is refused, whatever it holds.
    bad_statement(query(&server, "app", "main", &chain(30_000), json!([])).await);
    let long = format!("SELECT 1 AS x -- {}", "x".repeat(1 << 20));
    bad_statement(query(&server, "app", "main", &long, json!([])).await);
    let rows = ok(query(&server, "app", "main", "SELECT 2 AS x", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 2}]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sqlite_call_the_host_gives_up_on_leaves_no_transaction_behind() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"one\", \"check\"]\n");
    // One connection, so a transaction left open on it would swallow the
    // next call; `check` reads the same file apart. Each statement below
    // stays within its 300 ms, but together they run past the call's
    // 1,300 ms (acquire and statement timeouts).
    let file = site.data().join("cut.db");
    let config = config_with(&format!(
        "[databases.one]\nurl = \"sqlite://{0}\"\nmax_connections = 1\n\
         statement_timeout_ms = 300\nacquire_timeout_ms = 1000\n\
         [databases.check]\nurl = \"sqlite://{0}\"\n",
        file.display()
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    run(&server, "app", "one", "CREATE TABLE t (x TEXT)").await;

    let a_while = "SELECT count(*) FROM (WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL \
                   SELECT i + 1 FROM r WHERE i < 150000) SELECT i FROM r);";
    let long = format!(
        "BEGIN; INSERT INTO t VALUES ('left'); {}",
        a_while.repeat(100)
    );
    let (status, body) = execute(&server, "app", "one", &long, json!([])).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1300 ms"),
        "{body}"
    );
    run(&server, "app", "one", "INSERT INTO t VALUES ('next')").await;
    let rows = ok(query(&server, "app", "check", "SELECT x FROM t", json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"text": "next"}]]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_call_that_outlives_its_timeout_or_changes_its_session_ends_its_connection() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"pg\"]\n");
    // One connection: one left busy or changed would show in the next call.
    let config = config_with(&format!(
        "[databases.pg]\nurl = \"{POSTGRES}\"\nmax_connections = 1\n\
         statement_timeout_ms = 500\nacquire_timeout_ms = 1000\n"
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    let timeout = || query(&server, "app", "pg", "SHOW statement_timeout", json!([]));

    // `set_config` is SET as a function: allowed, but its session ends.
    let rows = ok(query(
        &server,
        "app",
        "pg",
        "SELECT set_config('statement_timeout', '0', false) AS now",
        json!([]),
    )
    .await)
    .await;
    assert_eq!(rows["rows"], json!([[{"text": "0"}]]));
    assert_eq!(
        ok(timeout().await).await["rows"],
        json!([[{"text": "500ms"}]])
    );

    // A batch that lifts the timeout for its own transaction and then
    // sleeps: the host gives up after 500 + 1000 ms and closes the connection
    // instead of waiting to pool it again.
    let started = Instant::now();
    let (status, body) = call(
        &server,
        "POST",
        "/app/sql/batch?db=pg",
        Some(json!({"statements": [
            {"sql": "SELECT set_config('statement_timeout', '0', true)", "params": []},
            {"sql": "SELECT pg_sleep(31.5)", "params": []},
        ]})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let started = Instant::now();
    assert_eq!(
        ok(timeout().await).await["rows"],
        json!([[{"text": "500ms"}]])
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );

    // And Postgres notices the closed connection and stops the sleep.
    stops_within_10s(&server, "pg_sleep(31.5)").await;
}

/// Waits until no statement whose text holds `needle` runs on Postgres.
async fn stops_within_10s(server: &Server, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows = ok(query(
            server,
            "app",
            "pg",
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE strpos(query, $1) > 0 AND pid <> pg_backend_pid()",
            json!([{"text": needle}]),
        )
        .await)
        .await;
        if rows["rows"] == json!([[{"integer": 0}]]) {
            break;
        }
        assert!(Instant::now() < deadline, "`{needle}` runs on: {rows}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_read_stopped_partway_does_not_hold_its_connection_for_the_rest() {
    // One connection, whose session the plugin left without a statement
    // timeout; then a result without end, which the host stops at 64 MiB.
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"pg\"]\n");
    let config = config_with(&format!(
        "[databases.pg]\nurl = \"{POSTGRES}\"\nmax_connections = 1\nacquire_timeout_ms = 2000\n"
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    run(
        &server,
        "app",
        "pg",
        "DO $$BEGIN SET statement_timeout = 0; END$$",
    )
    .await;
    let marker = table("endless");
    let endless =
        format!("SELECT repeat('x', 1000) AS {marker}, generate_series(1, 1000000000000)");
    bad_statement(query(&server, "app", "pg", &endless, json!([])).await);

    // The next call gets the pool's one connection (a new one), and the
    // endless statement is gone from the server.
    let started = Instant::now();
    let running = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%AS {marker},%' \
         AND pid <> pg_backend_pid()"
    );
    loop {
        let rows = ok(query(&server, "app", "pg", &running, json!([])).await).await;
        if rows["rows"] == json!([[{"integer": 0}]]) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still running: {rows}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_statement_that_lifts_every_timeout_is_stopped_when_the_host_gives_up() {
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"pg\"]\n");
    let config = config_with(&format!(
        "[databases.pg]\nurl = \"{POSTGRES}\"\nstatement_timeout_ms = 500\n"
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    // Lifted: the statement timeout, and the server's check for a closed
    // client, so closing the connection alone leaves the sleep running.
    let marker = table("runaway");
    let (status, body) = call(
        &server,
        "POST",
        "/app/sql/batch?db=pg",
        Some(json!({"statements": [
            {"sql": "SELECT set_config('statement_timeout', '0', true)", "params": []},
            {"sql": "SELECT set_config('client_connection_check_interval', '0', true)", "params": []},
            {"sql": format!("SELECT pg_sleep(60) AS {marker}"), "params": []},
        ]})),
    )
    .await;
    assert_eq!(
        (status, &body["error"]),
        (503, &json!("unavailable")),
        "{body}"
    );
    stops_within_10s(&server, &marker).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_enums_domains_intervals_and_addresses_map_both_ways() {
    let (_site, server) = app_on_postgres().await;
    let pg =
        async |sql: &str, params: Value| ok(query(&server, "app", "pg", sql, params).await).await;
    let pg_execute =
        async |sql: &str, params: Value| ok(execute(&server, "app", "pg", sql, params).await).await;
    let (t, mood, email) = (table("typed"), table("mood"), table("email"));
    run(
        &server,
        "app",
        "pg",
        &format!("CREATE TYPE {mood} AS ENUM ('sad', 'ok', 'happy')"),
    )
    .await;
    run(
        &server,
        "app",
        "pg",
        &format!("CREATE DOMAIN {email} AS TEXT CHECK (VALUE LIKE '%@%')"),
    )
    .await;
    run(
        &server,
        "app",
        "pg",
        &format!("CREATE TABLE {t} (m {mood}, e {email}, span INTERVAL, host INET, net CIDR)"),
    )
    .await;

    // Text goes to an enum, a domain over text, an inet and a cidr as it
    // would as an untyped literal; an interval takes it through a cast.
    pg_execute(
        &format!("INSERT INTO {t} VALUES ($1, $2, $3::text::interval, $4, $5)"),
        json!([
            {"text": "happy"},
            {"text": "a@example.com"},
            {"text": "1 year 2 mons -3 days 04:05:06.789"},
            {"text": "192.168.0.1/24"},
            {"text": "2001:db8::/32"}
        ]),
    )
    .await;
    let rows = pg(
        &format!("SELECT m, e, span, host, net FROM {t} WHERE m = $1 AND host = $2"),
        json!([{"text": "happy"}, {"text": "192.168.0.1/24"}]),
    )
    .await;
    assert_eq!(
        rows["rows"],
        json!([[
            {"text": "happy"},
            {"text": "a@example.com"},
            {"text": "P1Y2M-3DT4H5M6.789S"},
            {"text": "192.168.0.1/24"},
            {"text": "2001:db8::/32"}
        ]])
    );

    // An interval reads as the ISO 8601 duration Postgres itself reads back
    // to the same value; an address as Postgres writes it.
    let intervals = [
        "0",
        "1 day",
        "-1 year -2 mons +3 days -04:05:06",
        "00:00:00.5",
        "-00:00:00.000001",
        "178000000 years",
        "1 mon 36:00:00",
    ];
    for interval in intervals {
        let read = pg("SELECT $1::text::interval", json!([{"text": interval}])).await;
        let iso = read["rows"][0][0]["text"].as_str().unwrap().to_owned();
        let same = pg(
            "SELECT $1::text::interval::text = $2::text::interval::text",
            json!([{"text": iso}, {"text": interval}]),
        )
        .await;
        assert_eq!(
            same["rows"][0][0],
            json!({"integer": 1}),
            "{interval} read as {iso}"
        );
    }
    let addresses = pg("SELECT '10.0.0.1'::inet, '10.0.0.1/32'::cidr, '::ffff:1.2.3.4'::inet, '2001:db8::1/64'::inet", json!([])).await;
    assert_eq!(
        addresses["rows"][0],
        json!([
            {"text": "10.0.0.1"},
            {"text": "10.0.0.1/32"},
            {"text": "::ffff:1.2.3.4"},
            {"text": "2001:db8::1/64"}
        ])
    );

    // A time with its zone and an interval, in ISO 8601, both ways, as
    // scalars and in arrays.
    let zoned = pg(
        "SELECT '10:30:00+01'::timetz, $1::timetz = '12:00:00-05:30'::timetz, $2::timetz[], \
         ARRAY['1 day'::interval, NULL, '-1 hour -30 minutes'], \
         $3::interval = '1 year 2 months -3 days 4 hours 0.5 seconds'::interval, $4::interval[]",
        json!([
            {"text": "12:00:00-05:30"},
            {"text": "[\"23:59:59.5Z\", null]"},
            {"text": "P1Y2M-3DT4H0.5S"},
            {"text": "[\"P2W\", null, \"PT-90M\"]"}
        ]),
    )
    .await;
    assert_eq!(
        zoned["rows"][0],
        json!([
            {"text": "10:30:00+01:00"},
            {"integer": 1},
            {"text": "[\"23:59:59.500+00:00\",null]"},
            {"text": "[\"P1D\",null,\"PT-1H-30M\"]"},
            {"integer": 1},
            {"text": "[\"P14D\",null,\"PT-1H-30M\"]"}
        ])
    );

    // Arrays go both ways as JSON: `= ANY($1)` takes a JSON array, and an
    // array arrives as one (nested for more dimensions).
    let rows = pg(
        "SELECT n FROM generate_series(1, 5) AS n WHERE n = ANY($1) ORDER BY n",
        json!([{"text": "[1, 3, null, 5]"}]),
    )
    .await;
    assert_eq!(
        rows["rows"],
        json!([[{"integer": 1}], [{"integer": 3}], [{"integer": 5}]])
    );
    let arrays = pg(
        "SELECT $1::bool[], $2::float8[], $3::uuid[], $4::jsonb[], $5::numeric[], $6::text[], \
         ARRAY[[1, 2], [3, 4]], '{}'::int8[], $7::json[], ($7::json[])[1]->>'n'",
        json!([
            {"text": "[true, false, null]"},
            {"text": "[0.5, \"NaN\", \"-Infinity\"]"},
            {"text": "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]"},
            {"text": "[{\"likes\":[1,2]}, null]"},
            {"text": "[\"12.50\", 7, 12345678901234567890.123456789]"},
            {"text": "[\"a\", \"zoë\"]"},
            {"text": "[{\"z\": 1, \"n\": 12345678901234567890.123456789}]"}
        ]),
    )
    .await;
    // JSON elements arrive as Postgres holds them, as a scalar does: jsonb
    // in its own form, json as written, every digit and key order kept.
    assert_eq!(
        arrays["rows"][0],
        json!([
            {"text": "[true,false,null]"},
            {"text": "[0.5,\"NaN\",\"-Infinity\"]"},
            {"text": "[\"a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11\"]"},
            {"text": "[{\"likes\": [1, 2]},null]"},
            {"text": "[\"12.50\",\"7\",\"12345678901234567890.123456789\"]"},
            {"text": "[\"a\",\"zoë\"]"},
            {"text": "[[1,2],[3,4]]"},
            {"text": "[]"},
            {"text": "[{\"z\": 1, \"n\": 12345678901234567890.123456789}]"},
            {"text": "12345678901234567890.123456789"}
        ])
    );
    // Arrays of enum labels, times and dates, and addresses: each element
    // in the form its scalar takes.
    let arrays = pg(
        &format!(
            "SELECT $1::{mood}[], $2::timestamptz[], $3::timestamp[], $4::date[], $5::time[], \
             $6::inet[], $7::cidr[], ($1::{mood}[])[1] = 'ok'"
        ),
        json!([
            {"text": "[\"ok\", null]"},
            {"text": "[\"2026-11-22T10:30:00+01:00\", \"infinity\"]"},
            {"text": "[\"2026-11-22 10:30:00.5\"]"},
            {"text": "[\"2026-11-22\", \"-infinity\"]"},
            {"text": "[\"23:59:59.000001\"]"},
            {"text": "[\"192.168.0.1/24\", \"::1\"]"},
            {"text": "[\"10.0.0.0/8\"]"}
        ]),
    )
    .await;
    assert_eq!(
        arrays["rows"][0],
        json!([
            {"text": "[\"ok\",null]"},
            {"text": "[\"2026-11-22T09:30:00Z\",\"infinity\"]"},
            {"text": "[\"2026-11-22T10:30:00.500\"]"},
            {"text": "[\"2026-11-22\",\"-infinity\"]"},
            {"text": "[\"23:59:59.000001\"]"},
            {"text": "[\"192.168.0.1/24\",\"::1\"]"},
            {"text": "[\"10.0.0.0/8\"]"},
            {"integer": 1}
        ])
    );
    // Postgres reads them as it reads its own literals.
    let same = pg(
        &format!(
            "SELECT $1::timestamptz[] = '{{\"2026-11-22 09:30:00+00\"}}'::timestamptz[], \
             $2::{mood}[] = '{{happy,sad}}'::{mood}[]"
        ),
        json!([
            {"text": "[\"2026-11-22T10:30:00+01:00\"]"},
            {"text": "[\"happy\", \"sad\"]"}
        ]),
    )
    .await;
    assert_eq!(same["rows"][0], json!([{"integer": 1}, {"integer": 1}]));

    // What a type refuses is said with what it takes.
    let refused = |status: u16, body: &Value, part: &str| {
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains(part), "{body}");
    };
    let insert = format!("INSERT INTO {t} (m) VALUES ($1)");
    let (status, body) = execute(&server, "app", "pg", &insert, json!([{"text": "glad"}])).await;
    refused(status, &body, "sad, ok, happy");
    let insert = format!("INSERT INTO {t} (net) VALUES ($1)");
    let (status, body) = execute(
        &server,
        "app",
        "pg",
        &insert,
        json!([{"text": "10.1.0.0/8"}]),
    )
    .await;
    refused(status, &body, "right of its /8 prefix");
    let insert = format!("INSERT INTO {t} (span) VALUES ($1)");
    let (status, body) = execute(&server, "app", "pg", &insert, json!([{"text": "1 day"}])).await;
    refused(status, &body, "not an ISO 8601 duration");
    refused(status, &body, "$1::text::interval");
    let (status, body) = query(
        &server,
        "app",
        "pg",
        "SELECT $1::int2[]",
        json!([{"text": "[1, 70000]"}]),
    )
    .await;
    refused(status, &body, "element 1 (70000) is not an int2");
    let (status, body) = query(
        &server,
        "app",
        "pg",
        "SELECT $1::date[]",
        json!([{"text": "[\"2026-11-22\", \"22/11/2026\"]"}]),
    )
    .await;
    refused(status, &body, "is not a date (YYYY-MM-DD)");
    let (status, body) = query(
        &server,
        "app",
        "pg",
        &format!("SELECT $1::{mood}[]"),
        json!([{"text": "[\"glad\"]"}]),
    )
    .await;
    refused(status, &body, "glad");
    let insert = format!("INSERT INTO {t} (e) VALUES ($1)");
    let (status, body) = execute(&server, "app", "pg", &insert, json!([{"text": "nobody"}])).await;
    assert_eq!(status, 409, "{body}");

    for drop in [
        format!("DROP TABLE {t}"),
        format!("DROP TYPE {mood}"),
        format!("DROP DOMAIN {email}"),
    ] {
        run(&server, "app", "pg", &drop).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_ranges_map_both_ways() {
    let (_site, server) = app_on_postgres().await;
    let pg =
        async |sql: &str, params: Value| ok(query(&server, "app", "pg", sql, params).await).await;

    // Each built-in range arrives in Postgres's range form, its bounds in
    // the forms their scalars take.
    let ranges = pg(
        "SELECT '[1,10)'::int4range, '(,5]'::int8range, 'empty'::numrange, \
         '(0.5,12345678901234567890.123456789]'::numrange, '[2026-11-22,2026-11-30]'::daterange, \
         '[2026-11-22 09:30,2026-11-22 10:00)'::tsrange, \
         tstzrange('2026-11-22 09:30+01', NULL), '[-infinity,infinity]'::daterange",
        json!([]),
    )
    .await;
    assert_eq!(
        ranges["rows"][0],
        json!([
            {"text": "[1,10)"},
            {"text": "(,6)"},
            {"text": "empty"},
            {"text": "(0.5,12345678901234567890.123456789]"},
            {"text": "[2026-11-22,2026-12-01)"},
            {"text": "[2026-11-22T09:30:00,2026-11-22T10:00:00)"},
            {"text": "[2026-11-22T08:30:00Z,)"},
            {"text": "[-infinity,infinity]"}
        ])
    );

    // A range parameter takes that form (and Postgres's own spellings);
    // Postgres makes a discrete one canonical.
    let (t, floaty) = (table("booking"), table("span"));
    run(
        &server,
        "app",
        "pg",
        &format!("CREATE TABLE {t} (room INT, during TSTZRANGE, nights DATERANGE)"),
    )
    .await;
    ok(execute(
        &server,
        "app",
        "pg",
        &format!("INSERT INTO {t} VALUES (1, $1, $2)"),
        json!([
            {"text": "[2026-11-22T14:00:00Z,2026-11-24T10:00:00Z)"},
            {"text": "[\"2026-11-22\",2026-11-23]"}
        ]),
    )
    .await)
    .await;
    let rows = pg(
        &format!(
            "SELECT during, nights, during @> $1::timestamptz, $2::int4range @> 5, \
             $2::int4range = int4range(1, 10), $3::numrange FROM {t} WHERE during && $4"
        ),
        json!([
            {"text": "2026-11-23T12:00:00Z"},
            {"text": " [ 1 , 10 ) "},
            {"text": "EMPTY"},
            {"text": "[2026-11-23T00:00:00Z,)"}
        ]),
    )
    .await;
    assert_eq!(
        rows["rows"],
        json!([[
            {"text": "[2026-11-22T14:00:00Z,2026-11-24T10:00:00Z)"},
            {"text": "[2026-11-22,2026-11-24)"},
            {"integer": 1},
            {"integer": 1},
            {"integer": 1},
            {"text": "empty"}
        ]])
    );

    // What arrives reads back the same, as a parameter and through
    // Postgres's own range input; so does a range type of the operator's.
    run(
        &server,
        "app",
        "pg",
        &format!("CREATE TYPE {floaty} AS RANGE (subtype = numeric)"),
    )
    .await;
    let own = pg(&format!("SELECT {floaty}(1.5, 2.25, '[]')"), json!([])).await;
    assert_eq!(own["rows"][0][0], json!({"text": "[1.5,2.25]"}));
    for (text, ty) in [
        ("[2026-11-22T08:30:00Z,)", "tstzrange"),
        ("[2026-11-22T09:30:00,2026-11-22T10:00:00)", "tsrange"),
        ("(0.5,12345678901234567890.123456789]", "numrange"),
        ("[1.5,2.25]", floaty.as_str()),
    ] {
        let same = pg(
            &format!("SELECT $1::{ty} = $2::text::{ty}, $1::{ty}"),
            json!([{"text": text}, {"text": text}]),
        )
        .await;
        assert_eq!(
            same["rows"][0],
            json!([{"integer": 1}, {"text": text}]),
            "{ty}"
        );
    }

    // What is not a range, or bounds out of order, is a bad statement that
    // says so.
    for (sql, text, says) in [
        (
            "SELECT $1::int4range",
            "1,10",
            "is not a range such as [1,10), (,5] or empty",
        ),
        (
            "SELECT $1::int4range",
            "[1,ten)",
            "(`ten`) is not a 32-bit integer",
        ),
        (
            "SELECT $1::daterange",
            "[2026-11-22,tomorrow)",
            "upper bound",
        ),
        (
            "SELECT $1::int4range",
            "[10,1)",
            "lower bound must be less than or equal",
        ),
    ] {
        let (status, body) = query(&server, "app", "pg", sql, json!([{"text": text}])).await;
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(says)),
            "{text}: {body}"
        );
        bad_statement((status, body));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_connections_pass_from_call_to_call_and_the_kv_store_still_gets_its_turn() {
    let site = Site::new();
    mount(
        &site,
        "app",
        "[grants]\ndatabases = [\"main\"]\nkv = true\n",
    );
    // Two connections for plugins' calls and the kv store alike.
    let config = config_with(&format!(
        "[databases.main]\nurl = \"{POSTGRES}\"\nmax_connections = 2\nacquire_timeout_ms = 1500\n"
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    let calls = |stats: &Value| {
        let main = &stats["databases"]["main"];
        (
            main["calls_on_kept_connections"].as_u64().unwrap(),
            main["calls_on_pool_connections"].as_u64().unwrap(),
        )
    };

    // Calls one after another run on the connection the last one left,
    // without sending it back through the pool.
    let before = calls(&server.admin_json("/stats").await);
    for n in 0..20 {
        let rows = ok(query(
            &server,
            "app",
            "main",
            "SELECT $1::int8 AS n",
            json!([{"integer": n}]),
        )
        .await)
        .await;
        assert_eq!(rows["rows"], json!([[{"integer": n}]]));
    }
    let after = calls(&server.admin_json("/stats").await);
    assert!(
        after.0 - before.0 >= 15,
        "{before:?} then {after:?}: the calls did not reuse their connection"
    );

    // Plugins' calls keep both connections busy, each handing its own to
    // the next: the kv store, which waits on the pool itself, still gets
    // one well within the acquire timeout, and right after the load too.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..6)
        .map(|_| {
            let url = server.url("/app/sql/query?db=main");
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut done = 0;
                while !stop.load(Ordering::Relaxed) {
                    let response = client()
                        .post(&url)
                        .json(
                            &json!({"sql": "SELECT pg_sleep(0.002)::text AS slept", "params": []}),
                        )
                        .send()
                        .await
                        .unwrap();
                    let status = response.status();
                    assert_eq!(status, 200, "{}", response.text().await.unwrap());
                    done += 1;
                }
                done
            })
        })
        .collect();
    let key = table("turn");
    let started = Instant::now();
    let mut increments = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let (status, body) = call(
            &server,
            "POST",
            &format!("/app/kv/{key}/increment?delta=1"),
            None,
        )
        .await;
        assert_eq!(status, 200, "kv call {increments}: {body}");
        increments += 1;
    }
    stop.store(true, Ordering::Relaxed);
    let mut queries = 0;
    for task in load {
        queries += task.await.unwrap();
    }
    assert!(
        queries > 100,
        "only {queries} queries ran beside the kv calls"
    );
    // No connection sits kept while the pool has none to give.
    let started = Instant::now();
    let (_, body) = call(
        &server,
        "POST",
        &format!("/app/kv/{key}/increment?delta=0"),
        None,
    )
    .await;
    assert_eq!(body, json!({"value": increments}));
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the kv store waited {:?} for a connection",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_plugin_leaves_on_a_postgres_session_never_reaches_another_plugin_or_the_kv_store() {
    // One connection: it goes back to sqlx between the plugins. Two: it is
    // kept, and handed from one plugin to the other.
    for connections in [1, 2] {
        let site = Site::new();
        for plugin in ["a", "b"] {
            mount(
                &site,
                plugin,
                "[grants]\ndatabases = [\"main\"]\nkv = true\n",
            );
        }
        let config = config_with(&format!(
            "[databases.main]\nurl = \"{POSTGRES}\"\nmax_connections = {connections}\n"
        ));
        let server = site.serve_config(&config, &[]);
        server.wait_serving("a").await;
        server.wait_serving("b").await;
        let shared = table("shared");
        let lock = 7_000_000 + i64::from(std::process::id() % 1_000_000);
        for sql in [
            format!("CREATE TABLE {shared} (x INTEGER)"),
            format!("INSERT INTO {shared} VALUES (1)"),
        ] {
            run(&server, "b", "main", &sql).await;
        }

        // What no check of a statement's text can refuse: SET inside a
        // function, a temporary table that hides a shared one, a session
        // lock.
        for sql in [
            "DO $$BEGIN EXECUTE 'SET search_path TO pg_catalog'; END$$".to_owned(),
            "DO $$BEGIN EXECUTE 'SET ROLE pg_read_all_data'; END$$".to_owned(),
            format!("CREATE TEMP TABLE {shared} (x INTEGER)"),
            format!("SELECT pg_advisory_lock({lock})"),
        ] {
            run(&server, "a", "main", &sql).await;
        }
        // Nor do empty statements or a comment ended by `\r` hide a BEGIN.
        for sql in [";BEGIN", "--\rBEGIN", "; ;\n START TRANSACTION"] {
            bad_statement(execute(&server, "a", "main", sql, json!([])).await);
        }

        let key = table("visits");
        let (status, body) = call(
            &server,
            "POST",
            &format!("/a/kv/{key}/increment?delta=1"),
            None,
        )
        .await;
        assert_eq!(
            (status, &body),
            (200, &json!({"value": 1})),
            "{connections}"
        );
        let rows = ok(query(
            &server,
            "b",
            "main",
            &format!(
                "SELECT current_user::text AS who, current_setting('search_path') AS path, \
                 (SELECT count(*) FROM {shared}) AS rows, \
                 (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = {lock}) AS locks"
            ),
            json!([]),
        )
        .await)
        .await;
        assert_eq!(
            rows["rows"],
            json!([[{"text": "postgres"}, {"text": "\"$user\", public"}, {"integer": 1}, {"integer": 0}]]),
            "with {connections} connection(s)"
        );
        // b writes as the pool's own user, into the shared table.
        run(
            &server,
            "b",
            "main",
            &format!("INSERT INTO {shared} VALUES (2)"),
        )
        .await;
        run(&server, "b", "main", &format!("DROP TABLE {shared}")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_migration_that_changes_its_session_leaves_no_trace_on_the_pool() {
    let site = Site::new();
    // A name of its own: the migration history in `test` outlives the run.
    let plugin = table("tidy");
    let migrations = site.dir.path().join("tidy-migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_settings.sql"),
        format!("SET application_name = 'leaked'; CREATE TABLE {plugin} (x INTEGER);"),
    )
    .unwrap();
    mount(
        &site,
        &plugin,
        "[grants]\ndatabases = [\"pg\"]\n[migrations]\ndatabase = \"pg\"\npath = \"../tidy-migrations\"\n",
    );
    // One connection: the migration's would be the next call's.
    let config = config_with(&format!(
        "[databases.pg]\nurl = \"{POSTGRES}\"\nmax_connections = 1\n"
    ));
    let server = site.serve_config(&config, &[]);
    server.wait_serving(&plugin).await;
    let rows = ok(query(
        &server,
        &plugin,
        "pg",
        &format!("SELECT current_setting('application_name') AS name, (SELECT count(*) FROM {plugin}) AS n"),
        json!([]),
    )
    .await)
    .await;
    assert_eq!(
        rows["rows"],
        json!([[{"text": "gatehouse"}, {"integer": 0}]])
    );
    run(&server, &plugin, "pg", &format!("DROP TABLE {plugin}")).await;
}

/// Waits until `plugin` serves, checks that its migration made its empty
/// table (named as the plugin) on `pg`, and drops it.
async fn serves_with_its_empty_table(server: &Server, plugin: &str) {
    server
        .wait_plugin(plugin, Duration::from_secs(30), |p| p["state"] == "serving")
        .await;
    let count = format!("SELECT count(*) AS n FROM {plugin}");
    let rows = ok(query(server, plugin, "pg", &count, json!([])).await).await;
    assert_eq!(rows["rows"], json!([[{"integer": 0}]]));
    run(server, plugin, "pg", &format!("DROP TABLE {plugin}")).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_whose_migrations_find_its_database_down_loads_once_it_is_back() {
    let forwarder = Forwarder::start("127.0.0.1:0".parse().unwrap()).await;
    forwarder.down();
    let site = Site::new();
    let plugin = table("late");
    let migrations = site.dir.path().join("late-migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_table.sql"),
        format!("CREATE TABLE {plugin} (x INTEGER);"),
    )
    .unwrap();
    mount(
        &site,
        &plugin,
        "[grants]\ndatabases = [\"pg\"]\n[migrations]\npath = \"../late-migrations\"\n",
    );
    let config = config_with(&format!(
        "[databases.pg]\nurl = \"postgres://postgres@{}/test\"\nacquire_timeout_ms = 500\n",
        forwarder.addr
    ));
    let server = site.serve_config(&config, &[]);
    let line = server.wait_log("trying again in 5 s", Duration::from_secs(30));
    assert!(line.contains("cannot reach the database"), "{line}");

    // Nothing in the folder changes: the host tries again by itself.
    let _back = Forwarder::start(forwarder.addr).await;
    serves_with_its_empty_table(&server, &plugin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_migration_cut_off_by_the_database_is_tried_again() {
    // `app` stands in for an operator restarting Postgres: it ends the
    // connection of a migration that is still running.
    let site = Site::new();
    mount(&site, "app", "[grants]\ndatabases = [\"pg\"]\n");
    let config = config_with(&format!("[databases.pg]\nurl = \"{POSTGRES}\"\n"));
    let server = site.serve_config(&config, &[]);
    server.wait_serving("app").await;
    let plugin = table("cut");
    let migrations = site.dir.path().join("cut-migrations");
    std::fs::create_dir(&migrations).unwrap();
    std::fs::write(
        migrations.join("0001_slow.sql"),
        format!("CREATE TABLE {plugin} (x INTEGER); SELECT pg_sleep(2) AS {plugin};"),
    )
    .unwrap();
    mount(
        &site,
        &plugin,
        "[grants]\ndatabases = [\"pg\"]\n[migrations]\npath = \"../cut-migrations\"\n",
    );
    let terminate = format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query LIKE '%pg_sleep(2) AS {plugin}%' AND pid <> pg_backend_pid()"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ended = ok(query(&server, "app", "pg", &terminate, json!([])).await).await;
        if ended["rows"] == json!([[{"integer": 1}]]) {
            break;
        }
        assert!(Instant::now() < deadline, "the migration never ran");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let line = server.wait_log("trying again in 5 s", Duration::from_secs(30));
    assert!(line.contains("the database went away"), "{line}");

    // Nothing in the folder changes: the next try applies it.
    serves_with_its_empty_table(&server, &plugin).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_loading_one_plugin_apply_its_migration_once() {
    // Two hosts of a fleet on one Postgres, starting together with the same
    // plugin: its migration runs once, and both serve it.
    let plugin = table("fleet");
    let sites = [Site::new(), Site::new()];
    for site in &sites {
        let migrations = site.dir.path().join("fleet-migrations");
        std::fs::create_dir(&migrations).unwrap();
        // The sleep keeps the first host inside its migration while the
        // second starts its own.
        std::fs::write(
            migrations.join("0001_fleet.sql"),
            format!(
                "SELECT pg_sleep(1); CREATE TABLE {plugin} (x INTEGER); INSERT INTO {plugin} VALUES (1);"
            ),
        )
        .unwrap();
        mount(
            site,
            &plugin,
            "[grants]\ndatabases = [\"pg\"]\n[migrations]\npath = \"../fleet-migrations\"\n",
        );
    }
    let config = config_with(&format!("[databases.pg]\nurl = \"{POSTGRES}\"\n"));
    let servers = [
        sites[0].serve_config(&config, &[]),
        sites[1].serve_config(&config, &[]),
    ];
    // Found and not yet loaded: `loading`, not `failed`.
    let first = servers[0]
        .wait_plugin(&plugin, Duration::from_secs(30), |_| true)
        .await;
    assert_eq!(first["state"], "loading", "{first}");
    for server in &servers {
        let status = server
            .wait_plugin(&plugin, Duration::from_secs(60), |p| {
                p["state"] == "serving" || p["state"] == "failed"
            })
            .await;
        assert_eq!(status["state"], "serving", "{status}");
    }
    for server in &servers {
        let rows = ok(query(
            server,
            &plugin,
            "pg",
            &format!(
                "SELECT (SELECT count(*) FROM {plugin}) AS n, \
                 (SELECT count(*) FROM gatehouse_plugin_migrations WHERE plugin = $1) AS applied"
            ),
            json!([{"text": plugin}]),
        )
        .await)
        .await;
        assert_eq!(rows["rows"], json!([[{"integer": 1}, {"integer": 1}]]));
    }
    run(&servers[0], &plugin, "pg", &format!("DROP TABLE {plugin}")).await;
}
