//! PUBLISH (section 3.3): an application message, in either direction. Decoding keeps the topic
//! and the payload as slices of the received buffer.

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use crate::codec::{Reader, field_len, put_string};
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::types::{PacketId, ProtocolVersion, QoS, QosPid};

/// PUBLISH: an application message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publish {
    /// Redelivery of an earlier attempt (QoS 1 and 2 only; cleared when encoding QoS 0).
    pub dup: bool,
    /// QoS and, for QoS 1 and 2, the packet identifier.
    pub qos_pid: QosPid,
    /// Retain flag.
    pub retain: bool,
    /// Topic name; empty in v5 when a topic alias stands for it.
    pub topic: ByteString,
    /// PUBLISH properties (v5 only).
    pub properties: Properties,
    /// The application payload.
    pub payload: Bytes,
}

/// Checks a topic name has no wildcards ([MQTT-3.3.2-2]); UTF-8 and U+0000 are checked when
/// the string is read.
pub(crate) fn check_topic_name(topic: &str) -> Result<(), DecodeError> {
    if topic.bytes().any(|b| b == b'+' || b == b'#') {
        return Err(DecodeError::WildcardInTopicName);
    }
    Ok(())
}

impl Publish {
    /// A QoS 0, non-retained PUBLISH without properties.
    #[must_use]
    pub fn new(topic: impl Into<ByteString>, payload: impl Into<Bytes>) -> Self {
        Self {
            dup: false,
            qos_pid: QosPid::AtMostOnce,
            retain: false,
            topic: topic.into(),
            properties: Properties::default(),
            payload: payload.into(),
        }
    }

    /// The QoS level.
    #[must_use]
    pub const fn qos(&self) -> QoS {
        self.qos_pid.qos()
    }

    /// The packet identifier (QoS 1 and 2).
    #[must_use]
    pub const fn pid(&self) -> Option<PacketId> {
        self.qos_pid.pid()
    }

    /// The whole encoded size of this PUBLISH in `version`, fixed header included (the same as
    /// [`crate::Packet::encoded_len`], without wrapping it in a `Packet`).
    #[must_use]
    pub fn encoded_len(&self, version: ProtocolVersion) -> usize {
        let body = self.body_len(version);
        1 + crate::varint::len(body) + body
    }

    pub(crate) fn flags(&self) -> u8 {
        let qos = self.qos_pid.qos() as u8;
        let dup = self.dup && qos > 0;
        (u8::from(dup) << 3) | (qos << 1) | u8::from(self.retain)
    }

    #[inline]
    pub(crate) fn decode(
        flags: u8,
        mut r: Reader,
        version: ProtocolVersion,
    ) -> Result<Self, DecodeError> {
        let dup = flags & 0x08 != 0;
        let retain = flags & 0x01 != 0;
        let qos = QoS::try_from((flags >> 1) & 0x03)?;
        if dup && qos == QoS::AtMostOnce {
            return Err(DecodeError::DupWithQoS0);
        }
        let topic = r.string()?;
        check_topic_name(&topic)?;
        let qos_pid = match qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(r.pid()?),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(r.pid()?),
        };
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Ctx::Packet(PacketType::Publish))?
        } else {
            Properties::default()
        };
        if topic.is_empty() && properties.topic_alias.is_none() {
            return Err(DecodeError::EmptyTopicName);
        }
        Ok(Self {
            dup,
            qos_pid,
            retain,
            topic,
            properties,
            payload: r.rest(),
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let mut len = field_len(self.topic.len()) + self.payload.len();
        if self.qos_pid.pid().is_some() {
            len += 2;
        }
        if version.is_v5() {
            len += self.properties.encoded_len();
        }
        len
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        put_string(out, &self.topic)?;
        if let Some(pid) = self.qos_pid.pid() {
            out.put_u16(pid.get());
        }
        if version.is_v5() {
            self.properties
                .encode(out, Ctx::Packet(PacketType::Publish))?;
        }
        out.put_slice(&self.payload);
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
    fn v311_qos0() {
        let p = Publish::new("a/b", Bytes::from_static(b"hi"));
        let bytes = [0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'];
        assert_eq!(encode(&p.clone().into(), V3_1_1), bytes);
        assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(Packet::from(p)));
    }

    #[test]
    fn v311_qos1_dup_retain() {
        let mut p = Publish::new("a", Bytes::from_static(b"x"));
        p.qos_pid = QosPid::AtLeastOnce(pid(10));
        p.dup = true;
        p.retain = true;
        let bytes = [0x3B, 6, 0, 1, b'a', 0, 10, b'x'];
        assert_eq!(encode(&p.clone().into(), V3_1_1), bytes);
        assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(Packet::from(p)));
    }

    #[test]
    fn v5_qos2_with_properties() {
        let mut p = Publish::new("t", Bytes::from_static(b"x"));
        p.qos_pid = QosPid::ExactlyOnce(pid(0x0102));
        p.properties.payload_format_indicator = Some(1);
        p.properties.topic_alias = Some(3);
        p.properties.subscription_identifiers = vec![1, 200];
        let bytes = [
            0x34, 17, 0, 1, b't', 0x01, 0x02, // topic, pid
            10, 0x01, 1, 0x0B, 1, 0x0B, 0xC8, 0x01, 0x23, 0, 3, // properties
            b'x',
        ];
        assert_eq!(encode(&p.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(Packet::from(p)));
    }

    #[test]
    fn v5_empty_topic_needs_alias() {
        let bytes = [0x30, 4, 0, 0, 0, b'x'];
        assert_eq!(decode(&bytes, Some(V5)), Err(DecodeError::EmptyTopicName));
        let bytes = [0x30, 7, 0, 0, 3, 0x23, 0, 1, b'x'];
        assert!(decode(&bytes, Some(V5)).is_ok());
        let bytes = [0x30, 7, 0, 0, 3, 0x23, 0, 0, b'x'];
        assert_eq!(decode(&bytes, Some(V5)), Err(DecodeError::TopicAliasZero));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(&[0x36, 5, 0, 1, b'a', 0, 1], Some(V3_1_1)),
            Err(DecodeError::InvalidQoS(3))
        );
        assert_eq!(
            decode(&[0x38, 3, 0, 1, b'a'], Some(V3_1_1)),
            Err(DecodeError::DupWithQoS0)
        );
        assert_eq!(
            decode(&[0x32, 5, 0, 1, b'a', 0, 0], Some(V3_1_1)),
            Err(DecodeError::ZeroPacketId)
        );
        assert_eq!(
            decode(&[0x30, 3, 0, 1, b'#'], Some(V3_1_1)),
            Err(DecodeError::WildcardInTopicName)
        );
        assert_eq!(
            decode(&[0x30, 4, 0, 2, b'a', b'+'], Some(V3_1_1)),
            Err(DecodeError::WildcardInTopicName)
        );
        assert_eq!(
            decode(&[0x30, 2, 0, 0], Some(V3_1_1)),
            Err(DecodeError::EmptyTopicName)
        );
        assert_eq!(
            decode(&[0x30, 3, 0, 1, 0xFF], Some(V3_1_1)),
            Err(DecodeError::InvalidUtf8)
        );
        // U+D800 encoded as UTF-8 (a surrogate) is not well-formed [MQTT-1.5.4-1].
        assert_eq!(
            decode(&[0x30, 5, 0, 3, 0xED, 0xA0, 0x80], Some(V3_1_1)),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            decode(&[0x30, 3, 0, 1, 0], Some(V3_1_1)),
            Err(DecodeError::NullCharacter)
        );
        assert_eq!(
            decode(&[0x30, 3, 0, 5, b'a'], Some(V3_1_1)),
            Err(DecodeError::UnexpectedEnd)
        );
    }

    #[test]
    fn zero_copy() {
        let mut buf = bytes::BytesMut::from(&[0x30, 7, 0, 3, b'a', b'/', b'b', b'h', b'i'][..]);
        let base = buf.as_ptr() as usize;
        let mut d = crate::Decoder::new(1024);
        d.set_version(V3_1_1);
        let Some(Packet::Publish(p)) = d.decode(&mut buf).unwrap() else {
            panic!("not a publish");
        };
        assert_eq!(p.topic.as_ptr() as usize, base + 4);
        assert_eq!(p.payload.as_ptr() as usize, base + 7);
    }

    #[test]
    fn qos0_encode_clears_dup() {
        let mut p = Publish::new("a", Bytes::new());
        p.dup = true;
        assert_eq!(encode(&p.into(), V3_1_1), [0x30, 3, 0, 1, b'a']);
    }
}
