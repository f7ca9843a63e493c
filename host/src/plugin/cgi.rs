//! CGI plugins, for languages with no component tooling (as WAGI did): a
//! WASI preview1 module (a `.wasm` that is not a component, or a Zig source
//! folder) runs once per request. The request arrives as CGI/1.1
//! environment variables (`REQUEST_METHOD`, `PATH_INFO`, `QUERY_STRING`,
//! `HTTP_*`, …) and its body on stdin; the module writes a CGI response to
//! stdout: header lines (`Status: 404 Not Found`, `Content-Type: …`), a
//! blank line, the body. The same deadline, memory cap and sandbox apply as
//! to components: no files, no sockets, only the granted environment.

use super::Plugin;
use super::invoke::Failure;
use super::output::{PluginOutput, Stream};
use crate::error::{Error, Result};
use bytes::Bytes;
use http_body_util::BodyExt;
use std::time::Duration;
use wasmtime::{InstancePre, Linker, Module, Store, UpdateDeadline};
use wasmtime_wasi::WasiCtx;
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

/// The most a CGI plugin may write to stdout for one response.
const MAX_OUTPUT: usize = 16 << 20;

/// What one CGI run's store holds.
pub struct CgiState {
    wasi: WasiP1Ctx,
    limits: super::sandbox::MemoryCap,
}

/// A linked CGI module, ready to run per request.
pub struct Program {
    pre: InstancePre<CgiState>,
}

impl Program {
    pub fn engine(&self) -> &wasmtime::Engine {
        self.pre.module().engine()
    }
}

/// Whether `wasm` is a core module (preview1) rather than a component.
pub fn is_core_module(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[4..8] == [1, 0, 0, 0]
}

/// The linker of CGI modules: WASI preview1 and nothing else.
pub fn linker(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<CgiState>> {
    let mut linker = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_async(&mut linker, |state: &mut CgiState| &mut state.wasi)?;
    Ok(linker)
}

/// Compiles and links a CGI module; it must be a command (export `_start`).
pub fn prepare(name: &str, linker: &Linker<CgiState>, wasm: &[u8]) -> Result<Program> {
    let module = Module::new(linker.engine(), wasm).map_err(|e| Error::plugin(name, e))?;
    if module.get_export_index("_start").is_none() {
        return Err(Error::plugin(
            name,
            "is a core module without `_start`: a CGI plugin is a WASI command",
        ));
    }
    let pre = linker.instantiate_pre(&module).map_err(|e| {
        Error::plugin(
            name,
            format!("imports something a CGI plugin cannot have (only WASI preview1): {e:#}"),
        )
    })?;
    Ok(Program { pre })
}

impl Plugin {
    /// Runs one request through a CGI module and parses what it wrote.
    pub(super) async fn invoke_cgi<B>(
        &self,
        program: &Program,
        request: http::Request<B>,
    ) -> std::result::Result<http::Response<HyperOutgoingBody>, Failure>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let timeout_ms = self.sidecar.limits.timeout_ms;
        let deadline = std::time::Instant::now() + Duration::from_millis(timeout_ms);
        let (parts, body) = request.into_parts();
        let body = tokio::time::timeout_at(deadline.into(), body.collect())
            .await
            .map_err(|_| Failure::Timeout(timeout_ms))?
            .map_err(|e| Failure::Unavailable(format!("reading the body: {:?}", e.into())))?
            .to_bytes();
        let stdout = MemoryOutputPipe::new(MAX_OUTPUT);
        let mut wasi = WasiCtx::builder();
        wasi.stdin(MemoryInputPipe::new(body.clone()))
            .stdout(stdout.clone())
            .stderr(PluginOutput::new(
                self.granted.plugin.clone(),
                Stream::Stderr,
                self.log_budget.clone(),
            ))
            .args(&[self.name.as_str()])
            .envs(&cgi_env(&parts, body.len()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        let provisions = self.provisions.load();
        wasi.envs(&crate::capability::env::resolve(
            &self.sidecar.grants.env,
            &provisions.secrets,
        ));
        let state = CgiState {
            wasi: wasi.build_p1(),
            limits: super::sandbox::MemoryCap::new(self.sidecar.limits.memory_mb),
        };
        let mut store = Store::new(program.engine(), state);
        store.limiter(|state| &mut state.limits);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if std::time::Instant::now() >= deadline {
                Err(wasmtime::format_err!("deadline exceeded"))
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        let run = async {
            let instance = program.pre.instantiate_async(&mut store).await?;
            let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
            start.call_async(&mut store, ()).await
        };
        // The epoch callback stops a module that computes past its deadline;
        // this stops one waiting in a host call (a sleep, a read).
        let ran = tokio::time::timeout_at(deadline.into(), run)
            .await
            .map_err(|_| Failure::Timeout(timeout_ms))?;
        if let Err(e) = ran {
            match e.downcast_ref::<wasmtime_wasi::I32Exit>() {
                Some(exit) if exit.0 == 0 => {}
                Some(exit) => {
                    return Err(Failure::Trap(format!("exited with status {}", exit.0)));
                }
                None if std::time::Instant::now() >= deadline => {
                    return Err(Failure::Timeout(timeout_ms));
                }
                None => return Err(Failure::Trap(format!("{e:?}"))),
            }
        }
        drop(store);
        parse_response(stdout.contents())
    }
}

/// The CGI/1.1 meta-variables of a request (RFC 3875).
fn cgi_env(parts: &http::request::Parts, length: usize) -> Vec<(String, String)> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let host = header("host");
    let (server_name, server_port) = match host.rsplit_once(':') {
        Some((name, port)) if port.parse::<u16>().is_ok() => (name.to_owned(), port.to_owned()),
        _ => (host.clone(), "80".to_owned()),
    };
    let mut env = vec![
        ("GATEWAY_INTERFACE".to_owned(), "CGI/1.1".to_owned()),
        ("SERVER_SOFTWARE".to_owned(), "gatehouse".to_owned()),
        ("SERVER_PROTOCOL".to_owned(), format!("{:?}", parts.version)),
        ("SERVER_NAME".to_owned(), server_name),
        ("SERVER_PORT".to_owned(), server_port),
        ("REQUEST_METHOD".to_owned(), parts.method.to_string()),
        ("SCRIPT_NAME".to_owned(), header("x-forwarded-prefix")),
        ("PATH_INFO".to_owned(), parts.uri.path().to_owned()),
        (
            "QUERY_STRING".to_owned(),
            parts.uri.query().unwrap_or("").to_owned(),
        ),
        ("REMOTE_ADDR".to_owned(), header("x-real-ip")),
        ("CONTENT_TYPE".to_owned(), header("content-type")),
        ("CONTENT_LENGTH".to_owned(), length.to_string()),
    ];
    for (name, value) in &parts.headers {
        if matches!(name.as_str(), "content-type" | "content-length" | "proxy") {
            continue; // CONTENT_* above; Proxy is never passed (httpoxy)
        }
        if let Ok(value) = value.to_str() {
            let name = format!("HTTP_{}", name.as_str().to_uppercase().replace('-', "_"));
            env.push((name, value.to_owned()));
        }
    }
    env
}

/// A CGI response: header lines up to a blank line, then the body.
fn parse_response(
    output: Bytes,
) -> std::result::Result<http::Response<HyperOutgoingBody>, Failure> {
    let bad = |why: &str| Failure::Trap(format!("wrote no valid CGI response: {why}"));
    let (head_len, sep) = find_blank_line(&output).ok_or_else(|| {
        bad("the headers must end with a blank line (print \"Content-Type: text/plain\\n\\n\" first)")
    })?;
    let head =
        std::str::from_utf8(&output[..head_len]).map_err(|_| bad("headers are not UTF-8"))?;
    let mut response = http::Response::builder();
    let mut status = None;
    let mut location = false;
    for line in head.lines().filter(|l| !l.is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| bad(&format!("`{line}` is not a header line")))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value.split_whitespace().next().unwrap_or("");
            status = Some(
                code.parse::<http::StatusCode>()
                    .map_err(|_| bad(&format!("`Status: {value}` has no valid code")))?,
            );
        } else {
            location |= name.eq_ignore_ascii_case("location");
            response = response.header(name.trim(), value);
        }
    }
    let status = status.unwrap_or(if location {
        http::StatusCode::FOUND
    } else {
        http::StatusCode::OK
    });
    let body = output.slice(head_len + sep..);
    let body = http_body_util::Full::new(body)
        .map_err(|never| match never {})
        .boxed_unsync();
    response
        .status(status)
        .body(body)
        .map_err(|e| bad(&e.to_string()))
}

/// Where the header block ends: its length and the blank line's length.
fn find_blank_line(output: &[u8]) -> Option<(usize, usize)> {
    let lf = output.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2));
    let crlf = output
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cgi_response_is_parsed() {
        let response =
            parse_response(Bytes::from_static(b"Status: 404 Not Found\nX-A: b\n\nnope")).unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(response.headers()["x-a"], "b");
        let response = parse_response(Bytes::from_static(b"Location: /x\r\n\r\n")).unwrap();
        assert_eq!(response.status(), 302);
        assert!(parse_response(Bytes::from_static(b"no blank line")).is_err());
        assert!(parse_response(Bytes::from_static(b"Status: abc\n\n")).is_err());
    }
}
