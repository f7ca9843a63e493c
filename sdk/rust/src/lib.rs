//! Write gatehouse plugins in Rust.
//!
//! HTTP comes from [wstd] (`#[wstd::http_server]`, re-exported as
//! [`http_server`]); this crate adds typed helpers for what gatehouse
//! grants: [`sql`], [`kv`] and [`realtime`], plus [`reply`] and
//! [`read_json`] for the usual request and response. The raw WIT bindings
//! are in [`bindings`] for anything the helpers do not cover.
//!
//! ```ignore
//! use gatehouse_plugin::{kv, reply, sql, Body, Request, Response, StatusCode};
//!
//! #[gatehouse_plugin::http_server]
//! async fn main(_request: Request<Body>) -> Result<Response<Body>, gatehouse_plugin::Error> {
//!     let visits = kv::increment("visits", 1)?;
//!     let db = sql::Db::open("main")?;
//!     let name: String = db.query_one("SELECT name FROM users WHERE id = $1", &[1.into()])?
//!         .map(|row| row.get(0))
//!         .transpose()?
//!         .unwrap_or_default();
//!     Ok(reply::text(StatusCode::OK, format!("visit {visits}, user {name}")))
//! }
//! ```

/// The WIT bindings of the `gatehouse:plugin/capabilities` world.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "gatehouse:plugin/capabilities",
    });
}

pub mod kv;
pub mod realtime;
pub mod reply;
pub mod sql;

pub use reply::read_json;
pub use wstd::http::body::Body;
pub use wstd::http::{Method, Request, Response, StatusCode};
pub use wstd::http_server;

/// Anything that went wrong in a handler: a capability's error, a body
/// that is not JSON, or wstd's HTTP error.
#[derive(Debug)]
pub enum Error {
    Sql(sql::Error),
    Kv(kv::Error),
    Realtime(realtime::Error),
    /// The request body is not the JSON the handler expects.
    BadJson(String),
    /// A value has another type than the one asked for.
    Type(String),
    Http(wstd::http::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Sql(e) => write!(f, "sql: {e:?}"),
            Error::Kv(e) => write!(f, "kv: {e:?}"),
            Error::Realtime(e) => write!(f, "realtime: {e:?}"),
            Error::BadJson(e) => write!(f, "the body is not valid JSON: {e}"),
            Error::Type(e) => f.write_str(e),
            Error::Http(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<sql::Error> for Error {
    fn from(e: sql::Error) -> Self {
        Error::Sql(e)
    }
}
impl From<kv::Error> for Error {
    fn from(e: kv::Error) -> Self {
        Error::Kv(e)
    }
}
impl From<realtime::Error> for Error {
    fn from(e: realtime::Error) -> Self {
        Error::Realtime(e)
    }
}
impl From<wstd::http::Error> for Error {
    fn from(e: wstd::http::Error) -> Self {
        Error::Http(e)
    }
}

impl Error {
    /// The status a client should get: 503 when a capability is down, 400
    /// for bad input, 403 when not granted, 500 otherwise.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::Sql(sql::Error::NotGranted(_))
            | Error::Kv(kv::Error::NotGranted)
            | Error::Realtime(realtime::Error::NotGranted(_)) => StatusCode::FORBIDDEN,
            Error::Sql(sql::Error::Unavailable(_)) | Error::Kv(kv::Error::Unavailable(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Sql(sql::Error::Constraint(_)) => StatusCode::CONFLICT,
            Error::BadJson(_) => StatusCode::BAD_REQUEST,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}
