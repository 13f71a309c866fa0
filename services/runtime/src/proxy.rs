//! The PROXY protocol (HAProxy, versions 1 and 2), which load balancers use to pass on the real
//! client address. It is read only from peers in the trusted networks: from anyone else a PROXY
//! header would let a client choose the address every policy and log sees.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use tokio::io::{AsyncRead, AsyncReadExt};

/// Version 2's fixed signature.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";
/// Version 1's longest header, CRLF included (the specification's 107 octets).
const V1_MAX: usize = 107;

/// A network in CIDR notation, such as `10.0.0.0/8` or `fd00::/8`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = text.split_once('/').unwrap_or((text, ""));
        let network: IpAddr = address.parse().map_err(|_| format!("{text:?} is not an address or network"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix =
            if prefix.is_empty() { max } else { prefix.parse().map_err(|_| format!("bad prefix in {text:?}"))? };
        if prefix > max {
            return Err(format!("prefix /{prefix} too long in {text:?}"));
        }
        Ok(Cidr { network, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        let (network, ip, bits) = match (self.network, ip) {
            (IpAddr::V4(network), IpAddr::V4(ip)) => (u128::from(network.to_bits()), u128::from(ip.to_bits()), 32),
            (IpAddr::V6(network), IpAddr::V6(ip)) => (network.to_bits(), ip.to_bits(), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || network >> shift == ip >> shift
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("no PROXY header from a trusted peer")]
    Missing,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads a PROXY header (version 1 or 2) and returns the client address it names, or `None`
/// when it names none (v1 `UNKNOWN`, v2 `LOCAL`: the load balancer's own health checks).
/// Reads exactly the header's octets, nothing of what follows.
pub async fn read_header<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<SocketAddr>, ProxyError> {
    let mut start = [0u8; 12];
    stream.read_exact(&mut start[..6]).await?;
    if &start[..6] == b"PROXY " {
        return read_v1(stream).await;
    }
    stream.read_exact(&mut start[6..]).await?;
    if start != V2_SIGNATURE {
        return Err(ProxyError::Missing);
    }
    read_v2(stream).await
}

async fn read_v1<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<SocketAddr>, ProxyError> {
    let mut line = Vec::with_capacity(V1_MAX);
    while !line.ends_with(b"\r\n") {
        if line.len() + 6 >= V1_MAX {
            return Err(ProxyError::Malformed("version 1 header too long"));
        }
        line.push(stream.read_u8().await?);
    }
    let line = std::str::from_utf8(&line[..line.len() - 2]).map_err(|_| ProxyError::Malformed("not ASCII"))?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["UNKNOWN", ..] => Ok(None),
        [family @ ("TCP4" | "TCP6"), source, _destination, source_port, _destination_port] => {
            let ip: IpAddr = source.parse().map_err(|_| ProxyError::Malformed("bad source address"))?;
            if (*family == "TCP4") != ip.is_ipv4() {
                return Err(ProxyError::Malformed("address does not match the family"));
            }
            let port: u16 = source_port.parse().map_err(|_| ProxyError::Malformed("bad source port"))?;
            Ok(Some(SocketAddr::new(ip, port)))
        }
        _ => Err(ProxyError::Malformed("version 1 fields")),
    }
}

async fn read_v2<R: AsyncRead + Unpin>(stream: &mut R) -> Result<Option<SocketAddr>, ProxyError> {
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    let [version_command, family, high, low] = head;
    if version_command >> 4 != 2 {
        return Err(ProxyError::Malformed("version 2 expected"));
    }
    let mut addresses = vec![0u8; usize::from(u16::from_be_bytes([high, low]))];
    stream.read_exact(&mut addresses).await?;
    match version_command & 0x0f {
        0 => return Ok(None), // LOCAL
        1 => {}               // PROXY
        _ => return Err(ProxyError::Malformed("unknown command")),
    }
    let address = match family >> 4 {
        1 if addresses.len() >= 12 => {
            let ip = Ipv4Addr::new(addresses[0], addresses[1], addresses[2], addresses[3]);
            SocketAddr::new(IpAddr::V4(ip), u16::from_be_bytes([addresses[8], addresses[9]]))
        }
        2 if addresses.len() >= 36 => {
            let ip: [u8; 16] = addresses[..16].try_into().expect("16 octets");
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), u16::from_be_bytes([addresses[32], addresses[33]]))
        }
        // UNSPEC or UNIX sockets: no client address to use.
        0 | 3 => return Ok(None),
        _ => return Err(ProxyError::Malformed("address block too short")),
    };
    Ok(Some(address))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn parse(bytes: &[u8]) -> (Result<Option<SocketAddr>, ProxyError>, usize) {
        let mut reader = bytes;
        let result = read_header(&mut reader).await;
        (result, bytes.len() - reader.len())
    }

    #[tokio::test]
    async fn version_1_names_the_client_and_reads_no_further() {
        let header = b"PROXY TCP4 203.0.113.9 192.0.2.1 51000 25\r\n";
        let mut input = header.to_vec();
        input.extend_from_slice(b"EHLO x\r\n");
        let (result, read) = parse(&input).await;
        assert_eq!(result.unwrap(), Some("203.0.113.9:51000".parse().unwrap()));
        assert_eq!(read, header.len());
        let (v6, _) = parse(b"PROXY TCP6 2001:db8::9 2001:db8::1 51000 25\r\n").await;
        assert_eq!(v6.unwrap(), Some("[2001:db8::9]:51000".parse().unwrap()));
        assert_eq!(parse(b"PROXY UNKNOWN\r\n").await.0.unwrap(), None);
        for bad in
            [&b"PROXY TCP4 2001:db8::9 192.0.2.1 1 2\r\n"[..], b"PROXY TCP4 1.2.3.4\r\n", b"EHLO client.example\r\n"]
        {
            assert!(parse(bad).await.0.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let endless = [b"PROXY ".as_slice(), &[b'x'; 200]].concat();
        assert!(matches!(parse(&endless).await.0, Err(ProxyError::Malformed(_))));
    }

    #[tokio::test]
    async fn version_2_names_the_client_or_nobody_for_local() {
        let mut header = V2_SIGNATURE.to_vec();
        header.extend_from_slice(&[0x21, 0x11, 0, 12, 203, 0, 113, 9, 192, 0, 2, 1, 0xc7, 0x38, 0, 25]);
        assert_eq!(parse(&header).await.0.unwrap(), Some("203.0.113.9:51000".parse().unwrap()));
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse(&local).await.0.unwrap(), None);
        let mut short = V2_SIGNATURE.to_vec();
        short.extend_from_slice(&[0x21, 0x11, 0, 4, 1, 2, 3, 4]);
        assert!(parse(&short).await.0.is_err());
    }

    #[test]
    fn cidrs_match_their_networks_only() {
        let private: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(private.contains("10.1.2.3".parse().unwrap()));
        assert!(private.contains("::ffff:10.1.2.3".parse().unwrap()), "IPv4-mapped IPv6");
        assert!(!private.contains("11.0.0.1".parse().unwrap()));
        assert!("0.0.0.0/0".parse::<Cidr>().unwrap().contains("198.51.100.1".parse().unwrap()));
        assert!("fd00::/8".parse::<Cidr>().unwrap().contains("fd12::1".parse().unwrap()));
        assert!("192.0.2.7".parse::<Cidr>().unwrap().contains("192.0.2.7".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("not-a-network".parse::<Cidr>().is_err());
    }
}
