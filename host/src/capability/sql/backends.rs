//! The server processes behind a Postgres pool's connections, so that a
//! statement the host gave up on can be stopped.
//!
//! Closing the connection stops a statement only while the server checks
//! for a closed client, and a statement bounded only by `statement_timeout`
//! stops only while that holds: a batch may lift both for its transaction
//! (`set_config(…, true)`), even through dynamic SQL no text check sees.
//! Stopping it then takes `pg_terminate_backend` and the process's pid,
//! which sqlx keeps to itself. So each connection reports its process (pid
//! and start time, which together name one process even after its pid is
//! reused) when it connects, and when the host gives up on a call it ends
//! this pool's statements that have run past the statement timeout: none
//! of them can be a statement the host still waits for.

use sqlx::postgres::{PgConnection, PgPool};
use std::sync::Mutex;
use std::time::Duration;

/// One server process: its pid and its start time (as the server prints it).
type Process = (i32, String);

/// The processes of one pool's connections, open or lately closed.
#[derive(Debug)]
pub struct Backends {
    known: Mutex<Vec<Process>>,
    /// How many processes may be recorded before the closed ones are pruned.
    prune_past: usize,
}

impl Backends {
    /// For a pool of at most `max_connections`.
    pub fn new(max_connections: u32) -> Backends {
        Backends {
            known: Mutex::default(),
            prune_past: 2 * max_connections as usize + 16,
        }
    }

    /// Records the process behind `conn`, a connection just opened; past
    /// `prune_past`, forgets the processes that have ended.
    pub async fn register(&self, conn: &mut PgConnection) -> Result<(), sqlx::Error> {
        let me: Process = sqlx::query_as(
            "SELECT pid, backend_start::text FROM pg_stat_activity WHERE pid = pg_backend_pid()",
        )
        .fetch_one(&mut *conn)
        .await?;
        let known = {
            let mut known = self.known.lock().unwrap();
            known.push(me);
            if known.len() <= self.prune_past {
                return Ok(());
            }
            known.clone()
        };
        let seen = survey(&mut *conn, &known, None).await?;
        self.forget_ended(&known, &seen);
        Ok(())
    }

    /// Ends every statement of this pool's processes that has run longer
    /// than `limit`, and returns how many it ended.
    pub async fn stop_past(&self, pool: &PgPool, limit: Duration) -> Result<usize, sqlx::Error> {
        let known = self.known.lock().unwrap().clone();
        if known.is_empty() {
            return Ok(0);
        }
        let mut conn = pool.acquire().await?;
        let seen = survey(&mut conn, &known, Some(limit)).await?;
        self.forget_ended(&known, &seen);
        Ok(seen.iter().filter(|(_, ended)| *ended).count())
    }

    /// Forgets the processes of `surveyed` that `seen` did not find running.
    fn forget_ended(&self, surveyed: &[Process], seen: &[(Process, bool)]) {
        let running = |process: &Process| seen.iter().any(|(p, ended)| p == process && !ended);
        self.known
            .lock()
            .unwrap()
            .retain(|process| !surveyed.contains(process) || running(process));
    }
}

/// Which of `known` still run, each with whether it was ended now: with
/// `stop`, those whose statement has run longer than that are ended.
async fn survey(
    conn: &mut PgConnection,
    known: &[Process],
    stop: Option<Duration>,
) -> Result<Vec<(Process, bool)>, sqlx::Error> {
    let (pids, starts): (Vec<i32>, Vec<String>) = known.iter().cloned().unzip();
    // CASE, not AND: only CASE promises the call is made only when the
    // condition holds (AND goes on past a NULL).
    let rows: Vec<(i32, String, bool)> = sqlx::query_as(
        "SELECT a.pid, a.backend_start::text, \
            CASE WHEN a.state = 'active' \
                  AND a.query_start < now() - make_interval(secs => $3) \
                 THEN pg_terminate_backend(a.pid) ELSE false END \
         FROM pg_stat_activity a \
         JOIN unnest($1::int4[], $2::text[]) AS ours(pid, started) \
           ON a.pid = ours.pid AND a.backend_start::text = ours.started",
    )
    .bind(pids)
    .bind(starts)
    .bind(stop.map(|limit| limit.as_secs_f64()))
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(pid, started, ended)| ((pid, started), ended))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::Connection;

    const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";

    #[tokio::test]
    async fn closed_connections_are_forgotten_and_only_overdue_statements_end() {
        let backends = Backends::new(1);
        for _ in 0..30 {
            let mut conn = PgConnection::connect(POSTGRES).await.unwrap();
            backends.register(&mut conn).await.unwrap();
            conn.close().await.unwrap();
        }
        // Pruned as it went: never more than the limit and the one just added.
        assert!(backends.known.lock().unwrap().len() <= backends.prune_past + 1);

        // Two open connections: one sleeping past the limit, one just begun.
        let pool = PgPool::connect(POSTGRES).await.unwrap();
        let mut long = PgConnection::connect(POSTGRES).await.unwrap();
        let mut short = PgConnection::connect(POSTGRES).await.unwrap();
        backends.register(&mut long).await.unwrap();
        backends.register(&mut short).await.unwrap();
        let long =
            tokio::spawn(
                async move { sqlx::query("SELECT pg_sleep(30)").execute(&mut long).await },
            );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let short =
            tokio::spawn(
                async move { sqlx::query("SELECT pg_sleep(3)").execute(&mut short).await },
            );
        tokio::time::sleep(Duration::from_millis(200)).await;
        let ended = backends
            .stop_past(&pool, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(ended, 1);
        assert!(long.await.unwrap().is_err(), "the overdue statement ended");
        assert!(short.await.unwrap().is_ok(), "the recent one ran on");
    }
}
