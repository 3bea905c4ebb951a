//! What a client can do wrong once connected: one variant per rule, each naming the normative
//! statement it enforces where the specification numbers one, and mapping to the v5 reason
//! code of the DISCONNECT the server sends before closing.

use switchboard_mqtt::{DecodeError, PacketType, ReasonCode};

/// A fatal protocol error: the connection is closed (v5: after a DISCONNECT with
/// [`Violation::code`] and the message as its reason string).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Violation {
    /// The bytes are not a valid packet.
    #[error("{0}")]
    Decode(DecodeError),
    /// A second CONNECT on a connection.
    #[error("[MQTT-3.1.0-2] second CONNECT")]
    SecondConnect,
    /// AUTH after CONNACK without an authentication method in force.
    #[error("MQTT 5 section 4.12: AUTH without an authentication method")]
    AuthWithoutMethod,
    /// A packet only a server may send.
    #[error("{0:?} may not be sent by a client")]
    ServerPacket(PacketType),
    /// DISCONNECT raised the session expiry from 0.
    #[error("[MQTT-3.14.2-2] session expiry set at DISCONNECT after 0 at CONNECT")]
    ExpiryRaised,
    /// A topic alias of 0 or above the maximum the server granted.
    #[error("[MQTT-3.3.2-9] topic alias out of range")]
    TopicAliasOutOfRange,
    /// An empty topic with an alias that names no topic yet.
    #[error("MQTT 5 section 3.3.2.3.4: topic alias {0} has no topic yet")]
    TopicAliasUnknown(u16),
    /// A topic name with wildcards, control characters or nothing in it.
    #[error("[MQTT-3.3.2-2] invalid topic name")]
    TopicNameInvalid,
    /// More topic levels than `[broker] max_topic_levels`.
    #[error("too many topic levels")]
    TooManyLevels,
    /// More unacknowledged incoming QoS 2 publications than the server's Receive Maximum.
    #[error("[MQTT-3.3.4-9] more unacknowledged QoS 2 publications than Receive Maximum")]
    ReceiveMaximumExceeded,
    /// No Local on a shared subscription.
    #[error("[MQTT-3.8.3-4] No Local on a shared subscription")]
    NoLocalOnShared,
    /// An UNSUBSCRIBE with an invalid topic filter.
    #[error("MQTT section 4.7: invalid topic filter in UNSUBSCRIBE")]
    UnsubscribeFilterInvalid,
    /// More publications per second than `[limits] publish_rate`.
    #[error("publish rate limit exceeded")]
    PublishRate,
    /// The store is full and 3.1.1 has no way to refuse one publication.
    #[error("the store is full: publication not acknowledged")]
    StoreFull,
}

impl Violation {
    /// The reason code of the v5 DISCONNECT.
    pub(crate) fn code(&self) -> ReasonCode {
        match self {
            Self::Decode(err) => err.reason_code(),
            Self::SecondConnect
            | Self::AuthWithoutMethod
            | Self::ServerPacket(_)
            | Self::ExpiryRaised
            | Self::TopicAliasUnknown(_)
            | Self::NoLocalOnShared => ReasonCode::ProtocolError,
            Self::TopicAliasOutOfRange => ReasonCode::TopicAliasInvalid,
            Self::TopicNameInvalid | Self::TooManyLevels => ReasonCode::TopicNameInvalid,
            Self::ReceiveMaximumExceeded => ReasonCode::ReceiveMaximumExceeded,
            Self::UnsubscribeFilterInvalid => ReasonCode::MalformedPacket,
            Self::PublishRate => ReasonCode::MessageRateTooHigh,
            Self::StoreFull => ReasonCode::QuotaExceeded,
        }
    }
}

impl From<DecodeError> for Violation {
    fn from(err: DecodeError) -> Self {
        Self::Decode(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_violation_maps_to_an_error_code() {
        let all = [
            Violation::Decode(DecodeError::MalformedRemainingLength),
            Violation::SecondConnect,
            Violation::AuthWithoutMethod,
            Violation::ServerPacket(PacketType::ConnAck),
            Violation::ExpiryRaised,
            Violation::TopicAliasOutOfRange,
            Violation::TopicAliasUnknown(3),
            Violation::TopicNameInvalid,
            Violation::TooManyLevels,
            Violation::ReceiveMaximumExceeded,
            Violation::NoLocalOnShared,
            Violation::UnsubscribeFilterInvalid,
            Violation::PublishRate,
            Violation::StoreFull,
        ];
        for v in all {
            assert!(v.code().is_error(), "{v:?} -> {:?}", v.code());
            assert!(!v.to_string().is_empty());
        }
        assert_eq!(
            Violation::TopicAliasOutOfRange.code(),
            ReasonCode::TopicAliasInvalid
        );
        assert_eq!(
            Violation::ReceiveMaximumExceeded.code(),
            ReasonCode::ReceiveMaximumExceeded
        );
    }
}
