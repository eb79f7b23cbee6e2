//! The node's database: one `redb` file in the data directory, shared by every layer.
//!
//! Reads go straight to the database from any thread ([`Store::read`]). Writes are closures
//! sent to one writer thread, which applies every closure waiting in its queue inside one
//! transaction and commits them together: many small writes cost one fsync, and nothing blocks
//! the async runtime ([`Store::write`] is a future; [`Store::write_blocking`] is for code outside
//! a runtime).
//!
//! A write closure must be safe to run more than once (`FnMut`): when one closure of a group
//! fails, the group's transaction is abandoned, the failing closure gets its error, and the
//! others are applied again in a fresh transaction. So a failing write never leaves half of
//! itself behind, and never takes its neighbours' writes down with it.
//!
//! Each layer owns its tables and declares its schema version with [`Store::ensure_schema`],
//! which runs the layer's migrations when the stored version is older.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::thread::JoinHandle;

use redb::{
    Database, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction,
};
use tokio::sync::{mpsc, oneshot};

/// The database's file name inside the data directory.
pub const DATABASE_FILE: &str = "carrier.redb";

/// How many write closures wait for the writer at most before [`Store::write`] waits too.
pub const WRITE_QUEUE_CAPACITY: usize = 4096;

/// How many write closures one transaction applies at most.
pub const MAX_WRITES_PER_COMMIT: usize = 1024;

/// Each layer's schema version, by layer name.
const SCHEMA: TableDefinition<'_, &str, u32> = TableDefinition::new("carrier/schema");

/// What went wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DatabaseError {
    /// Creating or securing the data directory failed.
    #[error("data directory {path}: {source}")]
    Directory {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The database refused an operation (I/O error, full disk, corrupt file, already open).
    /// Shared, because every write of a failed commit is answered with the same error.
    #[error("database: {0}")]
    Database(Arc<redb::Error>),
    /// A blocking call was made from inside an async runtime.
    #[error("a blocking store call was made inside an async runtime; use the async call")]
    InsideRuntime,
    /// The write queue is full; a detached write was not queued.
    #[error("the store's write queue is full")]
    QueueFull,
    /// The store's writer thread has stopped: the store is closed.
    #[error("the store is closed")]
    Closed,
    /// A layer's stored schema is newer than this program understands.
    #[error(
        "schema of {layer} is version {found}, newer than the {supported} this build supports"
    )]
    SchemaTooNew {
        /// The layer.
        layer: String,
        /// The version on disk.
        found: u32,
        /// The newest version this build knows.
        supported: u32,
    },
    /// Stored bytes could not be decoded: they were written by another version or damaged.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt {
        /// The table holding the record.
        table: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for DatabaseError {
            fn from(e: $t) -> Self {
                DatabaseError::Database(Arc::new(e.into()))
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

type WriteFn = Box<dyn FnMut(&WriteTransaction) -> Result<(), DatabaseError> + Send>;

/// One queued write: the closure, and where to say how it ended.
struct Job {
    apply: WriteFn,
    done: oneshot::Sender<Result<(), DatabaseError>>,
}

/// Counters that let tests check grouping by outcome, not by timing.
#[derive(Debug, Default)]
struct Counters {
    commits: AtomicU64,
    writes: AtomicU64,
}

/// A snapshot of the store's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStats {
    /// Transactions committed by the writer (each one fsync).
    pub commits: u64,
    /// Write closures applied and committed.
    pub writes: u64,
}

struct Shared {
    /// `None` once closed; each read clones it for its transaction.
    db: std::sync::RwLock<Option<Arc<Database>>>,
    /// `None` once closed; each write clones it to queue its job.
    queue: std::sync::RwLock<Option<mpsc::Sender<Job>>>,
    counters: Arc<Counters>,
    writer: std::sync::Mutex<Option<JoinHandle<()>>>,
    dir: PathBuf,
}

impl Shared {
    fn db(&self) -> Result<Arc<Database>, DatabaseError> {
        let db = self.db.read().unwrap_or_else(PoisonError::into_inner);
        db.clone().ok_or(DatabaseError::Closed)
    }

    fn queue(&self) -> Result<mpsc::Sender<Job>, DatabaseError> {
        let queue = self.queue.read().unwrap_or_else(PoisonError::into_inner);
        queue.clone().ok_or(DatabaseError::Closed)
    }

    /// Lets the writer drain what is queued, waits for it, and drops this store's handle
    /// of the database. Blocking; idempotent.
    fn close(&self) {
        // Writes queueing right now hold a sender of their own until their job is in: the
        // writer takes it, then sees the queue closed and exits.
        self.queue
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let handle = self
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.db
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        self.close();
    }
}

/// A handle to the node's database; cheap to clone, shared by every layer.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.dir)
            .finish()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`, creating the directory with owner-only
    /// permissions if needed.
    pub fn open(dir: impl AsRef<Path>) -> Result<Store, DatabaseError> {
        let dir = dir.as_ref().to_path_buf();
        create_private_dir(&dir)?;
        let db = Arc::new(Database::create(dir.join(DATABASE_FILE))?);
        let (queue, jobs) = mpsc::channel(WRITE_QUEUE_CAPACITY);
        let counters = Arc::new(Counters::default());
        let writer = std::thread::Builder::new()
            .name("carrier-store-writer".into())
            .spawn({
                let db = db.clone();
                let counters = counters.clone();
                move || run_writer(&db, jobs, &counters)
            })
            .map_err(|source| DatabaseError::Directory {
                path: dir.clone(),
                source,
            })?;
        Ok(Store {
            shared: Arc::new(Shared {
                db: std::sync::RwLock::new(Some(db)),
                queue: std::sync::RwLock::new(Some(queue)),
                counters,
                writer: std::sync::Mutex::new(Some(writer)),
                dir,
            }),
        })
    }

    /// The data directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }

    /// Runs `f` on a read transaction: a consistent snapshot of everything committed so far.
    pub fn read<T>(
        &self,
        f: impl FnOnce(&ReadTransaction) -> Result<T, DatabaseError>,
    ) -> Result<T, DatabaseError> {
        let txn = self.shared.db()?.begin_read()?;
        f(&txn)
    }

    /// Queues a write and waits until it is committed to disk.
    ///
    /// `f` may run more than once (see the module docs); what it returns from its last run is
    /// passed back.
    pub async fn write<T, F>(&self, f: F) -> Result<T, DatabaseError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, DatabaseError> + Send + 'static,
    {
        let (job, output, done) = job(f);
        self.shared
            .queue()?
            .send(job)
            .await
            .map_err(|_| DatabaseError::Closed)?;
        finish(done.await, output)
    }

    /// [`Store::write`] for code that is not running inside an async runtime. Inside one it
    /// fails with [`DatabaseError::InsideRuntime`] (blocking there would stall other tasks):
    /// use `write` or `write_detached` there.
    pub fn write_blocking<T, F>(&self, f: F) -> Result<T, DatabaseError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<T, DatabaseError> + Send + 'static,
    {
        if tokio::runtime::Handle::try_current().is_ok() {
            return Err(DatabaseError::InsideRuntime);
        }
        let (job, output, done) = job(f);
        self.shared
            .queue()?
            .blocking_send(job)
            .map_err(|_| DatabaseError::Closed)?;
        finish(done.blocking_recv(), output)
    }

    /// Queues a write without waiting for it, for synchronous code that runs inside an async
    /// runtime (where blocking is not allowed). Its outcome is not reported; a full queue is
    /// [`DatabaseError::QueueFull`] and the write is not queued.
    pub fn write_detached<F>(&self, f: F) -> Result<(), DatabaseError>
    where
        F: FnMut(&WriteTransaction) -> Result<(), DatabaseError> + Send + 'static,
    {
        let (job, _output, _done) = job(f);
        self.shared.queue()?.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DatabaseError::QueueFull,
            mpsc::error::TrySendError::Closed(_) => DatabaseError::Closed,
        })
    }

    /// Makes sure `layer`'s tables are at schema `version`, calling
    /// `migrate(txn, stored_version)` when the stored version is older (`0` for a layer never
    /// stored before). Migration and the new version are committed together.
    pub async fn ensure_schema<F>(
        &self,
        layer: &'static str,
        version: u32,
        mut migrate: F,
    ) -> Result<(), DatabaseError>
    where
        F: FnMut(&WriteTransaction, u32) -> Result<(), DatabaseError> + Send + 'static,
    {
        self.write(move |txn| {
            let found = {
                let table = txn.open_table(SCHEMA)?;
                let found = table.get(layer)?.map(|v| v.value()).unwrap_or(0);
                found
            };
            if found > version {
                return Err(DatabaseError::SchemaTooNew {
                    layer: layer.to_string(),
                    found,
                    supported: version,
                });
            }
            if found < version {
                migrate(txn, found)?;
                txn.open_table(SCHEMA)?.insert(layer, version)?;
            }
            Ok(())
        })
        .await
    }

    /// The schema version stored for `layer`, if any.
    pub fn schema_version(&self, layer: &str) -> Result<Option<u32>, DatabaseError> {
        self.read(|txn| match txn.open_table(SCHEMA) {
            Ok(table) => Ok(table.get(layer)?.map(|v| v.value())),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }

    /// Writes queued and not yet taken by the writer thread.
    pub fn queued_writes(&self) -> usize {
        self.shared
            .queue()
            .map_or(0, |queue| queue.max_capacity() - queue.capacity())
    }

    /// Closes the store for every clone of it: what is queued is committed, then the
    /// database is let go of, so a store opened on the same directory opens at once. Later
    /// reads and writes on any clone fail with [`DatabaseError::Closed`]. Dropping the last
    /// clone does the same.
    pub async fn close(&self) {
        let shared = self.shared.clone();
        // Joining the writer thread blocks: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || shared.close()).await;
    }

    /// Whether the store was closed.
    pub fn is_closed(&self) -> bool {
        self.shared.db().is_err()
    }

    /// Commits and writes applied so far.
    pub fn stats(&self) -> StoreStats {
        StoreStats {
            commits: self.shared.counters.commits.load(Ordering::Relaxed),
            writes: self.shared.counters.writes.load(Ordering::Relaxed),
        }
    }
}

type Output<T> = Arc<std::sync::Mutex<Option<T>>>;

fn job<T, F>(mut f: F) -> (Job, Output<T>, oneshot::Receiver<Result<(), DatabaseError>>)
where
    T: Send + 'static,
    F: FnMut(&WriteTransaction) -> Result<T, DatabaseError> + Send + 'static,
{
    let output: Output<T> = Arc::new(std::sync::Mutex::new(None));
    let slot = output.clone();
    let (done, receiver) = oneshot::channel();
    let apply: WriteFn = Box::new(move |txn| {
        let value = f(txn)?;
        if let Ok(mut slot) = slot.lock() {
            *slot = Some(value);
        }
        Ok(())
    });
    (Job { apply, done }, output, receiver)
}

fn finish<T>(
    done: Result<Result<(), DatabaseError>, oneshot::error::RecvError>,
    output: Output<T>,
) -> Result<T, DatabaseError> {
    done.map_err(|_| DatabaseError::Closed)??;
    output
        .lock()
        .ok()
        .and_then(|mut o| o.take())
        .ok_or(DatabaseError::Closed)
}

/// The writer thread: groups queued closures into transactions until the queue closes.
fn run_writer(db: &Database, mut jobs: mpsc::Receiver<Job>, counters: &Counters) {
    let mut group = Vec::with_capacity(MAX_WRITES_PER_COMMIT);
    while let Some(first) = jobs.blocking_recv() {
        group.push(first);
        while group.len() < MAX_WRITES_PER_COMMIT {
            match jobs.try_recv() {
                Ok(job) => group.push(job),
                Err(_) => break,
            }
        }
        commit_group(db, &mut group, counters);
    }
}

/// Applies `group` in one transaction. A closure that fails is answered with its error and
/// left out; the rest are applied again in a fresh transaction.
fn commit_group(db: &Database, group: &mut Vec<Job>, counters: &Counters) {
    while !group.is_empty() {
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => return fail_all(group, e.into()),
        };
        let failed = group
            .iter_mut()
            .enumerate()
            .find_map(|(i, job)| (job.apply)(&txn).err().map(|e| (i, e)));
        match failed {
            Some((i, error)) => {
                let _ = txn.abort();
                let job = group.remove(i);
                let _ = job.done.send(Err(error));
            }
            None => {
                if let Err(e) = txn.commit() {
                    return fail_all(group, e.into());
                }
                counters.commits.fetch_add(1, Ordering::Relaxed);
                counters
                    .writes
                    .fetch_add(group.len() as u64, Ordering::Relaxed);
                for job in group.drain(..) {
                    let _ = job.done.send(Ok(()));
                }
            }
        }
    }
}

fn fail_all(group: &mut Vec<Job>, error: redb::Error) {
    let error = Arc::new(error);
    for job in group.drain(..) {
        let _ = job.done.send(Err(DatabaseError::Database(error.clone())));
    }
}

fn create_private_dir(dir: &Path) -> Result<(), DatabaseError> {
    let err = |source| DatabaseError::Directory {
        path: dir.to_path_buf(),
        source,
    };
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(err)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(err)?;
    }
    Ok(())
}
