//! The PROXY protocol (v1 text and v2 binary, parsed by `ppp`): a load
//! balancer in front says who the client is before the connection's bytes.
//! Read only from trusted proxies, on listeners that ask for it.

use ppp::{HeaderResult, PartialResult, v1, v2};
use std::io::{Error, ErrorKind};
use std::net::IpAddr;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The longest header: v2's 16 bytes plus the largest address block we accept.
const MAX_HEADER: usize = 536;

/// Reads the PROXY header off `stream`, consuming exactly its bytes, and
/// returns the client address it names (`None` for UNKNOWN or LOCAL).
pub async fn read_header(stream: &mut TcpStream) -> Result<Option<IpAddr>, Error> {
    let mut buf = [0u8; MAX_HEADER];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "closed before the PROXY header",
            ));
        }
        let parsed = HeaderResult::parse(&buf[..n]);
        if parsed.is_incomplete() {
            if n == buf.len() {
                return Err(Error::new(ErrorKind::InvalidData, "PROXY header too long"));
            }
            // More of the header is on its way; peek again shortly.
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let (length, client) = match parsed {
            HeaderResult::V1(Ok(header)) => (
                header.header.len(),
                match header.addresses {
                    v1::Addresses::Tcp4(a) => Some(IpAddr::V4(a.source_address)),
                    v1::Addresses::Tcp6(a) => Some(IpAddr::V6(a.source_address)),
                    v1::Addresses::Unknown => None,
                },
            ),
            HeaderResult::V2(Ok(header)) => (
                header.len(),
                match header.addresses {
                    v2::Addresses::IPv4(a) => Some(IpAddr::V4(a.source_address)),
                    v2::Addresses::IPv6(a) => Some(IpAddr::V6(a.source_address)),
                    _ => None,
                },
            ),
            HeaderResult::V1(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("bad PROXY header: {e}"),
                ));
            }
            HeaderResult::V2(Err(e)) => {
                return Err(Error::new(
                    ErrorKind::InvalidData,
                    format!("bad PROXY header: {e}"),
                ));
            }
        };
        stream.read_exact(&mut buf[..length]).await?;
        return Ok(client);
    }
}
