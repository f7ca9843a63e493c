//! The one error type of the gatehouse library.

use std::path::PathBuf;

/// Everything that can go wrong in the host, with the input it went wrong on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A configuration file or sidecar could not be read or is invalid.
    #[error("{file}: {message}")]
    Config { file: PathBuf, message: String },

    /// A `[[route]]` is invalid or cannot be made ready.
    #[error("{0}")]
    Route(String),

    /// A command-line value is invalid.
    #[error("invalid {flag}: {message}")]
    Flag { flag: &'static str, message: String },

    /// A file or socket operation failed.
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// A plugin could not be compiled, checked or prepared.
    #[error("plugin `{name}`: {message}")]
    Plugin { name: String, message: String },

    /// A plugin's sources did not build.
    #[error("plugin `{name}` did not build:\n{output}")]
    Build { name: String, output: String },

    /// A `[secrets]` value could not be read.
    #[error("{0}")]
    Secret(String),

    /// A database could not be opened or migrated.
    #[error("database `{name}`: {message}")]
    Database { name: String, message: String },

    /// The wasm engine could not be set up.
    #[error("wasm engine: {0}")]
    Engine(String),
}

impl Error {
    /// An I/O error on `what` (a path or an address, said in words).
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    /// Whether the same attempt may succeed later by itself: in a plugin's
    /// load, a database its migrations could not reach.
    pub fn may_pass(&self) -> bool {
        matches!(self, Error::Database { .. })
    }

    /// A plugin error from a wasmtime error, keeping its whole chain of causes.
    pub fn plugin(name: &str, error: impl std::fmt::Display) -> Self {
        Error::Plugin {
            name: name.to_owned(),
            message: format!("{error:#}"),
        }
    }
}

/// The result type of the gatehouse library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
