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

/// The writer thread: commits everything queued, batch after batch, until closed.
fn write_loop(
    db: &Database,
    shared: &Shared,
    interval: Option<Duration>,
    path: &Path,
    max_bytes: u64,
) {
    let mut last_size_check: Option<Instant> = None;
    loop {
        let (ops, last, closed) = {
            let mut q = lock(&shared.queue);
            while q.ops.is_empty() && !q.closed {
                q = shared
                    .wake
                    .wait(q)
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            if let Some(interval) = interval
                && !q.closed
            {
                drop(q);
                std::thread::sleep(interval);
                q = lock(&shared.queue);
            }
            (std::mem::take(&mut q.ops), q.seq, q.closed)
        };
        if !ops.is_empty() {
            let check_size =
                max_bytes > 0 && last_size_check.is_none_or(|at| at.elapsed() >= SIZE_CHECK);
            if check_size {
                last_size_check = Some(Instant::now());
            }
            let started = Instant::now();
            let applied = apply(db, ops, check_size);
            if let Some(observe) = shared.observe.get() {
                observe(started.elapsed());
            }
            match applied {
                Ok(Some(size)) => {
                    let full = size >= max_bytes;
                    if full && !shared.full.swap(true, Ordering::Relaxed) {
                        tracing::error!(
                            "store {} reached its size cap ({size} of {max_bytes} bytes): new durable messages are refused until space is freed",
                            path.display()
                        );
                    } else if !full && shared.full.swap(false, Ordering::Relaxed) {
                        tracing::warn!("store {} is below its size cap again", path.display());
                    }
                }
                Ok(None) => {}
                Err(err) => tracing::error!(
                    "store {}: commit failed, these changes are lost: {err}",
                    path.display()
                ),
            }
        }
        shared.committed.send_replace(last);
        if closed {
            return;
        }
    }
}

/// Applies `ops` in one transaction and commits it. Gives the store's size when `size`.
fn apply(db: &Database, ops: Vec<Op>, size: bool) -> Result<Option<u64>, redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut retained = txn.open_table(RETAINED)?;
        let mut sessions = txn.open_table(SESSIONS)?;
        let mut subs = txn.open_table(SUBS)?;
        let mut messages = txn.open_table(MESSAGES)?;
        let mut inflight = txn.open_table(INFLIGHT)?;
        let mut incoming = txn.open_table(INCOMING)?;
        let mut wills = txn.open_table(WILLS)?;
        for op in ops {
            match op {
                Op::RetainSet(topic, value) => {
                    retained.insert(topic.as_str(), value.as_slice())?;
                }
                Op::RetainDel(topic) => {
                    retained.remove(topic.as_str())?;
                }
                Op::SessionOpen { cid, expiry, clean } => {
                    let cid = cid.as_str();
                    if clean {
                        end_session(
                            cid,
                            &mut sessions,
                            &mut messages,
                            &mut inflight,
                            &mut incoming,
                            &mut wills,
                        )?;
                        remove_subs(cid, &mut subs)?;
                    }
                    sessions.insert(cid, session_value(expiry, 0).as_slice())?;
                }
                Op::SessionDetach { cid, expiry, at_ms } => {
                    sessions.insert(cid.as_str(), session_value(expiry, at_ms).as_slice())?;
                }
                Op::SessionEnd(cid) => {
                    end_session(
                        &cid,
                        &mut sessions,
                        &mut messages,
                        &mut inflight,
                        &mut incoming,
                        &mut wills,
                    )?;
                    remove_subs(&cid, &mut subs)?;
                }
                Op::Sub { cid, filter, value } => {
                    subs.insert((cid.as_str(), filter.as_str()), value.as_slice())?;
                }
                Op::Unsub { cid, filter } => {
                    subs.remove((cid.as_str(), filter.as_str()))?;
                }
                Op::Queued { cid, id, value } => {
                    messages.insert((cid.as_str(), id), value.as_slice())?;
                }
                Op::Sent {
                    cid,
                    id,
                    pid,
                    released,
                } => {
                    inflight.insert((cid.as_str(), id), (pid, u8::from(released)))?;
                }
                Op::Acked { cid, id } => {
                    messages.remove((cid.as_str(), id))?;
                    inflight.remove((cid.as_str(), id))?;
                }
                Op::In { cid, pid } => {
                    incoming.insert((cid.as_str(), pid), ())?;
                }
                Op::InRel { cid, pid } => {
                    incoming.remove((cid.as_str(), pid))?;
                }
                Op::Will { cid, value } => {
                    wills.insert(cid.as_str(), value.as_slice())?;
                }
                Op::WillClear(cid) => {
                    wills.remove(cid.as_str())?;
                }
            }
        }
    }
    let size = if size {
        let stats = txn.stats()?;
        Some(stats.allocated_pages() * stats.page_size() as u64)
    } else {
        None
    };
    txn.commit()?;
    Ok(size)
}

type Tbl<'t, K, V> = redb::Table<'t, K, V>;

/// Deletes everything of `cid` but its subscriptions.
fn end_session(
    cid: &str,
    sessions: &mut Tbl<'_, &'static str, &'static [u8]>,
    messages: &mut Tbl<'_, (&'static str, u64), &'static [u8]>,
    inflight: &mut Tbl<'_, (&'static str, u64), (u16, u8)>,
    incoming: &mut Tbl<'_, (&'static str, u16), ()>,
    wills: &mut Tbl<'_, &'static str, &'static [u8]>,
) -> Result<(), redb::Error> {
    sessions.remove(cid)?;
    wills.remove(cid)?;
    messages.retain_in((cid, 0)..=(cid, u64::MAX), |_, _| false)?;
    inflight.retain_in((cid, 0)..=(cid, u64::MAX), |_, _| false)?;
    incoming.retain_in((cid, 0)..=(cid, u16::MAX), |_, _| false)?;
    Ok(())
}

/// Deletes the subscriptions of `cid`.
fn remove_subs(
    cid: &str,
    subs: &mut Tbl<'_, (&'static str, &'static str), &'static [u8]>,
) -> Result<(), redb::Error> {
    let mut filters = Vec::new();
    for entry in subs.range((cid, "")..)? {
        let (key, _) = entry?;
        let (owner, filter) = key.value();
        if owner != cid {
            break;
        }
        filters.push(filter.to_owned());
    }
    for filter in filters {
        subs.remove((cid, filter.as_str()))?;
    }
    Ok(())
}

fn session_value(expiry: u32, at_ms: u64) -> [u8; 12] {
    let mut v = [0; 12];
    v[..4].copy_from_slice(&expiry.to_le_bytes());
    v[4..].copy_from_slice(&at_ms.to_le_bytes());
    v
}

/// Why the store could not be opened.
#[derive(Debug)]
enum OpenError {
    /// Another process holds it.
    Locked(redb::DatabaseError),
    /// Not a redb file, corrupt, or unreadable content.
    Unreadable(String),
}

fn open_and_read(path: &Path) -> Result<(Database, Restored), OpenError> {
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
fn init(db: &Database) -> Result<(), redb::Error> {
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
fn read_all(db: &Database) -> Result<Restored, redb::Error> {
    let mut expired = Vec::new();
    let restored = read_tables(db, &mut expired)?;
    if !expired.is_empty() {
        apply(db, expired.into_iter().map(Op::RetainDel).collect(), false)?;
    }
    Ok(restored)
}

/// Reads every table; topics of expired retained messages go to `expired`.
fn read_tables(db: &Database, expired: &mut Vec<String>) -> Result<Restored, redb::Error> {
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
            let v = value.value();
            let at = v
                .get(..8)
                .and_then(|b| b.try_into().ok())
                .map(|b| UNIX_EPOCH + Duration::from_millis(u64::from_le_bytes(b)));
            match (at, v.get(8..).and_then(decode_message)) {
                (Some(at), Some(msg)) => session.will = Some((msg, at)),
                _ => tracing::error!(client_id = cid, "undecodable delayed will skipped"),
            }
        }
        restored.sessions.push(session);
    }
    Ok(restored)
}

fn decode_delivery(id: u64, v: &[u8]) -> Option<RestoredDelivery> {
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

fn encode_options(o: &SubscriptionOptions) -> u8 {
    (o.qos as u8)
        | u8::from(o.no_local) << 2
        | u8::from(o.retain_as_published) << 3
        | (o.retain_handling as u8) << 4
}

fn decode_options(b: u8) -> Option<SubscriptionOptions> {
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
fn encode_message(msg: &Message, out: &mut Vec<u8>) {
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
fn decode_message(v: &[u8]) -> Option<Message> {
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
fn is_sys(topic: &str) -> bool {
    topic.starts_with("$SYS/")
}

/// `switchboard.redb.corrupt-<unix seconds>` next to `path`.
fn aside_name(path: &Path) -> PathBuf {
    let secs = unix_ms(SystemTime::now()) / 1000;
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".corrupt-{secs}"));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use switchboard_mqtt::{Bytes, Properties};

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
