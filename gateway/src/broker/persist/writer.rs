//! The writer thread: applies queued changes in one write transaction per batch and commits.

use super::*;

/// The writer thread: commits everything queued, batch after batch, until closed.
pub(super) fn write_loop(
    db: &Database,
    shared: &Shared,
    interval: Option<Duration>,
    path: &Path,
    max_bytes: u64,
) {
    let mut last_size_check: Option<Instant> = None;
    // The last ticket of the previous batch.
    let mut previous = 0;
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
                Err(err) => {
                    tracing::error!(
                        "store {}: commit failed, these changes are lost and not acknowledged: {err}",
                        path.display()
                    );
                    // Recorded before `committed` moves past them, so every waiter sees it.
                    let mut lost = lock(&shared.lost);
                    lost.push((previous, last));
                    if lost.len() > LOST_RANGES {
                        let (merged, _) = lost.remove(0);
                        lost[0].0 = merged;
                    }
                }
            }
        }
        previous = last;
        shared.committed.send_replace(last);
        if closed {
            return;
        }
    }
}

/// Applies `ops` in one transaction and commits it. Gives the store's size when `size`.
pub(super) fn apply(db: &Database, ops: Vec<Op>, size: bool) -> Result<Option<u64>, redb::Error> {
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

pub(super) type Tbl<'t, K, V> = redb::Table<'t, K, V>;

/// Deletes everything of `cid` but its subscriptions.
pub(super) fn end_session(
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
pub(super) fn remove_subs(
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

pub(super) fn session_value(expiry: u32, at_ms: u64) -> [u8; 12] {
    let mut v = [0; 12];
    v[..4].copy_from_slice(&expiry.to_le_bytes());
    v[4..].copy_from_slice(&at_ms.to_le_bytes());
    v
}
