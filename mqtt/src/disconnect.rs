//! DISCONNECT (section 3.14): the last packet of a connection. In v3 only a client sends it and
//! it is empty; in v5 either side sends it, with a reason code and properties.

use bytes::BufMut;

use crate::codec::Reader;
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::reason::{self, ReasonCode};
use crate::types::ProtocolVersion;

/// DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Why (v5); `Success` means normal disconnection.
    pub code: ReasonCode,
    /// DISCONNECT properties (v5 only).
    pub properties: Properties,
}

impl Disconnect {
    /// A DISCONNECT with `code` and no properties.
    #[must_use]
    pub fn new(code: ReasonCode) -> Self {
        Self {
            code,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let mut d = Self::default();
        if version.is_v5() {
            if !r.is_empty() {
                d.code = reason::decode_in(r.u8()?, PacketType::Disconnect)?;
            }
            if !r.is_empty() {
                d.properties = Properties::decode(&mut r, Ctx::Packet(PacketType::Disconnect))?;
            }
        }
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(PacketType::Disconnect));
        }
        Ok(d)
    }

    pub(crate) fn body_len(&self, version: ProtocolVersion) -> usize {
        if !version.is_v5() {
            0
        } else if self.properties.is_empty() {
            usize::from(self.code != ReasonCode::Success)
        } else {
            1 + self.properties.encoded_len()
        }
    }

    pub(crate) fn encode_body(
        &self,
        version: ProtocolVersion,
        out: &mut impl BufMut,
    ) -> Result<(), EncodeError> {
        if version.is_v5() {
            let empty = self.properties.is_empty();
            if self.code != ReasonCode::Success || !empty {
                out.put_u8(reason::encode_in(self.code, PacketType::Disconnect)?);
            }
            if !empty {
                self.properties
                    .encode(out, Ctx::Packet(PacketType::Disconnect))?;
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
    use crate::test_util::{decode, encode};

    #[test]
    fn forms() {
        let d: Packet = Disconnect::default().into();
        assert_eq!(encode(&d, V3_1_1), [0xE0, 0]);
        assert_eq!(encode(&d, V5), [0xE0, 0]);
        assert_eq!(decode(&[0xE0, 0], Some(V3_1_1)), Ok(d.clone()));
        assert_eq!(decode(&[0xE0, 0], Some(V5)), Ok(d));
        let mut k = Disconnect::new(ReasonCode::SessionTakenOver);
        assert_eq!(encode(&k.clone().into(), V5), [0xE0, 1, 0x8E]);
        assert_eq!(decode(&[0xE0, 1, 0x8E], Some(V5)), Ok(k.clone().into()));
        k.properties.session_expiry_interval = Some(0);
        let bytes = [0xE0, 7, 0x8E, 5, 0x11, 0, 0, 0, 0];
        assert_eq!(encode(&k.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, Some(V5)), Ok(k.into()));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(&[0xE0, 1, 0], Some(V3_1_1)),
            Err(DecodeError::TrailingBytes(PacketType::Disconnect))
        );
        assert_eq!(
            decode(&[0xE1, 0], Some(V5)),
            Err(DecodeError::ReservedFlags {
                packet_type: PacketType::Disconnect,
                flags: 1
            })
        );
        assert_eq!(
            decode(&[0xE0, 1, 0x18], Some(V5)),
            Err(DecodeError::ReasonCodeNotAllowed {
                code: ReasonCode::ContinueAuthentication,
                packet_type: PacketType::Disconnect
            })
        );
        assert_eq!(
            decode(&[0xE0, 3, 0, 1, 0x11], Some(V5)),
            Err(DecodeError::UnexpectedEnd)
        );
        assert_eq!(
            decode(&[0xE0, 3, 0, 1, 0x12], Some(V5)),
            Err(DecodeError::PropertyNotAllowed {
                id: 0x12,
                packet_type: PacketType::Disconnect
            })
        );
    }
}
