//! Entrances for the fuzz targets in `gateway/fuzz`: thin wrappers over the crate-private
//! parsers of untrusted input, so each target runs exactly the code the server runs. Not an
//! API: hidden from the documentation and free to change with the targets.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use http::HeaderMap;
use tokio_util::sync::CancellationToken;

use crate::web::{HttpConfig, IpNet};
use crate::ws::{Endpoint, MqttHandler, Serving, Slot, UpgradedIo, WsByteStream};

/// [`crate::ws`]'s client address of a request from `peer` with `headers`, behind `trusted`
/// proxies: the address the WebSocket endpoint and the API both use.
#[must_use]
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    crate::ws::client_addr(peer, headers, trusted)
}

/// The address given to a proxied client that cannot be determined.
pub const UNKNOWN_CLIENT: SocketAddr = crate::ws::UNKNOWN_CLIENT;

/// The WebSocket endpoint's `Origin` check, configured with `[http] allowed_origins`.
#[derive(Debug)]
pub struct OriginCheck(Endpoint);

impl OriginCheck {
    /// The check of an endpoint whose `[http] allowed_origins` is `allowed_origins`.
    #[must_use]
    pub fn new(allowed_origins: Vec<String>) -> Self {
        let config = HttpConfig {
            allowed_origins,
            ..HttpConfig::default()
        };
        Self(Endpoint::new(&config, Arc::new(NoBroker)))
    }

    /// Whether a WebSocket handshake with these headers passes the `Origin` check.
    #[must_use]
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        self.0.origin_allowed(headers)
    }
}

/// A handler that is never reached: the origin check runs before any connection is served.
#[derive(Debug)]
struct NoBroker;

impl MqttHandler for NoBroker {
    fn reserve(&self) -> Option<Slot> {
        None
    }

    fn serve(
        &self,
        _stream: WsByteStream<UpgradedIo>,
        _peer: SocketAddr,
        _transport: crate::broker::Transport,
        _meta: crate::security::ConnectionMeta,
        _shutdown: CancellationToken,
    ) -> Serving {
        Box::pin(async {})
    }
}

/// [`crate::http`]'s mapping of a request path to a file path under the dashboard's root, or
/// `None` when the path is refused.
#[must_use]
pub fn safe_relative_path(path: &str) -> Option<PathBuf> {
    crate::http::safe_relative_path(path)
}
