//! Property tests: every packet kind in every version survives encode then decode unchanged,
//! every strict prefix of an encoding is "need more bytes", streams split anywhere decode the
//! same, and arbitrary bytes never panic the decoder.

#![cfg(not(target_arch = "wasm32"))]

use proptest::collection::vec;
use proptest::option::of;
use proptest::prelude::*;
use switchboard_mqtt::{
    Auth, ByteString, Bytes, BytesMut, ConnAck, Connect, Decoder, Disconnect, LastWill, Packet,
    PacketId, Properties, ProtocolVersion, PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid,
    ReasonCode, RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Connect,
    Will,
    ConnAck,
    Publish,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    Disconnect,
    Auth,
}

fn string() -> impl Strategy<Value = ByteString> {
    "\\PC{0,8}".prop_map(ByteString::from)
}

fn topic() -> impl Strategy<Value = ByteString> {
    "[a-zé$]{1,6}(/[a-z0-9 ]{0,6}){0,3}".prop_map(ByteString::from)
}

fn filter() -> impl Strategy<Value = ByteString> {
    prop_oneof![
        topic(),
        Just("#".into()),
        Just("a/+/c".into()),
        Just("$share/g/x/#".into())
    ]
}

fn binary() -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..12).prop_map(Bytes::from)
}

fn pid() -> impl Strategy<Value = PacketId> {
    (1u16..).prop_map(|n| PacketId::new(n).unwrap())
}

fn qos() -> impl Strategy<Value = QoS> {
    prop_oneof![
        Just(QoS::AtMostOnce),
        Just(QoS::AtLeastOnce),
        Just(QoS::ExactlyOnce)
    ]
}

fn flag() -> impl Strategy<Value = Option<bool>> {
    of(any::<bool>())
}

/// Properties with only the fields allowed in `ctx` (table 2-4 of MQTT 5.0).
fn properties(ctx: Ctx) -> impl Strategy<Value = Properties> {
    let message = (
        of(0u8..=1),
        of(any::<u32>()),
        of(string()),
        of(topic()),
        of(binary()),
        vec(1u32..=268_435_455, 0..3),
        of(1u16..),
    );
    let session = (
        of(any::<u32>()),
        of(string()),
        of(any::<u16>()),
        of(string()),
        of(binary()),
        flag(),
        of(any::<u32>()),
        flag(),
        of(string()),
        of(string()),
        of(string()),
    );
    let limits = (
        of(1u16..),
        of(any::<u16>()),
        of(prop_oneof![Just(QoS::AtMostOnce), Just(QoS::AtLeastOnce)]),
        flag(),
        vec((string(), string()), 0..3),
        of(1u32..),
        flag(),
        flag(),
        flag(),
    );
    (message, session, limits).prop_map(move |(m, s, l)| {
        use Ctx as C;
        let on = |allowed: &[Ctx]| allowed.contains(&ctx);
        let mut p = Properties::default();
        if on(&[C::Publish, C::Will]) {
            p.payload_format_indicator = m.0;
            p.message_expiry_interval = m.1;
            p.content_type = m.2;
            p.response_topic = m.3;
            p.correlation_data = m.4;
        }
        if on(&[C::Publish]) {
            p.subscription_identifiers.clone_from(&m.5);
            p.topic_alias = m.6;
        }
        if on(&[C::Subscribe]) {
            p.subscription_identifiers = m.5.into_iter().take(1).collect();
        }
        if on(&[C::Connect, C::ConnAck, C::Disconnect]) {
            p.session_expiry_interval = s.0;
        }
        if on(&[C::ConnAck]) {
            p.assigned_client_identifier = s.1;
            p.server_keep_alive = s.2;
            p.response_information = s.8;
            p.maximum_qos = l.2;
            p.retain_available = l.3;
            p.wildcard_subscription_available = l.6;
            p.subscription_identifier_available = l.7;
            p.shared_subscription_available = l.8;
        }
        if on(&[C::Connect, C::ConnAck, C::Auth]) {
            p.authentication_method = s.3;
            p.authentication_data = s.4;
        }
        if on(&[C::Connect]) {
            p.request_problem_information = s.5;
            p.request_response_information = s.7;
        }
        if on(&[C::Will]) {
            p.will_delay_interval = s.6;
        }
        if on(&[C::ConnAck, C::Disconnect]) {
            p.server_reference = s.9;
        }
        if on(&[C::ConnAck, C::Ack, C::SubAck, C::Disconnect, C::Auth]) {
            p.reason_string = s.10;
        }
        if on(&[C::Connect, C::ConnAck]) {
            p.receive_maximum = l.0;
            p.topic_alias_maximum = l.1;
            p.maximum_packet_size = l.5;
        }
        p.user_properties = l.4;
        p
    })
}

fn props_for(v: ProtocolVersion, ctx: Ctx) -> BoxedStrategy<Properties> {
    if v.is_v5() {
        properties(ctx).boxed()
    } else {
        Just(Properties::default()).boxed()
    }
}

fn code(v: ProtocolVersion, v5: &'static [u8], v3: &'static [u8]) -> BoxedStrategy<ReasonCode> {
    let list = if v.is_v5() { v5 } else { v3 };
    proptest::sample::select(list)
        .prop_map(|b| ReasonCode::try_from(b).unwrap())
        .boxed()
}

const ACK_CODES: &[u8] = &[0x00, 0x10, 0x80, 0x83, 0x87, 0x90, 0x91, 0x97, 0x99];
const REL_CODES: &[u8] = &[0x00, 0x92];
const SUBACK_CODES: &[u8] = &[
    0x00, 0x01, 0x02, 0x80, 0x83, 0x87, 0x8F, 0x91, 0x97, 0x9E, 0xA1,
];
const CONNACK_CODES: &[u8] = &[
    0x00, 0x80, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8A, 0x95, 0x9D,
];
const V3_CONNACK: &[u8] = &[0x00, 0x84, 0x85, 0x88, 0x86, 0x87];
const DISCONNECT_CODES: &[u8] = &[0x00, 0x04, 0x80, 0x81, 0x82, 0x8B, 0x8E, 0x93, 0x98, 0xA2];

fn connect(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let will = of((
        topic(),
        binary(),
        qos(),
        any::<bool>(),
        props_for(v, Ctx::Will),
    )
        .prop_map(|(topic, payload, qos, retain, properties)| LastWill {
            topic,
            payload,
            qos,
            retain,
            properties,
        }));
    (
        any::<bool>(),
        any::<u16>(),
        string(),
        will,
        of(string()),
        of(binary()),
        props_for(v, Ctx::Connect),
    )
        .prop_map(
            move |(clean_start, keep_alive, client_id, will, username, password, properties)| {
                let password = if v.is_v5() || username.is_some() {
                    password
                } else {
                    None
                };
                Packet::Connect(Box::new(Connect {
                    protocol: v,
                    clean_start,
                    keep_alive,
                    client_id,
                    will,
                    username,
                    password,
                    properties,
                }))
            },
        )
}

fn publish(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    (
        any::<bool>(),
        qos(),
        pid(),
        any::<bool>(),
        topic(),
        props_for(v, Ctx::Publish),
        vec(any::<u8>(), 0..64),
    )
        .prop_map(|(dup, qos, pid, retain, topic, properties, payload)| {
            let qos_pid = QosPid::new(qos, pid);
            Packet::Publish(Publish {
                dup: dup && qos != QoS::AtMostOnce,
                qos_pid,
                retain,
                topic,
                properties,
                payload: payload.into(),
            })
        })
}

fn ack(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let simple = (
        0..4u8,
        pid(),
        code(v, ACK_CODES, &[0]),
        code(v, REL_CODES, &[0]),
        props_for(v, Ctx::Ack),
    );
    simple.prop_map(|(kind, pid, code, rel_code, properties)| match kind {
        0 => Packet::PubAck(PubAck {
            pid,
            code,
            properties,
        }),
        1 => Packet::PubRec(PubRec {
            pid,
            code,
            properties,
        }),
        2 => Packet::PubRel(PubRel {
            pid,
            code: rel_code,
            properties,
        }),
        _ => Packet::PubComp(PubComp {
            pid,
            code: rel_code,
            properties,
        }),
    })
}

fn options(v: ProtocolVersion) -> impl Strategy<Value = SubscriptionOptions> {
    (qos(), any::<bool>(), any::<bool>(), 0..3u8).prop_map(move |(qos, nl, rap, rh)| {
        if v.is_v5() {
            SubscriptionOptions {
                qos,
                no_local: nl,
                retain_as_published: rap,
                retain_handling: match rh {
                    0 => RetainHandling::SendAtSubscribe,
                    1 => RetainHandling::SendAtSubscribeIfNew,
                    _ => RetainHandling::DoNotSend,
                },
            }
        } else {
            SubscriptionOptions::qos(qos)
        }
    })
}

fn subscriptions(v: ProtocolVersion) -> impl Strategy<Value = Packet> {
    let sub = (
        pid(),
        vec((filter(), options(v)), 1..4),
        props_for(v, Ctx::Subscribe),
    )
        .prop_map(|(pid, filters, properties)| {
            Packet::Subscribe(Subscribe {
                pid,
                filters,
                properties,
            })
        });
    let suback = (
        pid(),
        vec(code(v, SUBACK_CODES, &[0x00, 0x01, 0x02, 0x80]), 1..4),
        props_for(v, Ctx::SubAck),
    )
        .prop_map(|(pid, codes, properties)| {
            Packet::SubAck(SubAck {
                pid,
                codes,
                properties,
            })
        });
    let unsub = (pid(), vec(filter(), 1..4), props_for(v, Ctx::Unsubscribe)).prop_map(
        |(pid, filters, properties)| {
            Packet::Unsubscribe(Unsubscribe {
                pid,
                filters,
                properties,
            })
        },
    );
    let n_codes = if v.is_v5() { 1..4 } else { 0..1 };
    let unsuback = (
        pid(),
        vec(
            code(v, &[0x00, 0x11, 0x80, 0x83, 0x87, 0x8F, 0x91], &[0]),
            n_codes,
        ),
        props_for(v, Ctx::SubAck),
    )
        .prop_map(|(pid, codes, properties)| {
            Packet::UnsubAck(UnsubAck {
                pid,
                codes,
                properties,
            })
        });
    prop_oneof![sub, suback, unsub, unsuback]
}

fn other(v: ProtocolVersion) -> BoxedStrategy<Packet> {
    let connack = (
        any::<bool>(),
        code(v, CONNACK_CODES, V3_CONNACK),
        props_for(v, Ctx::ConnAck),
    )
        .prop_map(|(session_present, code, properties)| {
            Packet::ConnAck(ConnAck {
                session_present,
                code,
                properties,
            })
        });
    let disconnect = (
        code(v, DISCONNECT_CODES, &[0]),
        props_for(v, Ctx::Disconnect),
    )
        .prop_map(|(code, properties)| Packet::Disconnect(Disconnect { code, properties }));
    let pings = prop_oneof![Just(Packet::PingReq), Just(Packet::PingResp)];
    if v.is_v5() {
        let auth = (code(v, &[0x00, 0x18, 0x19], &[0]), props_for(v, Ctx::Auth))
            .prop_map(|(code, properties)| Packet::Auth(Auth { code, properties }));
        prop_oneof![connack, disconnect, pings, auth].boxed()
    } else {
        prop_oneof![connack, disconnect, pings].boxed()
    }
}

fn version() -> impl Strategy<Value = ProtocolVersion> {
    prop_oneof![
        Just(ProtocolVersion::V3_1),
        Just(ProtocolVersion::V3_1_1),
        Just(ProtocolVersion::V5)
    ]
}

fn packet() -> impl Strategy<Value = (ProtocolVersion, Packet)> {
    version().prop_flat_map(|v| {
        let p = prop_oneof![connect(v), publish(v), ack(v), subscriptions(v), other(v)];
        (Just(v), p)
    })
}

fn decoder_for(v: ProtocolVersion, p: &Packet) -> Decoder {
    let mut d = Decoder::new(u32::MAX);
    if !matches!(p, Packet::Connect(_)) {
        d.set_version(v);
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decode_encode_roundtrip((v, p) in packet()) {
        let mut wire = BytesMut::new();
        p.encode(v, &mut wire).unwrap();
        prop_assert_eq!(wire.len(), p.encoded_len(v));
        let mut d = decoder_for(v, &p);
        let got = d.decode(&mut wire).unwrap();
        prop_assert_eq!(got.as_ref(), Some(&p));
        prop_assert!(wire.is_empty());
        if let Packet::Connect(c) = &p {
            prop_assert_eq!(d.version(), Some(c.protocol));
        }
    }

    #[test]
    fn strict_prefixes_need_more_bytes((v, p) in packet()) {
        let mut wire = BytesMut::new();
        p.encode(v, &mut wire).unwrap();
        for n in 0..wire.len() {
            let mut d = decoder_for(v, &p);
            let mut prefix = BytesMut::from(&wire[..n]);
            prop_assert_eq!(d.decode(&mut prefix), Ok(None), "prefix of {} bytes", n);
            prop_assert_eq!(prefix.len(), n, "nothing consumed");
        }
    }

    #[test]
    fn streams_split_anywhere(
        v in version(),
        packets in vec(packet(), 1..6),
        chunk in 1usize..40,
    ) {
        // All packets of one version after a CONNECT of that version.
        let mut all = vec![Packet::Connect(Box::new(Connect::new(v, "stream")))];
        all.extend(packets.into_iter().filter(|(pv, p)| {
            *pv == v && !matches!(p, Packet::Connect(_))
        }).map(|(_, p)| p));
        let mut wire = BytesMut::new();
        for p in &all {
            p.encode(v, &mut wire).unwrap();
        }
        let mut d = Decoder::new(u32::MAX);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        prop_assert_eq!(got, all);
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in vec(any::<u8>(), 0..256),
        v in of(version()),
        max in prop_oneof![Just(u32::MAX), 0u32..300],
    ) {
        let mut d = Decoder::new(max);
        if let Some(v) = v {
            d.set_version(v);
        }
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = d.decode(&mut buf) {}
    }
}
