//! The request path inside the host: route, then hand to the plugin, then
//! write the access log line.

use crate::plugin::mounts::Mounts;
use crate::router;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use std::net::SocketAddr;
use std::time::Instant;

/// Any error a response body can end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every response the host writes.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response with a whole body in memory.
pub fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut response = Response::new(
        Full::new(body.into())
            .map_err(|e| match e {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(content_type),
    );
    response
}

/// A small plain-text response; the message gets a final newline.
pub fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut message = message.into();
    message.push('\n');
    full(status, "text/plain; charset=utf-8", message)
}

/// Serves one request from a public listener.
pub async fn handle<B>(
    mounts: &Mounts,
    mut request: Request<B>,
    local: SocketAddr,
) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<wasmtime_wasi_http::Error>,
{
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mounted = mounts.snapshot();
    let host = request_host(&request);
    let Some(matched) = mounted.table.lookup(host.as_deref(), &path) else {
        let response = text(StatusCode::NOT_FOUND, format!("no route for {path}"));
        access_log(&method, &path, response.status(), "-", started);
        return response;
    };
    let plugin = mounted.plugins[matched.plugin].clone();

    if let Some(prefix) = matched.stripped {
        let inner = router::strip(&path, Some(prefix));
        *request.uri_mut() = with_path(request.uri(), &inner);
        if let Ok(value) = HeaderValue::from_str(prefix) {
            request.headers_mut().insert("x-forwarded-prefix", value);
        }
    }
    if host.is_none() {
        // HTTP/1.0 without Host: wasi:http needs an authority.
        if let Ok(value) = HeaderValue::from_str(&local.to_string()) {
            request.headers_mut().insert(http::header::HOST, value);
        }
    }
    drop(mounted);

    let response = match plugin.invoke(request).await {
        Ok(response) => {
            response.map(|body| body.map_err(|e| Box::new(e) as BoxError).boxed_unsync())
        }
        Err(failure) => {
            tracing::warn!(plugin = %plugin.name, %method, %path, "plugin failed: {failure}");
            text(
                failure.status(),
                format!("plugin `{}` {}", plugin.name, failure.public_message()),
            )
        }
    };
    access_log(&method, &path, response.status(), &plugin.name, started);
    response
}

/// The host a request was sent to, without port, from the URI (HTTP/2) or
/// the Host header (HTTP/1).
fn request_host<B>(request: &Request<B>) -> Option<String> {
    let authority = match request.uri().authority() {
        Some(authority) => authority.host().to_owned(),
        None => {
            let host = request.headers().get(http::header::HOST)?.to_str().ok()?;
            host.parse::<http::uri::Authority>().ok()?.host().to_owned()
        }
    };
    Some(authority.to_ascii_lowercase())
}

/// `uri` with its path replaced, query kept.
fn with_path(uri: &Uri, path: &str) -> Uri {
    let path_and_query = match uri.query() {
        Some(query) => format!("{path}?{query}"),
        None => path.to_owned(),
    };
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = path_and_query.parse().ok();
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

fn access_log(
    method: &http::Method,
    path: &str,
    status: StatusCode,
    plugin: &str,
    started: Instant,
) {
    tracing::info!(
        target: "gatehouse::access",
        %method,
        path,
        status = status.as_u16(),
        plugin,
        ms = format_args!("{:.2}", started.elapsed().as_secs_f64() * 1000.0),
    );
}
