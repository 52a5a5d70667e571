//! The durable store behind `--state DIR`: one SQLite database (`state.db`, WAL journal,
//! `synchronous=FULL`) written by one thread that commits every pending change in one
//! transaction. Callers learn the sequence number of their change and wait for it to be
//! committed before they answer their client, so nothing acknowledged is lost on `kill -9`
//! and the cost of an fsync is shared by everyone who wrote meanwhile (group commit, with a
//! short window that lets a burst of callers land in one commit, see `Store::gather`).
//!
//! Rows are `(kind, key) -> JSON`: one per device record (identity and its modules), per
//! policy, per persistent MQTT session, plus a few counters, in the table `records`; twins
//! have a table of their own, `twins`, one row per device or module twin keyed by
//! `(device_id, module_id)` (`''` for a device's own twin). A change rewrites only its row.
//!
//! Schema history (`PRAGMA user_version`): 1 kept twins inside their device's row; 2 moved
//! them to `twins`. Opening a version 1 state migrates it in one transaction
//! (see [`super::schema_v1`]).

use crate::error::EmulatorError;
use crate::locks::lock;
use rusqlite::{Connection, params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::time::Duration;
use tokio::sync::watch;

/// Feedback records live in a table of their own, created when missing. It is not a schema
/// change: `records` and `user_version` are as before, a version that does not know the table
/// ignores it, and this version adds it to a state written before it existed.
const FEEDBACK_TABLE: &str = "CREATE TABLE IF NOT EXISTS feedback (key TEXT NOT NULL PRIMARY KEY,
    value BLOB NOT NULL) WITHOUT ROWID;";

/// The file inside the state directory.
pub(crate) const DB_FILE: &str = "state.db";
/// The schema this version writes (`PRAGMA user_version`). A state written by version `n`
/// opens in every later version; a newer one is refused.
pub(crate) const SCHEMA_VERSION: i64 = 2;
/// The tables of schema 2.
pub(crate) const SCHEMA_V2: &str = "
    CREATE TABLE records (kind TEXT NOT NULL, key TEXT NOT NULL,
        value BLOB NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;
    CREATE TABLE twins (device_id TEXT NOT NULL, module_id TEXT NOT NULL,
        value BLOB NOT NULL, PRIMARY KEY (device_id, module_id)) WITHOUT ROWID;";
/// How long a caller waits for its change to be committed before it is told the hub is
/// unavailable (the change stays pending and is retried).
pub(crate) const COMMIT_TIMEOUT: Duration = Duration::from_secs(20);
/// The first pause after a failed commit; it doubles up to [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(50);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// A batch stays open while changes keep arriving at least this often…
const GATHER_IDLE: Duration = Duration::from_micros(50);
/// …and at most this long: the most a change waits before its commit starts. On a quiet
/// 2-core machine (fsync ≈ 0.25 ms) 150 µs gave the most reported patches per second with 64
/// callers: 1 ms made every commit wait out the whole window (24 000/s against 35 000/s);
/// no window at all committed the first of the next burst alone.
const GATHER_MAX: Duration = Duration::from_micros(150);
/// Commits between two checkpoints: the WAL holds at most this many commits' pages.
const CHECKPOINT_EVERY: u32 = 32;
/// At shutdown a failing commit is retried this many times before the pending changes are
/// reported lost.
const SHUTDOWN_RETRIES: u32 = 10;

/// The Event Hub-compatible endpoint's events, created by every version that knows it (an
/// older emulator ignores the table, so `user_version` stays 1). A `records` table would
/// rewrite a key per event; here an event is a row and retention deletes rows.
const EVENTS_TABLE: &str = "CREATE TABLE IF NOT EXISTS events (partition INTEGER NOT NULL,
    seq INTEGER NOT NULL, value BLOB NOT NULL, PRIMARY KEY (partition, seq)) WITHOUT ROWID;";

/// What a row holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum Kind {
    /// Counters (`etagSeq`).
    Meta,
    /// A shared access policy.
    Policy,
    /// A device record: identity and modules.
    Device,
    /// A device or module twin (`device` or `device/module`), in the `twins` table.
    Twin,
    /// The subscriptions of a `clean_session=false` MQTT client.
    Session,
    /// A pending cloud-to-device message (`device/number`).
    C2d,
    /// A job.
    Job,
    /// One device's row of a job (`job/index`).
    JobDevice,
    /// A DPS individual enrollment.
    Enrollment,
    /// A DPS enrollment group.
    EnrollmentGroup,
    /// A DPS registration state (and the group it came through).
    Registration,
    /// A telemetry event of the Event Hub-compatible endpoint (`partition/sequence`), kept
    /// in its own table, `events` (see [`EVENTS_TABLE`]).
    Event,
    /// A cloud-to-device feedback record, kept in its own table (see [`FEEDBACK_TABLE`]).
    Feedback,
}

impl Kind {
    const fn name(self) -> &'static str {
        match self {
            Self::Meta => "meta",
            Self::Policy => "policy",
            Self::Device => "device",
            Self::Twin => "twin",
            Self::Session => "session",
            Self::C2d => "c2d",
            Self::Job => "job",
            Self::JobDevice => "jobDevice",
            Self::Enrollment => "enrollment",
            Self::EnrollmentGroup => "enrollmentGroup",
            Self::Registration => "registration",
            Self::Event => "event",
            Self::Feedback => "feedback",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        [
            Self::Meta,
            Self::Policy,
            Self::Device,
            Self::Twin,
            Self::Session,
            Self::C2d,
            Self::Job,
            Self::JobDevice,
            Self::Enrollment,
            Self::EnrollmentGroup,
            Self::Registration,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }
}

/// One change: the new JSON of a row, or `None` to delete it.
pub(crate) type Write = ((Kind, String), Option<Vec<u8>>);

/// The rows read at start-up, by kind.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) rows: BTreeMap<Kind, Vec<(String, Vec<u8>)>>,
    /// `true` when the database was created by this start.
    pub(crate) fresh: bool,
}

impl Loaded {
    pub(crate) fn take(&mut self, kind: Kind) -> Vec<(String, Vec<u8>)> {
        self.rows.remove(&kind).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Pending {
    /// Newest value per row: a row written twice before a commit is written once.
    writes: BTreeMap<(Kind, String), Option<Vec<u8>>>,
    /// The sequence number of the newest change in `writes`.
    seq: u64,
    closing: bool,
}

/// Where commits stand, as the waiters see it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Committed {
    pub(crate) seq: u64,
    /// The last commit error, until a commit succeeds.
    pub(crate) error: Option<String>,
}

/// The store: a queue of pending changes and the thread that commits them.
#[derive(Debug)]
pub(crate) struct Store {
    path: PathBuf,
    pending: Mutex<Pending>,
    wake: Condvar,
    committed: watch::Sender<Committed>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Fault seam: the next N commits fail as a full disk would.
    fail_commits: OnceLock<Arc<AtomicU32>>,
}

fn state_error(path: &Path, what: impl std::fmt::Display) -> EmulatorError {
    EmulatorError::State(format!(
        "{}: {what}; the emulator refuses to start and left the file as it is",
        path.display()
    ))
}

/// Creates `dir` (and missing parents) readable by the owner only.
pub(crate) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut b, 0o700);
    b.create(dir)
}

/// Creates a new file readable and writable by the owner only; fails if it exists.
pub(crate) fn create_private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
    o.open(path)
}

fn sql_err(e: rusqlite::Error) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

impl Store {
    /// Opens (or creates) `DIR/state.db` and reads every row. A file that is not a state
    /// database, or one written by a newer schema, is refused without being changed.
    pub(crate) fn open(dir: &Path) -> Result<(Arc<Self>, Loaded), EmulatorError> {
        create_private_dir(dir)?;
        let path = dir.join(DB_FILE);
        let fresh = !path.exists();
        if fresh {
            // SQLite gives its -wal and -shm files the mode of the database file.
            create_private_file(&path)?;
        } else {
            check_header(&path)?;
        }
        let conn = Connection::open(&path).map_err(|e| state_error(&path, e))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| state_error(&path, e))?;
        let mut loaded = Loaded {
            fresh,
            ..Loaded::default()
        };
        match version {
            0 if fresh || is_empty(&conn) => {
                conn.execute_batch(&format!(
                    "PRAGMA journal_mode=WAL; BEGIN; {SCHEMA_V2} PRAGMA user_version = 2; COMMIT;"
                ))
                .map_err(|e| state_error(&path, e))?;
                conn.execute_batch(FEEDBACK_TABLE)
                    .map_err(|e| state_error(&path, e))?;
                loaded.fresh = true;
            }
            1 | SCHEMA_VERSION => {
                if version == 1 {
                    super::schema_v1::migrate(&conn).map_err(|e| state_error(&path, e))?;
                    tracing::info!(file = %path.display(), "migrated the state from schema 1 to 2");
                }
                conn.execute_batch(FEEDBACK_TABLE)
                    .map_err(|e| state_error(&path, e))?;
                read_rows(&conn, &mut loaded).map_err(|e| state_error(&path, e))?;
                conn.execute_batch("PRAGMA journal_mode=WAL;")
                    .map_err(|e| state_error(&path, e))?;
            }
            v => {
                return Err(state_error(
                    &path,
                    format!(
                        "schema version {v} is not one this emulator knows (it writes {SCHEMA_VERSION}); \
                         it was written by another version"
                    ),
                ));
            }
        }
        conn.execute_batch(EVENTS_TABLE)
            .map_err(|e| state_error(&path, e))?;
        if !loaded.fresh {
            read_events(&conn, &mut loaded).map_err(|e| state_error(&path, e))?;
        }
        // FULL: the WAL is synced on every commit, so an acknowledged change survives a
        // power cut as well as a killed process; group commit keeps this affordable.
        // Checkpoints (copying the WAL into the database file, with an fsync of it) are run
        // by the writer after it has answered a commit's waiters, not inside the commit as
        // SQLite's automatic checkpoint would (see `run`).
        conn.execute_batch("PRAGMA synchronous=FULL; PRAGMA wal_autocheckpoint=0;")
            .map_err(|e| state_error(&path, e))?;
        let store = Arc::new(Self {
            path,
            pending: Mutex::default(),
            wake: Condvar::new(),
            committed: watch::Sender::new(Committed::default()),
            writer: Mutex::new(None),
            fail_commits: OnceLock::new(),
        });
        let writer = {
            let store = store.clone();
            std::thread::Builder::new()
                .name("state-writer".into())
                .spawn(move || store.run(conn))?
        };
        *lock(&store.writer) = Some(writer);
        Ok((store, loaded))
    }

    /// Lets the fault settings make commits fail.
    pub(crate) fn attach_fault(&self, counter: Arc<AtomicU32>) {
        let _ = self.fail_commits.set(counter);
    }

    /// Queues changes; returns the sequence number to wait for. Call it while holding the
    /// lock that ordered the changes, so rows are committed in the order they were made.
    pub(crate) fn enqueue(&self, writes: impl IntoIterator<Item = Write>) -> u64 {
        let mut p = lock(&self.pending);
        let before = p.writes.len();
        let mut any = false;
        for (k, v) in writes {
            p.writes.insert(k, v);
            any = true;
        }
        if any {
            p.seq += 1;
            if before == 0 {
                self.wake.notify_one();
            }
        }
        p.seq
    }

    /// The sequence number of the newest queued change.
    pub(crate) fn last_seq(&self) -> u64 {
        lock(&self.pending).seq
    }

    /// Waits until every change up to `seq` is committed, at most [`COMMIT_TIMEOUT`].
    ///
    /// # Cancel safety
    /// Cancel-safe: the change stays queued and is committed regardless.
    pub(crate) async fn wait(&self, seq: u64) -> Result<(), String> {
        let mut rx = self.committed.subscribe();
        let outcome = tokio::time::timeout(COMMIT_TIMEOUT, rx.wait_for(|c| c.seq >= seq))
            .await
            .map(|r| r.is_ok());
        match outcome {
            Ok(true) => Ok(()),
            Ok(false) => Err("the state writer stopped".into()),
            Err(_) => Err(rx
                .borrow()
                .error
                .clone()
                .unwrap_or_else(|| "the state write timed out".into())),
        }
    }

    /// Blocks until every change up to `target` is committed, at most `timeout`.
    pub(crate) fn wait_blocking(&self, target: u64, timeout: Duration) -> std::io::Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let c = self.committed.borrow().clone();
            if c.seq >= target {
                return Ok(());
            }
            if std::time::Instant::now() >= deadline {
                return Err(std::io::Error::other(format!(
                    "{}: {}",
                    self.path.display(),
                    c.error.unwrap_or_else(|| "state write timed out".into())
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Commits what is pending, stops the writer and waits for it.
    pub(crate) fn close(&self) {
        lock(&self.pending).closing = true;
        self.wake.notify_one();
        if let Some(h) = lock(&self.writer).take()
            && h.thread().id() != std::thread::current().id()
        {
            let _ = h.join();
        }
    }

    /// The group-commit window. The callers answered by the previous commit send their next
    /// changes a moment later; committing the first of them alone would make the rest wait
    /// for a whole commit (an fsync) more. So the batch is held open while changes keep
    /// arriving: until [`GATHER_IDLE`] passes without one, or [`GATHER_MAX`] in all.
    fn gather<'a>(&'a self, mut p: MutexGuard<'a, Pending>) -> MutexGuard<'a, Pending> {
        let opened = std::time::Instant::now();
        let mut seen = p.seq;
        while opened.elapsed() < GATHER_MAX && !p.closing {
            drop(p);
            std::thread::sleep(GATHER_IDLE);
            p = lock(&self.pending);
            if p.seq == seen {
                break;
            }
            seen = p.seq;
        }
        p
    }

    fn run(&self, mut conn: Connection) {
        let mut pause = FIRST_RETRY_PAUSE;
        let mut failures_at_close = 0;
        let mut since_checkpoint = 0;
        loop {
            let (batch, seq, closing) = {
                let mut p = lock(&self.pending);
                while p.writes.is_empty() && !p.closing {
                    p = self
                        .wake
                        .wait(p)
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                }
                if !p.closing {
                    p = self.gather(p);
                }
                if p.writes.is_empty() {
                    return;
                }
                (std::mem::take(&mut p.writes), p.seq, p.closing)
            };
            match self.commit(&mut conn, &batch) {
                Ok(()) => {
                    pause = FIRST_RETRY_PAUSE;
                    self.committed.send_modify(|c| {
                        c.seq = seq;
                        c.error = None;
                    });
                    // After the waiters are answered: a checkpoint delays only the next batch.
                    // Every CHECKPOINT_EVERY commits bounds the WAL; with one writer and no
                    // open reads it completes, and the next commit starts the WAL over.
                    since_checkpoint += 1;
                    if since_checkpoint >= CHECKPOINT_EVERY {
                        since_checkpoint = 0;
                        if let Err(e) =
                            conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                        {
                            tracing::debug!(error = %e, "state checkpoint deferred");
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, rows = batch.len(), "could not commit the state; retrying");
                    self.committed
                        .send_modify(|c| c.error = Some(format!("state write failed: {e}")));
                    {
                        // Changes made since were taken later, so they win.
                        let mut p = lock(&self.pending);
                        for (k, v) in batch {
                            p.writes.entry(k).or_insert(v);
                        }
                        if closing {
                            failures_at_close += 1;
                            if failures_at_close > SHUTDOWN_RETRIES {
                                tracing::error!(
                                    rows = p.writes.len(),
                                    "state changes could not be written before shutdown"
                                );
                                return;
                            }
                        }
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                }
            }
        }
    }

    fn commit(
        &self,
        conn: &mut Connection,
        batch: &BTreeMap<(Kind, String), Option<Vec<u8>>>,
    ) -> std::io::Result<()> {
        if let Some(c) = self.fail_commits.get()
            && c.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(std::io::Error::other("injected state write failure"));
        }
        let tx = conn.transaction().map_err(sql_err)?;
        {
            let mut put = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO records (kind, key, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql_err)?;
            let mut del = tx
                .prepare_cached("DELETE FROM records WHERE kind = ?1 AND key = ?2")
                .map_err(sql_err)?;
            let mut put_twin = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO twins (device_id, module_id, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql_err)?;
            let mut del_twin = tx
                .prepare_cached("DELETE FROM twins WHERE device_id = ?1 AND module_id = ?2")
                .map_err(sql_err)?;
            let mut put_event = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO events (partition, seq, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql_err)?;
            let mut del_event = tx
                .prepare_cached("DELETE FROM events WHERE partition = ?1 AND seq = ?2")
                .map_err(sql_err)?;
            let mut put_feedback = tx
                .prepare_cached("INSERT OR REPLACE INTO feedback (key, value) VALUES (?1, ?2)")
                .map_err(sql_err)?;
            let mut del_feedback = tx
                .prepare_cached("DELETE FROM feedback WHERE key = ?1")
                .map_err(sql_err)?;
            for ((kind, key), value) in batch {
                match (kind, value) {
                    (Kind::Twin, v) => {
                        let (d, m) = key.split_once('/').unwrap_or((key.as_str(), ""));
                        match v {
                            Some(v) => put_twin.execute(params![d, m, v]),
                            None => del_twin.execute(params![d, m]),
                        }
                    }
                    (Kind::Event, v) => {
                        let (p, seq) = event_key(key)?;
                        match v {
                            Some(v) => put_event.execute(params![p, seq, v]),
                            None => del_event.execute(params![p, seq]),
                        }
                    }
                    (Kind::Feedback, Some(v)) => put_feedback.execute(params![key, v]),
                    (Kind::Feedback, None) => del_feedback.execute(params![key]),
                    (_, Some(v)) => put.execute(params![kind.name(), key, v]),
                    (_, None) => del.execute(params![kind.name(), key]),
                }
                .map_err(sql_err)?;
            }
        }
        tx.commit().map_err(sql_err)
    }
}

/// `partition/sequence` of a [`Kind::Event`] row.
fn event_key(key: &str) -> std::io::Result<(i64, i64)> {
    key.split_once('/')
        .and_then(|(p, s)| Some((p.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| std::io::Error::other(format!("bad event key {key:?}")))
}

fn read_events(conn: &Connection, loaded: &mut Loaded) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT partition, seq, value FROM events")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            format!("{}/{}", r.get::<_, i64>(0)?, r.get::<_, i64>(1)?),
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let events = loaded.rows.entry(Kind::Event).or_default();
    for row in rows {
        events.push(row?);
    }
    Ok(())
}

/// Refuses a file that is not an SQLite database before SQLite may touch it.
fn check_header(path: &Path) -> Result<(), EmulatorError> {
    use std::io::Read as _;
    let mut head = [0u8; 16];
    let n = std::fs::File::open(path)?.read(&mut head)?;
    if n == 0 || head == *b"SQLite format 3\0" {
        Ok(())
    } else {
        Err(state_error(path, "not an emulator state database"))
    }
}

fn is_empty(conn: &Connection) -> bool {
    conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
        r.get::<_, i64>(0)
    })
    .is_ok_and(|n| n == 0)
}

fn read_rows(conn: &Connection, loaded: &mut Loaded) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare("SELECT kind, key, value FROM records")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    for row in rows {
        let (kind, key, value) = row?;
        match Kind::parse(&kind).filter(|k| *k != Kind::Twin) {
            Some(k) => loaded.rows.entry(k).or_default().push((key, value)),
            // A later version's kind: refuse rather than drop it on the next write.
            None => {
                return Err(rusqlite::Error::InvalidParameterName(format!(
                    "unknown record kind {kind:?}"
                )));
            }
        }
    }
    let mut stmt = conn.prepare("SELECT device_id, module_id, value FROM twins")?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, Vec<u8>>(2)?,
        ))
    })?;
    let twins = loaded.rows.entry(Kind::Twin).or_default();
    for row in rows {
        let (d, m, value) = row?;
        let key = if m.is_empty() { d } else { format!("{d}/{m}") };
        twins.push((key, value));
    }
    let mut stmt = conn.prepare("SELECT key, value FROM feedback")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    let feedback = loaded.rows.entry(Kind::Feedback).or_default();
    for row in rows {
        feedback.push(row?);
    }
    Ok(())
}
