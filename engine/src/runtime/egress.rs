//! Where runs may send HTTP: the operator's allow-list (hosts, and the ports of each), and
//! never to an internal address (loopback, link-local such as a cloud's metadata service,
//! private ranges) unless the operator named that very address. A name is checked after it
//! is resolved, at the addresses actually connected to, so that no entry, wildcard or exact
//! name, can be turned towards the inside by whoever controls its DNS.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which hosts an entry takes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    /// `*`
    Any,
    /// `*.example.com`: its subdomains.
    Subdomains(String),
    /// `api.example.com`: that name, and whatever addresses it resolves to.
    Name(String),
    /// `10.0.0.5`, `[::1]`: that address.
    Address(IpAddr),
}

/// Which ports an entry takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ports {
    /// No port given: 80 for http, 443 for https.
    Standard,
    /// `:*`
    Any,
    /// `:8443`
    Only(u16),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    host: HostPattern,
    ports: Ports,
}

/// The hosts runs may call: exact names, `*.example.com` for subdomains, `*` for any, or
/// IP addresses; each with `:port` (or `:*` for any port), else only 80 and 443.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Vec<Entry>);

fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

fn parse_entry(text: &str) -> Result<Entry, String> {
    let text = text.trim().to_ascii_lowercase();
    // `[v6]:port`, a bare v6 address (several colons), or `host:port`.
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(|| format!("`{text}` lacks its `]`"))?;
        (host.to_string(), after.strip_prefix(':').map(str::to_string))
    } else if text.matches(':').count() > 1 {
        (text.clone(), None)
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host.to_string(), Some(port.to_string())),
            None => (text.clone(), None),
        }
    };
    let ports = match port.as_deref() {
        None => Ports::Standard,
        Some("*") => Ports::Any,
        Some(port) => Ports::Only(port.parse().map_err(|_| format!("`{port}` in `{text}` is not a port"))?),
    };
    let legal = |c: char| c.is_ascii_alphanumeric() || "-.".contains(c);
    let host = if host == "*" {
        HostPattern::Any
    } else if let Some(ip) = parse_ip(&host) {
        HostPattern::Address(canonical(ip))
    } else if let Some(domain) = host.strip_prefix("*.").filter(|d| !d.is_empty() && d.chars().all(legal)) {
        HostPattern::Subdomains(domain.to_string())
    } else if !host.is_empty() && host.chars().all(legal) {
        HostPattern::Name(host)
    } else {
        return Err(format!("`{text}` is not a host name, `*.domain`, `*` or an address"));
    };
    Ok(Entry { host, ports })
}

impl Entry {
    fn takes_host(&self, host: &str, ip: Option<IpAddr>) -> bool {
        match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomains(domain) => host.ends_with(&format!(".{domain}")),
            HostPattern::Name(name) => name == host,
            HostPattern::Address(allowed) => ip.is_some_and(|ip| canonical(ip) == *allowed),
        }
    }

    fn takes_port(&self, port: u16, scheme: &str) -> bool {
        match self.ports {
            Ports::Any => true,
            Ports::Only(only) => only == port,
            Ports::Standard => (scheme == "http" && port == 80) || (scheme == "https" && port == 443),
        }
    }
}

/// What the allow-list says of a URL's host.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Refused,
    /// Allowed; internal addresses only if the operator named this host or address.
    Allowed {
        internal_ok: bool,
    },
}

impl AllowedHosts {
    /// The allow-list from `--allow-http` entries; a malformed one is refused, not guessed at.
    pub fn new(hosts: impl IntoIterator<Item = String>) -> Result<Self, String> {
        Ok(AllowedHosts(hosts.into_iter().map(|h| parse_entry(&h)).collect::<Result<_, _>>()?))
    }

    /// Whether runs may call `host` (a name or an address) on `port` over `scheme`.
    pub fn check(&self, host: &str, port: u16, scheme: &str) -> Verdict {
        let host = host.to_ascii_lowercase();
        let ip = parse_ip(&host);
        let matching = self.0.iter().filter(|e| e.takes_host(&host, ip) && e.takes_port(port, scheme));
        let mut verdict = Verdict::Refused;
        for entry in matching {
            let address = matches!(entry.host, HostPattern::Address(_));
            verdict = Verdict::Allowed { internal_ok: address };
            if address {
                break;
            }
        }
        verdict
    }
}

/// `::ffff:a.b.c.d` is `a.b.c.d`: mapped forms get the IPv4 rules.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Loopback, link-local, private, shared, reserved or otherwise not a public address.
pub fn is_internal(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xC0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xFE) == 18)
        || ip.is_documentation()
        || ip.is_multicast()
        || a >= 240
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let embedded_v4 = |hi: u16, lo: u16| internal_v4(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo)));
    ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (s[0] & 0xFE00) == 0xFC00
        || (s[0] & 0xFFC0) == 0xFE80
        || (s[0] & 0xFFC0) == 0xFEC0
        || (s[0] == 0x2001 && s[1] == 0x0DB8)
        || (s[..6] == [0; 6] && embedded_v4(s[6], s[7]))
        || (s[..6] == [0x64, 0xFF9B, 0, 0, 0, 0] && embedded_v4(s[6], s[7]))
        || (s[0] == 0x64 && s[1] == 0xFF9B && s[2] == 1)
        || (s[..4] == [0; 4] && s[4] == 0xFFFF && s[5] == 0 && embedded_v4(s[6], s[7]))
        || (s[0] == 0x2002 && embedded_v4(s[1], s[2]))
}

/// A name refused for where it points.
#[derive(Debug)]
pub struct InternalAddress(pub String);

impl std::fmt::Display for InternalAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` resolves only to internal addresses, which runs may not call", self.0)
    }
}

impl std::error::Error for InternalAddress {}

/// Resolves names for outbound calls and keeps only public addresses: the ones connected
/// to are exactly the ones checked.
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(resolve_guarded(name.as_str().to_ascii_lowercase()))
    }
}

async fn resolve_guarded(host: String) -> Result<Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
    let kept: Vec<SocketAddr> = found.filter(|a| !is_internal(a.ip())).collect();
    if kept.is_empty() {
        return Err(Box::new(InternalAddress(host)));
    }
    Ok(Box::new(kept.into_iter()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::new(entries.iter().map(|e| e.to_string())).expect("valid entries")
    }

    #[test]
    fn names_subdomains_and_any_on_standard_ports_unless_a_port_is_named() {
        let list = allowed(&["vendor.example", "*.payments.test", "api.test:8443"]);
        assert_eq!(list.check("vendor.example", 443, "https"), Verdict::Allowed { internal_ok: false });
        assert_eq!(list.check("VENDOR.example", 80, "http"), Verdict::Allowed { internal_ok: false });
        assert_eq!(list.check("vendor.example", 8080, "http"), Verdict::Refused, "another port");
        assert_eq!(list.check("eu.payments.test", 443, "https"), Verdict::Allowed { internal_ok: false });
        assert_eq!(list.check("payments.test", 443, "https"), Verdict::Refused);
        assert_eq!(list.check("evil-vendor.example", 443, "https"), Verdict::Refused);
        assert_eq!(list.check("api.test", 8443, "https"), Verdict::Allowed { internal_ok: false });
        assert_eq!(list.check("api.test", 443, "https"), Verdict::Refused);
        assert_eq!(allowed(&["*"]).check("anything", 443, "https"), Verdict::Allowed { internal_ok: false });
        assert_eq!(allowed(&["*:*"]).check("anything", 6379, "http"), Verdict::Allowed { internal_ok: false });
        assert_eq!(AllowedHosts::default().check("localhost", 80, "http"), Verdict::Refused);
    }

    #[test]
    fn a_malformed_entry_is_refused() {
        for entry in ["api.test:99999", "api.test:http", "[::1", "a b", "*.", "ex@mple.com"] {
            assert!(AllowedHosts::new([entry.to_string()]).is_err(), "{entry}");
        }
    }

    #[test]
    fn an_address_is_allowed_only_when_named() {
        let list = allowed(&["127.0.0.1:*", "[::1]:8080", "*"]);
        assert_eq!(list.check("127.0.0.1", 9000, "http"), Verdict::Allowed { internal_ok: true });
        assert_eq!(list.check("[::1]", 8080, "http"), Verdict::Allowed { internal_ok: true });
        // `*` takes the name, but not to an internal address.
        assert_eq!(list.check("169.254.169.254", 80, "http"), Verdict::Allowed { internal_ok: false });
    }

    #[test]
    fn internal_ranges_in_every_form_are_internal() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
        ] {
            assert!(is_internal(internal.parse().expect("an address")), "{internal}");
        }
        for public in ["1.1.1.1", "93.184.216.34", "2606:4700::1111"] {
            assert!(!is_internal(public.parse().expect("an address")), "{public}");
        }
    }
}
