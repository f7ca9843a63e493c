//! A unary gRPC method implemented by a plugin (`demo/greeter`), called by
//! tonic, a native gRPC client, over cleartext HTTP/2.

use crate::harness::{Site, component, config_with};
use tonic::codegen::http::uri::PathAndQuery;

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

/// Calls `path` with `request` the way generated tonic clients do.
async fn call(addr: &str, path: &'static str, name: &str) -> Result<HelloReply, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("connecting over h2c");
    let mut client = tonic::client::Grpc::new(channel);
    client.ready().await.unwrap();
    let codec = tonic_prost::ProstCodec::<HelloRequest, HelloReply>::default();
    let request = tonic::Request::new(HelloRequest {
        name: name.to_owned(),
    });
    client
        .unary(request, PathAndQuery::from_static(path), codec)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plugin_answers_a_unary_grpc_call_from_tonic() {
    let site = Site::new();
    site.put(
        "greeter.toml",
        std::fs::read_to_string(crate::harness::repo().join("plugins/demo/greeter.toml")).unwrap(),
    );
    site.put("greeter.wasm", component("demo/greeter"));
    let server = site.serve_config(&config_with(""), &[]);
    server.wait_serving("greeter").await;

    let reply = call(&server.addr, "/helloworld.Greeter/SayHello", "gatehouse")
        .await
        .expect("an OK status");
    assert_eq!(reply.message, "Hello, gatehouse!");

    // An error travels as grpc-status and grpc-message in the trailers.
    let status = call(&server.addr, "/helloworld.Greeter/SayHello", "  ")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert_eq!(status.message(), "name must not be empty");

    let status = call(&server.addr, "/helloworld.Greeter/SayGoodbye", "x")
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented);
}
