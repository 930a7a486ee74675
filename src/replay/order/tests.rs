use std::time::Duration;

use super::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A side of 3 known tables whose dispatcher has registered everything.
fn side() -> Arc<SideOrder> {
    let o = Arc::new(SideOrder::new(3, 0, Arc::default()));
    o.advance_frontier(Gate::Done, i64::MAX);
    o.advance_frontier(Gate::Sent, i64::MAX);
    o
}

fn tables(ts: &[u32]) -> TableSet {
    scope::tables(&Some(ts.into()))
}

/// Spawns a wait and lets it reach its first poll.
async fn spawn_wait(
    o: &Arc<SideOrder>,
    gate: Gate,
    after: i64,
    t: TableSet,
) -> tokio::task::JoinHandle<Waited> {
    let o = o.clone();
    let h = tokio::spawn(async move { o.wait(gate, after, &t, &Slot::default()).await });
    tokio::task::yield_now().await;
    h
}

/// A statement waits for sync points that ended before it ran, and only
/// those: one ending later never holds it.
#[test]
fn waits_for_earlier_sync_points_only() {
    let o = side();
    o.expect(Gate::Done, (100, 1), 7, &tables(&[0]));
    o.expect(Gate::Done, (300, 2), 8, &tables(&[0]));
    rt().block_on(async {
        let slot = Slot::default();
        assert_eq!(
            o.wait(Gate::Done, 50, &tables(&[0]), &slot).await,
            Waited::default()
        );
        let h = spawn_wait(&o, Gate::Done, 200, tables(&[0])).await;
        assert!(!h.is_finished());
        o.remove(Gate::Done, (100, 1));
        let w = h.await.unwrap();
        assert!(w.waited && !w.released, "{w:?}");
    });
}

/// Tables are independent: a pending write of table 1 never holds a read
/// of table 0; an entry of unknown tables holds everyone, and a statement
/// of unknown tables waits for every entry.
#[test]
fn tables_hold_only_their_own_statements() {
    let o = side();
    o.expect(Gate::Done, (100, 1), 1, &tables(&[1]));
    rt().block_on(async {
        let slot = Slot::default();
        assert!(!o.wait(Gate::Done, 200, &tables(&[0]), &slot).await.waited);
        let any_reader = spawn_wait(&o, Gate::Done, 200, None).await;
        let reader1 = spawn_wait(&o, Gate::Done, 200, tables(&[2, 1])).await;
        assert!(!any_reader.is_finished() && !reader1.is_finished());
        o.remove(Gate::Done, (100, 1));
        assert!(any_reader.await.unwrap().waited && reader1.await.unwrap().waited);
        o.expect(Gate::Done, (300, 2), 1, &None);
        let reader0 = spawn_wait(&o, Gate::Done, 400, tables(&[0])).await;
        assert!(
            !reader0.is_finished(),
            "an entry of unknown tables holds every table"
        );
        o.remove(Gate::Done, (300, 2));
        assert!(reader0.await.unwrap().waited);
    });
}

/// A wait holds until the dispatcher's frontier has passed its time, and
/// counts as a session the dispatcher must read on for meanwhile.
#[test]
fn waits_hold_until_the_frontier_passes() {
    let o = Arc::new(SideOrder::new(1, 0, Arc::default()));
    rt().block_on(async {
        let h = spawn_wait(&o, Gate::Sent, 500, tables(&[0])).await;
        assert_eq!(o.pressure.starving.load(Ordering::Relaxed), 1);
        o.advance_frontier(Gate::Sent, 400);
        tokio::task::yield_now().await;
        assert!(!h.is_finished());
        o.advance_frontier(Gate::Sent, 600);
        assert!(h.await.unwrap().waited);
        assert_eq!(o.pressure.starving.load(Ordering::Relaxed), 0);
    });
}

/// A release ends the waits the released entry held, marks them released,
/// and is counted; removing the entry afterwards changes nothing.
#[test]
fn release_frees_waiters_and_is_counted() {
    let o = side();
    o.expect(Gate::Sent, (100, 1), 3, &tables(&[0]));
    o.expect(Gate::Sent, (150, 2), 4, &tables(&[0]));
    rt().block_on(async {
        let slot = o.register(task_key(9, 0));
        let (o2, s2) = (o.clone(), slot.clone());
        let h = tokio::spawn(async move { o2.wait(Gate::Sent, 120, &tables(&[0]), &s2).await });
        tokio::task::yield_now().await;
        let snap = o.snapshot().expect("a waiter");
        let held = snap[0].held_by.expect("held");
        assert_eq!((held.gate, held.key, held.owner), (Gate::Sent, (100, 1), 3));
        assert!(o.release(Gate::Sent, (100, 1), Release::Deadlock));
        assert!(h.await.unwrap().released);
        assert!(!o.release(Gate::Sent, (100, 1), Release::Timeout), "gone");
        o.remove(Gate::Sent, (100, 1));
        assert_eq!(o.releases(), (1, 0));
    });
}

/// Closing ends every wait, and a dropped wait leaves no registration.
#[test]
fn close_ends_waits_and_cancelled_waits_unregister() {
    let o = side();
    o.expect(Gate::Done, (10, 1), 0, &tables(&[0]));
    rt().block_on(async {
        let s = Slot::default();
        let r = tokio::time::timeout(
            Duration::from_millis(20),
            o.wait(Gate::Done, 20, &tables(&[0]), &s),
        )
        .await;
        assert!(r.is_err());
        assert!(!s.waiting.load(Ordering::Relaxed));
        assert!(o.snapshot().is_none(), "nobody waits");
        let h = spawn_wait(&o, Gate::Done, 20, tables(&[0])).await;
        o.close();
        assert!(h.await.unwrap().waited);
    });
}

/// A table's whole set is kept only from the first wait on it: entries
/// registered before still hold that wait, entries removed before do not,
/// and a row's wait sees the rows registered before it was kept.
#[test]
fn sets_kept_late_still_see_the_entries_registered_before() {
    let o = side();
    let row = |t: u32, k: u64| -> TableSet { Some(Arc::from([scope::row(t, k)])) };
    o.expect_all(&[
        (Gate::Done, (100, 1), 1, row(0, 7)),
        (Gate::Done, (110, 2), 1, row(0, 8)),
        (Gate::Done, (120, 3), 2, tables(&[0])),
    ]);
    o.remove(Gate::Done, (110, 2));
    rt().block_on(async {
        let slot = Slot::default();
        let whole = spawn_wait(&o, Gate::Done, 200, tables(&[0])).await;
        let seven = spawn_wait(&o, Gate::Done, 105, row(0, 7)).await;
        assert!(!whole.is_finished() && !seven.is_finished());
        assert!(
            !o.wait(Gate::Done, 115, &row(0, 8), &slot).await.waited,
            "row 8's entry went before its set was kept"
        );
        o.remove(Gate::Done, (100, 1));
        assert!(seven.await.unwrap().waited);
        assert!(!whole.is_finished(), "the whole-table entry still holds it");
        o.remove_all(&[(Gate::Done, Some((120, 3))), (Gate::Sent, None)]);
        assert!(whole.await.unwrap().waited);
    });
}
