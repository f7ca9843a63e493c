//! The smallest gatehouse plugin: a standard `wasi:http/proxy` component.
//!
//! Dropped into the plugins folder as `hello/`, it is built by gatehouse and
//! mounted at `/hello` and `/hello/*`; the prefix is stripped, so
//! `GET /hello/echo` arrives here as `/echo`.

use wstd::http::body::Body;
use wstd::http::{Error, Request, Response, StatusCode};

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let prefix = request
        .headers()
        .get("x-forwarded-prefix")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let path = request.uri().path().to_owned();
    match path.as_str() {
        "/" | "" => Ok(Response::new(
            format!("Hello from a WebAssembly component, mounted at {prefix}/\n").into(),
        )),
        "/version" => Ok(Response::new("hello".to_owned().into())),
        "/echo" => {
            let mut body = request.into_body();
            let bytes = body.contents().await?.to_vec();
            Ok(Response::new(bytes.into()))
        }
        "/headers" => {
            let mut out = String::new();
            for (name, value) in request.headers() {
                out.push_str(&format!("{name}: {}\n", value.to_str().unwrap_or("<binary>")));
            }
            Ok(Response::new(out.into()))
        }
        _ => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(format!("hello has no page at {prefix}{path}\n").into())?),
    }
}
