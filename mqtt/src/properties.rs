//! MQTT 5.0 properties (section 2.2.2): the optional, typed header fields that follow the
//! variable header of most v5 packets. One struct holds every property as an `Option` (or a
//! `Vec` for the repeatable ones); decoding checks that each property is allowed in the packet it
//! arrived in and not repeated. Before 5.0 there are no properties on the wire and the struct
//! stays at its default.

use bytes::{BufMut, Bytes};
use bytestring::ByteString;

use crate::codec::{Reader, field_len, put_binary, put_string, put_varint};
use crate::error::{DecodeError, EncodeError};
use crate::packet::PacketType;
use crate::types::QoS;
use crate::varint;

/// Property identifiers (table 2-4 of MQTT 5.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum PropertyId {
    PayloadFormatIndicator = 0x01,
    MessageExpiryInterval = 0x02,
    ContentType = 0x03,
    ResponseTopic = 0x08,
    CorrelationData = 0x09,
    SubscriptionIdentifier = 0x0B,
    SessionExpiryInterval = 0x11,
    AssignedClientIdentifier = 0x12,
    ServerKeepAlive = 0x13,
    AuthenticationMethod = 0x15,
    AuthenticationData = 0x16,
    RequestProblemInformation = 0x17,
    WillDelayInterval = 0x18,
    RequestResponseInformation = 0x19,
    ResponseInformation = 0x1A,
    ServerReference = 0x1C,
    ReasonString = 0x1F,
    ReceiveMaximum = 0x21,
    TopicAliasMaximum = 0x22,
    TopicAlias = 0x23,
    MaximumQoS = 0x24,
    RetainAvailable = 0x25,
    UserProperty = 0x26,
    MaximumPacketSize = 0x27,
    WildcardSubscriptionAvailable = 0x28,
    SubscriptionIdentifierAvailable = 0x29,
    SharedSubscriptionAvailable = 0x2A,
}

/// Where a property block sits: a packet, or the will properties inside CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Packet(PacketType),
    Will,
}

impl Ctx {
    const fn packet_type(self) -> PacketType {
        match self {
            Self::Packet(t) => t,
            Self::Will => PacketType::Connect,
        }
    }
}

/// Whether property `id` may appear in `ctx` (table 2-4 of MQTT 5.0).
const fn allowed(id: u8, ctx: Ctx) -> bool {
    use PacketType as T;
    let (t, will) = match ctx {
        Ctx::Packet(t) => (t, false),
        Ctx::Will => (T::Connect, true),
    };
    let publish = matches!(t, T::Publish) && !will;
    match id {
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => publish || will,
        0x0B => publish || matches!(t, T::Subscribe),
        0x11 => !will && matches!(t, T::Connect | T::ConnAck | T::Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => matches!(t, T::ConnAck),
        0x15 | 0x16 => !will && matches!(t, T::Connect | T::ConnAck | T::Auth),
        0x17 | 0x19 => !will && matches!(t, T::Connect),
        0x18 => will,
        0x1C => matches!(t, T::ConnAck | T::Disconnect),
        0x1F => matches!(
            t,
            T::ConnAck
                | T::PubAck
                | T::PubRec
                | T::PubRel
                | T::PubComp
                | T::SubAck
                | T::UnsubAck
                | T::Disconnect
                | T::Auth
        ),
        0x21 | 0x22 | 0x27 => !will && matches!(t, T::Connect | T::ConnAck),
        0x23 => publish,
        0x26 => true,
        _ => false,
    }
}

/// Every MQTT 5.0 property. All `None`/empty by default, which encodes as a zero property
/// length; building one is a plain memset, no allocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    /// 0x01: 0 = unspecified bytes, 1 = UTF-8 payload (PUBLISH, will).
    pub payload_format_indicator: Option<u8>,
    /// 0x02: message lifetime in seconds (PUBLISH, will).
    pub message_expiry_interval: Option<u32>,
    /// 0x03: MIME type of the payload (PUBLISH, will).
    pub content_type: Option<ByteString>,
    /// 0x08: topic for a response (PUBLISH, will).
    pub response_topic: Option<ByteString>,
    /// 0x09: correlation data for a response (PUBLISH, will).
    pub correlation_data: Option<Bytes>,
    /// 0x0B: subscription identifiers, 1 to 268,435,455 (several in PUBLISH to a client, at
    /// most one in SUBSCRIBE).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11: session expiry in seconds (CONNECT, CONNACK, DISCONNECT).
    pub session_expiry_interval: Option<u32>,
    /// 0x12: client identifier assigned by the server (CONNACK).
    pub assigned_client_identifier: Option<ByteString>,
    /// 0x13: keep alive imposed by the server (CONNACK).
    pub server_keep_alive: Option<u16>,
    /// 0x15: extended authentication method (CONNECT, CONNACK, AUTH).
    pub authentication_method: Option<ByteString>,
    /// 0x16: extended authentication data (CONNECT, CONNACK, AUTH).
    pub authentication_data: Option<Bytes>,
    /// 0x17: whether the server may send reason strings and user properties (CONNECT).
    pub request_problem_information: Option<bool>,
    /// 0x18: seconds to wait before publishing the will (will properties).
    pub will_delay_interval: Option<u32>,
    /// 0x19: whether the client wants response information (CONNECT).
    pub request_response_information: Option<bool>,
    /// 0x1A: basis for response topics (CONNACK).
    pub response_information: Option<ByteString>,
    /// 0x1C: another server to use (CONNACK, DISCONNECT).
    pub server_reference: Option<ByteString>,
    /// 0x1F: human-readable diagnostic (acks, DISCONNECT, AUTH).
    pub reason_string: Option<ByteString>,
    /// 0x21: how many QoS 1/2 publications the sender accepts at once, never 0 (CONNECT,
    /// CONNACK).
    pub receive_maximum: Option<u16>,
    /// 0x22: highest topic alias the sender accepts (CONNECT, CONNACK).
    pub topic_alias_maximum: Option<u16>,
    /// 0x23: topic alias, never 0 (PUBLISH).
    pub topic_alias: Option<u16>,
    /// 0x24: highest QoS the server supports, 0 or 1 (CONNACK).
    pub maximum_qos: Option<QoS>,
    /// 0x25: whether retained messages are supported (CONNACK).
    pub retain_available: Option<bool>,
    /// 0x26: user properties, in order; repeatable everywhere.
    pub user_properties: Vec<(ByteString, ByteString)>,
    /// 0x27: largest packet the sender accepts, never 0 (CONNECT, CONNACK).
    pub maximum_packet_size: Option<u32>,
    /// 0x28: whether wildcard subscriptions are supported (CONNACK).
    pub wildcard_subscription_available: Option<bool>,
    /// 0x29: whether subscription identifiers are supported (CONNACK).
    pub subscription_identifier_available: Option<bool>,
    /// 0x2A: whether shared subscriptions are supported (CONNACK).
    pub shared_subscription_available: Option<bool>,
}

fn set<T>(slot: &mut Option<T>, id: u8, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::DuplicateProperty { id });
    }
    *slot = Some(value);
    Ok(())
}

fn flag(id: u8, v: u8) -> Result<bool, DecodeError> {
    match v {
        0 => Ok(false),
        1 => Ok(true),
        _ => Err(DecodeError::InvalidPropertyValue(id)),
    }
}

impl Properties {
    /// Whether no property is set (encodes as a single zero byte).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Reads a property length and the properties it covers.
    pub(crate) fn decode(r: &mut Reader, ctx: Ctx) -> Result<Self, DecodeError> {
        let len = r.varint()? as usize;
        let mut p = Self::default();
        if len == 0 {
            return Ok(p);
        }
        let mut r = Reader::new(r.take(len)?);
        while !r.is_empty() {
            let id = r.u8()?;
            // Identifiers are variable byte integers, but every defined one fits one byte.
            if id & 0x80 != 0 {
                return Err(DecodeError::UnknownProperty(id));
            }
            if !allowed(id, ctx) {
                if matches!(id, 0x01..=0x03 | 0x08 | 0x09 | 0x0B | 0x11..=0x13 | 0x15..=0x1A)
                    || matches!(id, 0x1C | 0x1F | 0x21..=0x2A)
                {
                    return Err(DecodeError::PropertyNotAllowed {
                        id,
                        packet_type: ctx.packet_type(),
                    });
                }
                return Err(DecodeError::UnknownProperty(id));
            }
            match id {
                0x01 => {
                    let v = r.u8()?;
                    flag(id, v)?;
                    set(&mut p.payload_format_indicator, id, v)?;
                }
                0x02 => set(&mut p.message_expiry_interval, id, r.u32()?)?,
                0x03 => set(&mut p.content_type, id, r.string()?)?,
                0x08 => {
                    let topic = r.string()?;
                    if topic.is_empty() || topic.contains(['+', '#']) {
                        return Err(DecodeError::InvalidPropertyValue(id));
                    }
                    set(&mut p.response_topic, id, topic)?;
                }
                0x09 => set(&mut p.correlation_data, id, r.binary()?)?,
                0x0B => {
                    let v = r.varint()?;
                    if v == 0 {
                        return Err(DecodeError::InvalidPropertyValue(id));
                    }
                    if ctx == Ctx::Packet(PacketType::Subscribe)
                        && !p.subscription_identifiers.is_empty()
                    {
                        return Err(DecodeError::DuplicateProperty { id });
                    }
                    p.subscription_identifiers.push(v);
                }
                0x11 => set(&mut p.session_expiry_interval, id, r.u32()?)?,
                0x12 => set(&mut p.assigned_client_identifier, id, r.string()?)?,
                0x13 => set(&mut p.server_keep_alive, id, r.u16()?)?,
                0x15 => set(&mut p.authentication_method, id, r.string()?)?,
                0x16 => set(&mut p.authentication_data, id, r.binary()?)?,
                0x17 => {
                    let v = flag(id, r.u8()?)?;
                    set(&mut p.request_problem_information, id, v)?;
                }
                0x18 => set(&mut p.will_delay_interval, id, r.u32()?)?,
                0x19 => {
                    let v = flag(id, r.u8()?)?;
                    set(&mut p.request_response_information, id, v)?;
                }
                0x1A => set(&mut p.response_information, id, r.string()?)?,
                0x1C => set(&mut p.server_reference, id, r.string()?)?,
                0x1F => set(&mut p.reason_string, id, r.string()?)?,
                0x21 => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::InvalidPropertyValue(id));
                    }
                    set(&mut p.receive_maximum, id, v)?;
                }
                0x22 => set(&mut p.topic_alias_maximum, id, r.u16()?)?,
                0x23 => {
                    let v = r.u16()?;
                    if v == 0 {
                        return Err(DecodeError::TopicAliasZero);
                    }
                    set(&mut p.topic_alias, id, v)?;
                }
                0x24 => {
                    let v = match r.u8()? {
                        0 => QoS::AtMostOnce,
                        1 => QoS::AtLeastOnce,
                        _ => return Err(DecodeError::InvalidPropertyValue(id)),
                    };
                    set(&mut p.maximum_qos, id, v)?;
                }
                0x25 => {
                    let v = flag(id, r.u8()?)?;
                    set(&mut p.retain_available, id, v)?;
                }
                0x26 => {
                    let k = r.string()?;
                    let v = r.string()?;
                    p.user_properties.push((k, v));
                }
                0x27 => {
                    let v = r.u32()?;
                    if v == 0 {
                        return Err(DecodeError::InvalidPropertyValue(id));
                    }
                    set(&mut p.maximum_packet_size, id, v)?;
                }
                0x28 => {
                    let v = flag(id, r.u8()?)?;
                    set(&mut p.wildcard_subscription_available, id, v)?;
                }
                0x29 => {
                    let v = flag(id, r.u8()?)?;
                    set(&mut p.subscription_identifier_available, id, v)?;
                }
                0x2A => {
                    let v = flag(id, r.u8()?)?;
                    set(&mut p.shared_subscription_available, id, v)?;
                }
                _ => return Err(DecodeError::UnknownProperty(id)),
            }
        }
        Ok(p)
    }

    /// Size of the properties without the property-length prefix.
    pub(crate) fn body_len(&self) -> usize {
        fn s(v: Option<&ByteString>) -> usize {
            v.map_or(0, |v| 1 + field_len(v.len()))
        }
        fn b(v: Option<&Bytes>) -> usize {
            v.map_or(0, |v| 1 + field_len(v.len()))
        }
        fn n<T>(v: Option<&T>, size: usize) -> usize {
            v.map_or(0, |_| 1 + size)
        }
        let mut len = n(self.payload_format_indicator.as_ref(), 1)
            + n(self.message_expiry_interval.as_ref(), 4)
            + s(self.content_type.as_ref())
            + s(self.response_topic.as_ref())
            + b(self.correlation_data.as_ref())
            + n(self.session_expiry_interval.as_ref(), 4)
            + s(self.assigned_client_identifier.as_ref())
            + n(self.server_keep_alive.as_ref(), 2)
            + s(self.authentication_method.as_ref())
            + b(self.authentication_data.as_ref())
            + n(self.request_problem_information.as_ref(), 1)
            + n(self.will_delay_interval.as_ref(), 4)
            + n(self.request_response_information.as_ref(), 1)
            + s(self.response_information.as_ref())
            + s(self.server_reference.as_ref())
            + s(self.reason_string.as_ref())
            + n(self.receive_maximum.as_ref(), 2)
            + n(self.topic_alias_maximum.as_ref(), 2)
            + n(self.topic_alias.as_ref(), 2)
            + n(self.maximum_qos.as_ref(), 1)
            + n(self.retain_available.as_ref(), 1)
            + n(self.maximum_packet_size.as_ref(), 4)
            + n(self.wildcard_subscription_available.as_ref(), 1)
            + n(self.subscription_identifier_available.as_ref(), 1)
            + n(self.shared_subscription_available.as_ref(), 1);
        for &id in &self.subscription_identifiers {
            len += 1 + varint::len(id as usize);
        }
        for (k, v) in &self.user_properties {
            len += 1 + field_len(k.len()) + field_len(v.len());
        }
        len
    }

    /// Size with the property-length prefix.
    pub(crate) fn encoded_len(&self) -> usize {
        let body = self.body_len();
        varint::len(body) + body
    }

    /// Writes the property length and the properties, in identifier order.
    pub(crate) fn encode(&self, out: &mut impl BufMut, ctx: Ctx) -> Result<(), EncodeError> {
        let check = |id: u8| {
            if allowed(id, ctx) {
                Ok(id)
            } else {
                Err(EncodeError::PropertyNotAllowed {
                    id,
                    packet_type: ctx.packet_type(),
                })
            }
        };
        put_varint(out, self.body_len())?;
        if let Some(v) = self.payload_format_indicator {
            out.put_u8(check(0x01)?);
            out.put_u8(v);
        }
        if let Some(v) = self.message_expiry_interval {
            out.put_u8(check(0x02)?);
            out.put_u32(v);
        }
        if let Some(v) = &self.content_type {
            out.put_u8(check(0x03)?);
            put_string(out, v)?;
        }
        if let Some(v) = &self.response_topic {
            out.put_u8(check(0x08)?);
            put_string(out, v)?;
        }
        if let Some(v) = &self.correlation_data {
            out.put_u8(check(0x09)?);
            put_binary(out, v)?;
        }
        for &v in &self.subscription_identifiers {
            out.put_u8(check(0x0B)?);
            put_varint(out, v as usize)?;
        }
        if let Some(v) = self.session_expiry_interval {
            out.put_u8(check(0x11)?);
            out.put_u32(v);
        }
        if let Some(v) = &self.assigned_client_identifier {
            out.put_u8(check(0x12)?);
            put_string(out, v)?;
        }
        if let Some(v) = self.server_keep_alive {
            out.put_u8(check(0x13)?);
            out.put_u16(v);
        }
        if let Some(v) = &self.authentication_method {
            out.put_u8(check(0x15)?);
            put_string(out, v)?;
        }
        if let Some(v) = &self.authentication_data {
            out.put_u8(check(0x16)?);
            put_binary(out, v)?;
        }
        if let Some(v) = self.request_problem_information {
            out.put_u8(check(0x17)?);
            out.put_u8(u8::from(v));
        }
        if let Some(v) = self.will_delay_interval {
            out.put_u8(check(0x18)?);
            out.put_u32(v);
        }
        if let Some(v) = self.request_response_information {
            out.put_u8(check(0x19)?);
            out.put_u8(u8::from(v));
        }
        if let Some(v) = &self.response_information {
            out.put_u8(check(0x1A)?);
            put_string(out, v)?;
        }
        if let Some(v) = &self.server_reference {
            out.put_u8(check(0x1C)?);
            put_string(out, v)?;
        }
        if let Some(v) = &self.reason_string {
            out.put_u8(check(0x1F)?);
            put_string(out, v)?;
        }
        if let Some(v) = self.receive_maximum {
            out.put_u8(check(0x21)?);
            out.put_u16(v);
        }
        if let Some(v) = self.topic_alias_maximum {
            out.put_u8(check(0x22)?);
            out.put_u16(v);
        }
        if let Some(v) = self.topic_alias {
            out.put_u8(check(0x23)?);
            out.put_u16(v);
        }
        if let Some(v) = self.maximum_qos {
            out.put_u8(check(0x24)?);
            out.put_u8(v as u8);
        }
        if let Some(v) = self.retain_available {
            out.put_u8(check(0x25)?);
            out.put_u8(u8::from(v));
        }
        for (k, v) in &self.user_properties {
            out.put_u8(check(0x26)?);
            put_string(out, k)?;
            put_string(out, v)?;
        }
        if let Some(v) = self.maximum_packet_size {
            out.put_u8(check(0x27)?);
            out.put_u32(v);
        }
        if let Some(v) = self.wildcard_subscription_available {
            out.put_u8(check(0x28)?);
            out.put_u8(u8::from(v));
        }
        if let Some(v) = self.subscription_identifier_available {
            out.put_u8(check(0x29)?);
            out.put_u8(u8::from(v));
        }
        if let Some(v) = self.shared_subscription_available {
            out.put_u8(check(0x2A)?);
            out.put_u8(u8::from(v));
        }
        Ok(())
    }
}
