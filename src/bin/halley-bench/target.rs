//! Where the traffic goes: the server's two listeners and the local source addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};

/// One HTTP-ish endpoint: the resolved address and the `Host` header to send.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub host: String,
}

/// Parses `SCHEME://HOST:PORT[/...]`; the path is ignored because the protocol fixes
/// the paths (`/ws`, `/api/publish`).
pub fn parse_endpoint(url: &str, scheme: &str) -> Result<Endpoint, String> {
    let prefix = format!("{scheme}://");
    let rest = url
        .strip_prefix(&prefix)
        .ok_or_else(|| format!("{url}: expected {prefix}HOST:PORT"))?;
    let hostport = rest.split('/').next().unwrap_or("");
    if hostport.is_empty() {
        return Err(format!("{url}: missing HOST:PORT"));
    }
    let with_port = if hostport
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        hostport.to_string()
    } else {
        format!("{hostport}:80")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| format!("{url}: {e}"))?
        .next()
        .ok_or_else(|| format!("{url}: no address"))?;
    Ok(Endpoint {
        addr,
        host: hostport.to_string(),
    })
}

/// Parses `A`, `A-B` (an IPv4 range) or a comma list of those.
pub fn parse_sources(spec: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: Ipv4Addr = a.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let b: Ipv4Addr = b.trim().parse().map_err(|e| format!("{part}: {e}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a >= 65536 {
                return Err(format!("{part}: bad range"));
            }
            out.extend((a..=b).map(|v| IpAddr::V4(Ipv4Addr::from(v))));
        } else {
            out.push(part.parse().map_err(|e| format!("{part}: {e}"))?);
        }
    }
    if out.is_empty() {
        return Err(format!("--source-ip {spec}: no address"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_and_sources() {
        let e = parse_endpoint("ws://127.0.0.1:9000/ws", "ws").unwrap();
        assert_eq!(e.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(e.host, "127.0.0.1:9000");
        assert!(parse_endpoint("http://127.0.0.1:1", "ws").is_err());
        let s = parse_sources("127.0.0.1-127.0.0.3,127.0.0.9").unwrap();
        assert_eq!(s.len(), 4);
        assert!(parse_sources("127.0.0.3-127.0.0.1").is_err());
    }
}
