//! Decode and encode errors. Each decode error names the normative statement it enforces and
//! maps to the v5 reason code to send back ([`DecodeError::reason_code`]).

use crate::packet::PacketType;
use crate::reason::ReasonCode;

/// Why bytes could not be decoded into a packet. After any of these the connection must be
/// closed (with a DISCONNECT or CONNACK carrying [`DecodeError::reason_code`] in v5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The packet is larger than the maximum packet size; found from the fixed header alone.
    #[error("[MQTT-3.1.2-24] packet of {size} bytes exceeds the maximum packet size {max}")]
    PacketTooLarge {
        /// Whole packet size announced by the fixed header.
        size: usize,
        /// The limit in force.
        max: u32,
    },
    /// A variable byte integer (remaining length) longer than four bytes.
    #[error("[MQTT-1.5.5-1] malformed remaining length (more than four bytes)")]
    MalformedRemainingLength,
    /// A variable byte integer inside the packet longer than four bytes.
    #[error("[MQTT-1.5.5-1] malformed variable byte integer")]
    MalformedVarInt,
    /// Packet type 0, or 15 (AUTH) before MQTT 5.0.
    #[error("[MQTT-2.1.2] reserved or unknown packet type {0}")]
    ReservedPacketType(u8),
    /// The fixed header flags of a packet other than PUBLISH differ from the fixed values.
    #[error("[MQTT-2.1.3-1] invalid fixed header flags {flags:#06b} for {packet_type:?}")]
    ReservedFlags {
        /// The packet type.
        packet_type: PacketType,
        /// The low nibble of the first byte.
        flags: u8,
    },
    /// The first packet of a connection (server side) must be CONNECT.
    #[error("[MQTT-3.1.0-1] the first packet sent must be CONNECT, got {0:?}")]
    FirstPacketNotConnect(PacketType),
    /// A field runs past the end announced by the remaining length.
    #[error("[MQTT-1.5] packet ended in the middle of a field")]
    UnexpectedEnd,
    /// Bytes are left over after the last field of a packet that has no payload.
    #[error("[MQTT-2.1.4] {0:?} has trailing bytes after its last field")]
    TrailingBytes(PacketType),
    /// A string is not well-formed UTF-8.
    #[error("[MQTT-1.5.4-1] string is not well-formed UTF-8")]
    InvalidUtf8,
    /// A string contains U+0000.
    #[error("[MQTT-1.5.4-2] string contains the null character U+0000")]
    NullCharacter,
    /// A topic name in PUBLISH contains `+` or `#`.
    #[error("[MQTT-3.3.2-2] topic name contains a wildcard character")]
    WildcardInTopicName,
    /// A PUBLISH topic name is empty (and, in v5, no topic alias is given).
    #[error("[MQTT-4.7.3-1] topic name is empty")]
    EmptyTopicName,
    /// QoS 3 in PUBLISH, a will, or a subscription.
    #[error("[MQTT-3.3.1-4] invalid QoS {0}")]
    InvalidQoS(u8),
    /// DUP set on a QoS 0 PUBLISH.
    #[error("[MQTT-3.3.1-2] DUP flag set on a QoS 0 PUBLISH")]
    DupWithQoS0,
    /// A packet identifier of zero.
    #[error("[MQTT-2.2.1-3] packet identifier is zero")]
    ZeroPacketId,
    /// A SUBSCRIBE without any topic filter.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE contains no topic filter")]
    EmptySubscriptionList,
    /// An UNSUBSCRIBE without any topic filter.
    #[error("[MQTT-3.10.3-2] UNSUBSCRIBE contains no topic filter")]
    EmptyUnsubscriptionList,
    /// Reserved bits set in subscription options, or retain handling 3.
    #[error("[MQTT-3.8.3-5] invalid subscription options byte {0:#010b}")]
    InvalidSubscriptionOptions(u8),
    /// A property identifier that MQTT 5.0 does not define.
    #[error("[MQTT-2.2.2] unknown property identifier {0:#04x}")]
    UnknownProperty(u8),
    /// A property not allowed in this packet.
    #[error("[MQTT-2.2.2] property {id:#04x} is not allowed in {packet_type:?}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet it appeared in.
        packet_type: PacketType,
    },
    /// A property that may appear once appears twice.
    #[error("[MQTT-2.2.2] property {id:#04x} appears more than once")]
    DuplicateProperty {
        /// The property identifier.
        id: u8,
    },
    /// A property value outside its allowed range (for example Receive Maximum 0).
    #[error("[MQTT-3.1.2] invalid value for property {0:#04x}")]
    InvalidPropertyValue(u8),
    /// Topic Alias 0.
    #[error("[MQTT-3.3.2-8] topic alias is zero")]
    TopicAliasZero,
    /// The CONNECT protocol name is neither `MQTT` nor `MQIsdp`.
    #[error("[MQTT-3.1.2-1] invalid protocol name")]
    InvalidProtocolName,
    /// The CONNECT protocol level is not supported (or does not fit the protocol name).
    #[error("[MQTT-3.1.2-2] unsupported protocol level {level}")]
    UnsupportedProtocol {
        /// The protocol level byte.
        level: u8,
    },
    /// The reserved bit 0 of the CONNECT flags is set.
    #[error("[MQTT-3.1.2-3] reserved CONNECT flag is set")]
    ConnectReservedFlag,
    /// Will QoS or Will Retain set without the Will Flag, or Will QoS 3.
    #[error("[MQTT-3.1.2-11] will QoS/retain set without a will, or will QoS 3")]
    InvalidWillFlags,
    /// A password without a user name (forbidden before MQTT 5.0).
    #[error("[MQTT-3.1.2-22] password flag set without the user name flag")]
    PasswordWithoutUsername,
    /// Reserved CONNACK acknowledge flags set.
    #[error("[MQTT-3.2.2-1] reserved CONNACK flags set")]
    InvalidConnAckFlags,
    /// A byte that is no reason code (or v3 return code).
    #[error("[MQTT-2.4] invalid reason code {0:#04x}")]
    InvalidReasonCode(u8),
    /// A reason code that this packet may not carry.
    #[error("[MQTT-2.4] reason code {code:?} is not allowed in {packet_type:?}")]
    ReasonCodeNotAllowed {
        /// The reason code.
        code: ReasonCode,
        /// The packet it appeared in.
        packet_type: PacketType,
    },
}

impl DecodeError {
    /// The MQTT 5.0 reason code to report this error with (in CONNACK before the session is up,
    /// in DISCONNECT after).
    #[must_use]
    pub const fn reason_code(&self) -> ReasonCode {
        match self {
            Self::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::FirstPacketNotConnect(_)
            | Self::DuplicateProperty { .. }
            | Self::InvalidPropertyValue(_)
            | Self::EmptySubscriptionList
            | Self::EmptyUnsubscriptionList => ReasonCode::ProtocolError,
            Self::WildcardInTopicName | Self::EmptyTopicName => ReasonCode::TopicNameInvalid,
            Self::TopicAliasZero => ReasonCode::TopicAliasInvalid,
            Self::UnsupportedProtocol { .. } | Self::InvalidProtocolName => {
                ReasonCode::UnsupportedProtocolVersion
            }
            _ => ReasonCode::MalformedPacket,
        }
    }
}

/// Why a packet could not be encoded. The output buffer is left as it was.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The remaining length would exceed 268,435,455 bytes.
    #[error("[MQTT-2.1.4] packet of {size} bytes exceeds the largest encodable remaining length")]
    PacketTooLarge {
        /// The remaining length the packet would need.
        size: usize,
    },
    /// A UTF-8 string longer than 65,535 bytes.
    #[error("[MQTT-1.5.4] string of {0} bytes is longer than 65535")]
    StringTooLong(usize),
    /// Binary data longer than 65,535 bytes.
    #[error("[MQTT-1.5.6] binary data of {0} bytes is longer than 65535")]
    BinaryTooLong(usize),
    /// A value that does not fit a variable byte integer.
    #[error("[MQTT-1.5.5] value {0} does not fit a variable byte integer")]
    VarIntTooLarge(u32),
    /// A property not allowed in this packet.
    #[error("[MQTT-2.2.2] property {id:#04x} is not allowed in {packet_type:?}")]
    PropertyNotAllowed {
        /// The property identifier.
        id: u8,
        /// The packet being encoded.
        packet_type: PacketType,
    },
    /// A packet that does not exist in the requested protocol version (AUTH before 5.0).
    #[error("{packet_type:?} does not exist in {version:?}")]
    NotInVersion {
        /// The packet being encoded.
        packet_type: PacketType,
        /// The protocol version asked for.
        version: crate::ProtocolVersion,
    },
    /// A password without a user name, forbidden before MQTT 5.0.
    #[error("[MQTT-3.1.2-22] password without a user name")]
    PasswordWithoutUsername,
    /// A SUBSCRIBE or UNSUBSCRIBE without topic filters.
    #[error("[MQTT-3.8.3-3] SUBSCRIBE/UNSUBSCRIBE needs at least one topic filter")]
    EmptyFilterList,
    /// A reason code that this packet may not carry.
    #[error("[MQTT-2.4] reason code {code:?} is not allowed in {packet_type:?}")]
    ReasonCodeNotAllowed {
        /// The reason code.
        code: ReasonCode,
        /// The packet being encoded.
        packet_type: PacketType,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_and_messages() {
        let too_large = DecodeError::PacketTooLarge { size: 10, max: 5 };
        assert_eq!(too_large.reason_code(), ReasonCode::PacketTooLarge);
        assert_eq!(
            DecodeError::DuplicateProperty { id: 1 }.reason_code(),
            ReasonCode::ProtocolError
        );
        assert_eq!(
            DecodeError::UnsupportedProtocol { level: 6 }.reason_code(),
            ReasonCode::UnsupportedProtocolVersion
        );
        assert_eq!(
            DecodeError::WildcardInTopicName.reason_code(),
            ReasonCode::TopicNameInvalid
        );
        assert_eq!(
            DecodeError::TopicAliasZero.reason_code(),
            ReasonCode::TopicAliasInvalid
        );
        assert_eq!(
            DecodeError::InvalidUtf8.reason_code(),
            ReasonCode::MalformedPacket
        );
        assert!(
            DecodeError::WildcardInTopicName
                .to_string()
                .starts_with("[MQTT-3.3.2-2]")
        );
    }
}
