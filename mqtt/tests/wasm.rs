//! The codec in a browser: run with `cargo test --target wasm32-unknown-unknown` under
//! `wasm-bindgen-test-runner` (headless Chromium).

#![cfg(target_arch = "wasm32")]

use switchboard_mqtt::{
    BytesMut, Decoder, Packet, PacketId, ProtocolVersion, Publish, QosPid, topic,
};
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn publish_roundtrip_and_topic_match() {
    let mut publish = Publish::new("devices/lamp-1/state", "on");
    publish.qos_pid = QosPid::AtLeastOnce(PacketId::new(7).unwrap());
    publish.properties.content_type = Some("text/plain".into());
    let packet = Packet::Publish(publish);

    let mut wire = BytesMut::new();
    packet.encode(ProtocolVersion::V5, &mut wire).unwrap();
    assert_eq!(wire.len(), packet.encoded_len(ProtocolVersion::V5));

    let mut decoder = Decoder::new(1 << 16);
    decoder.set_version(ProtocolVersion::V5);
    let decoded = decoder.decode(&mut wire).unwrap();
    assert_eq!(decoded.as_ref(), Some(&packet));

    let Some(Packet::Publish(p)) = decoded else {
        unreachable!()
    };
    assert!(topic::matches("devices/+/state", &p.topic));
    assert!(!topic::matches("devices/#", "$SYS/uptime"));
}
