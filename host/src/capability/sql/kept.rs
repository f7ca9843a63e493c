//! Postgres connections handed from one call straight to the next.
//!
//! sqlx pings every connection it takes back into its pool, to flush what a
//! call cancelled half way may have left on it (a statement still running,
//! a rollback not yet sent), and has no option to skip it. That is a round
//! trip to Postgres per call, and under load about 15% of the server's
//! time (`bench/sql`). A call that finished cleanly (every row read, no
//! error, no session change) left nothing to flush, so its connection goes
//! straight to the next call waiting for one, or is kept for the next call
//! to come. Every other connection goes back through sqlx as before.
//!
//! A call waits for a connection from both sides: one handed on here, or
//! one from sqlx's pool (which opens a new one while it is below
//! `max_connections`). Whoever waits on the pool alone (the kv store,
//! migrations) must not wait for connections kept here: one is kept idle
//! only while sqlx has a connection to spare, else it goes back to sqlx,
//! and one release in [`GIVE_BACK_EVERY`] goes back all the same, even
//! while plugins keep every connection busy handing it on. A
//! connection idle past [`TRUSTED_IDLE`] goes back (sqlx then pings it), and
//! so does one handed on for [`MAX_KEPT_FOR`], so sqlx's idle timeout and
//! connection lifetime still apply.
//!
//! A plugin's statements may leave its session changed in ways no check of
//! their text can foresee (a function that runs `SET ROLE`, a temporary
//! table, an advisory lock, a transaction left open). So a connection is
//! handed from one plugin to another only after [`reset`], and every
//! connection a plugin used is reset before it goes back to sqlx, for the
//! kv store, migrations and other plugins. Calls of the same plugin pass it
//! on as it is.

use super::TRUSTED_IDLE;
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a connection may pass from call to call without going back
/// through sqlx, which checks its lifetime.
const MAX_KEPT_FOR: Duration = Duration::from_secs(60);

/// One release in this many goes back through sqlx's pool. Each costs a
/// reset and sqlx's ping (two round trips, measured at up to a third of
/// the throughput of `bench/sql` on Postgres at one in 8); whoever waits on
/// the pool alone still gets a connection within a few dozen calls.
const GIVE_BACK_EVERY: u64 = 32;

/// The connections of one Postgres pool between calls.
#[derive(Debug, Default)]
pub struct Kept {
    state: Mutex<State>,
    /// Calls that took a handed-on connection, and calls that took one
    /// from sqlx.
    reused: AtomicU64,
    acquired: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Connections no call waited for, the last kept at the end.
    idle: Vec<Idle>,
    /// Calls waiting for a connection, first come first.
    waiting: VecDeque<oneshot::Sender<Taken>>,
    releases: u64,
}

#[derive(Debug)]
struct Idle {
    taken: Taken,
    since: Instant,
}

/// A connection taken for one call; [`Kept::keep`] it when the call
/// finished cleanly, or drop it to hand it back to sqlx (reset first, in
/// the background, when a plugin used it).
#[derive(Debug)]
pub struct Taken {
    /// `None` only once dropped.
    conn: Option<PoolConnection<Postgres>>,
    /// When it came from sqlx.
    first: Instant,
    /// The plugin whose call used it last; `None` while it is as sqlx
    /// handed it out.
    used_by: Option<Arc<str>>,
    /// Closed rather than pooled when dropped.
    closing: bool,
}

impl Taken {
    fn new(conn: PoolConnection<Postgres>) -> Taken {
        Taken {
            conn: Some(conn),
            first: Instant::now(),
            used_by: None,
            closing: false,
        }
    }

    /// The connection.
    pub fn conn(&mut self) -> &mut PgConnection {
        self.conn.as_mut().expect("a connection until dropped")
    }

    /// Marks it used by a call of `plugin`, and whether a call of another
    /// plugin used it before (so the call must [`reset`] it first).
    pub fn use_for(&mut self, plugin: &Arc<str>) -> bool {
        let other = self.used_by.as_ref().is_some_and(|last| last != plugin);
        self.used_by = Some(plugin.clone());
        other
    }

    /// Closes it when dropped instead of pooling it.
    pub fn close(&mut self) {
        self.closing = true;
        if let Some(conn) = self.conn.as_mut() {
            conn.close_on_drop();
        }
    }
}

impl Drop for Taken {
    /// Back to sqlx: as it is if no plugin used it, else reset first, off
    /// the caller's path; one that cannot be reset is closed.
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if self.closing || self.used_by.is_none() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            conn.close_on_drop();
            return;
        };
        runtime.spawn(async move {
            // A reset first reads what the call left coming; one that takes
            // longer than a reset should is given up, with the connection.
            match tokio::time::timeout(RESET_LIMIT, reset(&mut conn)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => conn.close_on_drop(),
            }
        });
    }
}

/// How long a connection going back to sqlx may take to be reset.
const RESET_LIMIT: Duration = Duration::from_secs(5);

/// Puts a session back as a new connection has it, as Postgres's
/// `DISCARD ALL` does, but keeps the statements sqlx prepared (`DEALLOCATE
/// ALL` would leave its statement cache naming statements that are gone).
/// One round trip; `ROLLBACK` first, so it works in a transaction a call
/// left open or failed. The notice a `ROLLBACK` outside a transaction gives
/// is below the connection's `client_min_messages` and never sent.
pub async fn reset(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    const RESET: &str = "ROLLBACK; CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
        UNLISTEN *; SELECT pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";
    // `RESET ALL` undoes what the pool set when it connected: set again in
    // the same round trip.
    static RESET_WATCHED: LazyLock<String> =
        LazyLock::new(|| format!("{RESET}; {}", super::WATCH_CLIENT));
    let sql = if super::watches_client(conn) {
        RESET_WATCHED.as_str()
    } else {
        RESET
    };
    // Text without parameters goes as a simple query: several statements.
    sqlx::Executor::execute(&mut *conn, sql).await?;
    Ok(())
}

/// What `/stats` shows of one Postgres database's connections.
#[derive(Debug, serde::Serialize)]
pub struct Counts {
    pub calls_on_kept_connections: u64,
    pub calls_on_pool_connections: u64,
}

impl Kept {
    /// A connection for one call: the one kept last, else the first one
    /// handed on or from `pool`, whichever comes first.
    pub async fn take(&self, pool: &PgPool) -> Result<Taken, sqlx::Error> {
        // One look under the lock: the idle connections, else a place in
        // line, so a connection kept after the look finds this call waiting.
        let (stale, receiver) = {
            let mut state = self.lock();
            let stale = match state.idle.pop() {
                Some(last) if last.since.elapsed() <= TRUSTED_IDLE => {
                    self.reused.fetch_add(1, Ordering::Relaxed);
                    return Ok(last.taken);
                }
                // Kept before the last one, the rest are stale too.
                Some(last) => {
                    let mut stale = std::mem::take(&mut state.idle);
                    stale.push(last);
                    stale
                }
                None => Vec::new(),
            };
            // While sqlx can open a connection for this call, it is waited
            // for alone: a connection handed on meanwhile would cancel its
            // opening.
            if has_room(pool) {
                (stale, None)
            } else {
                let (sender, receiver) = oneshot::channel();
                state.waiting.retain(|waiter| !waiter.is_closed());
                state.waiting.push_back(sender);
                (stale, Some(receiver))
            }
        };
        // Dropped outside the lock: each drop hands its connection to sqlx.
        drop(stale);
        let Some(mut receiver) = receiver else {
            return self.acquire(pool).await;
        };
        tokio::select! {
            biased;
            Ok(taken) = &mut receiver => {
                self.reused.fetch_add(1, Ordering::Relaxed);
                Ok(taken)
            }
            conn = pool.acquire() => {
                // A connection handed on at the same moment is passed on.
                receiver.close();
                if let Ok(taken) = receiver.try_recv() {
                    self.keep(taken, pool);
                }
                self.acquired(conn)
            }
        }
    }

    /// A connection from sqlx alone.
    async fn acquire(&self, pool: &PgPool) -> Result<Taken, sqlx::Error> {
        let conn = pool.acquire().await;
        self.acquired(conn)
    }

    fn acquired(
        &self,
        conn: Result<PoolConnection<Postgres>, sqlx::Error>,
    ) -> Result<Taken, sqlx::Error> {
        self.acquired.fetch_add(1, Ordering::Relaxed);
        Ok(Taken::new(conn?))
    }

    /// Hands the connection of a call that finished cleanly to the first
    /// call waiting, or keeps it for the next while `pool` could serve a
    /// caller of its own at once; else, and now and then all the same, it
    /// goes back to sqlx (see the module's notes).
    pub fn keep(&self, mut taken: Taken, pool: &PgPool) {
        if taken.first.elapsed() >= MAX_KEPT_FOR {
            return;
        }
        let mut state = self.lock();
        state.releases += 1;
        if state.releases.is_multiple_of(GIVE_BACK_EVERY) {
            drop(state);
            return;
        }
        while let Some(waiter) = state.waiting.pop_front() {
            match waiter.send(taken) {
                Ok(()) => return,
                // That call gave up waiting.
                Err(back) => taken = back,
            }
        }
        // Kept idle only while sqlx has a connection to spare (an idle one,
        // or room for one more): else whoever waits on the pool alone
        // would wait for it while it sits here.
        let spare = pool.num_idle() > 0 || has_room(pool);
        if spare {
            state.idle.push(Idle {
                taken,
                since: Instant::now(),
            });
        }
    }

    /// How many calls took a kept connection and how many one from sqlx.
    pub fn counts(&self) -> Counts {
        Counts {
            calls_on_kept_connections: self.reused.load(Ordering::Relaxed),
            calls_on_pool_connections: self.acquired.load(Ordering::Relaxed),
        }
    }

    /// Hands every connection idle past [`TRUSTED_IDLE`] back to sqlx, each
    /// second while `kept` lives, so a quiet server keeps none out of the
    /// pool's reach (its idle timeout, its lifetime, its `close`).
    pub fn give_back_idle(kept: std::sync::Weak<Kept>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(TRUSTED_IDLE);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(kept) = kept.upgrade() else { return };
                let stale = {
                    let mut state = kept.lock();
                    // Oldest first: the stale ones are a prefix.
                    let fresh = state
                        .idle
                        .iter()
                        .position(|idle| idle.since.elapsed() <= TRUSTED_IDLE)
                        .unwrap_or(state.idle.len());
                    state.idle.drain(..fresh).collect::<Vec<_>>()
                };
                drop(stale);
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether sqlx may open another connection in `pool`.
fn has_room(pool: &PgPool) -> bool {
    pool.size() < pool.options().get_max_connections()
}
