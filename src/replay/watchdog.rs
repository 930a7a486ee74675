//! The order watchdog: one task per side that breaks waits the replay itself
//! made impossible, so `--order commit` never hangs.
//!
//! The order's rules alone never make a cycle (every wait points to an
//! earlier captured time), but with PostgreSQL's locks they can: two
//! statements overlapped in the capture and the replay ran them the other
//! way round. Session A's UPDATE got the row lock first in the capture, B's
//! got it first on replay; A's UPDATE now waits for B's lock while B's next
//! statement waits for A's UPDATE. PostgreSQL sees a backend waiting for an
//! idle transaction, not a deadlock, so it cannot break it.
//!
//! The graph the watchdog walks has two kinds of edges: a session waiting
//! for order points to the session owning the entry that holds it
//! ([`super::order::Held`]); a session whose statement is in flight points
//! to the backends PostgreSQL says block it (`pg_blocking_pids`, asked on a
//! connection of its own, and only when a wait has stood still for
//! [`CHECK_AFTER`]). A cycle through a wait for order is a replay-made
//! deadlock: the entry holding that wait is released at once
//! ([`Release::Deadlock`]), and the lock is granted as it would be in any
//! order. A wait that has stood still for `--order-timeout` is released too
//! ([`Release::Timeout`]), unless its chain ends at a statement PostgreSQL
//! shows running unblocked: a slow statement is waited for, as it was in the
//! capture. Either release is counted and reported per side.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::client::{Client, Extended};
use super::conn_opts::ConnOpts;
use super::order::{Backend, Release, SideOrder, task_key};

/// How long a wait must stand still before PostgreSQL is asked.
pub const CHECK_AFTER: Duration = Duration::from_millis(5);
const TICK: Duration = Duration::from_millis(2);
/// The same stall is asked about again at most this often.
const RECHECK: Duration = Duration::from_millis(20);

pub struct Watchdog {
    pub side: &'static str,
    pub order: Arc<SideOrder>,
    pub opts: ConnOpts,
    /// Asks PostgreSQL about lock waits (off: timeouts only).
    pub detect: bool,
    pub timeout: Duration,
    pub stop: CancellationToken,
}

/// Where following a wait's chain ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Back at a session already on the chain: a cycle; release this wait's entry.
    Cycle(usize),
    /// At a statement in flight that nothing blocks: it will finish.
    Working,
    /// Anywhere else (a session between statements, not yet connected).
    Open,
}

impl Watchdog {
    pub async fn run(self) {
        let mut monitor: Option<Client> = None;
        let mut detect = self.detect;
        let mut asked = Instant::now() - RECHECK;
        loop {
            tokio::select! {
                _ = self.stop.cancelled() => break,
                _ = tokio::time::sleep(TICK) => {}
            }
            let Some(backends) = self.order.snapshot() else {
                continue;
            };
            let oldest = backends
                .iter()
                .filter_map(|b| b.held_by.map(|h| h.since))
                .min();
            if oldest.is_none_or(|t| t.elapsed() < CHECK_AFTER) {
                continue;
            }
            let mut blockers = HashMap::new();
            if detect && asked.elapsed() >= RECHECK {
                asked = Instant::now();
                match self.blockers(&mut monitor, &backends).await {
                    Ok(b) => blockers = b,
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
            } else if detect {
                continue;
            }
            self.settle(&backends, &blockers);
        }
        if let Some(c) = monitor {
            c.terminate().await;
        }
    }

    /// Releases what the snapshot shows must be: cycles at once, stalls
    /// past the timeout unless they end at a statement that is working.
    fn settle(&self, backends: &[Backend], blockers: &HashMap<i32, Vec<i32>>) {
        let by_pid: HashMap<i32, usize> = backends
            .iter()
            .enumerate()
            .filter(|(_, b)| b.pid != 0)
            .map(|(i, b)| (b.pid, i))
            .collect();
        let by_task: HashMap<u64, usize> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.task, i))
            .collect();
        let known = !blockers.is_empty();
        for (i, b) in backends.iter().enumerate() {
            let Some(held) = b.held_by else { continue };
            let age = held.since.elapsed();
            if age < CHECK_AFTER {
                continue;
            }
            let end = follow(i, backends, blockers, &by_pid, &by_task, known);
            let (why, at) = match end {
                End::Cycle(at) => (Release::Deadlock, at),
                End::Open if age >= self.timeout => (Release::Timeout, i),
                End::Working if age >= self.timeout && !known => (Release::Timeout, i),
                _ => continue,
            };
            let Some(h) = backends[at].held_by else {
                continue;
            };
            if self.order.release(h.gate, h.key, why) {
                tracing::info!(
                    side = self.side,
                    session = h.owner,
                    held_ms = h.since.elapsed().as_millis() as u64,
                    reason = ?why,
                    "order: released an entry a wait could not get past"
                );
            }
        }
    }

    /// What PostgreSQL says blocks each replay backend with a statement in flight.
    async fn blockers(
        &self,
        monitor: &mut Option<Client>,
        backends: &[Backend],
    ) -> anyhow::Result<HashMap<i32, Vec<i32>>> {
        let pids: Vec<String> = backends
            .iter()
            .filter(|b| b.pid != 0 && b.running)
            .map(|b| b.pid.to_string())
            .collect();
        if pids.is_empty() {
            return Ok(HashMap::new());
        }
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
        let mut out = HashMap::new();
        for r in rows {
            if let [Some(p), Some(list)] = &r[..] {
                if let Ok(p) = p.parse() {
                    out.insert(p, parse_int_array(list));
                }
            }
        }
        Ok(out)
    }
}

/// Follows backend `from`'s chain: a waiting backend to the owner of what
/// holds it, a backend in flight to what PostgreSQL says blocks it.
/// `known`: PostgreSQL was asked, so a backend in flight with no blocker is
/// working rather than unknown.
fn follow(
    from: usize,
    backends: &[Backend],
    blockers: &HashMap<i32, Vec<i32>>,
    by_pid: &HashMap<i32, usize>,
    by_task: &HashMap<u64, usize>,
    known: bool,
) -> End {
    // Depth-first over the mixed graph; the path holds the backends
    // visited, so a return to one of them is a cycle.
    let mut path: Vec<usize> = Vec::new();
    let mut seen: HashSet<usize> = HashSet::new();
    let mut stack = vec![from];
    let mut working = false;
    while let Some(i) = stack.pop() {
        if let Some(pos) = path.iter().position(|p| *p == i) {
            // The first waiting backend on the cycle gives up its wait.
            let at = path[pos..]
                .iter()
                .copied()
                .find(|p| backends[*p].held_by.is_some())
                .unwrap_or(from);
            return End::Cycle(at);
        }
        if !seen.insert(i) {
            continue;
        }
        path.push(i);
        let b = &backends[i];
        if let Some(h) = b.held_by {
            if let Some(&o) = by_task.get(&task_key(h.owner, 0)) {
                stack.push(o);
            }
        } else if b.running && b.pid != 0 {
            match blockers.get(&b.pid) {
                Some(bl) if !bl.is_empty() => {
                    stack.extend(bl.iter().filter_map(|p| by_pid.get(p)).copied());
                }
                _ => working |= known,
            }
        }
    }
    if working { End::Working } else { End::Open }
}

/// `{1,2,3}` as PostgreSQL prints an int[].
fn parse_int_array(s: &str) -> Vec<i32> {
    s.trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .filter_map(|x| x.trim().parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::order::{Gate, Held};

    fn backend(task: u64, pid: i32, running: bool, held_by_owner: Option<u32>) -> Backend {
        Backend {
            task,
            pid,
            waiting: held_by_owner.is_some(),
            running,
            held_by: held_by_owner.map(|owner| Held {
                gate: Gate::Done,
                key: (owner as i64, owner as u64),
                owner,
                since: Instant::now(),
            }),
        }
    }

    fn ends(backends: &[Backend], blockers: &[(i32, Vec<i32>)]) -> Vec<End> {
        let blockers: HashMap<i32, Vec<i32>> = blockers.iter().cloned().collect();
        let by_pid = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.pid, i))
            .collect();
        let by_task = backends
            .iter()
            .enumerate()
            .map(|(i, b)| (b.task, i))
            .collect();
        (0..backends.len())
            .map(|i| {
                follow(
                    i,
                    backends,
                    &blockers,
                    &by_pid,
                    &by_task,
                    !blockers.is_empty(),
                )
            })
            .collect()
    }

    /// B (session 1) waits for order on A's entry (session 0); A's statement
    /// is blocked in PostgreSQL by B's backend: a cycle, released at B.
    #[test]
    fn a_lock_wait_on_a_session_waiting_for_order_is_a_cycle() {
        let a = backend(task_key(0, 0), 100, true, None);
        let b = backend(task_key(1, 0), 200, false, Some(0));
        let e = ends(&[a, b], &[(100, vec![200])]);
        assert_eq!(e[1], End::Cycle(1));
        // The same wait when A's statement is blocked by nobody: working.
        let e = ends(&[a, b], &[(100, vec![])]);
        assert_eq!(e[1], End::Working);
        // A waits for order on C (session 2), which is between statements:
        // open, neither a cycle nor working.
        let a2 = backend(task_key(0, 0), 100, false, Some(2));
        let c = backend(task_key(2, 0), 300, false, None);
        assert_eq!(ends(&[a2, b, c], &[(1, vec![])])[1], End::Open);
    }

    #[test]
    fn int_arrays_parse() {
        assert_eq!(parse_int_array("{12,345}"), vec![12, 345]);
        assert!(parse_int_array("{}").is_empty());
    }
}
