//! The client's error type: why a connection, subscription or publication did not succeed.

use switchboard_mqtt::ReasonCode;
use switchboard_mqtt::client::ClientError;

/// Why an operation of the `Client` (wasm32) did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The options are unusable (no URL, ...).
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),
    /// Every broker URL failed before any connection was accepted.
    #[error("no broker could be reached")]
    Unreachable,
    /// The broker refused the connection (CONNACK code).
    #[error("connection refused: {0:?}")]
    Refused(ReasonCode),
    /// Enhanced authentication (SCRAM-SHA-256) failed on the client's side: the broker's
    /// answer was invalid, or it did not prove it holds the user's verifier (a wrong server
    /// signature: not the real broker). The code is the one the client disconnected with.
    #[error("authentication failed: the broker did not prove itself ({0:?})")]
    AuthFailed(ReasonCode),
    /// QoS 0 publication while offline, or the offline queue is full: not sent.
    #[error("dropped while offline")]
    Dropped,
    /// A QoS 1/2 publication waited longer than the offline expiry: not sent.
    #[error("expired while offline")]
    Expired,
    /// The broker answered with a failure reason code (PUBACK, PUBREC, SUBACK, UNSUBACK).
    #[error("rejected by the broker: {0:?}")]
    Rejected(ReasonCode),
    /// The protocol state refused the command (QoS above the server's maximum, ...).
    #[error(transparent)]
    Protocol(#[from] ClientError),
    /// The client was ended (or dropped) before the operation completed.
    #[error("client ended")]
    Closed,
}

impl Error {
    /// A short stable code, as the JavaScript API exposes it in `error.code`.
    #[must_use]
    pub const fn code(&self) -> &'static str {
        match self {
            Self::InvalidOptions(_) => "invalid_options",
            Self::Unreachable => "unreachable",
            Self::Refused(_) | Self::AuthFailed(_) => "refused",
            Self::Dropped => "dropped",
            Self::Expired => "expired",
            Self::Rejected(_) => "rejected",
            Self::Protocol(_) => "protocol",
            Self::Closed => "closed",
        }
    }

    /// A fixed English message (no formatting machinery in the wasm, unlike `Display`).
    #[must_use]
    pub const fn message(&self) -> &'static str {
        match self {
            Self::InvalidOptions(what) => what,
            Self::Unreachable => "no broker could be reached",
            Self::Refused(ReasonCode::BadUserNameOrPassword) => {
                "connection refused: bad user name or password"
            }
            Self::Refused(ReasonCode::NotAuthorized) => "connection refused: not authorized",
            Self::Refused(ReasonCode::BadAuthenticationMethod) => {
                "connection refused: the broker does not support this authentication method"
            }
            Self::Refused(_) => "connection refused by the broker",
            Self::AuthFailed(_) => {
                "authentication failed: the broker did not prove it knows the password (SCRAM-SHA-256)"
            }
            Self::Dropped => "dropped while offline",
            Self::Expired => "expired while offline",
            Self::Rejected(_) => "rejected by the broker",
            Self::Protocol(ClientError::NotConnected) => "not connected",
            Self::Protocol(ClientError::QoSNotSupported(_)) => "QoS not supported by the broker",
            Self::Protocol(ClientError::RetainNotSupported) => "retain not supported by the broker",
            Self::Protocol(ClientError::PacketTooLarge { .. }) => "packet too large for the broker",
            Self::Protocol(_) => "protocol error",
            Self::Closed => "client ended",
        }
    }

    /// The MQTT reason code involved, if any.
    #[must_use]
    pub const fn reason_code(&self) -> Option<ReasonCode> {
        match self {
            Self::Refused(c) | Self::AuthFailed(c) | Self::Rejected(c) => Some(*c),
            _ => None,
        }
    }
}
