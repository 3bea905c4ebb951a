//! A deterministic, stable-Rust stand-in for the cargo-fuzz target: 200,000 random and mutated
//! valid byte strings through the decoder. Nothing may panic, and every packet the decoder
//! accepts must re-encode to bytes that decode to the same packet.

#![cfg(not(target_arch = "wasm32"))]

use switchboard_mqtt::{
    BytesMut, ConnAck, Connect, Decoder, Disconnect, LastWill, Packet, PacketId, ProtocolVersion,
    PubAck, PubRel, Publish, QoS, QosPid, ReasonCode, SubAck, Subscribe, SubscriptionOptions,
    UnsubAck, Unsubscribe,
};

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

fn seeds(v: ProtocolVersion) -> Vec<Vec<u8>> {
    let pid = PacketId::new(0x1234).unwrap();
    let mut connect = Connect::new(v, "client-1");
    connect.username = Some("user".into());
    connect.password = Some("pass".into());
    connect.will = Some(LastWill {
        topic: "will/topic".into(),
        payload: "gone".into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Default::default(),
    });
    let mut publish = Publish::new("sensors/kitchen/temp", "21.5");
    publish.qos_pid = QosPid::ExactlyOnce(pid);
    let mut connack = ConnAck::new(true, ReasonCode::Success);
    if v.is_v5() {
        connect.properties.session_expiry_interval = Some(60);
        connect.properties.user_properties = vec![("k".into(), "v".into())];
        publish.properties.topic_alias = Some(1);
        publish.properties.subscription_identifiers = vec![1, 300];
        publish.properties.content_type = Some("text/plain".into());
        connack.properties.receive_maximum = Some(10);
        connack.properties.maximum_qos = Some(QoS::AtLeastOnce);
    }
    let packets: Vec<Packet> = vec![
        connect.into(),
        connack.into(),
        publish.into(),
        PubAck::new(pid).into(),
        PubRel::new(pid).into(),
        Subscribe {
            pid,
            filters: vec![
                ("a/+".into(), SubscriptionOptions::qos(QoS::AtLeastOnce)),
                ("b/#".into(), SubscriptionOptions::qos(QoS::ExactlyOnce)),
            ],
            properties: Default::default(),
        }
        .into(),
        SubAck {
            pid,
            codes: vec![ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError],
            properties: Default::default(),
        }
        .into(),
        Unsubscribe {
            pid,
            filters: vec!["a/+".into()],
            properties: Default::default(),
        }
        .into(),
        UnsubAck {
            pid,
            codes: if v.is_v5() {
                vec![ReasonCode::Success]
            } else {
                vec![]
            },
            properties: Default::default(),
        }
        .into(),
        Packet::PingReq,
        Disconnect::new(if v.is_v5() {
            ReasonCode::ServerBusy
        } else {
            ReasonCode::Success
        })
        .into(),
    ];
    packets
        .iter()
        .map(|p| {
            let mut out = BytesMut::new();
            p.encode(v, &mut out).unwrap();
            out.to_vec()
        })
        .collect()
}

fn mutate(rng: &mut Rng, mut bytes: Vec<u8>) -> Vec<u8> {
    for _ in 0..=rng.below(4) {
        match rng.below(6) {
            0 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] = rng.byte();
            }
            1 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes[i] ^= 1 << rng.below(8);
            }
            2 => {
                let i = rng.below(bytes.len() + 1);
                bytes.insert(i, rng.byte());
            }
            3 if !bytes.is_empty() => {
                let i = rng.below(bytes.len());
                bytes.remove(i);
            }
            4 => bytes.truncate(rng.below(bytes.len() + 1)),
            _ if bytes.len() > 1 => {
                // Rewrite the remaining length to fit or to lie.
                bytes[1] = (bytes.len() - 2 + rng.below(3)).saturating_sub(1) as u8 & 0x7F;
            }
            _ => {}
        }
    }
    bytes
}

#[derive(Debug, Default)]
struct Counts {
    inputs: usize,
    packets: usize,
    incomplete: usize,
    errors: usize,
}

fn run(v: Option<ProtocolVersion>, input: &[u8], counts: &mut Counts) {
    counts.inputs += 1;
    let mut d = Decoder::new(if input.len().is_multiple_of(7) {
        64
    } else {
        1 << 20
    });
    if let Some(v) = v {
        d.set_version(v);
    }
    let mut buf = BytesMut::from(input);
    loop {
        match d.decode(&mut buf) {
            Ok(Some(p)) => {
                counts.packets += 1;
                let version = d.version().expect("version known after a packet");
                let mut again = BytesMut::new();
                p.encode(version, &mut again)
                    .unwrap_or_else(|e| panic!("{p:?} decoded but does not encode: {e}"));
                let mut d2 = Decoder::new(u32::MAX);
                if !matches!(p, Packet::Connect(_)) {
                    d2.set_version(version);
                }
                assert_eq!(d2.decode(&mut again).unwrap().as_ref(), Some(&p));
            }
            Ok(None) => {
                counts.incomplete += 1;
                break;
            }
            Err(_) => {
                counts.errors += 1;
                break;
            }
        }
    }
}

#[test]
fn two_hundred_thousand_inputs_never_panic() {
    let mut rng = Rng(0x5EED_CAFE_F00D_D00D);
    let versions = [
        None,
        Some(ProtocolVersion::V3_1),
        Some(ProtocolVersion::V3_1_1),
        Some(ProtocolVersion::V5),
    ];
    let corpus: Vec<(ProtocolVersion, Vec<u8>)> = [ProtocolVersion::V3_1_1, ProtocolVersion::V5]
        .into_iter()
        .flat_map(|v| seeds(v).into_iter().map(move |s| (v, s)))
        .collect();
    let mut random = Counts::default();
    let mut mutated = Counts::default();
    for _ in 0..100_000 {
        let len = rng.below(48);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.byte()).collect();
        if let Some(first) = bytes.first_mut() {
            // Mostly valid packet types, so parsing gets past the fixed header.
            *first = ((rng.below(16) as u8) << 4) | (*first & 0x0F);
        }
        if bytes.len() > 1 {
            bytes[1] = (bytes.len() - 2).min(127) as u8;
        }
        let v = versions[rng.below(versions.len())];
        run(v, &bytes, &mut random);
    }
    for _ in 0..100_000 {
        let (v, seed) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, seed.clone());
        let version = if input.first().is_some_and(|b| b >> 4 == 1) {
            None
        } else {
            Some(*v)
        };
        run(version, &input, &mut mutated);
    }
    println!("fuzz smoke, random bytes:  {random:?}");
    println!("fuzz smoke, mutated valid: {mutated:?}");
    assert_eq!(random.inputs + mutated.inputs, 200_000);
    // The mutations keep a good share of inputs decodable, so the parsers are really exercised.
    assert!(mutated.packets > 10_000, "{mutated:?}");
    assert!(mutated.errors > 10_000, "{mutated:?}");
}
