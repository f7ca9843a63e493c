//! Response filters of a route: CORS (preflight answered by the host) and
//! compression. Both are tower-http layers, wrapped around the route's
//! action for the one request.

use crate::config::CorsConfig;
use crate::server::{Body, BoxError};
use http::{HeaderName, HeaderValue, Method, Request, Response};
use http_body_util::BodyExt;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tower::{Layer, ServiceExt};
use tower_http::compression::CompressionLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// What runs inside the filters: the route's action, boxed (a generic
/// closure here would make the caller's future lose its `Send`).
pub type Action<B> =
    Box<dyn FnOnce(Request<B>) -> Pin<Box<dyn Future<Output = Response<Body>> + Send>> + Send>;

/// The filters of one route.
pub struct Filters {
    /// Cross-origin rules.
    cors: Option<CorsLayer>,
    /// Whether responses are compressed for clients that accept it.
    compress: bool,
}

impl Filters {
    /// The filters a route asks for; `None` when it asks for none.
    pub fn new(cors: Option<&CorsConfig>, compress: bool) -> Result<Option<Filters>, String> {
        let cors = cors.map(cors_layer).transpose()?;
        if cors.is_none() && !compress {
            return Ok(None);
        }
        Ok(Some(Filters { cors, compress }))
    }

    /// Checks a `cors` table.
    pub fn check_cors(config: &CorsConfig) -> Result<(), String> {
        cors_layer(config).map(drop)
    }

    /// Runs `action` for `request` inside the filters.
    /// The future is boxed: its tower types would otherwise make the
    /// caller's future lose its `Send` in rustc's eyes.
    pub fn around<B>(
        &self,
        request: Request<B>,
        action: Action<B>,
    ) -> Pin<Box<dyn Future<Output = Response<Body>> + Send + '_>>
    where
        B: Send + 'static,
    {
        Box::pin(self.run(request, action))
    }

    async fn run<B>(&self, request: Request<B>, action: Action<B>) -> Response<Body>
    where
        B: Send + 'static,
    {
        let inner = Inner(Some(action));
        // Without an Origin the request is not a cross-origin one: an
        // OPTIONS request then goes to the action, not to the preflight.
        let cors = self
            .cors
            .clone()
            .filter(|_| request.headers().contains_key(http::header::ORIGIN));
        let service = tower::ServiceBuilder::new()
            .option_layer(cors)
            .service(inner);
        let response = if self.compress {
            CompressionLayer::new()
                .layer(service)
                .oneshot(request)
                .await
                .map(|response| response.map(boxed))
        } else {
            service.oneshot(request).await
        };
        match response {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }
}

/// The action as the innermost tower service; it serves one request.
struct Inner<B>(Option<Action<B>>);

impl<B> tower::Service<Request<B>> for Inner<B> {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Infallible>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match self.0.take() {
            Some(action) => {
                let response = action(request);
                Box::pin(async move { Ok(response.await) })
            }
            None => Box::pin(async {
                Ok(crate::server::text(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "a filter stack serves one request",
                ))
            }),
        }
    }
}

fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = bytes::Bytes, Error = BoxError> + Send + 'static,
{
    body.boxed_unsync()
}

fn cors_layer(config: &CorsConfig) -> Result<CorsLayer, String> {
    let any = |list: &[String]| list.iter().any(|v| v == "*");
    if config.origins.is_empty() {
        return Err("origins is empty: list the allowed origins, or [\"*\"] for any".to_owned());
    }
    if config.credentials
        && (any(&config.origins) || any(&config.headers) || any(&config.expose_headers))
    {
        return Err(
            "credentials = true cannot be combined with \"*\": list the origins and headers by name"
                .to_owned(),
        );
    }
    let origin = if any(&config.origins) {
        AllowOrigin::any()
    } else {
        let origins = config
            .origins
            .iter()
            .map(|o| {
                HeaderValue::from_str(o.trim_end_matches('/'))
                    .ok()
                    .filter(|_| o.starts_with("http://") || o.starts_with("https://"))
                    .ok_or_else(|| {
                        format!("`{o}` is not an origin: write it like https://app.example.com")
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(origins)
    };
    let methods = if config.methods.is_empty() {
        vec![Method::GET, Method::HEAD, Method::POST]
    } else {
        config
            .methods
            .iter()
            .map(|m| {
                Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                    .map_err(|_| format!("`{m}` is not an HTTP method"))
            })
            .collect::<Result<_, _>>()?
    };
    let names = |list: &[String], key: &str| {
        list.iter()
            .filter(|h| *h != "*")
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|_| format!("{key}: `{h}` is not a header name"))
            })
            .collect::<Result<Vec<_>, _>>()
    };
    let mut layer = CorsLayer::new()
        .allow_origin(origin)
        .allow_methods(methods)
        .allow_credentials(config.credentials);
    layer = if any(&config.headers) {
        layer.allow_headers(tower_http::cors::Any)
    } else {
        layer.allow_headers(names(&config.headers, "headers")?)
    };
    layer = if any(&config.expose_headers) {
        layer.expose_headers(tower_http::cors::Any)
    } else {
        layer.expose_headers(names(&config.expose_headers, "expose_headers")?)
    };
    if let Some(seconds) = config.max_age_s {
        layer = layer.max_age(Duration::from_secs(seconds));
    }
    Ok(layer)
}
