//! cargo-fuzz target for `Decoder::decode`: the first input byte picks the version (even: 3.1.1,
//! odd: 5.0; above 0xF0: no version, as a server before CONNECT), the rest is the byte stream.
//! Every accepted packet must re-encode and decode to itself.
//!
//! Run with `cargo +nightly fuzz run decode` from `mqtt/`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard_mqtt::{BytesMut, Decoder, Packet, ProtocolVersion};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, stream)) = data.split_first() else {
        return;
    };
    let mut decoder = Decoder::new(1 << 16);
    if selector < 0xF0 {
        decoder.set_version(if selector.is_multiple_of(2) {
            ProtocolVersion::V3_1_1
        } else {
            ProtocolVersion::V5
        });
    }
    let mut buf = BytesMut::from(stream);
    while let Ok(Some(packet)) = decoder.decode(&mut buf) {
        let version = decoder.version().expect("known after a packet");
        let mut again = BytesMut::new();
        packet
            .encode(version, &mut again)
            .expect("decoded packets encode");
        let mut check = Decoder::new(u32::MAX);
        if !matches!(packet, Packet::Connect(_)) {
            check.set_version(version);
        }
        assert_eq!(check.decode(&mut again).expect("re-decodes"), Some(packet));
    }
});
