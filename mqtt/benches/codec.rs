//! Codec throughput: decode and encode of PUBLISH with 64 B and 4 KiB payloads, as bytes per
//! second (criterion prints GB/s) and as packets per second.

use std::hint::black_box;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use switchboard_mqtt::{
    Bytes, BytesMut, Decoder, Packet, PacketId, ProtocolVersion, Publish, QosPid,
};

/// Packets per iteration, so per-iteration overhead does not dominate.
const BATCH: usize = 100;

fn publish(payload: usize) -> Packet {
    let mut p = Publish::new(
        "sensors/building-7/floor-3/room-12/temperature",
        Bytes::from(vec![0xA5; payload]),
    );
    p.qos_pid = QosPid::AtLeastOnce(PacketId::new(42).unwrap());
    Packet::Publish(p)
}

fn bench(c: &mut Criterion) {
    for version in [ProtocolVersion::V3_1_1, ProtocolVersion::V5] {
        for payload in [64usize, 4096] {
            let packet = publish(payload);
            let len = packet.encoded_len(version);
            let mut wire = BytesMut::with_capacity(len * BATCH);
            for _ in 0..BATCH {
                packet.encode(version, &mut wire).unwrap();
            }
            let wire = wire.freeze();
            let id = format!("{version:?}/{payload}B");

            for (unit, throughput) in [
                ("bytes", Throughput::Bytes((len * BATCH) as u64)),
                ("packets", Throughput::Elements(BATCH as u64)),
            ] {
                let mut g = c.benchmark_group(format!("decode_{unit}"));
                g.throughput(throughput.clone());
                g.bench_function(BenchmarkId::from_parameter(&id), |b| {
                    let mut decoder = Decoder::new(1 << 20);
                    decoder.set_version(version);
                    // The copy into a fresh receive buffer is setup, outside the timing.
                    b.iter_batched_ref(
                        || BytesMut::from(&wire[..]),
                        |buf| {
                            while let Some(p) = decoder.decode(buf).unwrap() {
                                black_box(p);
                            }
                        },
                        BatchSize::SmallInput,
                    );
                });
                g.finish();

                let mut g = c.benchmark_group(format!("encode_{unit}"));
                g.throughput(throughput);
                g.bench_function(BenchmarkId::from_parameter(&id), |b| {
                    let mut out = BytesMut::with_capacity(len * BATCH);
                    b.iter(|| {
                        out.clear();
                        for _ in 0..BATCH {
                            black_box(&packet).encode(version, &mut out).unwrap();
                        }
                        black_box(&out);
                    });
                });
                g.finish();
            }
        }
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
