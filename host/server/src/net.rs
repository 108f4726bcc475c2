//! Which addresses the host may connect to on a tenant's behalf.
//!
//! A tenant names URLs (a git repository, its submodules) and the host
//! fetches them. Without a check, any organization could make the host
//! reach its own loopback services, the cloud metadata endpoint or the
//! private network behind it, and read port states from the failures. So
//! every such connection is checked first: the host name is resolved and
//! every address it resolves to must be public, unless the operator
//! allows its network (`--allow-private-network 10.1.0.0/16`, or
//! `[network] allow_private = [...]` in the config file).
//!
//! The refusal is the same whether or not anything listens there, and it
//! comes before any connection is made.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::str::FromStr;

/// An address block: `10.0.0.0/8`, `::1/128`, or one address (`127.0.0.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is inside the block (IPv4-mapped IPv6 addresses count
    /// as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.network, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("{text:?} is not an address block: give an address (127.0.0.1, ::1) or address/prefix (10.0.0.0/8, fd00::/8)")
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text.trim(), None),
        };
        let network = canonical(address.parse::<IpAddr>().map_err(|_| bad())?);
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(bad)?,
            None => bits,
        };
        Ok(Cidr { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// What the host may reach for tenants: every public address, and the
/// non-public blocks the operator allows. The default allows none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkPolicy {
    allowed: Vec<Cidr>,
}

/// Why a connection was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkRefusal {
    #[error("{host} resolves to {address}, a {class} address; builds may not make this server reach loopback, link-local or private networks. An operator who means to allow it starts the server with --allow-private-network {address} (or [network] allow_private = [\"{address}\"] in the config file)")]
    NotPublic {
        host: String,
        address: IpAddr,
        class: &'static str,
    },
    #[error("cannot resolve {host}: {message}")]
    Unresolvable { host: String, message: String },
}

impl NetworkPolicy {
    /// Public addresses plus the `allowed` blocks.
    pub fn allowing(allowed: impl IntoIterator<Item = Cidr>) -> Self {
        NetworkPolicy {
            allowed: allowed.into_iter().collect(),
        }
    }

    /// The blocks allowed besides public addresses.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    /// Checks one address: `Err(class)` when it is not public and not
    /// allowed.
    pub fn check_address(&self, ip: IpAddr) -> Result<(), &'static str> {
        match special_class(ip) {
            Some(class) if !self.allowed.iter().any(|block| block.contains(ip)) => Err(class),
            _ => Ok(()),
        }
    }

    /// Resolves `host` (a name or an address literal, IPv6 with or without
    /// brackets) and checks every address it resolves to: one private
    /// answer among public ones is refused too, since the connection may
    /// use any of them. Blocking: call it off the async runtime.
    pub fn check_host(&self, host: &str) -> Result<(), NetworkRefusal> {
        self.resolve(host).map(drop)
    }

    /// Resolves `host` and returns its addresses, all of them admitted, or
    /// the refusal: what a connection may use. Blocking.
    pub fn resolve(&self, host: &str) -> Result<Vec<IpAddr>, NetworkRefusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<IpAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![ip],
            Err(_) => (bare, 0)
                .to_socket_addrs()
                .map_err(|e| NetworkRefusal::Unresolvable {
                    host: host.to_string(),
                    message: e.to_string(),
                })?
                .map(|socket| socket.ip())
                .collect(),
        };
        if addresses.is_empty() {
            return Err(NetworkRefusal::Unresolvable {
                host: host.to_string(),
                message: "no addresses".into(),
            });
        }
        for address in &addresses {
            self.check_address(*address)
                .map_err(|class| NetworkRefusal::NotPublic {
                    host: host.to_string(),
                    address: canonical(*address),
                    class,
                })?;
        }
        Ok(addresses)
    }
}

/// A DNS resolver for reqwest that answers only with admitted addresses:
/// the check before a fetch resolved the name once, and a DNS server that
/// answers differently for the connection (rebinding) is caught here, at
/// the moment the connection is made.
pub struct PolicyResolver(pub NetworkPolicy);

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addresses = tokio::task::spawn_blocking(move || policy.resolve(&host))
                .await
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            let sockets: reqwest::dns::Addrs = Box::new(
                addresses
                    .into_iter()
                    .map(|ip| std::net::SocketAddr::new(ip, 0))
                    .collect::<Vec<_>>()
                    .into_iter(),
            );
            Ok(sockets)
        })
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it
/// is, so it cannot slip past the IPv4 rules.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn special_class(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_class(v4),
        IpAddr::V6(v6) => v6_class(v6),
    }
}

fn v4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if ip.is_link_local() => "link-local",
        (0, _, _) => "unspecified (\"this network\")",
        (100, 64..=127, _) => "shared (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn v6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    Some(match segments {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        [0xfe80..=0xfebf, ..] => "link-local",
        [0xfec0..=0xfeff, ..] => "site-local",
        [0xfc00..=0xfdff, ..] => "unique local (private)",
        [0xff00..=0xffff, ..] => "multicast",
        [0x2001, 0x0db8, ..] => "documentation",
        // NAT64 and 6to4 carry an IPv4 address: judge that one.
        [0x0064, 0xff9b, 0, 0, 0, 0, high, low] => {
            return v4_class(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
        }
        [0x2002, high, low, ..] => {
            return v4_class(Ipv4Addr::from((u32::from(high) << 16) | u32::from(low)))
        }
        // IPv4-compatible (deprecated) `::a.b.c.d`.
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (deprecated)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn non_public_addresses_are_classified_and_public_ones_pass() {
        for (address, class) in [
            ("127.0.0.1", "loopback"),
            ("127.9.9.9", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local"),
            ("0.0.0.0", "unspecified (\"this network\")"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("224.0.0.1", "multicast"),
            ("255.255.255.255", "reserved or broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fe80::1", "link-local"),
            ("fd00::1", "unique local (private)"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:10.0.0.1", "private"),
            ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
        ] {
            assert_eq!(special_class(ip(address)), Some(class), "{address}");
        }
        for public in ["1.1.1.1", "140.82.112.3", "172.32.0.1", "2606:4700::1111"] {
            assert_eq!(special_class(ip(public)), None, "{public}");
        }
    }

    #[test]
    fn the_operator_allows_blocks_and_nothing_else() {
        let policy =
            NetworkPolicy::allowing(["127.0.0.0/8".parse().unwrap(), "fd00::/8".parse().unwrap()]);
        assert!(policy.check_address(ip("127.0.0.1")).is_ok());
        assert!(policy.check_address(ip("::ffff:127.0.0.2")).is_ok());
        assert!(policy.check_address(ip("fd12::1")).is_ok());
        assert_eq!(policy.check_address(ip("10.0.0.1")), Err("private"));
        assert_eq!(policy.check_address(ip("::1")), Err("loopback"));
        assert!(NetworkPolicy::default()
            .check_address(ip("127.0.0.1"))
            .is_err());
        assert!(NetworkPolicy::default()
            .check_address(ip("8.8.8.8"))
            .is_ok());
    }

    #[test]
    fn host_names_are_resolved_before_they_are_judged() {
        let refused = NetworkPolicy::default()
            .check_host("localhost")
            .unwrap_err();
        assert!(
            matches!(
                refused,
                NetworkRefusal::NotPublic {
                    class: "loopback",
                    ..
                }
            ),
            "{refused:?}"
        );
        assert!(refused.to_string().contains("--allow-private-network"));
        let refused = NetworkPolicy::default().check_host("[::1]").unwrap_err();
        assert!(
            matches!(refused, NetworkRefusal::NotPublic { .. }),
            "{refused:?}"
        );
        let allowed =
            NetworkPolicy::allowing(["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]);
        assert_eq!(allowed.check_host("localhost"), Ok(()));
    }

    /// The resolver reqwest connects through refuses what the policy
    /// refuses, at connection time (DNS rebinding).
    #[tokio::test]
    async fn the_connection_resolver_applies_the_policy() {
        use reqwest::dns::Resolve;
        let name = |host: &str| host.parse::<reqwest::dns::Name>().unwrap();
        let refused = PolicyResolver(NetworkPolicy::default())
            .resolve(name("localhost"))
            .await;
        let error = refused.err().expect("localhost is refused").to_string();
        assert!(error.contains("loopback"), "{error}");
        let allowed = PolicyResolver(NetworkPolicy::allowing([
            "127.0.0.0/8".parse().unwrap(),
            "::1".parse().unwrap(),
        ]))
        .resolve(name("localhost"))
        .await
        .expect("allowed");
        assert!(allowed.into_iter().all(|socket| socket.ip().is_loopback()));
    }

    #[test]
    fn address_blocks_parse_strictly() {
        assert_eq!(
            "10.0.0.0/8".parse::<Cidr>().unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!("::1".parse::<Cidr>().unwrap().to_string(), "::1/128");
        assert_eq!(
            "127.0.0.1".parse::<Cidr>().unwrap().to_string(),
            "127.0.0.1/32"
        );
        for bad in ["10.0.0.0/33", "localhost", "10.0.0/8", "::1/129", ""] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains(ip("10.0.0.1")));
    }
}
