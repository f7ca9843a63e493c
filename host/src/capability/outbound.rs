//! Outbound HTTP from plugins (`wasi:http/outgoing-handler`).
//!
//! Every request is refused with `HTTP-request-denied`, the wasi:http error
//! code for a destination the host does not allow: outbound grants are not
//! honoured yet, so none is reachable.

use wasmtime_wasi_http::{Error, RequestOptions, WasiBody, WasiHttpHooks};

/// The outbound decision of one instance.
#[derive(Debug, Default)]
pub struct OutboundPolicy;

type SendFuture = Box<
    dyn Future<
            Output = Result<
                (
                    http::Response<WasiBody>,
                    Box<dyn Future<Output = Result<(), Error>> + Send>,
                ),
                Error,
            >,
        > + Send,
>;

impl WasiHttpHooks for OutboundPolicy {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        _options: Option<RequestOptions>,
        _fut: Box<dyn Future<Output = Result<(), Error>> + Send>,
    ) -> SendFuture {
        tracing::info!(uri = %request.uri(), "outbound request denied");
        Box::new(async { Err(Error::HttpRequestDenied) })
    }
}
