//! Static files from a folder: tower-http's `ServeDir` does content types,
//! Last-Modified with If-Modified-Since, Range, `index.html` and
//! precompressed `.gz` / `.br` siblings. On top of it this module keeps
//! every request inside the folder (a symlink pointing out is refused, which
//! `ServeDir` does not check) and adds an ETag with If-None-Match.

use crate::server::{Body, text};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::path::{Component, Path, PathBuf};
use std::time::UNIX_EPOCH;
use tower::ServiceExt;
use tower_http::services::ServeDir;

/// A folder served by a route.
pub struct Folder {
    /// The folder, canonical: every file served must resolve inside it.
    root: PathBuf,
    /// The file server.
    serve: ServeDir,
}

impl Folder {
    /// Opens `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<Folder, String> {
        let root = dir.canonicalize().map_err(|e| {
            format!(
                "static folder {} cannot be opened ({e}): create it or fix the path",
                dir.display()
            )
        })?;
        if !root.is_dir() {
            return Err(format!("static = {} is not a folder", dir.display()));
        }
        let serve = ServeDir::new(&root)
            .append_index_html_on_directories(true)
            .precompressed_gzip()
            .precompressed_br();
        Ok(Folder { root, serve })
    }

    /// Answers `request`, whose path is already relative to the folder.
    pub async fn serve<B>(&self, request: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
    {
        let path = request.uri().path().to_owned();
        let Some(file) = self.resolve(&path) else {
            return text(StatusCode::NOT_FOUND, "not found");
        };
        let etag = tokio::fs::metadata(&file)
            .await
            .ok()
            .filter(|m| m.is_file())
            .and_then(|m| {
                let modified = m.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
                HeaderValue::from_str(&format!("\"{:x}-{:x}\"", modified.as_secs(), m.len())).ok()
            });
        if let Some(etag) = &etag
            && let Some(wanted) = request.headers().get(http::header::IF_NONE_MATCH)
            && matches_etag(wanted, etag)
        {
            let mut response = text(StatusCode::NOT_MODIFIED, "");
            *response.body_mut() = Body::default();
            response.headers_mut().remove(http::header::CONTENT_TYPE);
            response
                .headers_mut()
                .insert(http::header::ETAG, etag.clone());
            return response;
        }
        let response = match self.serve.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let mut response = response.map(|body| {
            body.map_err(|e| Box::new(e) as crate::server::BoxError)
                .boxed_unsync()
        });
        if let Some(etag) = etag
            && matches!(
                response.status(),
                StatusCode::OK | StatusCode::PARTIAL_CONTENT
            )
        {
            response.headers_mut().insert(http::header::ETAG, etag);
        }
        response
    }

    /// The file a request path names, if it is inside the folder: `..`
    /// (plain or percent-encoded) and symlinks that lead out resolve to
    /// nothing. A path naming a directory resolves to its `index.html`.
    fn resolve(&self, path: &str) -> Option<PathBuf> {
        let decoded = percent_encoding::percent_decode_str(path.trim_start_matches('/'))
            .decode_utf8()
            .ok()?;
        let mut file = self.root.clone();
        for component in Path::new(&*decoded).components() {
            match component {
                Component::Normal(part) => file.push(part),
                Component::CurDir => {}
                _ => return None,
            }
        }
        if file.is_dir() {
            file.push("index.html");
        }
        // The file and the precompressed siblings ServeDir may pick instead.
        for candidate in [
            file.clone(),
            with_suffix(&file, ".gz"),
            with_suffix(&file, ".br"),
        ] {
            match candidate.canonicalize() {
                Ok(real) if !real.starts_with(&self.root) => return None,
                _ => {}
            }
        }
        Some(file)
    }
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether an If-None-Match value names `etag` (or is `*`).
fn matches_etag(wanted: &HeaderValue, etag: &HeaderValue) -> bool {
    let Ok(wanted) = wanted.to_str() else {
        return false;
    };
    let etag = etag.to_str().unwrap_or_default();
    wanted
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}
