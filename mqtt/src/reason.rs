//! MQTT 5.0 reason codes (section 2.4), also used to carry the v3 CONNACK return codes and
//! SUBACK return codes after mapping.

use crate::error::DecodeError;

macro_rules! reason_codes {
    ($($(#[$doc:meta])* $name:ident = $val:literal,)*) => {
        /// A reason code, as in MQTT 5.0 section 2.4. `0x00` is spelled [`ReasonCode::Success`]
        /// (also "Normal disconnection" and "Granted QoS 0", see the associated constants).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        #[repr(u8)]
        pub enum ReasonCode {
            /// Success / Normal disconnection / Granted QoS 0.
            #[default]
            Success = 0x00,
            $($(#[$doc])* $name = $val,)*
        }

        impl TryFrom<u8> for ReasonCode {
            type Error = DecodeError;

            /// # Errors
            /// [`DecodeError::InvalidReasonCode`] for a byte that is no v5 reason code.
            fn try_from(value: u8) -> Result<Self, DecodeError> {
                match value {
                    0x00 => Ok(Self::Success),
                    $($val => Ok(Self::$name),)*
                    _ => Err(DecodeError::InvalidReasonCode(value)),
                }
            }
        }
    };
}

reason_codes! {
    /// Granted QoS 1 (SUBACK).
    GrantedQoS1 = 0x01,
    /// Granted QoS 2 (SUBACK).
    GrantedQoS2 = 0x02,
    /// Disconnect with Will Message (DISCONNECT).
    DisconnectWithWill = 0x04,
    /// No matching subscribers (PUBACK, PUBREC).
    NoMatchingSubscribers = 0x10,
    /// No subscription existed (UNSUBACK).
    NoSubscriptionExisted = 0x11,
    /// Continue authentication (AUTH).
    ContinueAuthentication = 0x18,
    /// Re-authenticate (AUTH).
    ReAuthenticate = 0x19,
    /// Unspecified error.
    UnspecifiedError = 0x80,
    /// Malformed Packet.
    MalformedPacket = 0x81,
    /// Protocol Error.
    ProtocolError = 0x82,
    /// Implementation specific error.
    ImplementationSpecificError = 0x83,
    /// Unsupported Protocol Version.
    UnsupportedProtocolVersion = 0x84,
    /// Client Identifier not valid.
    ClientIdentifierNotValid = 0x85,
    /// Bad User Name or Password.
    BadUserNameOrPassword = 0x86,
    /// Not authorized.
    NotAuthorized = 0x87,
    /// Server unavailable.
    ServerUnavailable = 0x88,
    /// Server busy.
    ServerBusy = 0x89,
    /// Banned.
    Banned = 0x8A,
    /// Server shutting down.
    ServerShuttingDown = 0x8B,
    /// Bad authentication method.
    BadAuthenticationMethod = 0x8C,
    /// Keep Alive timeout.
    KeepAliveTimeout = 0x8D,
    /// Session taken over.
    SessionTakenOver = 0x8E,
    /// Topic Filter invalid.
    TopicFilterInvalid = 0x8F,
    /// Topic Name invalid.
    TopicNameInvalid = 0x90,
    /// Packet Identifier in use.
    PacketIdentifierInUse = 0x91,
    /// Packet Identifier not found.
    PacketIdentifierNotFound = 0x92,
    /// Receive Maximum exceeded.
    ReceiveMaximumExceeded = 0x93,
    /// Topic Alias invalid.
    TopicAliasInvalid = 0x94,
    /// Packet too large.
    PacketTooLarge = 0x95,
    /// Message rate too high.
    MessageRateTooHigh = 0x96,
    /// Quota exceeded.
    QuotaExceeded = 0x97,
    /// Administrative action.
    AdministrativeAction = 0x98,
    /// Payload format invalid.
    PayloadFormatInvalid = 0x99,
    /// Retain not supported.
    RetainNotSupported = 0x9A,
    /// QoS not supported.
    QoSNotSupported = 0x9B,
    /// Use another server.
    UseAnotherServer = 0x9C,
    /// Server moved.
    ServerMoved = 0x9D,
    /// Shared Subscriptions not supported.
    SharedSubscriptionsNotSupported = 0x9E,
    /// Connection rate exceeded.
    ConnectionRateExceeded = 0x9F,
    /// Maximum connect time.
    MaximumConnectTime = 0xA0,
    /// Subscription Identifiers not supported.
    SubscriptionIdentifiersNotSupported = 0xA1,
    /// Wildcard Subscriptions not supported.
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    /// "Normal disconnection" (DISCONNECT), the same byte as [`ReasonCode::Success`].
    pub const NORMAL_DISCONNECTION: Self = Self::Success;
    /// "Granted QoS 0" (SUBACK), the same byte as [`ReasonCode::Success`].
    pub const GRANTED_QOS0: Self = Self::Success;

    /// The byte on the wire.
    #[must_use]
    pub const fn as_u8(self) -> u8 {
        self as u8
    }

    /// Whether this code reports a failure (0x80 and above).
    #[must_use]
    pub const fn is_error(self) -> bool {
        self as u8 >= 0x80
    }

    /// The SUBACK code granting `qos`.
    #[must_use]
    pub const fn granted(qos: crate::QoS) -> Self {
        match qos {
            crate::QoS::AtMostOnce => Self::Success,
            crate::QoS::AtLeastOnce => Self::GrantedQoS1,
            crate::QoS::ExactlyOnce => Self::GrantedQoS2,
        }
    }

    /// Maps a v3.1/v3.1.1 CONNACK return code (0 to 5) to its v5 equivalent.
    ///
    /// # Errors
    /// [`DecodeError::InvalidReasonCode`] for 6 and above.
    pub const fn from_v3_connack(code: u8) -> Result<Self, DecodeError> {
        match code {
            0 => Ok(Self::Success),
            1 => Ok(Self::UnsupportedProtocolVersion),
            2 => Ok(Self::ClientIdentifierNotValid),
            3 => Ok(Self::ServerUnavailable),
            4 => Ok(Self::BadUserNameOrPassword),
            5 => Ok(Self::NotAuthorized),
            _ => Err(DecodeError::InvalidReasonCode(code)),
        }
    }

    /// Maps this code to a v3.1/v3.1.1 CONNACK return code. Codes without a v3 equivalent
    /// become "server unavailable" (3), the closest catch-all in 3.1.1.
    #[must_use]
    pub const fn to_v3_connack(self) -> u8 {
        match self {
            Self::Success => 0,
            Self::UnsupportedProtocolVersion => 1,
            Self::ClientIdentifierNotValid => 2,
            Self::BadUserNameOrPassword | Self::BadAuthenticationMethod => 4,
            Self::NotAuthorized | Self::Banned => 5,
            _ => 3,
        }
    }
}

/// Whether `code` may appear in a v5 packet of type `t` (the "Packet" column of table 2-6).
pub(crate) const fn allowed_in(code: ReasonCode, t: crate::PacketType) -> bool {
    use crate::PacketType as T;
    let c = code as u8;
    match t {
        T::ConnAck => matches!(
            c,
            0x00 | 0x80..=0x8A | 0x8C | 0x90 | 0x95 | 0x97 | 0x99..=0x9D | 0x9F
        ),
        T::PubAck | T::PubRec => matches!(
            c,
            0x00 | 0x10 | 0x80 | 0x83 | 0x87 | 0x90 | 0x91 | 0x97 | 0x99
        ),
        T::PubRel | T::PubComp => matches!(c, 0x00 | 0x92),
        T::SubAck => matches!(
            c,
            0x00..=0x02 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91 | 0x97 | 0x9E | 0xA1 | 0xA2
        ),
        T::UnsubAck => matches!(c, 0x00 | 0x11 | 0x80 | 0x83 | 0x87 | 0x8F | 0x91),
        T::Disconnect => matches!(
            c,
            0x00 | 0x04 | 0x80..=0x83 | 0x87 | 0x89 | 0x8B | 0x8D..=0x90 | 0x93..=0xA2
        ),
        T::Auth => matches!(c, 0x00 | 0x18 | 0x19),
        _ => false,
    }
}

/// Decodes a v5 reason code byte and checks it is allowed in `t`.
pub(crate) fn decode_in(byte: u8, t: crate::PacketType) -> Result<ReasonCode, DecodeError> {
    let code = ReasonCode::try_from(byte)?;
    if allowed_in(code, t) {
        Ok(code)
    } else {
        Err(DecodeError::ReasonCodeNotAllowed {
            code,
            packet_type: t,
        })
    }
}

/// Checks a reason code before encoding it into a v5 packet of type `t`.
pub(crate) const fn encode_in(
    code: ReasonCode,
    t: crate::PacketType,
) -> Result<u8, crate::EncodeError> {
    if allowed_in(code, t) {
        Ok(code as u8)
    } else {
        Err(crate::EncodeError::ReasonCodeNotAllowed {
            code,
            packet_type: t,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_byte_roundtrips_or_is_rejected() {
        let mut known = 0;
        for b in 0..=u8::MAX {
            match ReasonCode::try_from(b) {
                Ok(code) => {
                    assert_eq!(code.as_u8(), b);
                    known += 1;
                }
                Err(e) => assert_eq!(e, DecodeError::InvalidReasonCode(b)),
            }
        }
        // 0x00 plus the 42 other codes of table 2-6.
        assert_eq!(known, 43);
    }

    #[test]
    fn v3_connack_mapping() {
        for b in 0..=5 {
            let code = ReasonCode::from_v3_connack(b).unwrap();
            assert_eq!(code.to_v3_connack(), b);
        }
        assert!(ReasonCode::from_v3_connack(6).is_err());
        assert_eq!(ReasonCode::Banned.to_v3_connack(), 5);
        assert_eq!(ReasonCode::ServerBusy.to_v3_connack(), 3);
    }
}
