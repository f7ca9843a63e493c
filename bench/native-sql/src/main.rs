//! The native baseline of the SQL benchmark: hyper with the same auto (h1/h2)
//! server gatehouse uses, and an sqlx pool set up as gatehouse sets up its
//! `[databases.NAME]` pools (10 connections; SQLite in WAL mode; no ping
//! before handing out a connection that was used in the last second). It answers
//! `GET /item?id=N` like the capabilities fixture: one
//! `SELECT name FROM items WHERE id = $1`, the name as text/plain, or 404.
//!
//! Usage: native-sql ADDR DATABASE_URL (sqlite://FILE or postgres://...)

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, body::Incoming, header};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use sqlx::pool::PoolOptions;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};
use std::convert::Infallible;
use std::str::FromStr;
use std::sync::Arc;

/// The query, word for word what the fixture sends.
const QUERY: &str = "SELECT name FROM items WHERE id = $1";

/// gatehouse's default `max_connections`.
const MAX_CONNECTIONS: u32 = 10;

/// As gatehouse: a Postgres connection idle for less than this is handed out
/// without a ping (sqlx pinged it when it came back); SQLite's never is.
const TRUSTED_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

impl Pool {
    /// Opens the pool lazily, with the options gatehouse uses.
    fn open(url: &str) -> Pool {
        if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)
                .expect("sqlite url")
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true);
            Pool::Sqlite(
                PoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .test_before_acquire(false)
                    .connect_lazy_with(options),
            )
        } else {
            let options = PgConnectOptions::from_str(url).expect("postgres url");
            Pool::Postgres(
                PoolOptions::new()
                    .max_connections(MAX_CONNECTIONS)
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if meta.idle_for > TRUSTED_IDLE {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .connect_lazy_with(options),
            )
        }
    }

    /// The name of item `id`, if there is one.
    async fn name(&self, id: i64) -> sqlx::Result<Option<String>> {
        match self {
            Pool::Sqlite(pool) => {
                sqlx::query_scalar(QUERY)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
            }
            Pool::Postgres(pool) => {
                sqlx::query_scalar(QUERY)
                    .bind(id)
                    .fetch_optional(pool)
                    .await
            }
        }
    }
}

fn answer(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(pool: &Pool, request: Request<Incoming>) -> Response<Full<Bytes>> {
    if request.uri().path() != "/item" {
        return answer(StatusCode::NOT_FOUND, "not found\n");
    }
    let id = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .find_map(|pair| pair.strip_prefix("id="))
        .and_then(|id| id.parse::<i64>().ok());
    let Some(id) = id else {
        return answer(StatusCode::BAD_REQUEST, "id=N required\n");
    };
    match pool.name(id).await {
        Ok(Some(name)) => answer(StatusCode::OK, name),
        Ok(None) => answer(StatusCode::NOT_FOUND, "no such item\n"),
        Err(e) => answer(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(url)) = (args.next(), args.next()) else {
        eprintln!("usage: native-sql ADDR DATABASE_URL");
        std::process::exit(2);
    };
    let pool = Arc::new(Pool::open(&url));
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    eprintln!("listening on http://{}", listener.local_addr().unwrap());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let pool = pool.clone();
                async move { Ok::<_, Infallible>(handle(&pool, request).await) }
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
