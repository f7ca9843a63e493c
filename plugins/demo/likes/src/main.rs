//! The likes demo: like a friend's post and their page shows a notification
//! a moment later. The post's owner is pushed `{"type":"like","post","from"}`
//! on their WebSocket (`/ws?user=ID`) or event stream as soon as the like is
//! stored.
//!
//! It uses three capabilities: `sql` on `main` for users, posts, likes and
//! notifications (tables from `migrations/`), `kv` for each user's unread
//! count, and `realtime` for the push, on channel `user:ID`.
//!
//! The JSON API (every error is `{"error": "..."}` with 400 or 404):
//! - `POST /api/users {"name"}` -> 201 `{"id","name"}`; `GET /api/users`;
//!   `GET /api/users/ID` -> `{"id","name","unread"}`
//! - `POST /api/posts {"author","text"}` -> 201 `{"id","author","text","likes"}`;
//!   `GET /api/posts`; `GET /api/posts/ID`
//! - `POST /api/posts/ID/likes {"user"}` -> 201 the first time, 200 after
//! - `GET /api/users/ID/notifications` -> `[{"type","post","from","at"}]`,
//!   newest first; reading them resets the unread count
//! - `GET /` -> the web page (`page.html`)

// The capabilities come from the SDK (gatehouse-plugin); only the
// websocket-handler export is generated here, on the SDK's types.
wit_bindgen::generate!({
    path: "../../../wit",
    world: "gatehouse:plugin/events",
    with: {
        "gatehouse:plugin/sql@0.1.0": gatehouse_plugin::bindings::gatehouse::plugin::sql,
        "gatehouse:plugin/kv@0.1.0": gatehouse_plugin::bindings::gatehouse::plugin::kv,
        "gatehouse:plugin/realtime@0.1.0": gatehouse_plugin::bindings::gatehouse::plugin::realtime,
    },
});

use exports::gatehouse::plugin::websocket_handler::{Guest, OpenRequest, Rejection};
use gatehouse_plugin::bindings::gatehouse::plugin::sql;
use gatehouse_plugin::realtime::{self, ConnectionId, Message};
use gatehouse_plugin::{kv, reply};
use serde_json::{Value as Json, json};
use wstd::http::body::Body;
use wstd::http::{Error, HeaderValue, Method, Request, Response, StatusCode};

const PAGE: &str = include_str!("page.html");

/// Longest user name and post text, in characters.
const MAX_NAME: usize = 40;
const MAX_TEXT: usize = 500;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let (parts, mut body) = request.into_parts();
    let segments: Vec<&str> = parts.uri.path().split('/').skip(1).collect();
    let answer = match (&parts.method, segments.as_slice()) {
        (&Method::GET, [""]) => {
            let mut page = Response::new(PAGE.into());
            page.headers_mut().insert(
                "content-type",
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            return Ok(page);
        }
        (&Method::GET, ["api", "users"]) => list_users(),
        (&Method::POST, ["api", "users"]) => match read_json(&mut body).await {
            Ok(input) => create_user(&input),
            Err(e) => Err(e),
        },
        (&Method::GET, ["api", "users", id]) => get_user(id),
        (&Method::GET, ["api", "users", id, "notifications"]) => notifications(id),
        (&Method::GET, ["api", "posts"]) => list_posts(),
        (&Method::POST, ["api", "posts"]) => match read_json(&mut body).await {
            Ok(input) => create_post(&input),
            Err(e) => Err(e),
        },
        (&Method::GET, ["api", "posts", id]) => get_post(id),
        (&Method::POST, ["api", "posts", id, "likes"]) => match read_json(&mut body).await {
            Ok(input) => like(id, &input),
            Err(e) => Err(e),
        },
        _ => Err(Problem::NotFound(format!(
            "no route for {} {}",
            parts.method,
            parts.uri.path()
        ))),
    };
    Ok(match answer {
        Ok((status, value)) => json_reply(status, &value),
        Err(problem) => problem.reply(),
    })
}

/// What went wrong with a request, as the client is told.
enum Problem {
    BadRequest(String),
    NotFound(String),
    /// The database or the store failed: not the client's fault, and not a
    /// crash either.
    Unavailable(String),
}

impl Problem {
    fn reply(self) -> Response<Body> {
        let (status, message) = match self {
            Problem::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            Problem::NotFound(m) => (StatusCode::NOT_FOUND, m),
            Problem::Unavailable(m) => (StatusCode::SERVICE_UNAVAILABLE, m),
        };
        json_reply(status, &json!({ "error": message }))
    }
}

impl From<sql::Error> for Problem {
    fn from(error: sql::Error) -> Self {
        Problem::Unavailable(format!("the database failed: {error:?}"))
    }
}

type Answer = Result<(StatusCode, Json), Problem>;

fn db() -> Result<sql::Connection, Problem> {
    Ok(sql::Connection::open("main")?)
}

// ------------------------------------------------------------------ users

fn list_users() -> Answer {
    let rows = db()?.query("SELECT id, name FROM users ORDER BY id", &[])?;
    let users: Vec<Json> = rows
        .rows
        .iter()
        .map(|row| json!({ "id": int(&row[0]), "name": text(&row[1]) }))
        .collect();
    Ok((StatusCode::OK, Json::Array(users)))
}

fn create_user(input: &Json) -> Answer {
    let name = string_field(input, "name", MAX_NAME)?;
    let rows = db()?.query(
        "INSERT INTO users (name) VALUES ($1) RETURNING id",
        &[sql::Value::Text(name.clone())],
    )?;
    let id = rows.rows.first().map(|row| int(&row[0])).unwrap_or(0);
    Ok((StatusCode::CREATED, json!({ "id": id, "name": name })))
}

fn get_user(id: &str) -> Answer {
    let id = path_id(id, "user")?;
    let name = user_name(id)?;
    let unread = kv::get_int(&unread_key(id)).unwrap_or(0);
    Ok((
        StatusCode::OK,
        json!({ "id": id, "name": name, "unread": unread }),
    ))
}

/// The name of user `id`, or 404.
fn user_name(id: i64) -> Result<String, Problem> {
    let rows = db()?.query(
        "SELECT name FROM users WHERE id = $1",
        &[sql::Value::Integer(id)],
    )?;
    rows.rows
        .first()
        .map(|row| text(&row[0]))
        .ok_or_else(|| Problem::NotFound(format!("no user {id}")))
}

fn unread_key(user: i64) -> String {
    format!("unread:{user}")
}

fn notifications(id: &str) -> Answer {
    let id = path_id(id, "user")?;
    user_name(id)?;
    let rows = db()?.query(
        "SELECT type, post, from_user, at FROM notifications WHERE user = $1 \
         ORDER BY id DESC LIMIT 100",
        &[sql::Value::Integer(id)],
    )?;
    let list: Vec<Json> = rows
        .rows
        .iter()
        .map(|row| {
            json!({
                "type": text(&row[0]),
                "post": int(&row[1]),
                "from": int(&row[2]),
                "at": text(&row[3]),
            })
        })
        .collect();
    // The count is a convenience: failing to reset it fails nothing.
    let _ = kv::delete(&unread_key(id));
    Ok((StatusCode::OK, Json::Array(list)))
}

// ------------------------------------------------------------------ posts

const POST_COLUMNS: &str = "SELECT p.id, p.author, p.text, \
     (SELECT count(*) FROM likes l WHERE l.post = p.id) FROM posts p";

fn post_json(row: &[sql::Value]) -> Json {
    json!({
        "id": int(&row[0]),
        "author": int(&row[1]),
        "text": text(&row[2]),
        "likes": int(&row[3]),
    })
}

fn list_posts() -> Answer {
    let rows = db()?.query(&format!("{POST_COLUMNS} ORDER BY p.id DESC LIMIT 100"), &[])?;
    let posts: Vec<Json> = rows.rows.iter().map(|row| post_json(row)).collect();
    Ok((StatusCode::OK, Json::Array(posts)))
}

fn create_post(input: &Json) -> Answer {
    let author = int_field(input, "author")?;
    let text = string_field(input, "text", MAX_TEXT)?;
    user_name(author)?;
    let rows = db()?.query(
        "INSERT INTO posts (author, text) VALUES ($1, $2) RETURNING id",
        &[sql::Value::Integer(author), sql::Value::Text(text.clone())],
    )?;
    let id = rows.rows.first().map(|row| int(&row[0])).unwrap_or(0);
    Ok((
        StatusCode::CREATED,
        json!({ "id": id, "author": author, "text": text, "likes": 0 }),
    ))
}

fn get_post(id: &str) -> Answer {
    let id = path_id(id, "post")?;
    Ok((StatusCode::OK, post(id)?))
}

/// Post `id` as JSON, or 404.
fn post(id: i64) -> Result<Json, Problem> {
    let rows = db()?.query(
        &format!("{POST_COLUMNS} WHERE p.id = $1"),
        &[sql::Value::Integer(id)],
    )?;
    rows.rows
        .first()
        .map(|row| post_json(row))
        .ok_or_else(|| Problem::NotFound(format!("no post {id}")))
}

/// `POST /api/posts/ID/likes {"user"}`: stores the like and, the first time
/// someone else likes the post, the owner's notification, in one
/// transaction; then pushes the notification to the owner.
fn like(id: &str, input: &Json) -> Answer {
    let post_id = path_id(id, "post")?;
    let user = int_field(input, "user")?;
    let author = int_json(&post(post_id)?["author"]);
    user_name(user)?;
    let params = vec![sql::Value::Integer(post_id), sql::Value::Integer(user)];
    let affected = db()?.batch(&[
        sql::Statement {
            sql: "INSERT INTO likes (post, user) VALUES ($1, $2) ON CONFLICT DO NOTHING".into(),
            params: params.clone(),
        },
        sql::Statement {
            sql: "INSERT INTO notifications (user, type, post, from_user) \
                  SELECT author, 'like', id, $2 FROM posts WHERE id = $1 AND author <> $2 \
                  ON CONFLICT DO NOTHING"
                .into(),
            params,
        },
    ])?;
    if affected.get(1) == Some(&1) {
        let _ = kv::increment(&unread_key(author), 1);
        let pushed = json!({ "type": "like", "post": post_id, "from": user });
        // Nobody listening is fine: the notification is stored.
        let _ = realtime::publish_json(&format!("user:{author}"), &pushed);
    }
    let status = if affected.first() == Some(&1) {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, post(post_id)?))
}

// -------------------------------------------------------------- websocket

struct Live;

impl Guest for Live {
    /// `/ws?user=ID`: the user's notifications as they happen.
    fn on_open(connection: ConnectionId, request: OpenRequest) -> Result<(), Rejection> {
        let refuse = |status: u16, message: String| Rejection {
            status,
            body: json!({ "error": message }).to_string(),
        };
        let user = request
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("user="))
            .ok_or_else(|| refuse(400, "connect to /ws?user=ID".into()))?;
        let user =
            path_id(user, "user").map_err(|_| refuse(400, format!("`{user}` is not a user id")))?;
        match user_name(user) {
            Ok(_) => {}
            Err(Problem::NotFound(m)) => return Err(refuse(404, m)),
            Err(Problem::BadRequest(m) | Problem::Unavailable(m)) => return Err(refuse(503, m)),
        }
        realtime::subscribe(connection, &format!("user:{user}"))
            .map_err(|e| refuse(503, format!("cannot subscribe: {e:?}")))
    }

    /// A client may send `ping`; anything else is ignored.
    fn on_message(connection: ConnectionId, message: Message) {
        if matches!(&message, Message::Text(text) if text == "ping") {
            let _ = realtime::send_text(connection, r#"{"type":"pong"}"#);
        }
    }

    fn on_close(_connection: ConnectionId, _code: u16, _reason: String) {}
}

export!(Live);

// ---------------------------------------------------------------- helpers

async fn read_json(body: &mut Body) -> Result<Json, Problem> {
    let bytes = body
        .contents()
        .await
        .map_err(|e| Problem::BadRequest(format!("cannot read the body: {e}")))?;
    serde_json::from_slice(bytes)
        .map_err(|e| Problem::BadRequest(format!("the body is not valid JSON: {e}")))
}

fn string_field(input: &Json, name: &str, max: usize) -> Result<String, Problem> {
    let value = input
        .get(name)
        .and_then(Json::as_str)
        .map(str::trim)
        .ok_or_else(|| Problem::BadRequest(format!("`{name}` must be a string")))?;
    if value.is_empty() || value.chars().count() > max {
        return Err(Problem::BadRequest(format!(
            "`{name}` must be 1 to {max} characters"
        )));
    }
    Ok(value.to_owned())
}

fn int_field(input: &Json, name: &str) -> Result<i64, Problem> {
    input
        .get(name)
        .and_then(Json::as_i64)
        .ok_or_else(|| Problem::BadRequest(format!("`{name}` must be an integer id")))
}

fn path_id(segment: &str, what: &str) -> Result<i64, Problem> {
    segment
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| Problem::NotFound(format!("no {what} `{segment}`")))
}

fn int(value: &sql::Value) -> i64 {
    match value {
        sql::Value::Integer(i) => *i,
        _ => 0,
    }
}

fn int_json(value: &Json) -> i64 {
    value.as_i64().unwrap_or(0)
}

fn text(value: &sql::Value) -> String {
    match value {
        sql::Value::Text(t) => t.clone(),
        _ => String::new(),
    }
}

fn json_reply(status: StatusCode, value: &Json) -> Response<Body> {
    reply::json(status, value)
}
