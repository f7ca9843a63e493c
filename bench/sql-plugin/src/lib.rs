//! `GET /item?id=N[&db=NAME]`: the name of item N as text/plain, or 404.
//!
//! The same query and answers as the capabilities fixture's `/item`, written
//! on the bindings wit-bindgen generates from `wit/` (as a C or Zig plugin
//! would be) instead of wstd's async HTTP types: one `incoming-handler`
//! call, one `sql` query, one body write.

wit_bindgen::generate!({
    path: "../../wit",
    world: "gatehouse:plugin/plugin",
    generate_all,
});

use gatehouse::plugin::sql;
use wasi::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Item;

export!(Item);

impl exports::wasi::http::incoming_handler::Guest for Item {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let target = request.path_with_query().unwrap_or_default();
        let query = target.split_once('?').map_or("", |(_, query)| query);
        let Some(id) = param(query, "id").and_then(|id| id.parse::<i64>().ok()) else {
            return reply(out, 400, "`id` must be an integer");
        };
        let db = param(query, "db").unwrap_or("main");
        let rows = sql::Connection::open(db).and_then(|connection| {
            connection.query(
                "SELECT name FROM items WHERE id = $1",
                &[sql::Value::Integer(id)],
            )
        });
        let first = |rows: sql::Rows| rows.rows.into_iter().next()?.into_iter().next();
        match rows.map(first) {
            Ok(Some(sql::Value::Text(name))) => reply(out, 200, &name),
            Ok(Some(other)) => reply(out, 200, &format!("{other:?}")),
            Ok(None) => reply(out, 404, "not-found"),
            Err(error) => reply(out, 503, &format!("{error:?}")),
        }
    }
}

/// The value of `name` in a query string (undecoded: ids and names here
/// need no decoding).
fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        (key == name).then_some(value)
    })
}

/// Answers with `status` and `text`. The host made the outparam and the
/// response's body, so their calls fail only on misuse of this code.
fn reply(out: ResponseOutparam, status: u16, text: &str) {
    let headers = Fields::from_list(&[(
        "content-type".to_owned(),
        b"text/plain; charset=utf-8".to_vec(),
    )])
    .expect("a valid header");
    let response = OutgoingResponse::new(headers);
    response.set_status_code(status).expect("a valid status");
    let body = response.body().expect("the body, taken once");
    ResponseOutparam::set(out, Ok(response));
    let stream = body.write().expect("the stream, taken once");
    // At most 4096 bytes per blocking write. A client that went away ends
    // the write; nothing is left to do then.
    for chunk in text.as_bytes().chunks(4096) {
        if stream.blocking_write_and_flush(chunk).is_err() {
            break;
        }
    }
    drop(stream);
    let _ = OutgoingBody::finish(body, None);
}
