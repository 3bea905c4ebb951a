//! What the HTTP side believes about which site a browser request comes from: the `Origin` a
//! browser attaches to cross-origin requests (and to every WebSocket handshake), and the `Host`
//! it was sent to.
//!
//! Two attacks shape it. A page on another site open in the user's browser (cross-site request
//! forgery) sends requests with its own `Origin`. A DNS-rebinding page (`evil.example` made to
//! resolve to the gateway's address) is same-origin with itself, so the browser sends
//! `Host: evil.example` and, for a WebSocket, `Origin: http://evil.example`: matching `Origin`
//! against `Host` alone would let it in, with the socket address of the user's own machine.
//! So `Host` must be one of the gateway's own names ([`Hosts`]) before it vouches for anything.
//!
//! Parsing is strict: an origin is `scheme://host[:port]` exactly as browsers serialise it
//! (RFC 6454), a host is a DNS name of letters, digits, `-`, `_` and `.`, an IPv4 address or a
//! bracketed IPv6 address. Anything else is refused, never guessed at. Used by the WebSocket
//! endpoint (`ws.rs`) and the API (`api/`); this module knows nothing of either.

use std::net::{IpAddr, Ipv6Addr};

use http::HeaderMap;
use http::header::{HOST, ORIGIN};

/// A browser origin: scheme, lower-case host and port (the scheme's default when absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    /// `http` or `https`.
    pub(crate) scheme: &'static str,
    /// Lower-case; an IPv6 address keeps its brackets.
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (a trailing `/` tolerated); `None` for anything a browser
    /// would not send as an http(s) origin (`null`, paths, user info, fragments, odd hosts).
    pub(crate) fn parse(text: &str) -> Option<Self> {
        let text = text.strip_suffix('/').unwrap_or(text);
        let (scheme, authority) = text.split_once("://")?;
        let (scheme, default_port) = if scheme.eq_ignore_ascii_case("http") {
            ("http", 80)
        } else if scheme.eq_ignore_ascii_case("https") {
            ("https", 443)
        } else {
            return None;
        };
        let (host, port) = parse_authority(authority)?;
        Some(Self {
            scheme,
            host,
            port: port.unwrap_or(default_port),
        })
    }

    /// Whether the host is loopback by definition: `localhost`, `*.localhost` (browsers resolve
    /// both to loopback themselves, RFC 6761) or a loopback address.
    pub(crate) fn is_loopback(&self) -> bool {
        is_loopback_host(&self.host)
    }
}

/// Splits and checks `host[:port]`: the host lower-cased, the port when one is written.
pub(crate) fn parse_authority(authority: &str) -> Option<(String, Option<u16>)> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (literal, after) = rest.split_once(']')?;
        literal.parse::<Ipv6Addr>().ok()?;
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':')?),
        };
        (&authority[..literal.len() + 2], port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            Some(digits.parse::<u16>().ok()?)
        }
    };
    if !host.starts_with('[') && !is_dns_name(host) {
        return None;
    }
    Some((host.to_ascii_lowercase(), port))
}

/// A host name as it may appear in a URL: dot-separated labels of ASCII letters, digits, `-`
/// and `_` (IDNs arrive in punycode), at most one trailing dot. IPv4 addresses match too.
fn is_dns_name(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

fn is_loopback_host(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    if host == "localhost" || host.ends_with(".localhost") {
        return true;
    }
    ip_literal(host).is_some_and(|ip| ip.to_canonical().is_loopback())
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok()
}

/// The names this gateway answers to in `Host`: every IP address (a rebinding attack needs a
/// DNS name, so an address literal is always the gateway's own), `localhost` and `*.localhost`,
/// this machine's names ([`machine_names`]), and `[http] allowed_hosts` (`"*"` accepts any
/// name).
#[derive(Debug, Clone, Default)]
pub(crate) struct Hosts {
    /// Lower-case, without a trailing dot.
    names: Vec<String>,
    any: bool,
}

impl Hosts {
    /// The gateway's names: `configured` plus this machine's host name.
    pub(crate) fn new(configured: &[String]) -> Self {
        let mut names: Vec<String> = configured
            .iter()
            .map(|n| n.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        let any = names.iter().any(|n| n == "*");
        names.extend(machine_names());
        Self { names, any }
    }

    /// Whether `host` (lower-case, from [`parse_authority`]) is one of the gateway's names.
    pub(crate) fn allows(&self, host: &str) -> bool {
        let host = host.strip_suffix('.').unwrap_or(host);
        self.any
            || ip_literal(host).is_some()
            || is_loopback_host(host)
            || self.names.iter().any(|n| n == host)
    }

    /// The request's `Host` when it is one of the gateway's names: `Ok(None)` without a `Host`
    /// header (not a browser: HTTP/1.0 tools), `Err` with the offending text otherwise.
    pub(crate) fn check<'a>(
        &self,
        headers: &'a HeaderMap,
    ) -> Result<Option<(String, Option<u16>)>, &'a str> {
        let Some(value) = headers.get(HOST) else {
            return Ok(None);
        };
        let text = value.to_str().map_err(|_| "(not text)")?;
        match parse_authority(text) {
            Some((host, port)) if self.allows(&host) => Ok(Some((host, port))),
            _ => Err(text),
        }
    }
}

/// This machine's names: its host name (Linux: the kernel's; elsewhere `/etc/hostname`),
/// `NAME.local` (mDNS), and `NAME.DOMAIN` for the `domain` and `search` domains of
/// `/etc/resolv.conf` (what a router's DNS calls it, e.g. `pi.fritz.box`), lower-case.
fn machine_names() -> Vec<String> {
    let Some(own) = ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|path| std::fs::read_to_string(path).ok())
        .map(|name| name.trim().to_ascii_lowercase())
        .filter(|name| is_dns_name(name))
    else {
        return Vec::new();
    };
    let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let mut names = vec![format!("{own}.local")];
    names.extend(search_domains(&resolv).map(|domain| format!("{own}.{domain}")));
    names.push(own);
    names
}

/// The `domain` and `search` entries of a resolv.conf, lower-case, without trailing dots.
fn search_domains(resolv: &str) -> impl Iterator<Item = String> + '_ {
    resolv
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            matches!(words.next(), Some("domain" | "search")).then_some(words)
        })
        .flatten()
        .map(|d| d.trim_end_matches('.').to_ascii_lowercase())
        .filter(|d| is_dns_name(d))
}

/// The browser origins the gateway trusts: `[http] allowed_origins`, loopback origins, and the
/// gateway's own origin (the request's `Host`, when that is one of [`Hosts`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins {
    /// `[http] allowed_origins`, parsed; entries that are not origins are kept as lower-case
    /// text and match only literally.
    listed: Vec<Origin>,
    literal: Vec<String>,
    any: bool,
    hosts: Hosts,
}

impl Origins {
    /// From `[http] allowed_origins` and `[http] allowed_hosts`.
    pub(crate) fn new(allowed_origins: &[String], allowed_hosts: &[String]) -> Self {
        let mut listed = Vec::new();
        let mut literal = Vec::new();
        for entry in allowed_origins {
            let entry = entry.trim();
            match Origin::parse(entry) {
                Some(origin) => listed.push(origin),
                None => literal.push(entry.trim_end_matches('/').to_ascii_lowercase()),
            }
        }
        Self {
            any: literal.iter().any(|o| o == "*"),
            listed,
            literal,
            hosts: Hosts::new(allowed_hosts),
        }
    }

    /// The gateway's own names.
    pub(crate) fn hosts(&self) -> &Hosts {
        &self.hosts
    }

    /// Whether a request with these headers may act for its origin: no `Origin` (not a
    /// browser, or a same-origin GET), `*` configured, a listed origin, a loopback origin, or
    /// the origin of the gateway itself (`Origin` naming the `Host` it was sent to, and that
    /// `Host` one of the gateway's names).
    pub(crate) fn allows(&self, headers: &HeaderMap) -> bool {
        let Some(value) = headers.get(ORIGIN) else {
            return true;
        };
        if self.any {
            return true;
        }
        let Ok(text) = value.to_str() else {
            return false;
        };
        let Some(origin) = Origin::parse(text) else {
            let text = text.trim_end_matches('/').to_ascii_lowercase();
            return self.literal.contains(&text);
        };
        if self.listed.contains(&origin) || origin.is_loopback() {
            return true;
        }
        match self.hosts.check(headers) {
            Ok(Some((host, port))) => {
                let default = if origin.scheme == "https" { 443 } else { 80 };
                host == origin.host && port.unwrap_or(default) == origin.port
            }
            Ok(None) | Err(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn origins_parse_as_browsers_serialise_them() {
        let o = Origin::parse("HTTPS://Dash.Example:8443/").unwrap();
        assert_eq!(
            (o.scheme, o.host.as_str(), o.port),
            ("https", "dash.example", 8443)
        );
        assert_eq!(Origin::parse("http://[::1]").unwrap().port, 80);
        for bad in [
            "null",
            "https://D#ASH.e.localhost",
            "http://a@b.example",
            "http://b.example/path",
            "http://b.example?q",
            "ftp://b.example",
            "http://",
            "http://b.example:",
            "http://b.example:65536",
            "http://b.example:+80",
            "http://[::1",
            "http://[::1]x",
            "http://b..example",
            "http://.localhost:gw.e@ample",
        ] {
            assert_eq!(Origin::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_host_with_characters_no_url_has_is_not_loopback() {
        // Found by the `origin` fuzz target: read loosely, this host "ended in .localhost".
        let origins = Origins::new(&[], &[]);
        assert!(!origins.allows(&headers(&[("origin", "https://D#ASH.e.localhost")])));
        assert!(origins.allows(&headers(&[("origin", "https://dash.localhost")])));
        assert!(origins.allows(&headers(&[("origin", "http://127.0.0.1:3000")])));
    }

    #[test]
    fn a_rebinding_page_is_not_its_own_origin() {
        let origins = Origins::new(&[], &[]);
        let rebinding = headers(&[
            ("origin", "http://evil.example:8080"),
            ("host", "evil.example:8080"),
        ]);
        assert!(!origins.allows(&rebinding));
        assert!(Origins::new(&[], &["Evil.Example".to_owned()]).allows(&rebinding));
        // The gateway's own address, and a port that differs.
        let own = headers(&[
            ("origin", "http://192.0.2.7:8080"),
            ("host", "192.0.2.7:8080"),
        ]);
        assert!(origins.allows(&own));
        let other_port = headers(&[
            ("origin", "http://192.0.2.7:9999"),
            ("host", "192.0.2.7:8080"),
        ]);
        assert!(!origins.allows(&other_port));
        // Default ports are the scheme's.
        let https = headers(&[("origin", "https://192.0.2.7"), ("host", "192.0.2.7:443")]);
        assert!(origins.allows(&https));
    }

    #[test]
    fn listed_origins_and_the_wildcard() {
        let origins = Origins::new(&["https://Shop.Example/".to_owned()], &[]);
        assert!(origins.allows(&headers(&[("origin", "https://shop.example:443")])));
        assert!(!origins.allows(&headers(&[("origin", "http://shop.example")])));
        assert!(origins.allows(&headers(&[])), "no Origin: not a browser");
        let any = Origins::new(&["*".to_owned()], &[]);
        assert!(any.allows(&headers(&[("origin", "null")])));
        let null = Origins::new(&["null".to_owned()], &[]);
        assert!(null.allows(&headers(&[("origin", "null")])));
    }

    #[test]
    fn the_machine_is_also_known_in_its_search_domains() {
        let resolv = "# comment\nnameserver 192.0.2.53\nsearch fritz.box Home.Arpa.\ndomain lan\n";
        let domains: Vec<String> = search_domains(resolv).collect();
        assert_eq!(domains, ["fritz.box", "home.arpa", "lan"]);
    }

    #[test]
    fn hosts_are_the_gateways_own_names() {
        let hosts = Hosts::new(&["switchboard.home.arpa".to_owned()]);
        for ok in [
            "localhost:8080",
            "app.localhost",
            "10.0.0.2:8080",
            "[::1]:80",
            "switchboard.home.arpa.",
        ] {
            assert!(hosts.check(&headers(&[("host", ok)])).is_ok(), "{ok}");
        }
        for bad in ["evil.example", "evil.example:8080", "a b", "x:y"] {
            assert!(hosts.check(&headers(&[("host", bad)])).is_err(), "{bad}");
        }
        assert_eq!(hosts.check(&headers(&[])), Ok(None));
        assert!(Hosts::new(&["*".to_owned()]).allows("evil.example"));
    }
}
