//! The `switchboard demo` banner: where to point a browser, and a QR code for the phone.
//!
//! URLs come from the bound HTTP addresses: a listener on a wildcard address (`0.0.0.0`, `::`)
//! is reachable on `localhost` and on every IPv4 address of this machine's interfaces; a
//! loopback listener only on `localhost`; any other on its own address. The QR code encodes the
//! first URL a phone on the LAN can open.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use qrcode::QrCode;
use qrcode::render::unicode::Dense1x2;

/// The dashboard URLs for `http` listeners: `(localhost URLs, LAN URLs)`. `lan` is this
/// machine's non-loopback IPv4 addresses (see [`lan_addresses`]).
#[must_use]
pub fn dashboard_urls(http: &[SocketAddr], lan: &[Ipv4Addr]) -> (Vec<String>, Vec<String>) {
    let mut local = Vec::new();
    let mut remote = Vec::new();
    let push = |list: &mut Vec<String>, url: String| {
        if !list.contains(&url) {
            list.push(url);
        }
    };
    for addr in http {
        let port = addr.port();
        match addr.ip() {
            ip if ip.is_unspecified() => {
                push(&mut local, format!("http://localhost:{port}/"));
                // An IPv6 wildcard usually accepts IPv4 too (dual stack).
                for v4 in lan {
                    push(&mut remote, format!("http://{v4}:{port}/"));
                }
            }
            ip if ip.is_loopback() => push(&mut local, format!("http://localhost:{port}/")),
            IpAddr::V4(v4) => push(&mut remote, format!("http://{v4}:{port}/")),
            IpAddr::V6(v6) => push(&mut remote, format!("http://[{v6}]:{port}/")),
        }
    }
    (local, remote)
}

/// This machine's IPv4 addresses, loopback and link-local left out; empty when the interfaces
/// cannot be listed.
#[must_use]
pub fn lan_addresses() -> Vec<Ipv4Addr> {
    let mut out: Vec<Ipv4Addr> = if_addrs::get_if_addrs()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| match i.ip() {
            IpAddr::V4(v4) if !v4.is_loopback() && !v4.is_link_local() => Some(v4),
            _ => None,
        })
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// `text` as a QR code in Unicode half blocks (two modules per character cell), light on dark
/// so it scans from a dark terminal; `None` if it does not fit a QR code.
#[must_use]
pub fn qr(text: &str) -> Option<String> {
    let code = QrCode::new(text.as_bytes()).ok()?;
    Some(
        code.render::<Dense1x2>()
            .dark_color(Dense1x2::Light)
            .light_color(Dense1x2::Dark)
            .quiet_zone(true)
            .build(),
    )
}

/// The banner printed by `switchboard demo`.
#[must_use]
pub fn banner(http: &[SocketAddr], mqtt: &[SocketAddr], lan: &[Ipv4Addr], plugs: usize) -> String {
    let (local, remote) = dashboard_urls(http, lan);
    let mut s = String::new();
    let _ = writeln!(s);
    let _ = writeln!(
        s,
        "  Switchboard demo: {plugs} simulated plugs in Kitchen, Living room, Office, Bedroom"
    );
    let _ = writeln!(s);
    let _ = writeln!(s, "  Dashboard on this computer:");
    for url in &local {
        let _ = writeln!(s, "    {url}");
    }
    if !remote.is_empty() {
        let _ = writeln!(
            s,
            "  Dashboard from your phone or another computer on the network:"
        );
        for url in &remote {
            let _ = writeln!(s, "    {url}");
        }
        // Anonymous clients are accepted from loopback only unless the operator opens it.
        let _ = writeln!(
            s,
            "  (other devices sign in: `switchboard passwd FILE add NAME` and --password-file FILE,\n   or restart with --allow-anonymous on a network you trust)"
        );
    }
    for addr in mqtt {
        let _ = writeln!(s, "  MQTT broker: mqtt://{addr}");
    }
    match remote.first().and_then(|url| qr(url).map(|q| (url, q))) {
        Some((url, code)) => {
            let _ = writeln!(s);
            let _ = writeln!(s, "  Scan to open {url} on your phone:");
            for line in code.lines() {
                let _ = writeln!(s, "  {line}");
            }
        }
        None if local.is_empty() && remote.is_empty() => {
            let _ = writeln!(s, "  (no HTTP listener: the dashboard is not served)");
        }
        None => {
            let _ = writeln!(
                s,
                "  (listening on loopback only: use --http 0.0.0.0:8080 to reach it from a phone)"
            );
        }
    }
    let _ = writeln!(s);
    let _ = writeln!(s, "  Press Ctrl-C to stop.");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn wildcard_lists_localhost_and_every_lan_address() {
        let lan = [Ipv4Addr::new(192, 168, 1, 20), Ipv4Addr::new(10, 0, 0, 5)];
        let (local, remote) = dashboard_urls(&[a("0.0.0.0:8080")], &lan);
        assert_eq!(local, vec!["http://localhost:8080/"]);
        assert_eq!(
            remote,
            vec!["http://192.168.1.20:8080/", "http://10.0.0.5:8080/"]
        );
        let (local, remote) = dashboard_urls(&[a("127.0.0.1:9000"), a("192.168.1.20:9001")], &lan);
        assert_eq!(local, vec!["http://localhost:9000/"]);
        assert_eq!(remote, vec!["http://192.168.1.20:9001/"]);
    }

    #[test]
    fn banner_has_urls_and_a_qr_code() {
        let lan = [Ipv4Addr::new(192, 168, 1, 20)];
        let b = banner(&[a("0.0.0.0:8080")], &[a("0.0.0.0:1883")], &lan, 12);
        assert!(b.contains("http://localhost:8080/"));
        assert!(b.contains("Scan to open http://192.168.1.20:8080/"));
        assert!(
            b.contains('\u{2580}') || b.contains('\u{2584}'),
            "half blocks"
        );
        let loopback = banner(&[a("127.0.0.1:8080")], &[], &lan, 3);
        assert!(loopback.contains("loopback only"));
        assert!(!loopback.contains("Scan"));
    }
}
