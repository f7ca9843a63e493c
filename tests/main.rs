//! Integration tests: the real `gatehouse` binary on real sockets, serving
//! components built from `plugins/`.

mod harness;
mod upstream;

mod acme;
mod capabilities;
mod cli;
mod demo;
mod edge;
mod grpc;
mod hot_swap;
mod isolation;
mod languages;
mod mounting;
mod proxy;
mod realtime;
mod reload;
mod routing;
mod shutdown;
