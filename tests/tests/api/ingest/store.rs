//! The batch insert's own guarantees, below the consumer: concurrent batches commit in
//! sequence order (the change feed relies on it), and a row for a missing device is refused.

use myscanner_tests::{Tenant, TestApp};
use uuid::Uuid;

use super::{batch, factory};

/// Rows as the consumer makes them, for the store's own tests.
fn rows(t: &Tenant, device_id: Uuid, n: usize) -> Vec<myscanner::measurements::validate::Row> {
    use myscanner::devices::DeviceKind;
    use myscanner::measurements::validate;
    let kinds = std::collections::HashMap::from([(device_id, DeviceKind::Lvs)]);
    batch(&mut factory(t, device_id, false), n)
        .into_iter()
        .map(|m| validate::check(m).and_then(|p| validate::to_row(p, &kinds)).unwrap())
        .collect()
}

#[tokio::test]
async fn concurrent_batches_commit_in_sequence_order() {
    // The change feed relies on it: a reader that has seen `seq` N never later finds a new
    // row below N. Writers race on separate connections while a reader follows `seq`
    // the way the feed does; it must see every row.
    use myscanner::measurements::store;
    let app = TestApp::spawn().await;
    let t = app.tenant(&app.operator().await, "Feed").await;
    let (writers, batches, size) = (4, 25, 20);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = vec![];
    for _ in 0..writers {
        let (db, rows, done) = (app.db.clone(), rows(&t, t.device_id, batches * size), done.clone());
        tasks.push(tokio::spawn(async move {
            for chunk in rows.chunks(size) {
                store::write(&db, chunk, &[]).await.unwrap();
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }));
    }
    let (mut cursor, mut seen) = (0i64, 0usize);
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == writers;
        let seqs: Vec<i64> = sqlx::query_scalar("SELECT seq FROM measurements WHERE seq > $1 ORDER BY seq")
            .bind(cursor)
            .fetch_all(&app.db)
            .await
            .unwrap();
        seen += seqs.len();
        cursor = seqs.last().copied().unwrap_or(cursor);
        if finished {
            break;
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(seen, writers * batches * size, "the reader missed rows committed below its cursor");
}

#[tokio::test]
async fn a_row_whose_device_is_gone_is_refused_not_lost() {
    // The store takes a measurement's workgroup from its device's row: a row for a device
    // that is not there is refused by the database (so the consumer rejects and records
    // the message) instead of vanishing.
    use myscanner::measurements::store;
    let app = TestApp::spawn().await;
    let t = app.tenant(&app.operator().await, "Gone").await;
    let error = store::write(&app.db, &rows(&t, Uuid::now_v7(), 1), &[]).await.unwrap_err();
    assert!(store::is_permanent(&error), "{error}");
    assert_eq!(app.stored(t.device_id).await, 0);
}
