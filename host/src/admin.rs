//! The admin API, on its own listener (loopback by default):
//! `GET /health`, `GET /plugins` and `GET /stats`.

use crate::firewall::Firewall;
use crate::plugin::mounts::Mounts;
use crate::server::{Body, full, text};
use http::{Method, Request, Response, StatusCode};

/// Serves one admin request.
pub async fn handle<B>(
    mounts: &Mounts,
    firewall: &Firewall,
    request: Request<B>,
) -> Response<Body> {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/health") => json(&serde_json::json!({ "status": "ok" })),
        (&Method::GET, "/plugins") => json(&mounts.report()),
        (&Method::GET, "/stats") => json(&serde_json::json!({ "edge": &firewall.stats })),
        (_, "/health" | "/plugins" | "/stats") => text(StatusCode::METHOD_NOT_ALLOWED, "use GET"),
        (_, path) => text(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {path}; try /health, /plugins or /stats"),
        ),
    }
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    full(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    )
}
