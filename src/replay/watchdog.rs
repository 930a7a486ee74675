//! The order watchdog: one task per side that breaks waits the replay itself
//! made impossible, so `--order commit` never hangs.
//!
//! Such a wait arises when two statements overlapped in the capture and the
//! replay ran them the other way round: session A's UPDATE got the row lock
//! first in the capture, B's got it first on replay. A's UPDATE now waits for
//! B's lock, while B's next statement waits for A's UPDATE (it had completed
//! before B's next statement started). PostgreSQL sees one backend waiting
//! for an idle transaction, not a deadlock, so it cannot break it.
//!
//! When the side's watermark has not moved for [`CHECK_AFTER`] while
//! sessions wait, the watchdog asks PostgreSQL (`pg_blocking_pids`, one
//! query on a connection of its own) whether the backend running the
//! earliest pending sync point is blocked, directly or through other replay
//! backends, by a backend whose session waits for order. If so it releases
//! that sync point at once ([`Release::Deadlock`]): the waiters go on, and
//! the lock is granted as it would be in any order. Whatever it cannot see
//! (a server without `pg_blocking_pids`, a session that never reaches its
//! sync point) is released after `--order-timeout` ([`Release::Timeout`]),
//! unless PostgreSQL shows the owner running its statement unblocked: a slow
//! statement is waited for, as it was in the capture. Either release is
//! counted and reported per side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::client::{Client, Extended};
use super::conn_opts::ConnOpts;
use super::order::{Release, SideOrder, Stall, SyncKey, task_key};

/// How long the watermark must stand still, with sessions waiting, before
/// PostgreSQL is asked.
pub const CHECK_AFTER: Duration = Duration::from_millis(5);
const TICK: Duration = Duration::from_millis(2);

pub struct Watchdog {
    pub side: &'static str,
    pub order: Arc<SideOrder>,
    pub opts: ConnOpts,
    /// Asks PostgreSQL about lock waits (off: timeouts only).
    pub detect: bool,
    pub timeout: Duration,
    pub stop: CancellationToken,
}

impl Watchdog {
    pub async fn run(self) {
        let mut monitor: Option<Client> = None;
        let mut detect = self.detect;
        let mut checked: Option<(SyncKey, Instant)> = None;
        // The stall's owner was last seen running unblocked: a slow
        // statement, not a stall, so the timeout waits for it.
        let mut working = false;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            let Some(stall) = self.order.stall() else {
                continue;
            };
            let age = stall.since.elapsed();
            if age < CHECK_AFTER {
                continue;
            }
            // Ask again for a new stall, or every 100 ms of the same one.
            let fresh = checked
                .is_none_or(|(k, at)| k != stall.key || at.elapsed() >= Duration::from_millis(100));
            if checked.is_some_and(|(k, _)| k != stall.key) {
                working = false;
            }
            if detect && fresh {
                checked = Some((stall.key, Instant::now()));
                match self.cycle(&mut monitor, &stall).await {
                    Ok(Owner::Cycle) => {
                        if self.order.release(stall.key, Release::Deadlock) {
                            tracing::info!(
                                side = self.side,
                                session = stall.owner,
                                waited_ms = age.as_millis() as u64,
                                "order: released a sync point whose session is blocked by a session waiting for order"
                            );
                        }
                        continue;
                    }
                    Ok(owner) => working = owner == Owner::Working,
                    Err(e) => {
                        tracing::warn!(
                            side = self.side,
                            error = %e,
                            "order: cannot ask the server about lock waits (pg_blocking_pids); stalls are released after --order-timeout only"
                        );
                        detect = false;
                        monitor = None;
                    }
                }
            }
            if age >= self.timeout && !working && self.order.release(stall.key, Release::Timeout) {
                tracing::warn!(
                    side = self.side,
                    session = stall.owner,
                    timeout_ms = self.timeout.as_millis() as u64,
                    "order: released a sync point after --order-timeout"
                );
            }
        }
        if let Some(c) = monitor {
            c.terminate().await;
        }
    }

    /// What PostgreSQL says of the owner of the earliest pending sync point.
    async fn cycle(&self, monitor: &mut Option<Client>, stall: &Stall) -> anyhow::Result<Owner> {
        let task = task_key(stall.owner, 0);
        let Some(owner) = stall.backends.iter().find(|b| b.task == task && b.pid != 0) else {
            return Ok(Owner::Unknown);
        };
        if owner.waiting {
            return Ok(Owner::Cycle);
        }
        let waiting: HashSet<i32> = stall
            .backends
            .iter()
            .filter(|b| b.waiting && b.pid != 0)
            .map(|b| b.pid)
            .collect();
        let pids: Vec<String> = stall
            .backends
            .iter()
            .filter(|b| b.pid != 0)
            .map(|b| b.pid.to_string())
            .collect();
        let sql = format!(
            "SELECT p, pg_blocking_pids(p) FROM unnest('{{{}}}'::int[]) AS p",
            pids.join(",")
        );
        if monitor.is_none() {
            *monitor = Some(Client::connect(&self.opts, &self.opts.user, &[]).await?);
        }
        let c = monitor.as_mut().expect("connected above");
        let x = Extended {
            sql: sql.as_bytes(),
            param_oids: &[],
            param_formats: &[],
            params: &[],
            result_formats: &[],
            max_rows: 0,
            named: false,
        };
        let rows = match c.rows_text(&x, usize::MAX).await {
            Ok(Ok((_, rows))) => rows,
            Ok(Err((code, msg))) => anyhow::bail!("{code}: {msg}"),
            Err(e) => {
                *monitor = None;
                return Err(e.into());
            }
        };
        let mut blockers: HashMap<i32, Vec<i32>> = HashMap::new();
        for r in rows {
            if let [Some(p), Some(list)] = &r[..] {
                if let Ok(p) = p.parse() {
                    blockers.insert(p, parse_int_array(list));
                }
            }
        }
        Ok(if reaches(owner.pid, &blockers, &waiting) {
            Owner::Cycle
        } else if owner.running && blockers.get(&owner.pid).is_none_or(|b| b.is_empty()) {
            Owner::Working
        } else {
            Owner::Unknown
        })
    }
}

/// What the watchdog learnt of a stall's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    /// Blocked, through replay backends, by a session waiting for order.
    Cycle,
    /// Running its statement, blocked by nobody: the wait will end.
    Working,
    /// Neither can be told.
    Unknown,
}

/// `{1,2,3}` as PostgreSQL prints an int[].
fn parse_int_array(s: &str) -> Vec<i32> {
    s.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

/// Whether following "is blocked by" from `from` reaches a waiting backend.
fn reaches(from: i32, blockers: &HashMap<i32, Vec<i32>>, waiting: &HashSet<i32>) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![from];
    while let Some(p) = todo.pop() {
        if !seen.insert(p) {
            continue;
        }
        for b in blockers.get(&p).into_iter().flatten() {
            if waiting.contains(b) {
                return true;
            }
            todo.push(*b);
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_chain_through_replay_backends_reaches_a_waiter() {
        let blockers: HashMap<i32, Vec<i32>> = [(1, vec![2]), (2, vec![3, 9]), (3, vec![])].into();
        assert!(reaches(1, &blockers, &HashSet::from([3])));
        assert!(reaches(1, &blockers, &HashSet::from([9])));
        assert!(!reaches(1, &blockers, &HashSet::from([4])));
        assert!(!reaches(3, &blockers, &HashSet::from([2])));
        assert_eq!(parse_int_array("{12,345}"), vec![12, 345]);
        assert!(parse_int_array("{}").is_empty());
    }
}
