//! SUBSCRIBE (section 3.8): a client asks for messages matching one or more topic filters.
//! Filters are not validated here: a broker answers an invalid filter with a per-filter SUBACK
//! code (see [`crate::topic::validate_topic_filter`]) rather than closing the connection.

use bytes::BufMut;
use bytestring::ByteString;

use crate::codec::{Reader, field_len, put_string};
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::types::{PacketId, ProtocolVersion, QoS};

/// What the server does with retained messages when the subscription is made (v5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum RetainHandling {
    /// Send retained messages at subscribe time.
    #[default]
    SendAtSubscribe = 0,
    /// Send them only if the subscription did not exist yet.
    SendAtSubscribeIfNew = 1,
    /// Do not send retained messages.
    DoNotSend = 2,
}

/// The options byte after each topic filter. Before v5 only `qos` is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS the client accepts.
    pub qos: QoS,
    /// Do not forward the client's own publications back to it (v5).
    pub no_local: bool,
    /// Keep the RETAIN flag as published when forwarding (v5).
    pub retain_as_published: bool,
    /// Retained message handling (v5).
    pub retain_handling: RetainHandling,
}

impl SubscriptionOptions {
    /// Options with the given QoS and the defaults otherwise.
    #[must_use]
    pub fn qos(qos: QoS) -> Self {
        Self {
            qos,
            ..Self::default()
        }
    }

    fn decode(byte: u8, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let reserved = if version.is_v5() { 0xC0 } else { 0xFC };
        if byte & reserved != 0 {
            return Err(DecodeError::InvalidSubscriptionOptions(byte));
        }
        let qos = QoS::try_from(byte & 0x03)?;
        let retain_handling = match (byte >> 4) & 0x03 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return Err(DecodeError::InvalidSubscriptionOptions(byte)),
        };
        Ok(Self {
            qos,
            no_local: byte & 0x04 != 0,
            retain_as_published: byte & 0x08 != 0,
            retain_handling,
        })
    }

    fn encode(self, version: ProtocolVersion) -> u8 {
        let mut b = self.qos as u8;
        if version.is_v5() {
            b |= u8::from(self.no_local) << 2;
            b |= u8::from(self.retain_as_published) << 3;
            b |= (self.retain_handling as u8) << 4;
        }
        b
    }
}

/// SUBSCRIBE: a request for one or more subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscribe {
    /// Packet identifier, echoed in SUBACK.
    pub pid: PacketId,
    /// Topic filters with their options, at least one.
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// SUBSCRIBE properties (v5: subscription identifier, user properties).
    pub properties: Properties,
}

impl Subscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = r.pid()?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Ctx::Packet(PacketType::Subscribe))?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            let filter = r.string()?;
            let options = SubscriptionOptions::decode(r.u8()?, version)?;
            filters.push((filter, options));
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptySubscriptionList);
        }
        Ok(Self {
            pid,
            filters,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = 2;
        if version.is_v5() {
            len += self.properties.encoded_len();
        }
        for (f, _) in &self.filters {
            len += field_len(f.len()) + 1;
        }
        len
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        if self.filters.is_empty() {
            return Err(EncodeError::EmptyFilterList);
        }
        out.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties
                .encode(out, Ctx::Packet(PacketType::Subscribe))?;
        }
        for (f, o) in &self.filters {
            put_string(out, f)?;
            out.put_u8(o.encode(version));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use crate::ProtocolVersion::*;
    use crate::test_util::{decode, encode, pid};

    #[test]
    fn v311() {
        let s = Subscribe {
            pid: pid(10),
            filters: vec![
                ("a/b".into(), SubscriptionOptions::qos(QoS::AtLeastOnce)),
                ("c/d".into(), SubscriptionOptions::qos(QoS::ExactlyOnce)),
            ],
            properties: Properties::default(),
        };
        let bytes = [
            0x82, 14, 0, 10, 0, 3, b'a', b'/', b'b', 1, 0, 3, b'c', b'/', b'd', 2,
        ];
        assert_eq!(encode(&s.clone().into(), V3_1_1), bytes);
        assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(Packet::from(s)));
    }

    #[test]
    fn v5_options_and_identifier() {
        let properties = Properties {
            subscription_identifiers: vec![5],
            ..Properties::default()
        };
        let s = Subscribe {
            pid: pid(1),
            filters: vec![(
                "#".into(),
                SubscriptionOptions {
                    qos: QoS::AtLeastOnce,
                    no_local: true,
                    retain_as_published: true,
                    retain_handling: RetainHandling::DoNotSend,
                },
            )],
            properties,
        };
        let bytes = [0x82, 9, 0, 1, 2, 0x0B, 5, 0, 1, b'#', 0b0010_1101];
        assert_eq!(encode(&s.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(Packet::from(s)));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(&[0x82, 2, 0, 1], Some(V3_1_1)),
            Err(DecodeError::EmptySubscriptionList)
        );
        assert_eq!(
            decode(&[0x80, 6, 0, 1, 0, 1, b'a', 0], Some(V3_1_1)),
            Err(DecodeError::ReservedFlags {
                packet_type: PacketType::Subscribe,
                flags: 0
            })
        );
        assert_eq!(
            decode(&[0x82, 6, 0, 1, 0, 1, b'a', 4], Some(V3_1_1)),
            Err(DecodeError::InvalidSubscriptionOptions(4))
        );
        assert_eq!(
            decode(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x30], Some(V5)),
            Err(DecodeError::InvalidSubscriptionOptions(0x30))
        );
        assert_eq!(
            decode(&[0x82, 7, 0, 1, 0, 0, 1, b'a', 0x40], Some(V5)),
            Err(DecodeError::InvalidSubscriptionOptions(0x40))
        );
        assert_eq!(
            decode(&[0x82, 6, 0, 1, 0, 1, b'a', 3], Some(V3_1_1)),
            Err(DecodeError::InvalidQoS(3))
        );
        assert_eq!(
            decode(&[0x82, 9, 0, 1, 4, 0x0B, 1, 0x0B, 2, 0, 0], Some(V5)),
            Err(DecodeError::DuplicateProperty { id: 0x0B })
        );
        assert_eq!(
            decode(&[0x82, 7, 0, 1, 2, 0x0B, 0, 0, 0], Some(V5)),
            Err(DecodeError::InvalidPropertyValue(0x0B))
        );
        assert_eq!(
            decode(&[0x82, 5, 0, 1, 0, 1, b'a'], Some(V3_1_1)),
            Err(DecodeError::UnexpectedEnd)
        );
    }
}
