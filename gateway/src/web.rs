//! Small HTTP pieces shared by the dashboard's file server (`http.rs`), the WebSocket endpoint
//! (`ws.rs`) and the API (`api/`): the `[http]` table, the response body type, plain-text
//! answers, and reading percent-encoded paths and query strings. A leaf: it imports nothing
//! from the crate, so the modules above it never import each other for these.

use std::net::IpAddr;

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde::Deserialize;

/// The body of every response the gateway writes: whole, in memory.
pub type Body = Full<Bytes>;

/// A `text/plain` response that is never cached.
pub(crate) fn text(status: StatusCode, body: &'static str) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .expect("static response parts are valid")
}

/// Decodes `%XX` escapes (two hex digits each); `None` for a broken escape or a result that is
/// not UTF-8. `+` stays `+`: paths and our query values are not form-encoded.
pub(crate) fn percent_decode(input: &str) -> Option<String> {
    let bytes = input.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let digit = |b: u8| char::from(b).to_digit(16);
            let value = digit(hex[0])? * 16 + digit(hex[1])?;
            out.push(u8::try_from(value).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The decoded value of `name` in a URL query string: the first `name=value` pair, `None`
/// when absent, empty or not decodable.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .and_then(|(_, value)| percent_decode(value))
        .filter(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_escapes_need_two_hex_digits() {
        assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
        assert_eq!(percent_decode("caf%C3%A9").as_deref(), Some("café"));
        assert_eq!(percent_decode("1+1").as_deref(), Some("1+1"));
        // `u8::from_str_radix` would read "+1" as a number.
        for broken in ["%+1", "%-1", "%4", "%", "%zz", "%FF"] {
            assert_eq!(percent_decode(broken), None, "{broken}");
        }
    }

    #[test]
    fn query_parameters() {
        let q = Some("filter=a%2F%23&token=sbt1.x-y_z&empty=");
        assert_eq!(query_param(q, "filter").as_deref(), Some("a/#"));
        assert_eq!(query_param(q, "token").as_deref(), Some("sbt1.x-y_z"));
        assert_eq!(query_param(q, "empty"), None);
        assert_eq!(query_param(q, "missing"), None);
        assert_eq!(query_param(None, "token"), None);
        assert_eq!(query_param(Some("tokens=1"), "token"), None);
        // Wildcards of a filter stay as they are (`+` is not a space here).
        assert_eq!(
            query_param(Some("filter=a/+/c"), "filter").as_deref(),
            Some("a/+/c")
        );
    }
}

/// The `[http]` table: MQTT over WebSocket on the HTTP listeners, and reverse proxies.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Path of the MQTT over WebSocket endpoint (`/mqtt`; the dashboard's client uses it).
    pub websocket_path: String,
    /// Browser origins allowed to open the WebSocket (`scheme://host[:port]`, `"*"` for any),
    /// besides the page's own host (the `Host` header) and loopback origins, which are always
    /// allowed. Requests without an `Origin` header (non-browser clients) are always allowed.
    pub allowed_origins: Vec<String>,
    /// Names the gateway answers to in `Host`, besides IP addresses, `localhost` and this
    /// machine's names (host name, `NAME.local`, `NAME.DOMAIN` for resolv.conf's search domains),
    /// which always count; `"*"` for any. The API
    /// refuses requests for other names, and an `Origin` counts as the gateway's own only for
    /// these: a DNS-rebinding page (a foreign name resolving to the gateway) gets nothing.
    pub allowed_hosts: Vec<String>,
    /// Peers (addresses or CIDR blocks, e.g. `"10.0.0.0/8"`) whose `X-Forwarded-For` and
    /// `Forwarded` headers are believed for the client address; from anyone else they are
    /// ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Largest incoming WebSocket message, in bytes (a larger one closes with 1009).
    pub max_message_size: usize,
    /// Largest incoming WebSocket frame payload, in bytes (capped at `max_message_size`).
    pub max_frame_size: usize,
    /// Seconds a new HTTP connection has to send its request headers, and an accepted WebSocket
    /// upgrade has to complete (at least 1). The MQTT CONNECT that follows has the broker's own
    /// `connect_timeout`.
    pub handshake_timeout: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            websocket_path: "/mqtt".to_owned(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trusted_proxies: Vec::new(),
            max_message_size: 2 << 20,
            max_frame_size: 2 << 20,
            handshake_timeout: 10,
        }
    }
}

/// An IP address or a CIDR block (`192.168.0.0/16`, `fd00::/8`); a bare address is a /32 or /128.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` lies in this block (an IPv4-mapped IPv6 address counts as IPv4).
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match (self.addr, ip) {
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

impl std::str::FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{text}` is not an IP address or CIDR block"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{text}`: the prefix length must be 0..={max}"))?,
        };
        Ok(Self {
            addr: addr.to_canonical(),
            prefix,
        })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}
