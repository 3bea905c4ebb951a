//! SUBACK (section 3.9): one reason code per requested filter. Version 3 return codes (0, 1, 2,
//! 0x80) are the same bytes as the v5 codes `Success`/`GrantedQoS1`/`GrantedQoS2`/
//! `UnspecifiedError`; other v5 failure codes are sent as 0x80 to a v3 client.

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::reason::{self, ReasonCode};
use crate::types::{PacketId, ProtocolVersion};

/// SUBACK: the server's answer to SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubAck {
    /// Identifier of the SUBSCRIBE being answered.
    pub pid: PacketId,
    /// One code per filter, in order: granted QoS or a failure.
    pub codes: Vec<ReasonCode>,
    /// SUBACK properties (v5 only).
    pub properties: Properties,
}

impl SubAck {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = r.pid()?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Ctx::Packet(PacketType::SubAck))?
        } else {
            Properties::default()
        };
        let mut codes = Vec::with_capacity(r.remaining());
        while !r.is_empty() {
            let byte = r.u8()?;
            let code = if version.is_v5() {
                reason::decode_in(byte, PacketType::SubAck)?
            } else {
                match byte {
                    0x00 => ReasonCode::Success,
                    0x01 => ReasonCode::GrantedQoS1,
                    0x02 => ReasonCode::GrantedQoS2,
                    0x80 => ReasonCode::UnspecifiedError,
                    _ => return Err(DecodeError::InvalidReasonCode(byte)),
                }
            };
            codes.push(code);
        }
        Ok(Self {
            pid,
            codes,
            properties,
        })
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        let props = if version.is_v5() {
            self.properties.encoded_len()
        } else {
            0
        };
        2 + props + self.codes.len()
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        out.put_u16(self.pid.get());
        if version.is_v5() {
            self.properties
                .encode(out, Ctx::Packet(PacketType::SubAck))?;
            for &c in &self.codes {
                out.put_u8(reason::encode_in(c, PacketType::SubAck)?);
            }
        } else {
            for &c in &self.codes {
                out.put_u8(match c {
                    ReasonCode::Success | ReasonCode::GrantedQoS1 | ReasonCode::GrantedQoS2 => {
                        c as u8
                    }
                    _ => 0x80,
                });
            }
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
        let s = SubAck {
            pid: pid(10),
            codes: vec![
                ReasonCode::Success,
                ReasonCode::GrantedQoS2,
                ReasonCode::UnspecifiedError,
            ],
            properties: Properties::default(),
        };
        let bytes = [0x90, 5, 0, 10, 0, 2, 0x80];
        assert_eq!(encode(&s.clone().into(), V3_1_1), bytes);
        assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(Packet::from(s)));
        assert_eq!(
            decode(&[0x90, 3, 0, 1, 0x8F], Some(V3_1_1)),
            Err(DecodeError::InvalidReasonCode(0x8F))
        );
    }

    #[test]
    fn v5() {
        let s = SubAck {
            pid: pid(2),
            codes: vec![ReasonCode::GrantedQoS1, ReasonCode::TopicFilterInvalid],
            properties: Properties::default(),
        };
        let bytes = [0x90, 5, 0, 2, 0, 0x01, 0x8F];
        assert_eq!(encode(&s.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(Packet::from(s.clone())));
        // v3 clients see any failure as 0x80.
        assert_eq!(encode(&s.into(), V3_1_1), [0x90, 4, 0, 2, 0x01, 0x80]);
    }
}
