//! The admin API, on its own listener (loopback by default):
//! `GET /health`, `/plugins`, `/routes`, `/upstreams` and `/stats`.

use crate::router::Action;
use crate::server::{Body, Server, full, text};
use http::{Method, Request, Response, StatusCode};

const ENDPOINTS: &str = "/health, /plugins, /routes, /upstreams or /stats";

/// Serves one admin request.
pub async fn handle<B>(server: &Server, request: Request<B>) -> Response<Body> {
    let path = request.uri().path();
    if request.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET");
    }
    match path {
        "/health" => json(&serde_json::json!({ "status": "ok" })),
        "/plugins" => json(&server.mounts.report()),
        "/routes" => json(&routes(server)),
        "/upstreams" => {
            let mounted = server.mounts.snapshot();
            let pools: Vec<_> = mounted
                .table
                .routes()
                .iter()
                .filter_map(|route| match &route.action {
                    Action::Proxy(pool) => Some(pool.report()),
                    _ => None,
                })
                .flatten()
                .collect();
            json(&pools)
        }
        "/stats" => {
            let provisions = server.mounts.provisions().load();
            json(&serde_json::json!({
                "edge": &*server.firewall.load().stats,
                "realtime": { "connections": provisions.realtime.connections() },
                "databases": provisions.databases.stats(),
                "kv": provisions.databases.host().read_counts(),
            }))
        }
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no admin endpoint {path}; try {ENDPOINTS}"),
        ),
    }
}

/// The route table, most specific first.
fn routes(server: &Server) -> Vec<serde_json::Value> {
    let mounted = server.mounts.snapshot();
    mounted
        .table
        .routes()
        .iter()
        .map(|route| {
            let action = match &route.action {
                Action::Plugin(name) => serde_json::json!({ "plugin": name }),
                Action::Proxy(pool) => serde_json::json!({
                    "proxy": pool.report().into_iter().map(|u| u.upstream).collect::<Vec<_>>()
                }),
                Action::Static(_) => serde_json::json!({ "static": true }),
                Action::Redirect(redirect) => serde_json::json!({
                    "redirect": redirect.target, "status": redirect.status.as_u16()
                }),
            };
            serde_json::json!({
                "route": route.pattern.to_string(),
                "declared_by": route.owner.to_string(),
                "action": action,
            })
        })
        .collect()
}

fn json(value: &impl serde::Serialize) -> Response<Body> {
    full(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    )
}
