//! Where a webhook may go: HTTPS to a public address, checked when the endpoint is added and again on every
//! delivery against the addresses its name resolves to then (the connection goes to exactly the addresses that
//! were checked, so a name that changes between the check and the connection cannot slip through). Local mode
//! (`KEYSTEAD_WEBHOOKS_ALLOW_LOOPBACK=1`, set by `infra/local/up`, never by the template) also allows plain HTTP
//! to loopback addresses, and nothing else private.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::dns::Name;

pub const ALLOW_LOOPBACK_ENV: &str = "KEYSTEAD_WEBHOOKS_ALLOW_LOOPBACK";

/// Whether local mode is on.
pub fn loopback_allowed_by_env() -> bool {
    std::env::var(ALLOW_LOOPBACK_ENV).is_ok_and(|v| v == "1")
}

/// Why a target is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("webhook URLs must use https (plain http only to loopback in local mode): {0}")]
    NotHttps(String),
    #[error("not a URL with a host: {0}")]
    Malformed(String),
    #[error("{host} resolves to {addr}, which is not a public address")]
    NotPublic { host: String, addr: IpAddr },
    #[error("{0} resolves to no address")]
    NoAddress(String),
}

/// A URL's scheme, host and port, checked for what can be checked without DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

/// Checks a URL as `webhook add` and every delivery do before any lookup.
pub fn check_url(url: &str, allow_loopback: bool) -> Result<Target, TargetError> {
    let malformed = || TargetError::Malformed(url.to_owned());
    let (scheme, rest) = url.split_once("://").ok_or_else(malformed)?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return Err(TargetError::NotHttps(url.to_owned())),
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.is_empty() || authority.contains('@') || url.chars().any(char::is_whitespace) {
        return Err(malformed());
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']').ok_or_else(malformed)?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port),
                None if after.is_empty() => None,
                None => return Err(malformed()),
            };
            (host.to_owned(), port)
        }
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (authority.to_owned(), None),
        },
    };
    let port = match port {
        Some(port) => port.parse::<u16>().map_err(|_| malformed())?,
        None if https => 443,
        None => 80,
    };
    let host = host.to_ascii_lowercase();
    if host.is_empty() {
        return Err(malformed());
    }
    let literal = host.parse::<IpAddr>().ok();
    let loopback = literal.is_some_and(|ip| ip.is_loopback()) || host == "localhost";
    let plain_allowed = allow_loopback && loopback;
    if !https && !plain_allowed {
        return Err(TargetError::NotHttps(url.to_owned()));
    }
    if let Some(addr) = literal {
        allowed(&host, addr, allow_loopback)?;
    } else if host == "localhost" && !allow_loopback {
        return Err(TargetError::NotPublic {
            host,
            addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
        });
    }
    Ok(Target { https, host, port })
}

fn allowed(host: &str, addr: IpAddr, allow_loopback: bool) -> Result<(), TargetError> {
    if is_public(addr) || (allow_loopback && addr.is_loopback()) {
        Ok(())
    } else {
        Err(TargetError::NotPublic {
            host: host.to_owned(),
            addr,
        })
    }
}

/// A globally routable unicast address: not loopback, private, shared (CGNAT), link-local (where the instance
/// metadata service lives), unique-local, documentation, benchmarking, multicast, reserved or unspecified.
pub fn is_public(addr: IpAddr) -> bool {
    match addr {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (AWS's IPv6 metadata fd00:ec2::254 among them)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x0064 && s[1] == 0xff9b) // NAT64: an IPv4 address in disguise
                || (s[0] == 0x2002) // 6to4: likewise
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, c, _] = v4.octets();
    !(v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_documentation()
        || v4.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

/// The resolver the delivery client connects through: it answers only addresses `allowed`, and fails the whole
/// lookup if any address the name has is not (a name with one private address is refused outright).
#[derive(Debug, Clone, Copy)]
pub struct CheckedResolver {
    pub allow_loopback: bool,
}

impl tower_service::Service<Name> for CheckedResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = TargetError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: Name) -> Self::Future {
        let allow_loopback = self.allow_loopback;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|_| TargetError::NoAddress(host.clone()))?
                .collect();
            if addrs.is_empty() {
                return Err(TargetError::NoAddress(host));
            }
            for addr in &addrs {
                allowed(&host, addr.ip(), allow_loopback)?;
            }
            Ok(addrs.into_iter())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_to_public_places_outside_local_mode() {
        assert!(check_url("https://hooks.example.com/keystead", false).is_ok());
        assert!(check_url("https://93.184.215.14:8443/x", false).is_ok());
        for refused in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "https://127.0.0.1/",
            "https://localhost/",
            "https://10.0.0.8/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/",
            "https://[fd00:ec2::254]/",
            "https://[::ffff:192.168.1.1]/",
            "https://100.64.0.1/",
            "https://user@hooks.example.com/",
            "https:///nohost",
            "hooks.example.com",
        ] {
            assert!(check_url(refused, false).is_err(), "{refused}");
        }
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_with_a_private_address_unless_loopback_is_allowed() {
        use tower_service::Service;
        let name = |host: &str| host.parse::<Name>().unwrap_or_else(|e| panic!("{e}"));
        let refused = CheckedResolver {
            allow_loopback: false,
        }
        .call(name("localhost"))
        .await
        .err();
        assert!(
            matches!(refused, Some(TargetError::NotPublic { ref addr, .. }) if addr.is_loopback()),
            "{refused:?}"
        );
        let allowed = CheckedResolver {
            allow_loopback: true,
        }
        .call(name("localhost"))
        .await
        .map(|addrs| addrs.map(|a| a.ip()).collect::<Vec<_>>());
        assert!(allowed.is_ok_and(|ips| ips.iter().all(IpAddr::is_loopback)));
    }

    #[test]
    fn local_mode_allows_loopback_and_nothing_else_private() {
        assert!(check_url("http://127.0.0.1:9999/hook", true).is_ok());
        assert!(check_url("http://localhost:9999/hook", true).is_ok());
        assert!(check_url("http://[::1]:9999/hook", true).is_ok());
        assert!(check_url("http://10.0.0.8/hook", true).is_err());
        assert!(check_url("http://hooks.example.com/", true).is_err());
        assert!(!is_public(IpAddr::V4(Ipv4Addr::new(192, 168, 0, 1))));
    }
}
