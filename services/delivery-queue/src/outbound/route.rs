//! Where mail for a domain goes: a configured override or relay host, else the domain's MX
//! hosts in preference order (RFC 5321 §5.1), the domain itself when it has no MX (implicit
//! MX), nowhere for a null MX (RFC 7505) or a domain that does not exist.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use hickory_resolver::TokioResolver;
use hickory_resolver::proto::rr::RData;

use crate::outcome::Failure;

/// The SMTP port of MX hosts.
const SMTP_PORT: u16 = 25;

/// A server to try, by name (for TLS and diagnostics) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

/// `DOMAIN=HOST:PORT`, as given to `--mx-override`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    pub domain: String,
    pub target: Target,
}

impl std::str::FromStr for Override {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (domain, target) = text.split_once('=').ok_or_else(|| format!("{text:?} is not DOMAIN=HOST:PORT"))?;
        let target: Target = target.parse()?;
        let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
        if domain.is_empty() {
            return Err(format!("{text:?} names no domain"));
        }
        Ok(Override { domain, target })
    }
}

impl std::str::FromStr for Target {
    type Err = String;

    /// `HOST:PORT`, `[IPv6]:PORT`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (host, port) = text.rsplit_once(':').ok_or_else(|| format!("{text:?} is not HOST:PORT"))?;
        let port = port.parse().map_err(|_| format!("{text:?}: {port:?} is not a port"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{text:?} names no host"));
        }
        Ok(Target { host: host.to_string(), port })
    }
}

/// Finds the servers for a domain.
pub struct Router {
    resolver: TokioResolver,
    overrides: HashMap<String, Target>,
}

impl Router {
    pub fn new(resolver: TokioResolver, overrides: &[Override]) -> Self {
        let overrides = overrides.iter().map(|o| (o.domain.clone(), o.target.clone())).collect();
        Router { resolver, overrides }
    }

    /// Whether `domain` has an override (which goes before a relay host too).
    pub fn overridden(&self, domain: &str) -> bool {
        self.overrides.contains_key(&domain.trim_end_matches('.').to_ascii_lowercase())
    }

    /// The servers for `domain`, most preferred first; `Err` is the outcome for every
    /// recipient there (permanent for a domain that takes no mail, temporary for DNS trouble).
    pub async fn targets(&self, domain: &str) -> Result<Vec<Target>, Route> {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(target) = self.overrides.get(&domain) {
            return Ok(vec![target.clone()]);
        }
        let fqdn = format!("{domain}.");
        match self.resolver.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut exchanges: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
                        _ => None,
                    })
                    .collect();
                if exchanges.iter().any(|(_, exchange)| exchange == ".") {
                    return Err(Route::Failed(Failure::local("5.1.10", format!("{domain} accepts no mail (null MX)"))));
                }
                if exchanges.is_empty() {
                    return Ok(vec![Target { host: domain, port: SMTP_PORT }]);
                }
                exchanges.sort_by_key(|(preference, _)| *preference);
                Ok(exchanges
                    .into_iter()
                    .map(|(_, exchange)| Target { host: exchange.trim_end_matches('.').to_string(), port: SMTP_PORT })
                    .collect())
            }
            Err(error) if error.is_nx_domain() => {
                Err(Route::Failed(Failure::local("5.1.2", format!("{domain} does not exist"))))
            }
            // No MX: the domain's own address records are its implicit MX (RFC 5321 §5.1).
            Err(error) if error.is_no_records_found() => Ok(vec![Target { host: domain, port: SMTP_PORT }]),
            Err(error) => {
                Err(Route::Deferred(Failure::local("4.4.3", format!("DNS lookup of {domain} failed: {error}"))))
            }
        }
    }

    /// The addresses of `target`'s host (itself when it is an IP address).
    pub async fn addresses(&self, target: &Target) -> Result<Vec<SocketAddr>, Failure> {
        if let Ok(ip) = target.host.parse::<IpAddr>() {
            return Ok(vec![SocketAddr::new(ip, target.port)]);
        }
        match self.resolver.lookup_ip(format!("{}.", target.host)).await {
            Ok(lookup) => Ok(lookup.iter().map(|ip| SocketAddr::new(ip, target.port)).collect()),
            Err(error) => Err(Failure::local("4.4.3", format!("no address for {}: {error}", target.host))),
        }
    }
}

/// Why a domain has no servers to try.
#[derive(Debug)]
pub enum Route {
    Failed(Failure),
    Deferred(Failure),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_domain_host_and_port() {
        let parsed: Override = "Example.ORG.=127.0.0.1:2525".parse().unwrap();
        assert_eq!(parsed.domain, "example.org");
        assert_eq!(parsed.target, Target { host: "127.0.0.1".into(), port: 2525 });
        let v6: Target = "[::1]:25".parse().unwrap();
        assert_eq!(v6.host, "::1");
        for bad in ["example.org", "example.org=host", "=host:25", "example.org=host:port", "example.org=:25"] {
            assert!(bad.parse::<Override>().is_err(), "{bad}");
        }
    }
}
