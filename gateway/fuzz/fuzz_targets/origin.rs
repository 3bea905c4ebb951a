//! The WebSocket endpoint's `Origin` check (`ws.rs`), which keeps other sites' pages from
//! opening an MQTT session with the user's browser.
//!
//! The input is `allowed_origins` (comma-separated) on its first line, then `Name: value`
//! header lines. Properties: a request without `Origin` (not a browser) passes; with `*` in the
//! list every origin passes; otherwise a well-formed http(s) origin (as the `http` crate reads
//! it) passes only when it is listed, names a loopback host, or names the host and port the
//! request was sent to (`Host`). The gateway parses more strictly than the `http` crate (no
//! `#`, `@` or other characters a URL's host cannot hold): it may refuse more, never allow more.

#![no_main]

use http::header::{HOST, ORIGIN};
use http::uri::{Authority, Uri};
use http::{HeaderMap, HeaderName, HeaderValue};
use libfuzzer_sys::fuzz_target;
use switchboard::fuzzing::OriginCheck;

fuzz_target!(|data: &[u8]| {
    let mut lines = data.split(|b| *b == b'\n');
    let allowed: Vec<String> = std::str::from_utf8(lines.next().unwrap_or_default())
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .map(str::to_owned)
        .collect();
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(&line[..colon]),
            HeaderValue::from_bytes(line[colon + 1..].trim_ascii()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    let check = OriginCheck::new(allowed.clone());
    let allows = check.allows(&headers);
    let Some(origin) = headers.get(ORIGIN) else {
        assert!(allows, "a request without Origin is refused");
        return;
    };
    if allowed.iter().any(|o| o.trim_end_matches('/') == "*") {
        assert!(allows, "`*` allows every origin");
        return;
    }
    if !allows {
        return;
    }
    let Ok(origin) = origin.to_str() else {
        panic!("an Origin that is not text passed");
    };
    let normalised = origin.trim_end_matches('/').to_ascii_lowercase();
    if allowed
        .iter()
        .any(|o| o.trim_end_matches('/').to_ascii_lowercase() == normalised)
    {
        return;
    }
    // Judge only origins a browser could send: scheme://host[:port], nothing else.
    let Ok(uri) = normalised.parse::<Uri>() else {
        return;
    };
    let (Some(scheme), Some(host)) = (uri.scheme_str(), uri.host()) else {
        return;
    };
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") || host.is_empty() {
        return;
    }
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        other => panic!("origin with scheme {other:?} passed: {origin:?}"),
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    // A fully qualified name (one trailing dot) is the same name.
    let name = host.strip_suffix('.').unwrap_or(host);
    let loopback = name == "localhost"
        || name.ends_with(".localhost")
        || literal
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return;
    }
    let request = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.to_ascii_lowercase().parse::<Authority>().ok())
        .unwrap_or_else(|| panic!("{origin:?} passed without a Host naming it"));
    assert_eq!(request.host(), host, "{origin:?} passed for another Host");
    assert_eq!(
        request.port_u16().unwrap_or(default_port),
        uri.port_u16().unwrap_or(default_port),
        "{origin:?} passed for another port of {request}"
    );
});
