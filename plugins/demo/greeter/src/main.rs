//! A unary gRPC service in a plugin: `helloworld.Greeter/SayHello`, the
//! service of gRPC's own examples, so any gRPC client can call it:
//!
//! ```proto
//! service Greeter { rpc SayHello (HelloRequest) returns (HelloReply); }
//! message HelloRequest { string name = 1; }
//! message HelloReply { string message = 1; }
//! ```
//!
//! gRPC is HTTP/2 with a length-prefixed protobuf body and the status in the
//! trailers, which wasi:http carries: the response body ends with
//! `grpc-status` (and `grpc-message` on failure).

use std::pin::Pin;
use std::task::{Context, Poll};
use wstd::http::body::{Body, Bytes, Frame, HttpBody};
use wstd::http::{Error, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

#[derive(Clone, PartialEq, prost::Message)]
struct HelloRequest {
    #[prost(string, tag = "1")]
    name: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HelloReply {
    #[prost(string, tag = "1")]
    message: String,
}

/// gRPC status codes this service answers with.
const OK: u32 = 0;
const INVALID_ARGUMENT: u32 = 3;
const UNIMPLEMENTED: u32 = 12;

#[wstd::http_server]
async fn main(request: Request<Body>) -> Result<Response<Body>, Error> {
    let grpc = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/grpc"));
    if request.method() != Method::POST || !grpc {
        let mut response = Response::new(Body::from(
            "this is a gRPC service (helloworld.Greeter): call it with a gRPC client\n",
        ));
        *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
        return Ok(response);
    }
    let path = request.uri().path().to_owned();
    let mut body = request.into_body();
    let bytes = body.bytes_contents().await?;
    Ok(match path.as_str() {
        "/helloworld.Greeter/SayHello" => say_hello(&bytes),
        _ => reply(None, UNIMPLEMENTED, &format!("no method {path}")),
    })
}

fn say_hello(body: &[u8]) -> Response<Body> {
    let request = match unframe(body).and_then(|m| {
        <HelloRequest as prost::Message>::decode(m).map_err(|e| e.to_string())
    }) {
        Ok(request) => request,
        Err(e) => return reply(None, INVALID_ARGUMENT, &format!("bad HelloRequest: {e}")),
    };
    if request.name.trim().is_empty() {
        return reply(None, INVALID_ARGUMENT, "name must not be empty");
    }
    let answer = HelloReply {
        message: format!("Hello, {}!", request.name.trim()),
    };
    reply(Some(prost::Message::encode_to_vec(&answer)), OK, "")
}

/// The message of a gRPC request body: one uncompressed length-prefixed frame.
fn unframe(body: &[u8]) -> Result<&[u8], String> {
    let (head, rest) = body
        .split_at_checked(5)
        .ok_or("the body is shorter than a gRPC frame header")?;
    if head[0] != 0 {
        return Err("compressed messages are not supported".into());
    }
    let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
    rest.get(..len)
        .ok_or_else(|| "the frame is longer than the body".into())
}

/// A gRPC response: 200, the framed message if any, then the status trailers.
fn reply(message: Option<Vec<u8>>, status: u32, text: &str) -> Response<Body> {
    let data = message.map(|m| {
        let mut framed = Vec::with_capacity(m.len() + 5);
        framed.push(0);
        framed.extend_from_slice(&(m.len() as u32).to_be_bytes());
        framed.extend_from_slice(&m);
        Bytes::from(framed)
    });
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from(status));
    if let Ok(text) = HeaderValue::from_str(text)
        && !text.is_empty()
    {
        trailers.insert("grpc-message", text);
    }
    let mut response = Response::new(Body::from_http_body(Framed {
        data,
        trailers: Some(trailers),
    }));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    response
}

/// A body of at most one data frame followed by trailers.
struct Framed {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl HttpBody for Framed {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let frame = match self.data.take() {
            Some(data) => Frame::data(data),
            None => match self.trailers.take() {
                Some(trailers) => Frame::trailers(trailers),
                None => return Poll::Ready(None),
            },
        };
        Poll::Ready(Some(Ok(frame)))
    }
}
