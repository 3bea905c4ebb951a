//! UNSUBSCRIBE (section 3.10): a client removes one or more subscriptions.

use bytes::BufMut;
use bytestring::ByteString;

use crate::codec::{Reader, field_len, put_string};
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::types::{PacketId, ProtocolVersion};

/// UNSUBSCRIBE: removes subscriptions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsubscribe {
    /// Packet identifier, echoed in UNSUBACK.
    pub pid: PacketId,
    /// Topic filters to remove, at least one.
    pub filters: Vec<ByteString>,
    /// UNSUBSCRIBE properties (v5: user properties).
    pub properties: Properties,
}

impl Unsubscribe {
    pub(crate) fn decode(mut r: Reader, version: ProtocolVersion) -> Result<Self, DecodeError> {
        let pid = r.pid()?;
        let properties = if version.is_v5() {
            Properties::decode(&mut r, Ctx::Packet(PacketType::Unsubscribe))?
        } else {
            Properties::default()
        };
        let mut filters = Vec::new();
        while !r.is_empty() {
            filters.push(r.string()?);
        }
        if filters.is_empty() {
            return Err(DecodeError::EmptyUnsubscriptionList);
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
        for f in &self.filters {
            len += field_len(f.len());
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
                .encode(out, Ctx::Packet(PacketType::Unsubscribe))?;
        }
        for f in &self.filters {
            put_string(out, f)?;
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
    fn v311_and_v5() {
        let u = Unsubscribe {
            pid: pid(3),
            filters: vec!["a/+".into(), "#".into()],
            properties: Properties::default(),
        };
        let bytes = [0xA2, 10, 0, 3, 0, 3, b'a', b'/', b'+', 0, 1, b'#'];
        assert_eq!(encode(&u.clone().into(), V3_1_1), bytes);
        assert_eq!(decode(&bytes, Some(V3_1_1)), Ok(Packet::from(u.clone())));
        let bytes5 = [0xA2, 11, 0, 3, 0, 0, 3, b'a', b'/', b'+', 0, 1, b'#'];
        assert_eq!(encode(&u.clone().into(), V5), bytes5);
        assert_eq!(decode(&bytes5, Some(V5)), Ok(Packet::from(u)));
    }

    #[test]
    fn malformed() {
        assert_eq!(
            decode(&[0xA2, 2, 0, 1], Some(V3_1_1)),
            Err(DecodeError::EmptyUnsubscriptionList)
        );
        assert_eq!(
            decode(&[0xA0, 5, 0, 1, 0, 1, b'a'], Some(V3_1_1)),
            Err(DecodeError::ReservedFlags {
                packet_type: PacketType::Unsubscribe,
                flags: 0
            })
        );
    }
}
