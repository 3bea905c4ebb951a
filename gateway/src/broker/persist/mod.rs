//! The durable [`Store`]: retained messages and persistent sessions in one redb file
//! (`<data_dir>/switchboard.redb` by default).
//!
//! # Group commit
//! Hooks never touch the file: they push an [`Op`] onto a queue (a `std::sync::Mutex<Vec>`,
//! held for the push only) and return its sequence number as the [`Ticket`]. One writer thread
//! owns the `Database`: it takes everything queued, applies it in one write transaction,
//! commits it (`Durability::Immediate`: fsync) and publishes the highest sequence number it
//! committed on a `watch` channel. A connection that acknowledged something durable awaits that
//! number before writing its acknowledgement, so many publishers share one fsync: the busier
//! the broker, the bigger each batch.
//!
//! In `batch` mode hooks return ticket 0 (no wait) and the writer sleeps `batch_interval_ms`
//! between commits, so an acknowledged message may be lost when the machine (or the process)
//! dies within that window.
//!
//! # Schema (all little-endian)
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` | `u64` (`schema` = 1) |
//! | `retained` | topic `&str` | message record |
//! | `sessions` | client id `&str` | expiry interval `u32`, expires-at unix ms `u64` (0: attached or never) |
//! | `subs` | (client id, filter) | options byte (v5 encoding), subscription id `u32` (0: none) |
//! | `messages` | (client id, delivery id `u64`) | QoS `u8`, retain `u8`, sub-id count `u16`, sub ids `u32`…, message record |
//! | `inflight` | (client id, delivery id) | (packet id `u16`, PUBREL pending `u8`) |
//! | `incoming` | (client id, packet id `u16`) | `()`: inbound QoS 2 awaiting PUBREL |
//! | `wills` | client id | due unix ms `u64`, message record |
//!
//! A message record is the message's expiry (unix ms `u64`, 0: none) followed by the message
//! encoded as an MQTT 5 PUBLISH packet (topic, QoS, retain, properties, payload), so every v5
//! property survives through the codec that already round-trips them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, ReadableDatabase as _, ReadableTable as _, TableDefinition};
use serde::Deserialize;
use switchboard_mqtt::{
    ByteString, BytesMut, Decoder, Packet, PacketId, ProtocolVersion, Publish, QoS, QosPid,
    SubscriptionOptions,
};

mod records;
mod writer;

use self::records::{
    OpenError, aside_name, encode_message, encode_options, is_sys, open_and_read, unix_ms,
};
use self::writer::write_loop;
use super::session::Message;
use super::store::{
    CommitObserver, QueuedMessage, Restored, RestoredDelivery, RestoredSession, Store, StoreError,
    Ticket,
};

/// The `[store]` table.
///
/// ```toml
/// [store]
/// durability = "fsync"      # "fsync" | "batch" | "none"
/// max_bytes = 1073741824    # 0: no cap
/// batch_interval_ms = 100   # batch mode only
/// # path = "/var/lib/switchboard/switchboard.redb"  # default: <data_dir>/switchboard.redb
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// What an acknowledgement promises; see [`DurabilityMode`].
    pub durability: DurabilityMode,
    /// Size cap of the store in bytes (0: none). When reached, an error is logged, QoS 1/2
    /// publications that would have to be stored (for a persistent session, or retained) are
    /// refused (v5: PUBACK/PUBREC 0x97 Quota exceeded; 3.1.1: the connection is closed without
    /// acknowledging, so the client publishes again later) and `store_rejected` is counted.
    /// Checked at most once a second, so the file can overshoot by one second of writes.
    pub max_bytes: u64,
    /// The store file; default `<data_dir>/switchboard.redb`.
    pub path: Option<PathBuf>,
    /// `batch` mode: the longest time between an acknowledgement and its commit, in ms.
    pub batch_interval_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            durability: DurabilityMode::Fsync,
            max_bytes: 1 << 30,
            path: None,
            batch_interval_ms: 100,
        }
    }
}

/// What the broker promises when it acknowledges a message that reached durable state.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityMode {
    /// PUBACK/PUBREC (and PUBCOMP, and a PUBLISH whose packet identifier was recorded) are
    /// written only after the change is committed with `fsync` (redb `Durability::Immediate`):
    /// an acknowledged message survives `kill -9` and power loss. Costs one fsync per group
    /// commit; concurrent publishers share it.
    #[default]
    Fsync,
    /// Acknowledge once the change is queued; the writer commits (with fsync) every
    /// `batch_interval_ms`. Survives clean shutdowns; a crash or power loss loses what was
    /// acknowledged in the last interval (and a QoS 2 exchange in that window can be repeated).
    Batch,
    /// No store at all: sessions and retained messages live in memory only.
    None,
}

const META: TableDefinition<'static, &str, u64> = TableDefinition::new("meta");
const RETAINED: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("retained");
const SESSIONS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("sessions");
const SUBS: TableDefinition<'static, (&str, &str), &[u8]> = TableDefinition::new("subs");
const MESSAGES: TableDefinition<'static, (&str, u64), &[u8]> = TableDefinition::new("messages");
const INFLIGHT: TableDefinition<'static, (&str, u64), (u16, u8)> = TableDefinition::new("inflight");
const INCOMING: TableDefinition<'static, (&str, u16), ()> = TableDefinition::new("incoming");
const WILLS: TableDefinition<'static, &str, &[u8]> = TableDefinition::new("wills");

const SCHEMA: u64 = 1;
/// Least time between two measurements of the store's size (they walk the b-trees).
/// In a will record's due time: the will of a live connection, due its delay (the low bits, in
/// seconds) after a restart.
const ARMED: u64 = 1 << 63;

/// Failed commits remembered one by one (see `Shared::lost`).
const LOST_RANGES: usize = 64;

const SIZE_CHECK: Duration = Duration::from_secs(1);

/// One change, queued for the writer thread.
#[derive(Debug)]
enum Op {
    RetainSet(String, Vec<u8>),
    RetainDel(String),
    SessionOpen {
        cid: String,
        expiry: u32,
        clean: bool,
    },
    SessionDetach {
        cid: String,
        expiry: u32,
        at_ms: u64,
    },
    SessionEnd(String),
    Sub {
        cid: String,
        filter: String,
        value: [u8; 5],
    },
    Unsub {
        cid: String,
        filter: String,
    },
    Queued {
        cid: String,
        id: u64,
        value: Vec<u8>,
    },
    Sent {
        cid: String,
        id: u64,
        pid: u16,
        released: bool,
    },
    Acked {
        cid: String,
        id: u64,
    },
    In {
        cid: String,
        pid: u16,
    },
    InRel {
        cid: String,
        pid: u16,
    },
    Will {
        cid: String,
        value: Vec<u8>,
    },
    WillClear(String),
}

/// The writer's inbox.
#[derive(Debug, Default)]
struct Queue {
    ops: Vec<Op>,
    /// Sequence number of the last op pushed.
    seq: u64,
    /// Set by [`RedbStore::close`]; later pushes are ignored.
    closed: bool,
}

/// State shared by the hooks and the writer thread.
struct Shared {
    /// std `Mutex`: held only to push an op or to swap the vector out, never across I/O.
    queue: Mutex<Queue>,
    /// Wakes the writer when the queue stops being empty or the store closes.
    wake: Condvar,
    /// Highest sequence number committed (`u64::MAX` once closed). Lives as long as the store.
    committed: tokio::sync::watch::Sender<u64>,
    /// Over `max_bytes`: new messages are refused.
    full: AtomicBool,
    /// Ticket ranges `(after, upto]` whose commit failed, newest last (at most [`LOST_RANGES`];
    /// older ones merge into the first, which errs on the side of refusing).
    lost: Mutex<Vec<(u64, u64)>>,
    /// Told how long each commit took; set once by the broker.
    observe: std::sync::OnceLock<CommitObserver>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("committed", &*self.committed.borrow())
            .field("full", &self.full)
            .finish_non_exhaustive()
    }
}

/// The redb-backed store. See the module documentation.
#[derive(Debug)]
pub struct RedbStore {
    shared: Arc<Shared>,
    /// Whether connections wait for commits (`fsync` mode).
    wait: bool,
    next_id: AtomicU64,
    /// The writer thread; joined by [`Store::close`].
    writer: Mutex<Option<JoinHandle<()>>>,
    /// What was read at open, until the broker takes it.
    restored: Mutex<Option<Restored>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl RedbStore {
    /// Opens (or creates) the store file at `path` and reads its content back. A file that is
    /// not a readable redb database is renamed `<name>.corrupt-<unix seconds>` with an error
    /// log naming it, and an empty store is created in its place.
    ///
    /// # Errors
    /// When the file cannot be created, or is locked by another process.
    pub fn open(path: &Path, config: &StoreConfig) -> anyhow::Result<Self> {
        let (db, restored) = match open_and_read(path) {
            Ok(pair) => pair,
            Err(OpenError::Locked(err)) => {
                anyhow::bail!(
                    "store {} is in use by another process: {err}",
                    path.display()
                )
            }
            Err(OpenError::Unreadable(err)) => {
                let aside = aside_name(path);
                tracing::error!(
                    "store {} is corrupt or unreadable ({err}); moved aside to {} and starting with an empty store",
                    path.display(),
                    aside.display()
                );
                std::fs::rename(path, &aside).map_err(|e| {
                    anyhow::anyhow!("cannot move corrupt store {} aside: {e}", path.display())
                })?;
                open_and_read(path)
                    .map_err(|e| anyhow::anyhow!("cannot create store {}: {e:?}", path.display()))?
            }
        };
        let max_id = restored
            .sessions
            .iter()
            .flat_map(|s| s.messages.iter().map(|m| m.id))
            .max()
            .unwrap_or(0);
        tracing::info!(
            "store {} opened: {} sessions, {} retained messages",
            path.display(),
            restored.sessions.len(),
            restored.retained.len()
        );
        let (committed, _) = tokio::sync::watch::channel(0);
        let shared = Arc::new(Shared {
            queue: Mutex::default(),
            wake: Condvar::new(),
            committed,
            full: AtomicBool::new(false),
            lost: Mutex::new(Vec::new()),
            observe: std::sync::OnceLock::new(),
        });
        let interval = match config.durability {
            DurabilityMode::Batch => Some(Duration::from_millis(config.batch_interval_ms)),
            _ => None,
        };
        let writer = {
            let shared = Arc::clone(&shared);
            let path = path.to_owned();
            let max_bytes = config.max_bytes;
            std::thread::Builder::new()
                .name("store-writer".into())
                .spawn(move || write_loop(&db, &shared, interval, &path, max_bytes))?
        };
        Ok(Self {
            shared,
            wait: config.durability == DurabilityMode::Fsync,
            next_id: AtomicU64::new(max_id + 1),
            writer: Mutex::new(Some(writer)),
            restored: Mutex::new(Some(restored)),
        })
    }

    fn push(&self, op: Op) -> Ticket {
        let (seq, first) = {
            let mut q = lock(&self.shared.queue);
            if q.closed {
                return 0;
            }
            let first = q.ops.is_empty();
            q.ops.push(op);
            q.seq += 1;
            (q.seq, first)
        };
        // The writer only sleeps on an empty queue: wake it for the first op only.
        if first {
            self.shared.wake.notify_one();
        }
        if self.wait { seq } else { 0 }
    }

    fn check_full(&self) -> Result<(), StoreError> {
        if self.shared.full.load(Ordering::Relaxed) {
            Err(StoreError::Full)
        } else {
            Ok(())
        }
    }
}

impl Drop for RedbStore {
    fn drop(&mut self) {
        self.close();
    }
}

impl Store for RedbStore {
    fn retained_set(&self, msg: &Message) -> Result<Ticket, StoreError> {
        if is_sys(&msg.topic) {
            return Ok(0);
        }
        self.check_full()?;
        let mut value = Vec::new();
        encode_message(msg, &mut value);
        Ok(self.push(Op::RetainSet(msg.topic.to_string(), value)))
    }

    fn retained_deleted(&self, topic: &str) -> Ticket {
        if is_sys(topic) {
            return 0;
        }
        self.push(Op::RetainDel(topic.to_owned()))
    }

    fn session_opened(&self, client_id: &str, expiry_interval: u32, clean: bool) -> Ticket {
        self.push(Op::SessionOpen {
            cid: client_id.to_owned(),
            expiry: expiry_interval,
            clean,
        })
    }

    fn session_detached(&self, client_id: &str, expiry_interval: u32) -> Ticket {
        let at_ms = if expiry_interval == u32::MAX {
            0
        } else {
            unix_ms(SystemTime::now() + Duration::from_secs(expiry_interval.into()))
        };
        self.push(Op::SessionDetach {
            cid: client_id.to_owned(),
            expiry: expiry_interval,
            at_ms,
        })
    }

    fn session_ended(&self, client_id: &str) -> Ticket {
        self.push(Op::SessionEnd(client_id.to_owned()))
    }

    fn subscribed(
        &self,
        client_id: &str,
        filter: &str,
        options: &SubscriptionOptions,
        id: Option<u32>,
    ) -> Ticket {
        let mut value = [0; 5];
        value[0] = encode_options(options);
        value[1..].copy_from_slice(&id.unwrap_or(0).to_le_bytes());
        self.push(Op::Sub {
            cid: client_id.to_owned(),
            filter: filter.to_owned(),
            value,
        })
    }

    fn unsubscribed(&self, client_id: &str, filter: &str) -> Ticket {
        self.push(Op::Unsub {
            cid: client_id.to_owned(),
            filter: filter.to_owned(),
        })
    }

    fn message_queued(
        &self,
        client_id: &str,
        id: u64,
        q: &QueuedMessage<'_>,
    ) -> Result<Ticket, StoreError> {
        self.check_full()?;
        let mut value = Vec::with_capacity(64 + q.msg.payload.len());
        value.push(q.qos as u8);
        value.push(u8::from(q.retain));
        let n = u16::try_from(q.sub_ids.len()).unwrap_or(u16::MAX);
        value.extend_from_slice(&n.to_le_bytes());
        for sid in &q.sub_ids[..usize::from(n)] {
            value.extend_from_slice(&sid.to_le_bytes());
        }
        encode_message(q.msg, &mut value);
        Ok(self.push(Op::Queued {
            cid: client_id.to_owned(),
            id,
            value,
        }))
    }

    fn message_sent(&self, client_id: &str, id: u64, pid: PacketId) -> Ticket {
        self.push(Op::Sent {
            cid: client_id.to_owned(),
            id,
            pid: pid.get(),
            released: false,
        })
    }

    fn message_released(&self, client_id: &str, id: u64, pid: PacketId) -> Ticket {
        self.push(Op::Sent {
            cid: client_id.to_owned(),
            id,
            pid: pid.get(),
            released: true,
        })
    }

    fn message_acked(&self, client_id: &str, id: u64) -> Ticket {
        self.push(Op::Acked {
            cid: client_id.to_owned(),
            id,
        })
    }

    fn qos2_received(&self, client_id: &str, pid: PacketId) -> Ticket {
        self.push(Op::In {
            cid: client_id.to_owned(),
            pid: pid.get(),
        })
    }

    fn qos2_released(&self, client_id: &str, pid: PacketId) -> Ticket {
        self.push(Op::InRel {
            cid: client_id.to_owned(),
            pid: pid.get(),
        })
    }

    fn will_delayed(&self, client_id: &str, will: &Message, at: SystemTime) -> Ticket {
        let mut value = unix_ms(at).to_le_bytes().to_vec();
        encode_message(will, &mut value);
        self.push(Op::Will {
            cid: client_id.to_owned(),
            value,
        })
    }

    fn will_armed(&self, client_id: &str, will: &Message, delay: u32) -> Ticket {
        let mut value = (ARMED | u64::from(delay)).to_le_bytes().to_vec();
        encode_message(will, &mut value);
        self.push(Op::Will {
            cid: client_id.to_owned(),
            value,
        })
    }

    fn will_cleared(&self, client_id: &str) -> Ticket {
        self.push(Op::WillClear(client_id.to_owned()))
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    fn committed(&self, ticket: Ticket) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        let mut rx = self.shared.committed.subscribe();
        Box::pin(async move {
            let _ = rx.wait_for(|c| *c >= ticket).await;
        })
    }

    fn lost(&self, from: Ticket, to: Ticket) -> bool {
        lock(&self.shared.lost)
            .iter()
            .any(|&(after, upto)| from <= upto && to > after)
    }

    fn on_commit(&self, observe: CommitObserver) {
        let _ = self.shared.observe.set(observe);
    }

    fn take_restored(&self) -> Restored {
        lock(&self.restored).take().unwrap_or_default()
    }

    fn close(&self) {
        lock(&self.shared.queue).closed = true;
        self.shared.wake.notify_one();
        if let Some(writer) = lock(&self.writer).take()
            && writer.join().is_err()
        {
            tracing::error!("the store writer thread panicked");
        }
        self.shared.committed.send_replace(u64::MAX);
    }
}

#[cfg(test)]
mod tests {
    use switchboard_mqtt::{Bytes, Properties};

    use super::records::{decode_message, decode_options};
    use super::*;
    use crate::config::Config;

    #[test]
    fn message_records_round_trip() {
        let properties = Properties {
            content_type: Some("application/json".into()),
            correlation_data: Some(Bytes::from_static(b"\x00\x01")),
            user_properties: vec![("a".into(), "b".into())],
            ..Properties::default()
        };
        let at = Instant::now() + Duration::from_secs(60);
        let msg = Message {
            topic: "plug/1".into(),
            payload: Bytes::from_static(b"{\"on\":true}"),
            qos: QoS::ExactlyOnce,
            retain: true,
            properties: properties.clone(),
            expires_at: Some(at),
            origin: 7,
        };
        let mut record = Vec::new();
        encode_message(&msg, &mut record);
        let back = decode_message(&record).unwrap();
        assert_eq!(back.topic, msg.topic);
        assert_eq!(back.payload, msg.payload);
        assert_eq!(back.qos, QoS::ExactlyOnce);
        assert!(back.retain);
        assert_eq!(back.properties, properties);
        let drift = back.expires_at.unwrap().max(at) - back.expires_at.unwrap().min(at);
        assert!(drift < Duration::from_millis(5), "{drift:?}");
        assert!(decode_message(&record[..record.len() - 1]).is_none());
        assert!(decode_message(b"short").is_none());
    }

    #[test]
    fn subscription_options_round_trip() {
        use switchboard_mqtt::RetainHandling;
        let o = SubscriptionOptions {
            qos: QoS::AtLeastOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: RetainHandling::DoNotSend,
        };
        assert_eq!(decode_options(encode_options(&o)), Some(o));
        assert_eq!(decode_options(0x30), None);
    }

    #[test]
    fn store_table_is_read() {
        let config = Config::from_toml(
            "[store]\ndurability = \"batch\"\nmax_bytes = 10\nbatch_interval_ms = 5\n",
        )
        .unwrap();
        assert_eq!(config.store.durability, DurabilityMode::Batch);
        assert_eq!(config.store.max_bytes, 10);
        assert_eq!(config.store.path, None);
        assert_eq!(
            Config::from_toml("").unwrap().store.durability,
            DurabilityMode::Fsync
        );
        assert!(Config::from_toml("[store]\ndurability = \"sometimes\"\n").is_err());
    }
}
