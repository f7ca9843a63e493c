//! The `{{name}}` plugin. `GET /` greets and counts visits in kv; `GET /db`
//! runs a query on the `main` database. gatehouse rebuilds it on every save.

wit_bindgen::generate!({ path: "wit", world: "gatehouse:plugin/capabilities" });

use gatehouse::plugin::{kv, sql};
use wstd::http::body::Body;
use wstd::http::{Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (status, text) = match request.uri().path() {
        "/" => match kv::increment("visits", 1) {
            Ok(visits) => (StatusCode::OK, format!("Hello from {{name}}! Visit number {visits}.\n")),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("kv failed: {e:?}\n")),
        },
        "/db" => match query() {
            Ok(answer) => (StatusCode::OK, format!("{answer}\n")),
            Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("sql failed: {e:?}\n")),
        },
        _ => (StatusCode::NOT_FOUND, "not found\n".to_owned()),
    };
    let mut response = Response::new(text.into());
    *response.status_mut() = status;
    Ok(response)
}

/// One parameterized query: `$1`, `$2`, … on SQLite and Postgres alike.
fn query() -> Result<String, sql::Error> {
    let db = sql::Connection::open("main")?;
    let rows = db.query(
        "SELECT $1 || ' from sql'",
        &[sql::Value::Text("hello".to_owned())],
    )?;
    Ok(match rows.rows.first().and_then(|row| row.first()) {
        Some(sql::Value::Text(text)) => text.clone(),
        other => format!("{other:?}"),
    })
}
