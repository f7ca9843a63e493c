//! Static files from a folder: content types, `ETag` and `Last-Modified`
//! with 304, `Range` with 206, `index.html` for folders, and precompressed
//! `x.br` / `x.gz` siblings for clients that accept them.
//!
//! Every file is opened with `openat2(RESOLVE_BENEATH)` under the folder, so
//! the kernel itself refuses any path that leads out: `..`, absolute paths
//! and symlinks that point out (or are absolute) all fail to open and answer
//! 404. Files are read with plain system calls on the serving thread, as
//! nginx does: tower-http's `ServeDir` hands each file operation to tokio's
//! blocking pool, which made small files several times slower.

use crate::server::{Body, BoxError, full, text};
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::future::Future;
use std::os::fd::OwnedFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Files up to this size are read whole; larger ones are streamed.
const READ_WHOLE: u64 = 256 * 1024;

/// A folder served by a route.
pub struct Folder {
    /// The folder, opened once; every file is resolved beneath it.
    dir: OwnedFd,
}

/// One file picked to answer a request.
struct Picked {
    file: File,
    len: u64,
    modified: SystemTime,
    /// `br` or `gzip` when a precompressed sibling is served.
    encoding: Option<&'static str>,
    /// The content type, from the name of the file asked for.
    content_type: &'static str,
}

impl Folder {
    /// Opens `dir`, which must exist.
    pub fn open(dir: &Path) -> Result<Folder, String> {
        let dir = rustix::fs::open(
            dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            format!(
                "static folder {} cannot be opened ({e}): create it or fix the path",
                dir.display()
            )
        })?;
        Ok(Folder { dir })
    }

    /// Answers `request`, whose path is already relative to the folder.
    pub async fn serve<B>(&self, request: Request<B>) -> Response<Body> {
        let head = match *request.method() {
            Method::GET => false,
            Method::HEAD => true,
            _ => {
                let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "use GET or HEAD");
                response
                    .headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
                return response;
            }
        };
        let Some(relative) = relative_path(request.uri().path()) else {
            return not_found();
        };
        let headers = request.headers();
        let picked = match self.pick(&relative, headers) {
            Ok(picked) => picked,
            Err(Miss::NotFound) => return not_found(),
            Err(Miss::Folder) => {
                // `/docs` is a folder: send the client to `/docs/`, so that
                // relative links in its index.html resolve. The path is the
                // client's: under the route's prefix, and with one leading
                // slash (`//host/` would send it to another site).
                let prefix = headers
                    .get("x-forwarded-prefix")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let path = format!("{prefix}{}", request.uri().path());
                let path = format!("/{}", path.trim_start_matches('/'));
                let location = match request.uri().query() {
                    Some(query) => format!("{path}/?{query}"),
                    None => format!("{path}/"),
                };
                let mut response = text(
                    StatusCode::PERMANENT_REDIRECT,
                    format!("moved to {location}"),
                );
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return response;
            }
        };
        respond(picked, headers, head)
    }

    /// Opens the file for `relative` (its `index.html` for a folder path
    /// ending in `/`), or its precompressed sibling when the client accepts it.
    fn pick(&self, relative: &str, headers: &HeaderMap) -> Result<Picked, Miss> {
        let mut name = relative.to_owned();
        if name.is_empty() || name.ends_with('/') {
            name.push_str("index.html");
        }
        let content_type = content_type(&name);
        let accepts = |coding: &str| {
            headers
                .get_all(header::ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .any(|c| {
                    let mut parts = c.split(';');
                    parts.next().is_some_and(|n| n.trim() == coding)
                        && !parts.any(|p| p.trim().replace(' ', "") == "q=0")
                })
        };
        let (file, meta) = self.open_file(&name)?;
        if meta.is_dir() {
            return Err(Miss::Folder);
        }
        for (coding, suffix) in [("br", ".br"), ("gzip", ".gz")] {
            if accepts(coding)
                && let Ok((file, meta)) = self.open_file(&format!("{name}{suffix}"))
                && meta.is_file()
            {
                return Ok(Picked {
                    file,
                    len: meta.len(),
                    modified: meta.modified().unwrap_or(UNIX_EPOCH),
                    encoding: Some(coding),
                    content_type,
                });
            }
        }
        if !meta.is_file() {
            return Err(Miss::NotFound);
        }
        Ok(Picked {
            file,
            len: meta.len(),
            modified: meta.modified().unwrap_or(UNIX_EPOCH),
            encoding: None,
            content_type,
        })
    }

    fn open_file(&self, name: &str) -> Result<(File, std::fs::Metadata), Miss> {
        let fd = rustix::fs::openat2(
            &self.dir,
            name,
            OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
            Mode::empty(),
            ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
        )
        .map_err(|_| Miss::NotFound)?;
        let file = File::from(fd);
        let meta = file.metadata().map_err(|_| Miss::NotFound)?;
        Ok((file, meta))
    }
}

enum Miss {
    NotFound,
    /// A folder asked for without its final `/`.
    Folder,
}

fn not_found() -> Response<Body> {
    text(StatusCode::NOT_FOUND, "not found")
}

/// The request path as a path relative to the folder, percent-decoded;
/// `None` for what can never name a file in it (`..`, NUL, backslashes).
fn relative_path(path: &str) -> Option<String> {
    let decoded = percent_encoding::percent_decode_str(path)
        .decode_utf8()
        .ok()?;
    let relative = decoded.trim_start_matches('/');
    let bad = relative.contains('\0')
        || relative.contains('\\')
        || relative.split('/').any(|segment| segment == "..");
    (!bad).then(|| relative.to_owned())
}

/// The answer for a picked file: 304, 206, 416 or 200.
fn respond(picked: Picked, request: &HeaderMap, head: bool) -> Response<Body> {
    let modified_secs = picked
        .modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let etag = format!(
        "\"{modified_secs:x}-{:x}{}\"",
        picked.len,
        match picked.encoding {
            Some("br") => "-br",
            Some(_) => "-gz",
            None => "",
        }
    );
    let last_modified = httpdate::fmt_http_date(UNIX_EPOCH + Duration::from_secs(modified_secs));
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(picked.content_type),
    );
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(value) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, value);
    }
    if let Ok(value) = HeaderValue::from_str(&last_modified) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    if let Some(encoding) = picked.encoding {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(encoding));
    }
    if picked.encoding.is_some() || picked.content_type.starts_with("text/") {
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    }

    let header_text = |name: header::HeaderName| request.get(name).and_then(|v| v.to_str().ok());
    let not_modified = match header_text(header::IF_NONE_MATCH) {
        Some(wanted) => etag_matches(wanted, &etag),
        None => header_text(header::IF_MODIFIED_SINCE)
            .and_then(|since| httpdate::parse_http_date(since).ok())
            .is_some_and(|since| {
                since
                    .duration_since(UNIX_EPOCH)
                    .is_ok_and(|since| since.as_secs() >= modified_secs)
            }),
    };
    if not_modified {
        headers.remove(header::CONTENT_TYPE);
        return with_headers(StatusCode::NOT_MODIFIED, headers, Body::default());
    }

    // A range applies only if If-Range, when sent, still names this version.
    let range_applies = header_text(header::IF_RANGE)
        .is_none_or(|condition| condition == etag || condition == last_modified);
    let (status, start, len) = match header_text(header::RANGE).filter(|_| range_applies) {
        None => (StatusCode::OK, 0, picked.len),
        Some(range) => match parse_range(range, picked.len) {
            Range::Whole => (StatusCode::OK, 0, picked.len),
            Range::Part(start, end) => {
                let value = format!("bytes {start}-{end}/{}", picked.len);
                if let Ok(value) = HeaderValue::from_str(&value) {
                    headers.insert(header::CONTENT_RANGE, value);
                }
                (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
            }
            Range::Unsatisfiable => {
                let value = format!("bytes */{}", picked.len);
                let mut response = full(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "text/plain; charset=utf-8",
                    "the range is outside the file\n",
                );
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return response;
            }
        },
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if head {
        return with_headers(status, headers, Body::default());
    }
    let body = if len <= READ_WHOLE {
        let mut bytes = vec![0; len as usize];
        match picked.file.read_exact_at(&mut bytes, start) {
            Ok(()) => http_body_util::Full::new(Bytes::from(bytes))
                .map_err(|never| match never {})
                .boxed_unsync(),
            Err(e) => {
                tracing::warn!("reading a static file: {e}");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the file could not be read",
                );
            }
        }
    } else {
        FileBody {
            file: std::sync::Arc::new(picked.file),
            offset: start,
            left: len,
            reading: None,
        }
        .boxed_unsync()
    };
    with_headers(status, headers, body)
}

fn with_headers(status: StatusCode, headers: HeaderMap, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Whether an If-None-Match value names `etag` (or is `*`), weakly compared.
fn etag_matches(wanted: &str, etag: &str) -> bool {
    wanted
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == etag)
}

enum Range {
    /// No usable range: send the whole file.
    Whole,
    /// Bytes `start..=end`.
    Part(u64, u64),
    /// The range starts past the end.
    Unsatisfiable,
}

/// One `bytes=` range; several ranges are answered with the whole file, as
/// RFC 9110 allows.
fn parse_range(value: &str, len: u64) -> Range {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Range::Whole;
    };
    if spec.contains(',') {
        return Range::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Range::Whole;
    };
    let (first, last) = (first.trim(), last.trim());
    match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(start), _) if start >= len => Range::Unsatisfiable,
        (Ok(start), Ok(end)) if end >= start => Range::Part(start, end.min(len - 1)),
        (Ok(start), Err(_)) if last.is_empty() => Range::Part(start, len - 1),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 && len > 0 => {
            Range::Part(len.saturating_sub(suffix), len - 1)
        }
        (Err(_), Ok(0)) if first.is_empty() => Range::Unsatisfiable,
        _ => Range::Whole,
    }
}

/// A large file streamed in chunks, each read on the blocking pool.
struct FileBody {
    file: std::sync::Arc<File>,
    offset: u64,
    left: u64,
    reading: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>,
}

impl http_body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        const CHUNK: u64 = 256 * 1024;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let (file, offset, want) = (self.file.clone(), self.offset, self.left.min(CHUNK));
        let reading = self.reading.get_or_insert_with(|| {
            tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want as usize];
                file.read_exact_at(&mut buf, offset).map(|()| buf)
            })
        });
        let read = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(read) => read,
        };
        self.reading = None;
        match read {
            Ok(Ok(chunk)) => {
                self.offset += chunk.len() as u64;
                self.left -= chunk.len() as u64;
                Poll::Ready(Some(Ok(http_body::Frame::data(Bytes::from(chunk)))))
            }
            Ok(Err(e)) => Poll::Ready(Some(Err(Box::new(e)))),
            Err(e) => Poll::Ready(Some(Err(Box::new(e)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}

/// The content type of a file name, by its extension (mime_guess's table).
fn content_type(name: &str) -> &'static str {
    mime_guess::from_path(name)
        .first_raw()
        .unwrap_or("application/octet-stream")
}
