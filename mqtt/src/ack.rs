//! PUBACK, PUBREC, PUBREL and PUBCOMP (sections 3.4 to 3.7): the four acknowledgements of the
//! QoS 1 and QoS 2 flows. They share one wire layout (packet id, then in v5 an optional reason
//! code and optional properties), so one macro writes the four types instead of four copies of
//! the same module.

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::reason::{self, ReasonCode};
use crate::types::{PacketId, ProtocolVersion};

macro_rules! ack_packet {
    ($(#[$doc:meta])* $name:ident, $t:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// Identifier of the packet being acknowledged.
            pub pid: PacketId,
            /// Reason code (v5; always [`ReasonCode::Success`] when decoded from v3).
            pub code: ReasonCode,
            /// Properties (v5 only).
            pub properties: Properties,
        }

        impl $name {
            /// A successful acknowledgement of `pid` without properties.
            #[must_use]
            pub fn new(pid: PacketId) -> Self {
                Self {
                    pid,
                    code: ReasonCode::Success,
                    properties: Properties::default(),
                }
            }

            pub(crate) fn decode(r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
                let (pid, code, properties) = decode_ack(r, version, $t)?;
                Ok(Self { pid, code, properties })
            }

            pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
                ack_len(version, self.code, &self.properties)
            }

            pub(crate) fn encode_body(
                &self,
                version: ProtocolVersion,
                out: &mut impl BufMut,
            ) -> Result<(), EncodeError> {
                encode_ack(out, version, $t, self.pid, self.code, &self.properties)
            }
        }
    };
}

ack_packet!(
    /// PUBACK: the answer to a QoS 1 PUBLISH.
    PubAck,
    PacketType::PubAck
);
ack_packet!(
    /// PUBREC: the first answer to a QoS 2 PUBLISH.
    PubRec,
    PacketType::PubRec
);
ack_packet!(
    /// PUBREL: the answer to PUBREC, releasing the packet id.
    PubRel,
    PacketType::PubRel
);
ack_packet!(
    /// PUBCOMP: the answer to PUBREL, ending the QoS 2 flow.
    PubComp,
    PacketType::PubComp
);

fn decode_ack(
    mut r: Reader,
    version: ProtocolVersion,
    t: PacketType,
) -> Result<(PacketId, ReasonCode, Properties), DecodeError> {
    let pid = r.pid()?;
    let mut code = ReasonCode::Success;
    let mut properties = Properties::default();
    if version.is_v5() {
        if !r.is_empty() {
            code = reason::decode_in(r.u8()?, t)?;
        }
        if !r.is_empty() {
            properties = Properties::decode(&mut r, Ctx::Packet(t))?;
        }
    }
    if !r.is_empty() {
        return Err(DecodeError::TrailingBytes(t));
    }
    Ok((pid, code, properties))
}

fn ack_len(version: ProtocolVersion, code: ReasonCode, properties: &Properties) -> usize {
    if !version.is_v5() {
        2
    } else if properties.is_empty() {
        if code == ReasonCode::Success { 2 } else { 3 }
    } else {
        3 + properties.encoded_len()
    }
}

fn encode_ack(
    out: &mut impl BufMut,
    version: ProtocolVersion,
    t: PacketType,
    pid: PacketId,
    code: ReasonCode,
    properties: &Properties,
) -> Result<(), EncodeError> {
    out.put_u16(pid.get());
    if version.is_v5() {
        let empty = properties.is_empty();
        if code != ReasonCode::Success || !empty {
            out.put_u8(reason::encode_in(code, t)?);
        }
        if !empty {
            properties.encode(out, Ctx::Packet(t))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Packet;
    use crate::ProtocolVersion::*;
    use crate::test_util::{decode, encode, pid};

    #[test]
    fn v311() {
        let cases: [(Packet, u8); 4] = [
            (PubAck::new(pid(1)).into(), 0x40),
            (PubRec::new(pid(1)).into(), 0x50),
            (PubRel::new(pid(1)).into(), 0x62),
            (PubComp::new(pid(1)).into(), 0x70),
        ];
        for (p, first) in cases {
            let bytes = [first, 2, 0, 1];
            assert_eq!(encode(&p, V3_1_1), bytes);
            assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(p));
        }
    }

    #[test]
    fn v5_short_forms() {
        let p: Packet = PubAck::new(pid(7)).into();
        assert_eq!(encode(&p, V5), [0x40, 2, 0, 7]);
        // A reason code without properties; a zero property length is also accepted.
        let mut a = PubAck::new(pid(7));
        a.code = ReasonCode::NoMatchingSubscribers;
        assert_eq!(encode(&a.clone().into(), V5), [0x40, 3, 0, 7, 0x10]);
        assert_eq!(
            decode(&[0x40, 3, 0, 7, 0x10], Some(V5)),
            Ok(a.clone().into())
        );
        assert_eq!(decode(&[0x40, 4, 0, 7, 0x10, 0], Some(V5)), Ok(a.into()));
    }

    #[test]
    fn v5_with_reason_string() {
        let mut r = PubRel::new(pid(0x1234));
        r.code = ReasonCode::PacketIdentifierNotFound;
        r.properties.reason_string = Some("no".into());
        let bytes = [0x62, 9, 0x12, 0x34, 0x92, 5, 0x1F, 0, 2, b'n', b'o'];
        assert_eq!(encode(&r.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(r.into()));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(&[0x60, 2, 0, 1], Some(V3_1_1)),
            Err(DecodeError::ReservedFlags {
                packet_type: PacketType::PubRel,
                flags: 0
            })
        );
        assert_eq!(
            decode(&[0x40, 2, 0, 0], Some(V3_1_1)),
            Err(DecodeError::ZeroPacketId)
        );
        assert_eq!(
            decode(&[0x40, 3, 0, 1, 0], Some(V3_1_1)),
            Err(DecodeError::TrailingBytes(PacketType::PubAck))
        );
        assert_eq!(
            decode(&[0x70, 3, 0, 1, 0x10], Some(V5)),
            Err(DecodeError::ReasonCodeNotAllowed {
                code: ReasonCode::NoMatchingSubscribers,
                packet_type: PacketType::PubComp
            })
        );
        assert_eq!(
            decode(&[0x40, 3, 0, 1, 0x03], Some(V5)),
            Err(DecodeError::InvalidReasonCode(3))
        );
        assert_eq!(
            decode(&[0x40, 6, 0, 1, 0, 2, 0x23, 0], Some(V5)),
            Err(DecodeError::PropertyNotAllowed {
                id: 0x23,
                packet_type: PacketType::PubAck
            })
        );
        assert_eq!(
            decode(&[0x40, 6, 0, 1, 0, 2, 0x7F, 0], Some(V5)),
            Err(DecodeError::UnknownProperty(0x7F))
        );
        assert_eq!(
            decode(&[0x40, 1, 0], Some(V3_1_1)),
            Err(DecodeError::UnexpectedEnd)
        );
    }
}
