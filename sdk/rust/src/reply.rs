//! Responses and request bodies.

use crate::{Body, Error, Response, StatusCode};
use wstd::http::HeaderValue;

/// A plain-text response.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    with_type(status, body.into(), "text/plain; charset=utf-8")
}

/// A JSON response.
pub fn json(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    let body = serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
    with_type(status, body, "application/json")
}

/// An HTML response.
pub fn html(body: impl Into<String>) -> Response<Body> {
    with_type(StatusCode::OK, body.into(), "text/html; charset=utf-8")
}

/// `{"error": "..."}` with the error's status.
pub fn error(error: &Error) -> Response<Body> {
    json(
        error.status(),
        &serde_json::json!({ "error": error.to_string() }),
    )
}

fn with_type(status: StatusCode, body: String, content_type: &'static str) -> Response<Body> {
    let mut response = Response::new(body.into());
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

/// Reads a request body as JSON.
pub async fn read_json<T: serde::de::DeserializeOwned>(body: &mut Body) -> Result<T, Error> {
    let bytes = body.contents().await?;
    serde_json::from_slice(bytes).map_err(|e| Error::BadJson(e.to_string()))
}
