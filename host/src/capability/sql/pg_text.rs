//! Postgres `interval`, `inet` and `cidr` between their binary forms (what
//! sqlx sends and receives) and text, written the way Postgres writes them:
//! an interval as an ISO 8601 duration (`IntervalStyle = iso_8601`), an
//! address as `inet_out` and `cidr_out` do.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// `PGSQL_AF_INET` and `PGSQL_AF_INET6`: the family byte of the binary form.
const AF_INET: u8 = 2;
const AF_INET6: u8 = 3;

/// An `interval` (microseconds, days, months, each big-endian) as an ISO
/// 8601 duration: `P1Y2M3DT4H5M6.5S`, `PT0S`, `P-1Y-2M3DT-4H` (each part
/// keeps its own sign, as Postgres keeps them apart). `None` when the bytes
/// are not 16 long.
pub fn interval(bytes: &[u8]) -> Option<String> {
    let bytes: &[u8; 16] = bytes.try_into().ok()?;
    let micros = i64::from_be_bytes(bytes[0..8].try_into().ok()?);
    let days = i32::from_be_bytes(bytes[8..12].try_into().ok()?);
    let months = i32::from_be_bytes(bytes[12..16].try_into().ok()?);
    if micros == 0 && days == 0 && months == 0 {
        return Some("PT0S".to_owned());
    }
    let mut text = String::from("P");
    for (amount, unit) in [(months / 12, 'Y'), (months % 12, 'M'), (days, 'D')] {
        if amount != 0 {
            text.push_str(&format!("{amount}{unit}"));
        }
    }
    if micros != 0 {
        text.push('T');
        let hours = micros / 3_600_000_000;
        let minutes = micros / 60_000_000 % 60;
        let seconds = micros % 60_000_000;
        for (amount, unit) in [(hours, 'H'), (minutes, 'M')] {
            if amount != 0 {
                text.push_str(&format!("{amount}{unit}"));
            }
        }
        if seconds != 0 {
            let sign = if seconds < 0 { "-" } else { "" };
            let (whole, fraction) = (seconds.abs() / 1_000_000, seconds.abs() % 1_000_000);
            text.push_str(&format!("{sign}{whole}"));
            if fraction != 0 {
                let digits = format!("{fraction:06}");
                text.push('.');
                text.push_str(digits.trim_end_matches('0'));
            }
            text.push('S');
        }
    }
    Some(text)
}

/// An `inet` or `cidr` (family, prefix bits, is-cidr, address length,
/// address) as text: `192.168.0.1`, `10.0.0.0/8`, `2001:db8::1/64`. An
/// `inet` omits a prefix that covers the whole address; a `cidr` always
/// shows it. `None` for a malformed form.
pub fn address(bytes: &[u8]) -> Option<String> {
    let [family, bits, is_cidr, length, addr @ ..] = bytes else {
        return None;
    };
    let (ip, whole) = match (*family, *length, addr.len()) {
        (AF_INET, 4, 4) => (
            IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(addr).ok()?)),
            32,
        ),
        (AF_INET6, 16, 16) => (
            IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(addr).ok()?)),
            128,
        ),
        _ => return None,
    };
    if *bits > whole {
        return None;
    }
    Some(match *is_cidr != 0 || *bits != whole {
        true => format!("{ip}/{bits}"),
        false => ip.to_string(),
    })
}

/// The binary form of `text` as an `inet` (`cidr` when `cidr`): an address
/// with an optional `/bits`. A `cidr` must have no bits set past its
/// prefix, as Postgres requires.
pub fn encode_address(text: &str, cidr: bool) -> Result<Vec<u8>, String> {
    let (ip, bits) = match text.trim().split_once('/') {
        Some((ip, bits)) => (ip, Some(bits)),
        None => (text.trim(), None),
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("`{ip}` is not an IPv4 or IPv6 address"))?;
    let (family, octets, whole): (u8, Vec<u8>, u8) = match ip {
        IpAddr::V4(v4) => (AF_INET, v4.octets().to_vec(), 32),
        IpAddr::V6(v6) => (AF_INET6, v6.octets().to_vec(), 128),
    };
    let bits = match bits {
        Some(bits) => bits
            .parse::<u8>()
            .ok()
            .filter(|bits| *bits <= whole)
            .ok_or_else(|| format!("`/{bits}` is not a prefix length of 0 to {whole}"))?,
        None => whole,
    };
    if cidr {
        let host_bits = octets.iter().enumerate().any(|(i, octet)| {
            let kept = (usize::from(bits).saturating_sub(i * 8)).min(8);
            let mask = if kept == 0 { 0 } else { 0xffu8 << (8 - kept) };
            octet & !mask != 0
        });
        if host_bits {
            return Err(format!(
                "`{text}` has bits set to the right of its /{bits} prefix, which a cidr cannot have"
            ));
        }
    }
    let mut form = vec![family, bits, u8::from(cidr), octets.len() as u8];
    form.extend_from_slice(&octets);
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(micros: i64, days: i32, months: i32) -> Vec<u8> {
        [
            &micros.to_be_bytes()[..],
            &days.to_be_bytes(),
            &months.to_be_bytes(),
        ]
        .concat()
    }

    #[test]
    fn intervals_read_as_postgres_writes_them_in_iso_8601() {
        let cases = [
            (form(0, 0, 0), "PT0S"),
            (form(14_706_789_000, 3, 14), "P1Y2M3DT4H5M6.789S"),
            (form(-14_706_000_000, 3, -14), "P-1Y-2M3DT-4H-5M-6S"),
            (form(-500_000, 0, 0), "PT-0.5S"),
            (form(1, 0, 0), "PT0.000001S"),
            (form(0, -1, 0), "P-1D"),
            (form(3_600_000_000, 0, 0), "PT1H"),
        ];
        for (bytes, text) in cases {
            assert_eq!(interval(&bytes).as_deref(), Some(text));
        }
        assert_eq!(interval(&[0; 15]), None);
    }

    #[test]
    fn addresses_go_both_ways() {
        for (text, cidr, shown) in [
            ("192.168.0.1", false, "192.168.0.1"),
            ("192.168.0.1/24", false, "192.168.0.1/24"),
            ("10.0.0.0/8", true, "10.0.0.0/8"),
            ("10.1.2.3", true, "10.1.2.3/32"),
            ("2001:db8::1", false, "2001:db8::1"),
            ("2001:db8::/32", true, "2001:db8::/32"),
        ] {
            let bytes = encode_address(text, cidr).unwrap();
            assert_eq!(address(&bytes).as_deref(), Some(shown), "{text}");
        }
        assert!(
            encode_address("10.1.0.0/8", true)
                .unwrap_err()
                .contains("right of")
        );
        assert!(
            encode_address("10.0.0.1/33", false)
                .unwrap_err()
                .contains("prefix")
        );
        assert!(encode_address("example.com", false).is_err());
        assert_eq!(address(&[AF_INET, 33, 0, 4, 1, 2, 3, 4]), None);
        assert_eq!(address(&[AF_INET, 32, 0, 4, 1, 2, 3]), None);
    }
}
