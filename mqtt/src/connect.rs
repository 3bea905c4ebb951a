//! CONNECT (section 3.1): the first packet a client sends. It fixes the protocol version of the
//! connection, so it is decoded from its own protocol name and level rather than from a version
//! the decoder already knows.

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use crate::codec::{Reader, field_len, put_binary, put_string};
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::properties::{Ctx, Properties};
use crate::types::{ProtocolVersion, QoS};

/// The will message the server publishes if the client goes away without a DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    /// Topic to publish the will on (a topic name: no wildcards).
    pub topic: ByteString,
    /// The will payload.
    pub payload: Bytes,
    /// QoS of the will publication.
    pub qos: QoS,
    /// Whether the will is retained.
    pub retain: bool,
    /// Will properties (v5 only).
    pub properties: Properties,
}

/// CONNECT: the client's connection request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connect {
    /// Protocol version requested; decides how this and every later packet is encoded.
    pub protocol: ProtocolVersion,
    /// Clean Session (v3) / Clean Start (v5).
    pub clean_start: bool,
    /// Keep alive in seconds, 0 = off.
    pub keep_alive: u16,
    /// Client identifier (may be empty: the server then assigns one or refuses).
    pub client_id: ByteString,
    /// The will message, if any.
    pub will: Option<LastWill>,
    /// User name.
    pub username: Option<ByteString>,
    /// Password (binary data).
    pub password: Option<Bytes>,
    /// CONNECT properties (v5 only).
    pub properties: Properties,
}

const CLEAN: u8 = 0x02;
const WILL: u8 = 0x04;
const WILL_RETAIN: u8 = 0x20;
const PASSWORD: u8 = 0x40;
const USERNAME: u8 = 0x80;

impl Connect {
    /// A CONNECT with the given version and client identifier, clean start, 60 s keep alive and
    /// nothing else.
    #[must_use]
    pub fn new(protocol: ProtocolVersion, client_id: impl Into<ByteString>) -> Self {
        Self {
            protocol,
            clean_start: true,
            keep_alive: 60,
            client_id: client_id.into(),
            will: None,
            username: None,
            password: None,
            properties: Properties::default(),
        }
    }

    pub(crate) fn decode(mut r: Reader) -> Result<Self, DecodeError> {
        let name = r.string()?;
        let level = r.u8()?;
        let protocol = match (&*name, level) {
            ("MQTT", 4) => ProtocolVersion::V3_1_1,
            ("MQTT", 5) => ProtocolVersion::V5,
            ("MQIsdp", 3) => ProtocolVersion::V3_1,
            ("MQTT" | "MQIsdp", level) => return Err(DecodeError::UnsupportedProtocol { level }),
            _ => return Err(DecodeError::InvalidProtocolName),
        };
        let flags = r.u8()?;
        if flags & 0x01 != 0 {
            return Err(DecodeError::ConnectReservedFlag);
        }
        let will_qos = (flags >> 3) & 0x03;
        if flags & WILL == 0 && (will_qos != 0 || flags & WILL_RETAIN != 0) {
            return Err(DecodeError::InvalidWillFlags);
        }
        if will_qos == 3 {
            return Err(DecodeError::InvalidWillFlags);
        }
        if flags & PASSWORD != 0 && flags & USERNAME == 0 && !protocol.is_v5() {
            return Err(DecodeError::PasswordWithoutUsername);
        }
        let keep_alive = r.u16()?;
        let properties = if protocol.is_v5() {
            Properties::decode(&mut r, Ctx::Packet(PacketType::Connect))?
        } else {
            Properties::default()
        };
        let client_id = r.string()?;
        let will = if flags & WILL != 0 {
            let properties = if protocol.is_v5() {
                Properties::decode(&mut r, Ctx::Will)?
            } else {
                Properties::default()
            };
            let topic = r.string()?;
            crate::publish::check_topic_name(&topic)?;
            if topic.is_empty() {
                return Err(DecodeError::EmptyTopicName);
            }
            let payload = r.binary()?;
            Some(LastWill {
                topic,
                payload,
                qos: QoS::try_from(will_qos)?,
                retain: flags & WILL_RETAIN != 0,
                properties,
            })
        } else {
            None
        };
        let username = if flags & USERNAME != 0 {
            Some(r.string()?)
        } else {
            None
        };
        let password = if flags & PASSWORD != 0 {
            Some(r.binary()?)
        } else {
            None
        };
        if !r.is_empty() {
            return Err(DecodeError::TrailingBytes(PacketType::Connect));
        }
        Ok(Self {
            protocol,
            clean_start: flags & CLEAN != 0,
            keep_alive,
            client_id,
            will,
            username,
            password,
            properties,
        })
    }

    pub(crate) fn body_len(&self) -> usize {
        let v5 = self.protocol.is_v5();
        let mut len = field_len(self.protocol.protocol_name().len()) + 1 + 1 + 2;
        if v5 {
            len += self.properties.encoded_len();
        }
        len += field_len(self.client_id.len());
        if let Some(w) = &self.will {
            if v5 {
                len += w.properties.encoded_len();
            }
            len += field_len(w.topic.len()) + field_len(w.payload.len());
        }
        if let Some(u) = &self.username {
            len += field_len(u.len());
        }
        if let Some(p) = &self.password {
            len += field_len(p.len());
        }
        len
    }

    pub(crate) fn encode_body(&self, out: &mut impl BufMut) -> Result<(), EncodeError> {
        let v5 = self.protocol.is_v5();
        if !v5 && self.password.is_some() && self.username.is_none() {
            return Err(EncodeError::PasswordWithoutUsername);
        }
        put_string(out, self.protocol.protocol_name())?;
        out.put_u8(self.protocol.level());
        let mut flags = 0;
        if self.clean_start {
            flags |= CLEAN;
        }
        if let Some(w) = &self.will {
            flags |= WILL | ((w.qos as u8) << 3);
            if w.retain {
                flags |= WILL_RETAIN;
            }
        }
        if self.password.is_some() {
            flags |= PASSWORD;
        }
        if self.username.is_some() {
            flags |= USERNAME;
        }
        out.put_u8(flags);
        out.put_u16(self.keep_alive);
        if v5 {
            self.properties
                .encode(out, Ctx::Packet(PacketType::Connect))?;
        }
        put_string(out, &self.client_id)?;
        if let Some(w) = &self.will {
            if v5 {
                w.properties.encode(out, Ctx::Will)?;
            }
            put_string(out, &w.topic)?;
            put_binary(out, &w.payload)?;
        }
        if let Some(u) = &self.username {
            put_string(out, u)?;
        }
        if let Some(p) = &self.password {
            put_binary(out, p)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::{decode, encode};
    use crate::{DecodeError, Packet, ProtocolVersion::*};

    #[test]
    fn v311_minimal() {
        let mut c = Connect::new(V3_1_1, "abc");
        c.keep_alive = 10;
        let bytes = [
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 3, b'a', b'b', b'c',
        ];
        assert_eq!(encode(&c.clone().into(), V3_1_1), bytes);
        assert_eq!(decode(&bytes, None), Ok(Packet::from(c)));
    }

    #[test]
    fn v31_protocol_name() {
        let c = Connect::new(V3_1, "x");
        let bytes = encode(&c.clone().into(), V3_1_1);
        assert_eq!(&bytes[2..10], &[0, 6, b'M', b'Q', b'I', b's', b'd', b'p']);
        assert_eq!(bytes[10], 3);
        assert_eq!(decode(&bytes, None), Ok(Packet::from(c)));
    }

    #[test]
    fn v5_full() {
        let mut c = Connect::new(V5, "cid");
        c.clean_start = false;
        c.keep_alive = 30;
        c.properties.session_expiry_interval = Some(10);
        c.username = Some("u".into());
        c.password = Some(Bytes::from_static(b"p"));
        let wp = Properties {
            will_delay_interval: Some(5),
            ..Properties::default()
        };
        c.will = Some(LastWill {
            topic: "t".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: wp,
        });
        let bytes = [
            0x10,
            41, // fixed header
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            5,           // protocol
            0b1110_1100, // user, password, will retain, will qos 1, will
            0,
            30, // keep alive
            5,
            0x11,
            0,
            0,
            0,
            10, // properties: session expiry 10
            0,
            3,
            b'c',
            b'i',
            b'd', // client id
            5,
            0x18,
            0,
            0,
            0,
            5, // will properties: will delay 5
            0,
            1,
            b't', // will topic
            0,
            3,
            b'b',
            b'y',
            b'e', // will payload
            0,
            1,
            b'u', // user name
            0,
            1,
            b'p', // password
        ];
        assert_eq!(encode(&c.clone().into(), V5), bytes);
        assert_eq!(decode(&bytes, None), Ok(Packet::from(c)));
    }

    #[test]
    fn malformed() {
        let ok = [
            0x10, 15, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, 3, b'a', b'b', b'c',
        ];
        let with = |i: usize, b: u8| {
            let mut v = ok.to_vec();
            v[i] = b;
            decode(&v, None)
        };
        assert_eq!(
            with(8, 6),
            Err(DecodeError::UnsupportedProtocol { level: 6 })
        );
        assert_eq!(with(4, b'X'), Err(DecodeError::InvalidProtocolName));
        assert_eq!(with(9, 0x03), Err(DecodeError::ConnectReservedFlag));
        assert_eq!(with(9, 0x22), Err(DecodeError::InvalidWillFlags));
        assert_eq!(with(9, 0x0A), Err(DecodeError::InvalidWillFlags));
        assert_eq!(with(9, 0x42), Err(DecodeError::PasswordWithoutUsername));
        assert_eq!(with(9, 0x82), Err(DecodeError::UnexpectedEnd));
        let mut trailing = ok.to_vec();
        trailing[1] += 1;
        trailing.push(0);
        assert_eq!(
            decode(&trailing, None),
            Err(DecodeError::TrailingBytes(PacketType::Connect))
        );
        // v3.1.1 CONNECT with protocol level 5 but no properties is read as v5.
        assert!(with(8, 5).is_err());
    }

    #[test]
    fn password_without_username_is_fine_in_v5() {
        let mut c = Connect::new(V5, "a");
        c.password = Some(Bytes::from_static(b"secret"));
        let bytes = encode(&c.clone().into(), V5);
        assert_eq!(decode(&bytes, None), Ok(Packet::from(c.clone())));
        c.protocol = V3_1_1;
        let mut out = bytes::BytesMut::new();
        assert_eq!(
            Packet::from(c).encode(V3_1_1, &mut out),
            Err(EncodeError::PasswordWithoutUsername)
        );
        assert!(out.is_empty());
    }
}
