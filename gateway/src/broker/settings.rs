//! The `[broker]` table.

use serde::Deserialize;

/// The `[broker]` table: MQTT limits and behaviour. Every key is optional; the defaults suit a
/// household gateway with a few thousand clients.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Most simultaneous MQTT connections (all transports together); further connections are
    /// closed right after accept.
    pub max_connections: usize,
    /// Seconds a new connection has to send its CONNECT before it is closed.
    pub connect_timeout: u64,
    /// Largest packet accepted from a client, in bytes (advertised as Maximum Packet Size in v5
    /// CONNACK). A larger packet closes the connection (v5: DISCONNECT 0x95).
    pub max_packet_size: u32,
    /// Longest client identifier accepted, in bytes (longer ones: CONNACK 0x85 / v3 0x02).
    pub max_client_id_len: usize,
    /// Most levels in a topic name or filter (more: the PUBLISH or subscription is refused).
    pub max_topic_levels: usize,
    /// Largest keep alive granted, in seconds. A v5 client asking for more, or for 0 (none), is
    /// told this value as Server Keep Alive; a v3 client asking for more is held to this value.
    pub max_keepalive: u16,
    /// Receive Maximum advertised to v5 clients: QoS 1/2 publications a client may have
    /// unacknowledged towards the broker. Exceeding it closes the connection with 0x93.
    pub receive_maximum: u16,
    /// Most QoS 1/2 messages in flight from the broker to one client (the client's own Receive
    /// Maximum lowers it further).
    pub max_inflight: u16,
    /// Most messages waiting in one session's queue (online or offline) beyond the in-flight
    /// window. When full, a QoS 0 message is dropped first, else the new message; drops are
    /// counted.
    pub max_queued_messages: usize,
    /// Most payload bytes waiting in one session's queue (same drop policy).
    pub max_queued_bytes: usize,
    /// Topic Alias Maximum advertised to v5 clients (aliases the broker accepts inbound).
    pub topic_alias_maximum: u16,
    /// Largest session expiry interval granted to v5 clients, in seconds.
    pub max_session_expiry: u32,
    /// Seconds between refreshes of the retained `$SYS/broker/...` topics; 0 disables them.
    pub sys_interval: u64,
    /// Topic filters nobody may subscribe to (SUBACK 0x80, v5 0x87). A subscription is refused
    /// when its filter equals one of these or one of these matches it.
    pub deny_subscribe: Vec<String>,
    /// Seconds a shutdown (SIGTERM, SIGINT) waits for connections to close and the store to
    /// flush; after that the remaining tasks are abandoned and the process exits with a
    /// warning.
    pub shutdown_timeout: u64,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            max_connections: 10_000,
            connect_timeout: 10,
            max_packet_size: 1 << 20,
            max_client_id_len: 256,
            max_topic_levels: 64,
            max_keepalive: u16::MAX,
            receive_maximum: 100,
            max_inflight: 100,
            max_queued_messages: 10_000,
            max_queued_bytes: 16 << 20,
            topic_alias_maximum: 32,
            max_session_expiry: u32::MAX,
            sys_interval: 10,
            deny_subscribe: Vec::new(),
            shutdown_timeout: 10,
        }
    }
}
