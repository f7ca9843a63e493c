//! What a plugin may touch beyond its own memory, one module per capability.
//! Each turns a sidecar grant into what the sandbox of one instance holds;
//! nothing is reachable unless granted.

pub mod env;
pub mod outbound;
