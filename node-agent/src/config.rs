//! The agent's configuration, and parsers for the values its flags take.

use std::net::SocketAddr;

use crate::dataplane::{Frontend, Protocol, ServiceOptions, ServiceSpec};

/// Parses a static service, `VIP:PORT[/PROTO]=BACKEND:PORT[,BACKEND:PORT…]`, as given to
/// `strait-agent --service` (IPv6 addresses in brackets: `[fd00::10]:80`). The protocol defaults to TCP; the backend list may be empty
/// (a service without endpoints).
pub fn parse_service(text: &str) -> Result<ServiceSpec, String> {
    let (frontend, backends) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected VIP:PORT[/PROTO]=BACKEND:PORT[,…]"))?;
    let (address, protocol) = match frontend.split_once('/') {
        Some((address, protocol)) => (address, protocol.parse()?),
        None => (frontend, Protocol::Tcp),
    };
    let vip: SocketAddr = address
        .parse()
        .map_err(|e| format!("`{address}`: not an address and port ({e})"))?;
    let backends = backends
        .split(',')
        .filter(|b| !b.trim().is_empty())
        .map(|b| {
            b.trim()
                .parse::<SocketAddr>()
                .map_err(|e| format!("backend `{b}`: not an address and port ({e})"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ServiceSpec {
        frontend: Frontend {
            address: vip.ip(),
            port: vip.port(),
            protocol,
        },
        backends,
        options: ServiceOptions::default(),
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn parses_a_tcp_service_with_two_backends() {
        let spec = parse_service("10.96.0.10:80=10.0.1.2:8080,10.0.1.3:8080").unwrap();
        assert_eq!(spec.frontend.address, Ipv4Addr::new(10, 96, 0, 10));
        let v6 = parse_service("[fd00::10]:80=[fd00::2]:8080").unwrap();
        assert_eq!(
            v6.backends,
            ["[fd00::2]:8080".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(spec.frontend.port, 80);
        assert_eq!(spec.frontend.protocol, Protocol::Tcp);
        assert_eq!(
            spec.backends,
            [
                "10.0.1.2:8080".parse().unwrap(),
                "10.0.1.3:8080".parse::<SocketAddr>().unwrap()
            ]
        );
    }

    #[test]
    fn parses_protocol_and_an_empty_backend_list() {
        let spec = parse_service("10.96.0.10:53/udp=").unwrap();
        assert_eq!(spec.frontend.protocol, Protocol::Udp);
        assert!(spec.backends.is_empty());
    }

    #[test]
    fn errors_name_the_bad_part() {
        let err = parse_service("10.96.0.10:80").unwrap_err();
        assert!(err.contains("expected VIP:PORT"), "{err}");
        let err = parse_service("10.96.0.10:80/sctp=10.0.0.1:1").unwrap_err();
        assert!(err.contains("sctp"), "{err}");
        let err = parse_service("10.96.0.10:80=10.0.0.1").unwrap_err();
        assert!(err.contains("backend `10.0.0.1`"), "{err}");
    }
}
