//! Group commit for writes into one mailbox: deliveries and IMAP APPENDs.
//!
//! Writes into one mailbox serialise on its row lock, and each must wait for the one ahead to
//! commit (an fsync) before it can take the next UID: one mailbox takes one commit per message
//! however many callers write at once. Here the writes that arrive for a mailbox while one is
//! being written queue up, and the queue goes to the database next as one transaction: one
//! commit for all of them. A write with nothing ahead of it is written at once, so an
//! uncontended mailbox waits for nothing.
//!
//! Each group is drained by a task of its own rather than by the caller that opened it: a
//! caller that goes away (a cancelled RPC) must not strand the writes queued behind it.
//!
//! A write is tried as its common case first, one PostgreSQL statement that writes nothing
//! where it does not apply; what it leaves goes down the write's general path, which also tells
//! why it cannot store the message. SQLite takes the general path only: its one writer
//! connection leaves no lock queue for a group to replace.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, MutexGuard};

use sqlx::postgres::{PgArguments, PgDatabaseError, PgPool, PgRow, Postgres};
use sqlx::query::Query;
use tokio::sync::oneshot;
use tracing::{Instrument as _, Span};

use super::Stored;
use crate::store::postgres::mailbox_row;
use crate::store::{LockedMailbox, Store, now};
use crate::{Error, Result};

/// Most writes in one transaction; the rest wait for the next one.
const MAX_GROUP_MESSAGES: usize = 64;
/// Most body octets written in one transaction (a group always takes at least one write).
const MAX_GROUP_OCTETS: u64 = 16 * 1024 * 1024;

/// PostgreSQL's `unique_violation` and `not_null_violation` SQLSTATEs.
const UNIQUE_VIOLATION: &str = "23505";
const NOT_NULL_VIOLATION: &str = "23502";

/// A write that can share a transaction with others of its kind into the same mailbox.
pub(in crate::store) trait GroupedWrite: Send + Sync + Sized + 'static {
    /// The mailbox the write goes to, as its callers name it.
    type Key: Clone + Eq + Hash + Send + 'static;
    type Answer: Send + 'static;

    fn key(&self) -> Self::Key;
    /// The size of the message it stores.
    fn octets(&self) -> u64;
    /// The common case as one PostgreSQL statement.
    fn common_case(&self, now: i64) -> Result<Query<'_, Postgres, PgArguments>>;
    /// The message the write stored as `uid` in `folder`, as its event tells it.
    fn stored(&self, folder: &LockedMailbox, uid: u32) -> Stored;
    /// The answer to the write stored as `uid` in `folder`.
    fn answer(folder: &LockedMailbox, uid: u32) -> Self::Answer;
    /// Any case, in a transaction of its own that tells why when it cannot store the message.
    fn general(&self, store: &Store) -> impl Future<Output = Result<Self::Answer>> + Send;
}

/// A write waiting for its group: the write, where its answer goes, and its caller's span.
struct Queued<W: GroupedWrite> {
    write: W,
    reply: oneshot::Sender<Result<W::Answer>>,
    span: Span,
}

type Waiting<W> = Vec<Queued<W>>;

/// The groups being drained, each with the writes waiting for its next transaction.
pub(in crate::store) struct Groups<W: GroupedWrite> {
    waiting: Arc<Mutex<HashMap<W::Key, Waiting<W>>>>,
}

impl<W: GroupedWrite> Default for Groups<W> {
    fn default() -> Self {
        Groups { waiting: Arc::default() }
    }
}

impl<W: GroupedWrite> Clone for Groups<W> {
    fn clone(&self) -> Self {
        Groups { waiting: self.waiting.clone() }
    }
}

impl<W: GroupedWrite> Groups<W> {
    fn lock(&self) -> MutexGuard<'_, HashMap<W::Key, Waiting<W>>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one call.
        self.waiting.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Up to a group's worth of the writes waiting under `key`, oldest first; none (and the
    /// group closed) when nothing waits.
    fn next_group(&self, key: &W::Key) -> Waiting<W> {
        let mut waiting = self.lock();
        let Some(queue) = waiting.get_mut(key) else { return Vec::new() };
        let mut octets = 0;
        let take = queue
            .iter()
            .take(MAX_GROUP_MESSAGES)
            .take_while(|queued| {
                octets += queued.write.octets();
                octets <= MAX_GROUP_OCTETS
            })
            .count()
            .max(1);
        let group: Waiting<W> = queue.drain(..take.min(queue.len())).collect();
        if group.is_empty() {
            waiting.remove(key);
        }
        group
    }
}

/// The drain task's hold on its group. Should the task end before the group is empty (a
/// panic, a runtime shutting down), dropping it closes the group: the writes still queued are
/// answered with an error (their reply senders dropped) instead of waiting forever, and the
/// next write opens a new group.
struct OpenGroup<W: GroupedWrite> {
    groups: Groups<W>,
    key: W::Key,
    /// Set once `next_group` found the queue empty and closed the group itself; a new group
    /// under the same key may be open by then and is not ours to close.
    closed: bool,
}

impl<W: GroupedWrite> OpenGroup<W> {
    async fn drain(mut self, store: Store) {
        loop {
            let next = self.groups.next_group(&self.key);
            if next.is_empty() {
                self.closed = true;
                return;
            }
            // The group is written in the trace of its first write, so the change events it
            // publishes continue that trace (an uncontended write is a group of its own).
            let span = next[0].span.clone();
            let (writes, replies): (Vec<W>, Vec<_>) =
                next.into_iter().map(|queued| (queued.write, queued.reply)).unzip();
            for (reply, result) in replies.into_iter().zip(store.write_all(writes).instrument(span).await) {
                // The caller may have gone; the write stands either way.
                let _ = reply.send(result);
            }
        }
    }
}

impl<W: GroupedWrite> Drop for OpenGroup<W> {
    fn drop(&mut self) {
        if !self.closed {
            self.groups.lock().remove(&self.key);
        }
    }
}

impl Store {
    /// One write in a transaction of its own.
    async fn write_one<W: GroupedWrite>(&self, write: &W) -> Result<W::Answer> {
        if let Some(pool) = self.db.postgres()
            && let Some((folder, uid)) = postgres_write_one(pool, write.common_case(now())?).await?
        {
            self.announce_added(&folder, &[write.stored(&folder, uid)]).await;
            return Ok(W::answer(&folder, uid));
        }
        write.general(self).await
    }

    /// Writes `writes` (into one mailbox, on PostgreSQL) with one commit where the common case
    /// allows, and answers each in order.
    async fn write_all<W: GroupedWrite>(&self, writes: Vec<W>) -> Vec<Result<W::Answer>> {
        let written = match self.db.postgres() {
            Some(pool) if writes.len() > 1 => {
                let now = now();
                let statements: Vec<_> = writes.iter().map(|write| write.common_case(now)).collect();
                postgres_write_all(pool, statements).await.ok()
            }
            _ => None,
        };
        let mut results = Vec::with_capacity(writes.len());
        match written {
            Some(written) => {
                let stored = writes.iter().zip(&written).filter_map(|(write, written)| {
                    written.as_ref().map(|(folder, uid)| (folder, write.stored(folder, *uid)))
                });
                self.announce_written(stored).await;
                for (write, written) in writes.iter().zip(written) {
                    results.push(match written {
                        Some((folder, uid)) => Ok(W::answer(&folder, uid)),
                        None => write.general(self).await,
                    });
                }
            }
            // A single write, or a group whose transaction rolled back (a concurrent change it
            // could not tell apart from the cases the general path explains, or a database
            // error): each write goes on its own and says for itself what went wrong.
            None => {
                for write in &writes {
                    results.push(self.write_one(write).await);
                }
            }
        }
        results
    }

    /// Announces committed writes, one event per run of messages into the same mailbox.
    async fn announce_written<'f>(&self, written: impl Iterator<Item = (&'f LockedMailbox, Stored)>) {
        let mut runs: Vec<(&LockedMailbox, Vec<Stored>)> = Vec::new();
        for (folder, stored) in written {
            match runs.last_mut() {
                // Later in the group means later in the mailbox: its state is the newer one.
                Some((last, messages)) if last.id == folder.id => {
                    *last = folder;
                    messages.push(stored);
                }
                _ => runs.push((folder, vec![stored])),
            }
        }
        for (folder, stored) in runs {
            self.announce_added(folder, &stored).await;
        }
    }

    /// Queues `write` behind the writes into the same mailbox being written, opening the group
    /// if there are none, and waits for its result. On SQLite it is written at once.
    pub(super) async fn write_grouped<W: GroupedWrite>(&self, groups: &Groups<W>, write: W) -> Result<W::Answer> {
        if self.db.postgres().is_none() {
            return self.write_one(&write).await;
        }
        let key = write.key();
        let (reply, answer) = oneshot::channel();
        let open = {
            let mut waiting = groups.lock();
            let queue = waiting.entry(key.clone());
            let open = matches!(queue, std::collections::hash_map::Entry::Vacant(_));
            queue.or_default().push(Queued { write, reply, span: Span::current() });
            open
        };
        if open {
            let group = OpenGroup { groups: groups.clone(), key, closed: false };
            tokio::spawn(group.drain(self.clone()));
        }
        answer.await.map_err(|_| Error::Internal("the write was abandoned by a failed group commit".into()))?
    }
}

/// One write's common-case statement (`DELIVER`, `APPEND`) on its own; the mailbox after
/// it and the message's UID, or `None` when nothing was written and the general path must
/// decide.
async fn postgres_write_one(
    pool: &PgPool,
    statement: Query<'_, Postgres, PgArguments>,
) -> Result<Option<(LockedMailbox, u32)>> {
    match statement.fetch_optional(pool).await {
        Ok(row) => row.as_ref().map(written).transpose(),
        Err(error) if left_to_general_path(&error) => Ok(None),
        Err(error) => Err(error.into()),
    }
}

/// The common-case statements of a group of writes in one transaction, so one commit for all:
/// for each the mailbox after it and the message's UID, or `None` when nothing was written for
/// it and the general path must decide. A statement that fails rolls the whole group back: the
/// caller then writes each on its own.
async fn postgres_write_all<'q>(
    pool: &PgPool,
    statements: Vec<Result<Query<'q, Postgres, PgArguments>>>,
) -> Result<Vec<Option<(LockedMailbox, u32)>>> {
    let mut tx = pool.begin().await?;
    let mut results = Vec::with_capacity(statements.len());
    for statement in statements {
        let row = statement?.fetch_optional(&mut *tx).await?;
        results.push(row.as_ref().map(written).transpose()?);
    }
    tx.commit().await?;
    Ok(results)
}

/// Whether `error` is one of the concurrent changes `DELIVER` and `APPEND` stop at without
/// writing.
fn left_to_general_path(error: &sqlx::Error) -> bool {
    let sqlx::Error::Database(error) = error else { return false };
    matches!(
        error.try_downcast_ref::<PgDatabaseError>().map(PgDatabaseError::code),
        Some(UNIQUE_VIOLATION | NOT_NULL_VIOLATION)
    )
}

/// The mailbox and UID a `DELIVER` row reports.
fn written(row: &PgRow) -> Result<(LockedMailbox, u32)> {
    let folder = mailbox_row(row)?;
    let uid = folder.uid_next - 1;
    Ok((folder, uid))
}
