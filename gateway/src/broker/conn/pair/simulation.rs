//! The seeded simulation: many clients, random operations and random broken links against the
//! single-node router, then checks of what MQTT promises: nothing acknowledged is lost, QoS 2
//! is delivered once, and the retained message is the last write. `SWITCHBOARD_SIM_SEEDS=N`
//! runs N seeds instead of the default 200; `SWITCHBOARD_SIM_SEED=S` replays seed S alone.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use switchboard_mqtt::client::Action;
use switchboard_mqtt::{Bytes, Connect, PacketId, Properties, ProtocolVersion, QoS};

use super::{Pair, sub, v5, v5_kept};
use crate::broker::BrokerConfig;

/// One publication a publisher made, and whether its broker acknowledged it.
#[derive(Debug)]
struct Sent {
    payload: String,
    qos: QoS,
    acked: bool,
}

/// What one seed did.
#[derive(Debug, Default)]
struct Tally {
    publications: usize,
    acknowledged: usize,
    cuts: usize,
    deliveries: usize,
}

/// Runs one seed: returns what went wrong (empty when every invariant held).
async fn simulate(seed: u64, tally: &mut Tally) -> Vec<String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut pair = Pair::new(BrokerConfig::default());
    pair.chop = Some(fastrand::Rng::with_seed(seed ^ 0x5eed));
    let subscribers = 2 + rng.usize(0..3);
    let publishers = 1 + rng.usize(0..3);
    let mut sub_qos = Vec::new();
    for s in 0..subscribers {
        let mut connect = v5_kept(&format!("sub{s}"), u32::MAX);
        if rng.bool() {
            connect = Connect::new(ProtocolVersion::V3_1_1, format!("sub{s}"));
            connect.clean_start = false;
        }
        let i = pair.add(connect);
        pair.connect(i).await;
        let qos = if rng.bool() {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        sub(&mut pair, i, "t/#", qos);
        sub_qos.push(qos);
    }
    let first_pub = pair.clients.len();
    for p in 0..publishers {
        let connect = v5_kept(&format!("pub{p}"), u32::MAX);
        let i = pair.add(connect);
        pair.connect(i).await;
    }
    // (publisher index, pid) -> payload, and every publication per publisher in order.
    let mut pending: HashMap<(usize, PacketId), usize> = HashMap::new();
    let mut sent: Vec<Vec<Sent>> = (0..publishers).map(|_| Vec::new()).collect();
    let mut seen_events = vec![0; pair.clients.len()];
    for _ in 0..200 {
        let i = rng.usize(0..pair.clients.len());
        match rng.u8(0..10) {
            // Publish (the publisher's own retained topic and a shared one).
            0..=5 if i >= first_pub => {
                let p = i - first_pub;
                let qos = if rng.bool() {
                    QoS::AtLeastOnce
                } else {
                    QoS::ExactlyOnce
                };
                let n = sent[p].len();
                let payload = format!("p{p}-{n}");
                let topic = format!("t/{p}");
                match pair.state(i).publish(
                    topic,
                    Bytes::from(payload.clone().into_bytes()),
                    qos,
                    true,
                    Properties::default(),
                ) {
                    Ok(Some(pid)) => {
                        pending.insert((p, pid), n);
                        sent[p].push(Sent {
                            payload,
                            qos,
                            acked: false,
                        });
                    }
                    other => panic!("publish: {other:?}"),
                }
            }
            // Break a link.
            6 if pair.clients[i].server.is_some() => {
                pair.cut(i);
                tally.cuts += 1;
            }
            // Come back.
            7 | 8 if pair.clients[i].server.is_none() => pair.connect(i).await,
            9 => {
                let ms = rng.u64(1..3_000);
                pair.advance(Duration::from_millis(ms)).await;
            }
            _ => {}
        }
        // A few steps of random clients: exchanges stay half done when the next cut comes.
        for _ in 0..rng.usize(0..6) {
            let j = rng.usize(0..pair.clients.len());
            pair.step(j);
        }
        for (i, seen) in seen_events.iter_mut().enumerate() {
            let events = &pair.clients[i].events;
            for e in &events[*seen..] {
                if let Action::PublishComplete { pid, result } = e
                    && i >= first_pub
                    && let Some(n) = pending.remove(&(i - first_pub, *pid))
                {
                    sent[i - first_pub][n].acked = result.is_ok();
                }
            }
            *seen = events.len();
        }
    }
    // Everyone back, everything settled.
    for i in 0..pair.clients.len() {
        if pair.clients[i].server.is_none() {
            pair.connect(i).await;
        }
    }
    pair.advance(Duration::from_secs(60)).await;
    for (i, seen) in seen_events.iter_mut().enumerate() {
        for e in &pair.clients[i].events[*seen..] {
            if let Action::PublishComplete { pid, result } = e
                && i >= first_pub
                && let Some(n) = pending.remove(&(i - first_pub, *pid))
            {
                sent[i - first_pub][n].acked = result.is_ok();
            }
        }
    }

    tally.publications += sent.iter().map(Vec::len).sum::<usize>();
    tally.acknowledged += sent.iter().flatten().filter(|s| s.acked).count();
    tally.deliveries += (0..subscribers)
        .map(|s| pair.clients[s].deliveries().count())
        .sum::<usize>();
    let mut problems = Vec::new();
    if !pending.is_empty() {
        problems.push(format!("{} publications never completed", pending.len()));
    }
    for (s, qos) in sub_qos.iter().enumerate() {
        let mut count: BTreeMap<String, usize> = BTreeMap::new();
        for p in pair.clients[s].deliveries() {
            *count
                .entry(String::from_utf8_lossy(&p.payload).into_owned())
                .or_default() += 1;
        }
        for one in sent.iter().flatten().filter(|s| s.acked) {
            let n = count.get(&one.payload).copied().unwrap_or(0);
            if n == 0 {
                problems.push(format!("sub{s} lost acknowledged {}", one.payload));
            }
            let once = *qos == QoS::ExactlyOnce && one.qos == QoS::ExactlyOnce;
            if once && n > 1 {
                problems.push(format!("sub{s} got QoS 2 {} {n} times", one.payload));
            }
        }
    }
    // Retained: each publisher's topic holds its last publication.
    let reader = pair.add(v5("reader"));
    pair.connect(reader).await;
    sub(&mut pair, reader, "t/#", QoS::AtMostOnce);
    let retained: HashMap<String, String> = pair.clients[reader]
        .deliveries()
        .map(|p| {
            (
                p.topic.to_string(),
                String::from_utf8_lossy(&p.payload).into_owned(),
            )
        })
        .collect();
    for (p, list) in sent.iter().enumerate() {
        let topic = format!("t/{p}");
        let want = list.last().map(|s| s.payload.clone());
        if retained.get(&topic) != want.as_ref() {
            problems.push(format!(
                "retained {topic} is {:?}, last write {want:?}",
                retained.get(&topic)
            ));
        }
    }
    problems
}

#[tokio::test(start_paused = true)]
async fn seeded_simulation_keeps_what_mqtt_promises() {
    let seeds: Vec<u64> = match (
        std::env::var("SWITCHBOARD_SIM_SEED"),
        std::env::var("SWITCHBOARD_SIM_SEEDS"),
    ) {
        (Ok(one), _) => vec![one.parse().expect("SWITCHBOARD_SIM_SEED is a number")],
        (_, Ok(n)) => (0..n.parse().expect("SWITCHBOARD_SIM_SEEDS is a number")).collect(),
        _ => (0..200).collect(),
    };
    let mut failed = Vec::new();
    let mut tally = Tally::default();
    for seed in &seeds {
        let problems = simulate(*seed, &mut tally).await;
        if !problems.is_empty() {
            failed.push(format!("seed {seed}: {}", problems.join("; ")));
        }
    }
    eprintln!("{} seeds: {tally:?}", seeds.len());
    assert!(
        failed.is_empty(),
        "{} of {} seeds failed (replay with SWITCHBOARD_SIM_SEED=N):\n{}",
        failed.len(),
        seeds.len(),
        failed.join("\n")
    );
}
