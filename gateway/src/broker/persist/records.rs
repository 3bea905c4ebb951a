//! Opening the file and reading it back, and the encodings of the records in its tables.

use super::writer::apply;
use super::*;

/// Why the store could not be opened.
#[derive(Debug)]
pub(super) enum OpenError {
    /// Another process holds it.
    Locked(redb::DatabaseError),
    /// Not a redb file, corrupt, or unreadable content.
    Unreadable(String),
}

pub(super) fn open_and_read(path: &Path) -> Result<(Database, Restored), OpenError> {
    let db = match Database::create(path) {
        Ok(db) => db,
        Err(err @ redb::DatabaseError::DatabaseAlreadyOpen) => return Err(OpenError::Locked(err)),
        Err(err) => return Err(OpenError::Unreadable(err.to_string())),
    };
    init(&db).map_err(|e| OpenError::Unreadable(e.to_string()))?;
    let restored = read_all(&db).map_err(|e| OpenError::Unreadable(e.to_string()))?;
    Ok((db, restored))
}

/// Creates the tables and checks the schema version.
pub(super) fn init(db: &Database) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut meta = txn.open_table(META)?;
        let version = meta.get("schema")?.map(|v| v.value());
        match version {
            None => {
                meta.insert("schema", SCHEMA)?;
            }
            Some(SCHEMA) => {}
            Some(other) => {
                return Err(redb::Error::Corrupted(format!(
                    "unknown schema version {other}"
                )));
            }
        }
        txn.open_table(RETAINED)?;
        txn.open_table(SESSIONS)?;
        txn.open_table(SUBS)?;
        txn.open_table(MESSAGES)?;
        txn.open_table(INFLIGHT)?;
        txn.open_table(INCOMING)?;
        txn.open_table(WILLS)?;
    }
    txn.commit()?;
    Ok(())
}

/// Reads everything back. Records that cannot be decoded are skipped with an error log each.
pub(super) fn read_all(db: &Database) -> Result<Restored, redb::Error> {
    let mut expired = Vec::new();
    let restored = read_tables(db, &mut expired)?;
    if !expired.is_empty() {
        apply(db, expired.into_iter().map(Op::RetainDel).collect(), false)?;
    }
    Ok(restored)
}

/// Reads every table; topics of expired retained messages go to `expired`.
pub(super) fn read_tables(
    db: &Database,
    expired: &mut Vec<String>,
) -> Result<Restored, redb::Error> {
    let txn = db.begin_read()?;
    let mut restored = Restored::default();
    for entry in txn.open_table(RETAINED)?.iter()? {
        let (topic, value) = entry?;
        match decode_message(value.value()) {
            Some(msg) if msg.expires_at.is_some_and(|at| at <= Instant::now()) => {
                expired.push(topic.value().to_owned());
            }
            Some(msg) => restored.retained.push(msg),
            None => tracing::error!(
                topic = topic.value(),
                "undecodable retained message skipped"
            ),
        }
    }
    let subs = txn.open_table(SUBS)?;
    let messages = txn.open_table(MESSAGES)?;
    let inflight = txn.open_table(INFLIGHT)?;
    let incoming = txn.open_table(INCOMING)?;
    let wills = txn.open_table(WILLS)?;
    for entry in txn.open_table(SESSIONS)?.iter()? {
        let (cid, value) = entry?;
        let cid = cid.value();
        let value = value.value();
        if value.len() != 12 {
            tracing::error!(client_id = cid, "undecodable session record skipped");
            continue;
        }
        let expiry = u32::from_le_bytes(value[..4].try_into().unwrap_or_default());
        let at_ms = u64::from_le_bytes(value[4..].try_into().unwrap_or_default());
        let mut session = RestoredSession {
            client_id: ByteString::from(cid),
            expiry_interval: expiry,
            expires_at: (at_ms != 0).then(|| UNIX_EPOCH + Duration::from_millis(at_ms)),
            subscriptions: Vec::new(),
            messages: Vec::new(),
            incoming_qos2: Vec::new(),
            will: None,
        };
        for entry in subs.range((cid, "")..)? {
            let (key, value) = entry?;
            let (owner, filter) = key.value();
            if owner != cid {
                break;
            }
            let v = value.value();
            let options = v.first().and_then(|b| decode_options(*b));
            let (Some(options), Ok(id)) =
                (options, <[u8; 4]>::try_from(v.get(1..5).unwrap_or(&[])))
            else {
                tracing::error!(client_id = cid, filter, "undecodable subscription skipped");
                continue;
            };
            let id = u32::from_le_bytes(id);
            session.subscriptions.push((
                ByteString::from(filter),
                options,
                (id != 0).then_some(id),
            ));
        }
        for entry in messages.range((cid, 0)..=(cid, u64::MAX))? {
            let (key, value) = entry?;
            let id = key.value().1;
            let Some(mut delivery) = decode_delivery(id, value.value()) else {
                tracing::error!(client_id = cid, id, "undecodable queued message skipped");
                continue;
            };
            if let Some(sent) = inflight.get((cid, id))? {
                let (pid, released) = sent.value();
                delivery.sent = PacketId::new(pid).map(|pid| (pid, released != 0));
            }
            session.messages.push(delivery);
        }
        for entry in incoming.range((cid, 0)..=(cid, u16::MAX))? {
            session.incoming_qos2.push(entry?.0.value().1);
        }
        if let Some(value) = wills.get(cid)? {
            match decode_will(value.value()) {
                Some(will) => session.will = Some(will),
                None => tracing::error!(client_id = cid, "undecodable delayed will skipped"),
            }
        }
        restored.sessions.push(session);
    }
    // Wills of clean sessions whose connection was up when the process died.
    for entry in wills.iter()? {
        let (cid, value) = entry?;
        let cid = cid.value();
        if restored.sessions.iter().any(|s| &*s.client_id == cid) {
            continue;
        }
        match decode_will(value.value()) {
            Some((msg, _)) => restored.wills.push((ByteString::from(cid), msg)),
            None => tracing::error!(client_id = cid, "undecodable will skipped"),
        }
    }
    Ok(restored)
}

/// A will record: due time (unix ms, or [`ARMED`] with the delay) and the message.
fn decode_will(v: &[u8]) -> Option<(Message, SystemTime)> {
    let due = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let at = if due & ARMED != 0 {
        SystemTime::now() + Duration::from_secs(due & !ARMED)
    } else {
        UNIX_EPOCH + Duration::from_millis(due)
    };
    Some((decode_message(v.get(8..)?)?, at))
}

pub(super) fn decode_delivery(id: u64, v: &[u8]) -> Option<RestoredDelivery> {
    let qos = QoS::try_from(*v.first()?).ok()?;
    let retain = *v.get(1)? != 0;
    let n = usize::from(u16::from_le_bytes(v.get(2..4)?.try_into().ok()?));
    let ids = v.get(4..4 + 4 * n)?;
    let sub_ids = ids
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    let msg = decode_message(v.get(4 + 4 * n..)?)?;
    Some(RestoredDelivery {
        id,
        msg,
        qos,
        retain,
        sub_ids,
        sent: None,
    })
}

pub(super) fn encode_options(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

pub(super) fn decode_options(b: u8) -> Option<SubscriptionOptions> {
    use switchboard_mqtt::RetainHandling;
    Some(SubscriptionOptions {
        qos: QoS::try_from(b & 3).ok()?,
        no_local: b & 4 != 0,
        retain_as_published: b & 8 != 0,
        retain_handling: match (b >> 4) & 3 {
            0 => RetainHandling::SendAtSubscribe,
            1 => RetainHandling::SendAtSubscribeIfNew,
            2 => RetainHandling::DoNotSend,
            _ => return None,
        },
    })
}

/// Appends a message record: expiry (unix ms, 0: none), then a v5 PUBLISH.
pub(super) fn encode_message(msg: &Message, out: &mut Vec<u8>) {
    let expires = msg
        .expires_at
        .map_or(0, |at| unix_ms(instant_to_wall(at)).max(1));
    out.extend_from_slice(&expires.to_le_bytes());
    let pid = PacketId::MIN;
    let publish = Publish {
        dup: false,
        qos_pid: match msg.qos {
            QoS::AtMostOnce => QosPid::AtMostOnce,
            QoS::AtLeastOnce => QosPid::AtLeastOnce(pid),
            QoS::ExactlyOnce => QosPid::ExactlyOnce(pid),
        },
        retain: msg.retain,
        topic: msg.topic.clone(),
        properties: msg.properties.clone(),
        payload: msg.payload.clone(),
    };
    let mut buf = BytesMut::new();
    if let Err(err) = Packet::Publish(publish).encode(ProtocolVersion::V5, &mut buf) {
        tracing::error!(topic = %msg.topic, "cannot encode a message for the store: {err}");
    }
    out.extend_from_slice(&buf);
}

/// Reads a message record back.
pub(super) fn decode_message(v: &[u8]) -> Option<Message> {
    let expires = u64::from_le_bytes(v.get(..8)?.try_into().ok()?);
    let mut buf = BytesMut::from(v.get(8..)?);
    let mut decoder = Decoder::new(u32::MAX);
    decoder.set_version(ProtocolVersion::V5);
    let Ok(Some(Packet::Publish(p))) = decoder.decode(&mut buf) else {
        return None;
    };
    Some(Message {
        qos: p.qos_pid.qos(),
        topic: p.topic,
        payload: p.payload,
        retain: p.retain,
        properties: p.properties,
        expires_at: (expires != 0)
            .then(|| wall_to_instant(UNIX_EPOCH + Duration::from_millis(expires))),
        origin: 0,
    })
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The wall-clock time of a monotonic instant.
pub(crate) fn instant_to_wall(at: Instant) -> SystemTime {
    let (now_i, now_w) = (Instant::now(), SystemTime::now());
    if at >= now_i {
        now_w + (at - now_i)
    } else {
        now_w.checked_sub(now_i - at).unwrap_or(UNIX_EPOCH)
    }
}

/// The monotonic instant of a wall-clock time (now when it cannot be represented).
pub(crate) fn wall_to_instant(at: SystemTime) -> Instant {
    let (now_i, now_w) = (Instant::now(), SystemTime::now());
    match at.duration_since(now_w) {
        Ok(ahead) => now_i + ahead,
        Err(behind) => now_i.checked_sub(behind.duration()).unwrap_or(now_i),
    }
}

/// The broker's own `$SYS/` statistics are republished at start, never stored.
pub(super) fn is_sys(topic: &str) -> bool {
    topic.starts_with("$SYS/")
}

/// `switchboard.redb.corrupt-<unix seconds>` next to `path`.
pub(super) fn aside_name(path: &Path) -> PathBuf {
    let secs = unix_ms(SystemTime::now()) / 1000;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".corrupt-{secs}"));
    path.with_file_name(name)
}
