//! The client address behind trusted proxies (`ws.rs`, used by the WebSocket endpoint and the
//! API): the address that the loopback-only anonymous rule and the API's "no keys, loopback
//! only" rule judge.
//!
//! The input is the peer address on its first line, the trusted proxies (comma-separated) on
//! the second, then `Name: value` header lines. Two properties:
//! - for that request: an untrusted peer or a request without forwarding headers is the peer;
//!   otherwise the client is the peer, the unknown client, or an address the headers name;
//! - the same headers as a client wrote them, sent on by a trusted proxy on 127.0.0.1 that
//!   appends the real client 203.0.113.7 to `X-Forwarded-For` (and, if the input's first byte
//!   is odd, to `Forwarded`) the way nginx does: the client is 203.0.113.7 or unknown, never
//!   loopback, whatever the client wrote.

#![no_main]

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};

use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchboard::config::IpNet;
use switchboard::fuzzing::{UNKNOWN_CLIENT, client_addr};

const PROXY: SocketAddr = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 40_000);
const REAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 7));

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let peer = text(lines.next())
        .trim()
        .parse::<SocketAddr>()
        .unwrap_or(PROXY);
    let trusted: Vec<IpNet> = text(lines.next())
        .split(',')
        .filter_map(|net| net.trim().parse().ok())
        .collect();
    let mut headers = HeaderMap::new();
    let mut raw: Vec<(HeaderName, Vec<u8>)> = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let Ok(name) = HeaderName::from_bytes(&line[..colon]) else {
            continue;
        };
        let value = line[colon + 1..].trim_ascii();
        if let Ok(v) = HeaderValue::from_bytes(value) {
            headers.append(name.clone(), v);
            raw.push((name, value.to_vec()));
        }
    }

    // The request as it is.
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    let client = client_addr(peer, &headers, &trusted);
    let forwarding = headers.contains_key("forwarded") || headers.contains_key("x-forwarded-for");
    if !is_trusted(peer.ip()) || !forwarding {
        assert_eq!(client, peer, "{headers:?}");
    } else if client != peer && client != UNKNOWN_CLIENT {
        let named = named_ips(&headers);
        assert!(
            named.contains(&client.ip().to_canonical()),
            "{client} is not named in {headers:?}"
        );
    }

    // The same headers, as a client wrote them, behind a proxy that appends the real client.
    if is_trusted(REAL) {
        return;
    }
    let mut trusted = trusted.clone();
    trusted.push("127.0.0.1".parse().expect("an address"));
    let to_forwarded = data.first().is_some_and(|b| b % 2 == 1);
    let mut proxied = HeaderMap::new();
    let mut xff: Vec<&[u8]> = Vec::new();
    let mut fwd: Vec<&[u8]> = Vec::new();
    for (name, value) in &raw {
        match name.as_str() {
            "x-forwarded-for" => xff.push(value.as_slice()),
            "forwarded" if to_forwarded => fwd.push(value.as_slice()),
            _ => {
                proxied.append(name.clone(), HeaderValue::from_bytes(value).expect("valid"));
            }
        }
    }
    // nginx: `$proxy_add_x_forwarded_for` is the client's values joined by ", ", then the peer.
    let append = |values: &[&[u8]], hop: &str| -> HeaderValue {
        let mut joined = values.join(&b", "[..]);
        if !joined.is_empty() {
            joined.extend_from_slice(b", ");
        }
        joined.extend_from_slice(hop.as_bytes());
        HeaderValue::from_bytes(&joined).expect("valid parts make a valid value")
    };
    proxied.append("x-forwarded-for", append(&xff, &REAL.to_string()));
    if to_forwarded {
        proxied.append("forwarded", append(&fwd, &format!("for={REAL}")));
    }
    let client = client_addr(PROXY, &proxied, &trusted);
    assert!(
        client == SocketAddr::new(REAL, 0) || client == UNKNOWN_CLIENT,
        "behind the proxy the client is {client}, from {proxied:?}"
    );
    assert!(!client.ip().is_loopback());
});

/// A line as text; empty when it is missing or not UTF-8.
fn text(line: Option<&[u8]>) -> &str {
    std::str::from_utf8(line.unwrap_or_default()).unwrap_or("")
}

/// Every IP address written anywhere in the forwarding headers.
fn named_ips(headers: &HeaderMap) -> HashSet<IpAddr> {
    let mut ips = HashSet::new();
    for name in ["forwarded", "x-forwarded-for"] {
        for value in headers.get_all(name) {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.')) {
                let parsed = token
                    .parse::<SocketAddr>()
                    .map(|a| a.ip())
                    .or_else(|_| token.parse::<IpAddr>());
                if let Ok(ip) = parsed {
                    ips.insert(ip.to_canonical());
                }
            }
        }
    }
    ips
}
