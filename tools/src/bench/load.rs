//! The scenarios: message flows (point-to-point, fan-out, fan-in through a shared subscription),
//! idle connections and a connect storm. Each one is bounded in connections, messages and time
//! and returns a [`Measurement`]; [`super`] turns it into a report.
//!
//! # Message flow
//! Subscribers connect and subscribe first, then publishers connect. The measurement window
//! opens when the publishers start and closes at the last delivery. Every payload starts with the
//! send time (nanoseconds since the run's base instant), the publisher's index and a sequence
//! number; a subscriber stamps each read with the clock once and records `now - sent` for every
//! PUBLISH in it.
//!
//! Flow control, per publisher: at most `window` messages not yet delivered to every subscriber
//! (end to end, for every QoS, so broker queues stay bounded and QoS 0 measures delivery rather
//! than drops), and for QoS 1/2 also at most `window` messages not yet acknowledged (PUBACK or
//! PUBCOMP). Subscribers add their deliveries to the publisher's counter once per read and wake
//! the publisher when it crosses the half-window mark the publisher asked for. When nothing moves
//! for [`STALL`] (lost QoS 0 messages), the publisher writes the missing deliveries off and goes
//! on; they are still counted as lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::BufMut as _;
use switchboard_mqtt::{
    ByteString, BytesMut, Packet, PacketId, PubAck, PubComp, PubRec, PubRel, Publish, QoS, QosPid,
};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::conn::{Conn, Endpoint, ReadSide, WriteSide};
use super::hist::Histogram;
use super::proc::ProcStats;

/// A publisher waiting this long without progress writes its missing deliveries off.
const STALL: Duration = Duration::from_millis(250);
/// After publishing, how long deliveries may pause before the rest counts as lost.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// Bytes at the front of every payload: send time, publisher index, sequence number.
pub(crate) const HEADER: usize = 16;

/// A message-flow scenario, resolved to numbers.
#[derive(Debug, Clone)]
pub(crate) struct Flow {
    /// Topic each publisher publishes to.
    pub(crate) pub_topics: Vec<String>,
    /// Filter each subscriber subscribes to.
    pub(crate) sub_filters: Vec<String>,
    /// Deliveries each publication should cause.
    pub(crate) fanout: u64,
    /// QoS of publications and subscriptions.
    pub(crate) qos: QoS,
    /// Payload bytes (at least [`HEADER`]).
    pub(crate) payload: usize,
    /// Messages per publisher, at most.
    pub(crate) messages: u64,
    /// Publishing stops after this long.
    pub(crate) duration: Duration,
    /// Publications per second over all publishers; 0 for as fast as flow control allows.
    pub(crate) rate: f64,
    /// Per-publisher window (see the module documentation).
    pub(crate) window: u64,
    /// PUBLISHes encoded per write, at most.
    pub(crate) batch: u64,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measurement {
    /// Publications sent.
    pub(crate) sent: u64,
    /// Deliveries expected (`sent * fanout`); for the connection scenarios, connections tried.
    pub(crate) expected: u64,
    /// Deliveries received; for the connection scenarios, connections made.
    pub(crate) delivered: u64,
    /// The measurement window in seconds.
    pub(crate) window_s: f64,
    /// Publish-to-delivery latency (connection scenarios: CONNECT to CONNACK), nanoseconds.
    pub(crate) latency: Histogram,
    /// Broker CPU seconds over the window.
    pub(crate) broker_cpu_s: f64,
    /// Load generator CPU seconds over the window.
    pub(crate) client_cpu_s: f64,
    /// Broker peak RSS (`VmHWM`) at the end, bytes.
    pub(crate) broker_hwm: u64,
    /// Broker RSS before the scenario's connections, bytes.
    pub(crate) broker_rss_before: u64,
    /// Broker RSS at the end of the window, bytes.
    pub(crate) broker_rss_after: u64,
}

/// One publisher's shared counters.
#[derive(Debug, Default)]
struct PubCtl {
    /// PUBACKs (QoS 1) or PUBCOMPs (QoS 2) received.
    acked: AtomicU64,
    /// Deliveries of this publisher's messages, all subscribers together.
    delivered: AtomicU64,
    /// Subscribers notify `wake` when `delivered` reaches this.
    wake_at: AtomicU64,
    /// Wakes the publisher's writer: acknowledgements, PUBRELs to send, deliveries.
    wake: Notify,
    /// PUBRECs received whose PUBREL the writer has to send. std `Mutex`: pushed by the reader,
    /// swapped out by the writer, never held across `.await`.
    rels: std::sync::Mutex<Vec<PacketId>>,
}

/// State shared by every task of one run.
#[derive(Debug)]
struct Shared {
    base: Instant,
    pubs: Vec<PubCtl>,
    /// Nanoseconds since `base` of the latest read carrying a delivery.
    last_delivery: AtomicU64,
    /// Cancelled when the run ends: every reader stops.
    stop: CancellationToken,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    fn delivered(&self) -> u64 {
        self.pubs
            .iter()
            .map(|p| p.delivered.load(Ordering::Relaxed))
            .sum()
    }
}

/// Connects `ids.len()` clients, at most `concurrency` at a time, in order of `ids`.
async fn connect_all(
    endpoint: &Endpoint,
    ids: Vec<String>,
    concurrency: usize,
    subscribe: Option<(&[String], QoS)>,
) -> anyhow::Result<Vec<Conn>> {
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for (i, id) in ids.into_iter().enumerate() {
        let permits = Arc::clone(&permits);
        let endpoint = endpoint.clone();
        let filter = subscribe.map(|(filters, qos)| (filters[i].clone(), qos));
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            let mut conn = Conn::connect(&endpoint, &id)
                .await
                .with_context(|| format!("client {id}"))?;
            if let Some((filter, qos)) = filter {
                conn.subscribe(&filter, qos).await?;
            }
            anyhow::Ok((i, conn))
        });
    }
    let mut conns: Vec<Option<Conn>> = std::iter::repeat_with(|| None).take(tasks.len()).collect();
    while let Some(joined) = tasks.join_next().await {
        let (i, conn) = joined??;
        conns[i] = Some(conn);
    }
    Ok(conns.into_iter().flatten().collect())
}

/// The broker's resource use; all zero when its process is not known.
fn broker_stats(pid: Option<u32>) -> anyhow::Result<ProcStats> {
    pid.map_or_else(|| Ok(ProcStats::default()), ProcStats::read)
}

/// Samples the broker's memory every 100 ms until `stop`, returning the largest RSS seen.
fn sample_rss(pid: Option<u32>, stop: CancellationToken) -> tokio::task::JoinHandle<u64> {
    tokio::spawn(async move {
        let mut peak = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = stop.cancelled() => return peak,
                _ = tick.tick() => {
                    if let Ok(s) = broker_stats(pid) {
                        peak = peak.max(s.rss);
                    }
                }
            }
        }
    })
}

/// Runs a message flow against the broker at `endpoint` whose process is `pid` (unknown: no
/// CPU or memory figures).
///
/// # Errors
/// When a client cannot connect or subscribe, a connection fails during the run, or the run
/// overruns its duration by more than a minute.
pub(crate) async fn run_flow(
    endpoint: &Endpoint,
    pid: Option<u32>,
    flow: Flow,
) -> anyhow::Result<Measurement> {
    let publishers = flow.pub_topics.len();
    let flow = Arc::new(flow);
    let tag = std::process::id();
    let before = broker_stats(pid)?;
    let sub_ids = (0..flow.sub_filters.len())
        .map(|i| format!("bench-{tag}-sub-{i}"))
        .collect();
    let subs = connect_all(endpoint, sub_ids, 64, Some((&flow.sub_filters, flow.qos))).await?;
    let pub_ids = (0..publishers)
        .map(|i| format!("bench-{tag}-pub-{i}"))
        .collect();
    let pubs = connect_all(endpoint, pub_ids, 64, None).await?;

    let shared = Arc::new(Shared {
        base: Instant::now(),
        pubs: (0..publishers).map(|_| PubCtl::default()).collect(),
        last_delivery: AtomicU64::new(0),
        stop: CancellationToken::new(),
    });
    let mut readers = JoinSet::new();
    for conn in subs {
        let (r, w) = conn.split();
        readers.spawn(subscriber(r, w, Arc::clone(&shared)));
    }
    let mut writers = JoinSet::new();
    let s0 = broker_stats(pid)?;
    let c0 = ProcStats::read(std::process::id())?;
    let start_ns = shared.now_ns();
    let sampler = sample_rss(pid, shared.stop.clone());
    for (me, conn) in pubs.into_iter().enumerate() {
        let (r, w) = conn.split();
        readers.spawn(acks(r, Arc::clone(&shared), me));
        let topic = ByteString::from(flow.pub_topics[me].as_str());
        writers.spawn(publisher(
            w,
            Arc::clone(&shared),
            me,
            Arc::clone(&flow),
            topic,
        ));
    }

    let limit = flow.duration + Duration::from_secs(60);
    let mut idle_writers = Vec::with_capacity(publishers);
    let outcome = tokio::time::timeout(limit, async {
        let mut sent = 0;
        while let Some(joined) = writers.join_next().await {
            let (n, w) = joined??;
            sent += n;
            // Dropping a TCP write half would shut the connection down before the drain.
            idle_writers.push(w);
        }
        // Drain: wait for every delivery, or until deliveries pause for DRAIN_IDLE.
        let expected = sent * flow.fanout;
        let mut last = (shared.delivered(), Instant::now());
        loop {
            let delivered = shared.delivered();
            if delivered >= expected {
                break;
            }
            if delivered != last.0 {
                last = (delivered, Instant::now());
            } else if last.1.elapsed() > DRAIN_IDLE {
                break;
            }
            // A reader that failed ends the run early.
            if let Some(joined) = readers.try_join_next() {
                joined??;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        anyhow::Ok(sent)
    })
    .await;
    let s1 = broker_stats(pid)?;
    let c1 = ProcStats::read(std::process::id())?;
    shared.stop.cancel();
    let sent = match outcome {
        Ok(result) => result?,
        Err(_) => bail!("the run did not finish within {limit:?}"),
    };
    let mut latency = Histogram::default();
    while let Some(joined) = readers.join_next().await {
        if let Some(h) = joined?? {
            latency.merge(&h);
        }
    }
    let peak = sampler.await.unwrap_or(0);
    let end_ns = shared.last_delivery.load(Ordering::Relaxed).max(start_ns);
    Ok(Measurement {
        sent,
        expected: sent * flow.fanout,
        delivered: shared.delivered(),
        window_s: (end_ns - start_ns) as f64 / 1e9,
        latency,
        broker_cpu_s: s1.cpu_s - s0.cpu_s,
        client_cpu_s: c1.cpu_s - c0.cpu_s,
        broker_hwm: s1.hwm.max(peak),
        broker_rss_before: before.rss,
        broker_rss_after: s1.rss,
    })
}

/// A subscriber: decodes deliveries, records latency, acknowledges QoS 1/2, credits publishers.
async fn subscriber(
    mut r: ReadSide,
    mut w: WriteSide,
    shared: Arc<Shared>,
) -> anyhow::Result<Option<Histogram>> {
    let mut hist = Histogram::default();
    let mut counts = vec![0u64; shared.pubs.len()];
    let mut touched = Vec::new();
    loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ok(Some(hist)),
            more = r.fill() => if !more? {
                if shared.stop.is_cancelled() {
                    return Ok(Some(hist));
                }
                bail!("the broker closed a subscriber's connection");
            },
        }
        let now = shared.now_ns();
        while let Some(packet) = r.decode()? {
            match packet {
                Packet::Publish(p) => {
                    let (sent, from) = read_header(&p.payload);
                    hist.record(now.saturating_sub(sent));
                    if let Some(c) = counts.get_mut(from) {
                        if *c == 0 {
                            touched.push(from);
                        }
                        *c += 1;
                    }
                    match p.qos_pid {
                        QosPid::AtMostOnce => {}
                        QosPid::AtLeastOnce(pid) => w.encode(&Packet::PubAck(PubAck::new(pid)))?,
                        QosPid::ExactlyOnce(pid) => w.encode(&Packet::PubRec(PubRec::new(pid)))?,
                    }
                }
                Packet::PubRel(rel) => w.encode(&Packet::PubComp(PubComp::new(rel.pid)))?,
                _ => {}
            }
        }
        if !touched.is_empty() {
            shared.last_delivery.fetch_max(now, Ordering::Relaxed);
            for i in touched.drain(..) {
                let k = std::mem::take(&mut counts[i]);
                let ctl = &shared.pubs[i];
                let old = ctl.delivered.fetch_add(k, Ordering::AcqRel);
                let at = ctl.wake_at.load(Ordering::Acquire);
                if old < at && old + k >= at {
                    ctl.wake.notify_one();
                }
            }
        }
        w.flush().await?;
    }
}

/// A publisher's receiving half: counts PUBACK/PUBCOMP, queues PUBRELs, wakes the writer.
async fn acks(
    mut r: ReadSide,
    shared: Arc<Shared>,
    me: usize,
) -> anyhow::Result<Option<Histogram>> {
    let ctl = &shared.pubs[me];
    loop {
        tokio::select! {
            biased;
            () = shared.stop.cancelled() => return Ok(None),
            more = r.fill() => if !more? {
                if shared.stop.is_cancelled() {
                    return Ok(None);
                }
                bail!("the broker closed a publisher's connection");
            },
        }
        let mut acked = 0;
        let mut progress = false;
        while let Some(packet) = r.decode()? {
            match packet {
                Packet::PubAck(_) | Packet::PubComp(_) => acked += 1,
                Packet::PubRec(rec) => {
                    ctl.rels
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push(rec.pid);
                    progress = true;
                }
                _ => {}
            }
        }
        if acked > 0 {
            ctl.acked.fetch_add(acked, Ordering::AcqRel);
            progress = true;
        }
        if progress {
            ctl.wake.notify_one();
        }
    }
}

/// Send time and publisher index from a payload (zeros for a foreign message).
fn read_header(payload: &[u8]) -> (u64, usize) {
    match (payload.get(0..8), payload.get(8..12)) {
        (Some(t), Some(i)) => (
            u64::from_le_bytes(t.try_into().unwrap_or_default()),
            u32::from_le_bytes(i.try_into().unwrap_or_default()) as usize,
        ),
        _ => (0, usize::MAX),
    }
}

/// A publisher's sending half; returns how many messages it published, and the half (kept open
/// until the run ends).
async fn publisher(
    mut w: WriteSide,
    shared: Arc<Shared>,
    me: usize,
    flow: Arc<Flow>,
    topic: ByteString,
) -> anyhow::Result<(u64, WriteSide)> {
    let ctl = &shared.pubs[me];
    let publishers = shared.pubs.len() as f64;
    let per_second = flow.rate / publishers;
    let fan = flow.fanout.max(1);
    let window = flow.window.max(1);
    let start = Instant::now();
    let deadline = start + flow.duration;
    let mut sent = 0u64;
    // Deliveries written off after a stall (lost QoS 0 messages).
    let mut forgiven = 0u64;
    let mut arena = BytesMut::new();
    let mut rels = Vec::new();
    loop {
        std::mem::swap(
            &mut rels,
            &mut *ctl
                .rels
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for pid in rels.drain(..) {
            w.encode(&Packet::PubRel(PubRel::new(pid)))?;
        }
        let now = Instant::now();
        let acked = ctl.acked.load(Ordering::Acquire);
        let delivered = ctl.delivered.load(Ordering::Acquire);
        let finished = sent >= flow.messages || now >= deadline;
        let in_flight_room = if flow.qos == QoS::AtMostOnce {
            u64::MAX
        } else {
            window.saturating_sub(sent - acked.min(sent))
        };
        let outstanding = (sent * fan).saturating_sub(delivered + forgiven);
        let e2e_room = (window * fan).saturating_sub(outstanding) / fan;
        let rate_room = if per_second > 0.0 {
            let due = ((now - start).as_secs_f64() * per_second) as u64 + 1;
            due.saturating_sub(sent)
        } else {
            u64::MAX
        };
        let n = if finished {
            0
        } else {
            (flow.messages - sent)
                .min(flow.batch.max(1))
                .min(in_flight_room)
                .min(e2e_room)
                .min(rate_room)
        };
        if n > 0 {
            let send_ns = shared.now_ns();
            arena.reserve(flow.payload * n as usize);
            for _ in 0..n {
                arena.put_u64_le(send_ns);
                arena.put_u32_le(me as u32);
                arena.put_u32_le(sent as u32);
                arena.put_bytes(0, flow.payload - HEADER);
                let qos_pid = match flow.qos {
                    QoS::AtMostOnce => QosPid::AtMostOnce,
                    qos => QosPid::new(qos, packet_id(sent)),
                };
                let publish = Publish {
                    qos_pid,
                    payload: arena.split().freeze(),
                    ..Publish::new(topic.clone(), bytes::Bytes::new())
                };
                w.encode(&Packet::Publish(publish))?;
                sent += 1;
            }
        }
        w.flush().await?;
        if finished && (flow.qos == QoS::AtMostOnce || acked >= sent) {
            return Ok((sent, w));
        }
        if n > 0 {
            continue;
        }
        if !finished && rate_room == 0 {
            let next = start + Duration::from_secs_f64(sent as f64 / per_second);
            tokio::select! {
                () = shared.stop.cancelled() => return Ok((sent, w)),
                () = tokio::time::sleep_until(next.min(deadline).into()) => {}
            }
            continue;
        }
        let e2e_bound = !finished && e2e_room == 0;
        if e2e_bound {
            let target = (sent * fan).saturating_sub(forgiven + window * fan / 2);
            ctl.wake_at.store(target, Ordering::Release);
            if ctl.delivered.load(Ordering::Acquire) >= target {
                continue;
            }
        }
        tokio::select! {
            () = shared.stop.cancelled() => return Ok((sent, w)),
            () = ctl.wake.notified() => {}
            () = tokio::time::sleep(STALL) => {
                if e2e_bound {
                    let delivered = ctl.delivered.load(Ordering::Acquire);
                    forgiven = (sent * fan).saturating_sub(delivered);
                }
            }
        }
    }
}

/// Packet ids 1..=65535 in turn (the window keeps far fewer in flight).
fn packet_id(seq: u64) -> PacketId {
    PacketId::new((seq % 65_535) as u16 + 1).unwrap_or(PacketId::MIN)
}

/// Opens `count` connections (at most `concurrency` connecting at a time), holds them idle for a
/// second, and measures the broker's RSS growth and CPU time.
///
/// # Errors
/// When a connection fails.
pub(crate) async fn run_idle(
    endpoint: &Endpoint,
    pid: Option<u32>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Measurement> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s0 = broker_stats(pid)?;
    let c0 = ProcStats::read(std::process::id())?;
    let start = Instant::now();
    let tag = std::process::id();
    let ids = (0..count)
        .map(|i| format!("bench-{tag}-idle-{i}"))
        .collect();
    let conns = tokio::time::timeout(
        Duration::from_secs(120),
        connect_all(endpoint, ids, concurrency, None),
    )
    .await
    .context("connecting took over 120 s")??;
    let window_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let s1 = broker_stats(pid)?;
    let c1 = ProcStats::read(std::process::id())?;
    let made = conns.len() as u64;
    drop(conns);
    Ok(Measurement {
        expected: count as u64,
        delivered: made,
        window_s,
        broker_cpu_s: s1.cpu_s - s0.cpu_s,
        client_cpu_s: c1.cpu_s - c0.cpu_s,
        broker_hwm: s1.hwm,
        broker_rss_before: s0.rss,
        broker_rss_after: s1.rss,
        ..Measurement::default()
    })
}

/// Connects and disconnects `count` clients, `concurrency` at a time, timing CONNECT to CONNACK.
///
/// # Errors
/// When a connection fails.
pub(crate) async fn run_storm(
    endpoint: &Endpoint,
    pid: Option<u32>,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Measurement> {
    let s0 = broker_stats(pid)?;
    let c0 = ProcStats::read(std::process::id())?;
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let tag = std::process::id();
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.clamp(1, count.max(1)) {
        let next = Arc::clone(&next);
        let endpoint = endpoint.clone();
        workers.spawn(async move {
            let mut hist = Histogram::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count as u64 {
                    return anyhow::Ok(hist);
                }
                let t = Instant::now();
                let conn = Conn::connect(&endpoint, &format!("bench-{tag}-storm-{i}")).await?;
                hist.record(t.elapsed().as_nanos() as u64);
                conn.disconnect().await?;
            }
        });
    }
    let mut latency = Histogram::default();
    let joined = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(h) = workers.join_next().await {
            latency.merge(&h??);
        }
        anyhow::Ok(())
    })
    .await;
    joined.context("the connect storm took over 120 s")??;
    let window_s = start.elapsed().as_secs_f64();
    let s1 = broker_stats(pid)?;
    let c1 = ProcStats::read(std::process::id())?;
    Ok(Measurement {
        expected: count as u64,
        delivered: latency.count(),
        window_s,
        latency,
        broker_cpu_s: s1.cpu_s - s0.cpu_s,
        client_cpu_s: c1.cpu_s - c0.cpu_s,
        broker_hwm: s1.hwm,
        broker_rss_before: s0.rss,
        broker_rss_after: s1.rss,
        ..Measurement::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip() {
        let mut b = BytesMut::new();
        b.put_u64_le(123_456_789);
        b.put_u32_le(7);
        b.put_u32_le(9);
        assert_eq!(read_header(&b), (123_456_789, 7));
        assert_eq!(read_header(b"short"), (0, usize::MAX));
    }

    #[test]
    fn packet_ids_are_never_zero_and_cycle() {
        assert_eq!(packet_id(0).get(), 1);
        assert_eq!(packet_id(65_534).get(), 65_535);
        assert_eq!(packet_id(65_535).get(), 1);
    }
}
