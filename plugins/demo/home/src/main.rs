//! The demo's front page. Its sidecar `home.toml` replaces the default mount
//! (`/home`) with explicit routes: `/` and `/about`.

use wstd::http::body::Body;
use wstd::http::{Error, Request, Response, StatusCode};

const PAGE: &str = r#"<!doctype html>
<html><head><meta charset="utf-8"><title>gatehouse</title></head>
<body style="font-family: system-ui, sans-serif; max-width: 40em; margin: 3em auto">
<h1>gatehouse</h1>
<p>This page is served by the <code>home</code> plugin, a WebAssembly component
mounted at <code>/</code> by its sidecar <code>plugins/demo/home.toml</code>.</p>
<ul>
<li><a href="/hello">/hello</a>: the <code>hello</code> plugin, mounted by dropping it in the folder</li>
<li><a href="/hello/headers">/hello/headers</a>: the request headers as the plugin sees them</li>
<li><a href="/about">/about</a>: a second route of this plugin</li>
</ul>
<p>Edit a plugin's source under <code>plugins/demo/</code> and reload: gatehouse rebuilds it
and swaps it in while it keeps serving.</p>
</body></html>
"#;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    match request.uri().path() {
        "/" => Ok(Response::builder()
            .header("content-type", "text/html; charset=utf-8")
            .body(PAGE.into())?),
        "/about" => Ok(Response::new(
            "gatehouse: listeners, routing and sandboxed WebAssembly plugins in one binary.\n"
                .into(),
        )),
        other => Ok(Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(format!("home has no page at {other}\n").into())?),
    }
}
