//! The node's database: grouped commits, failures isolated, schema versions, private directory.

// Helpers of these tests unwrap as the tests do: a failure is the test failing.
#![allow(clippy::unwrap_used)]

use carrier_dht::store::{DatabaseError, Store};
use redb::TableDefinition;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};

const THINGS: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("test/things");

fn get(store: &Store, key: u64) -> Option<Vec<u8>> {
    store
        .read(|txn| match txn.open_table(THINGS) {
            Ok(t) => Ok(t.get(key)?.map(|v| v.value().to_vec())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
        .unwrap()
}

fn put(
    key: u64,
    value: &'static [u8],
) -> impl FnMut(&redb::WriteTransaction) -> Result<(), DatabaseError> + Send + 'static {
    move |txn| {
        txn.open_table(THINGS)?.insert(key, value)?;
        Ok(())
    }
}

/// A write that holds the writer thread until released, so that everything queued meanwhile
/// lands in the writer's next group: grouping shown by counters, not by timing.
fn hold_writer(store: &Store) -> (std_mpsc::Sender<()>, std::thread::JoinHandle<()>) {
    let (release, held) = std_mpsc::channel::<()>();
    let (started_tx, started) = std_mpsc::channel::<()>();
    let held = Arc::new(Mutex::new(held));
    let store = store.clone();
    let handle = std::thread::spawn(move || {
        let mut started_tx = Some(started_tx);
        store
            .write_blocking(move |_txn| {
                if let Some(tx) = started_tx.take() {
                    tx.send(()).unwrap();
                }
                held.lock().unwrap().recv().unwrap();
                Ok(())
            })
            .unwrap();
    });
    started.recv().unwrap();
    (release, handle)
}

#[test]
fn writes_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        store.write_blocking(put(1, b"one")).unwrap();
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(get(&store, 1).as_deref(), Some(&b"one"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_queued_writes_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (release, holder) = hold_writer(&store);
    let mut writes = Vec::new();
    for key in 0..500u64 {
        let store = store.clone();
        writes.push(tokio::spawn(
            async move { store.write(put(key, b"x")).await },
        ));
    }
    // Every write is queued behind the held one before the writer is released.
    while store.queued_writes() < 500 {
        tokio::task::yield_now().await;
    }
    release.send(()).unwrap();
    for w in writes {
        w.await.unwrap().unwrap();
    }
    holder.join().unwrap();
    let stats = store.stats();
    assert_eq!(stats.writes, 501);
    // One commit for the held write, one for the 500 queued behind it.
    assert_eq!(stats.commits, 2, "{stats:?}");
    assert_eq!(get(&store, 499).as_deref(), Some(&b"x"[..]));
}

type BoxedWrite = Box<dyn FnMut(&redb::WriteTransaction) -> Result<(), DatabaseError> + Send>;

#[test]
fn a_failing_write_leaves_nothing_behind_and_spares_its_group() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (release, holder) = hold_writer(&store);
    let spawn = |f: BoxedWrite| {
        let store = store.clone();
        std::thread::spawn(move || store.write_blocking(f))
    };
    let a = spawn(Box::new(put(1, b"a")));
    let bad = spawn(Box::new(|txn: &redb::WriteTransaction| {
        txn.open_table(THINGS)?.insert(2, &b"half"[..])?;
        Err(DatabaseError::Corrupt {
            table: "test/things",
            reason: "refused".into(),
        })
    }));
    let c = spawn(Box::new(put(3, b"c")));
    while store.queued_writes() < 3 {
        std::thread::yield_now();
    }
    release.send(()).unwrap();
    holder.join().unwrap();
    a.join().unwrap().unwrap();
    assert!(matches!(
        bad.join().unwrap(),
        Err(DatabaseError::Corrupt { .. })
    ));
    c.join().unwrap().unwrap();
    assert_eq!(get(&store, 1).as_deref(), Some(&b"a"[..]));
    assert_eq!(get(&store, 2), None);
    assert_eq!(get(&store, 3).as_deref(), Some(&b"c"[..]));
}

#[tokio::test]
async fn schema_migrates_once_and_refuses_newer() {
    let dir = tempfile::tempdir().unwrap();
    let calls = Arc::new(Mutex::new(Vec::new()));
    {
        let store = Store::open(dir.path()).unwrap();
        let c = calls.clone();
        store
            .ensure_schema("test", 1, move |_, from| {
                c.lock().unwrap().push(from);
                Ok(())
            })
            .await
            .unwrap();
        let c = calls.clone();
        store
            .ensure_schema("test", 1, move |_, from| {
                c.lock().unwrap().push(from);
                Ok(())
            })
            .await
            .unwrap();
        let c = calls.clone();
        store
            .ensure_schema("test", 2, move |_, from| {
                c.lock().unwrap().push(from);
                Ok(())
            })
            .await
            .unwrap();
        assert_eq!(store.schema_version("test").unwrap(), Some(2));
    }
    assert_eq!(*calls.lock().unwrap(), vec![0, 1]);
    let store = Store::open(dir.path()).unwrap();
    let err = store
        .ensure_schema("test", 1, |_, _| Ok(()))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            DatabaseError::SchemaTooNew {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn data_directory_is_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let _store = Store::open(&data).unwrap();
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
}

#[test]
fn a_second_open_of_the_same_directory_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let _store = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, DatabaseError::Database(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_commits_what_is_queued_and_frees_the_directory_for_every_clone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    // A layer above still holds its clone after the node closed the store.
    let held = store.clone();
    store.write_detached(put(1, b"queued")).unwrap();
    store.close().await;
    assert!(held.is_closed());
    assert!(matches!(held.read(|_| Ok(())), Err(DatabaseError::Closed)));
    assert!(matches!(
        held.write(put(2, b"late")).await,
        Err(DatabaseError::Closed)
    ));
    assert!(matches!(
        held.write_detached(put(3, b"late")),
        Err(DatabaseError::Closed)
    ));
    assert_eq!(held.queued_writes(), 0);
    // Opened again at once, with the held clone still alive; the queued write was committed.
    let again = Store::open(dir.path()).unwrap();
    assert_eq!(get(&again, 1), Some(b"queued".to_vec()));
    assert_eq!(get(&again, 2), None);
    // Closing twice is harmless.
    held.close().await;
}
