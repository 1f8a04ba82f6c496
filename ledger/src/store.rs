//! The store: one redb file holding the aggregates, the totals, the producers' sequence state,
//! the source positions, the quarantine, the entity history and the fold's counters.
//!
//! redb because it is ACID with crash-safe commits (copy-on-write B-trees, a commit is durable
//! or absent after a crash, never half-written), one file, pure Rust with no C toolchain or
//! background compaction threads, and fast enough by far for a commit per chunk (docs/ledger.md).
//!
//! Keys are byte strings laid out so that redb's order is the order queries want (big-endian
//! numbers, length-prefixed strings); values are fixed little-endian layouts. Everything a
//! query reads was written by [`Store::commit`], in one transaction per chunk.
//!
//! **Opening after a kill.** redb marks a file open for writing; a process killed with it open
//! leaves the mark, and the next open must rebuild the page allocator's state. Without more, that
//! is a *full repair*: every page of every table read and its checksum verified (22-25 s for a
//! store of 1 GiB of rows with a cold page cache; 35 s and once ~200 s were seen after kills).
//! Every write transaction here therefore commits with redb's *quick repair* ([`begin_write`]):
//! the allocator state is saved with each commit (and the commit is two-phase), so the open
//! after a kill loads it instead of walking the file, in milliseconds whatever the size
//! (docs/ledger.md, "Opening after a kill"). A file whose last commit was made without it (a
//! build before this one) gets one full repair, logged with its progress.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use gateway_model::event::{NodeCalls, TotalsRecord, UsageCounters};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use sha2::{Digest, Sha256};

use crate::error::{LedgerError, LedgerErrorKind};
use crate::fold::{Delta, FoldStats, ProducerKey, ProducerState, RowRef, SourcePos};

const AGG: TableDefinition<&[u8], &[u8]> = TableDefinition::new("agg");
const TOTALS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("totals");
const PRODUCERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("producers");
const POSITIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("positions");
const QUARANTINE: TableDefinition<&str, &[u8]> = TableDefinition::new("quarantine");
const HISTORY: TableDefinition<&[u8], &[u8]> = TableDefinition::new("history");
const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");
const META: TableDefinition<&str, &str> = TableDefinition::new("meta");
/// API key id → its latest quota reset folded (ms since the epoch).
const RESETS: TableDefinition<&str, i64> = TableDefinition::new("resets");
/// Keyed like `totals`: the calls of a reset key that count before its reset (subtracted from
/// the totals the ledger publishes; billing keeps every call).
const BASELINE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("reset_baseline");

/// Begins a write transaction that commits with quick repair (module docs): a kill at any
/// instant leaves a file the next open loads in milliseconds instead of repairing it page by
/// page.
fn begin_write(db: &Database) -> Result<WriteTransaction, LedgerError> {
    let mut tx = db.begin_write().map_err(LedgerError::store("begin"))?;
    tx.set_quick_repair(true);
    Ok(tx)
}

/// A redb builder whose repair (only for a file last committed without quick repair) logs its
/// progress every 10 %, so that a long open is explained while it happens.
fn builder() -> redb::Builder {
    let mut builder = Database::builder();
    let logged = std::sync::atomic::AtomicU64::new(u64::MAX);
    builder.set_repair_callback(move |session| {
        let decile = (session.progress() * 10.0) as u64;
        if logged.swap(decile, std::sync::atomic::Ordering::Relaxed) != decile {
            tracing::warn!(
                progress = format!("{:.0} %", session.progress() * 100.0),
                "ledger store: full repair after an unclean shutdown (its last commit was made \
                 without quick repair, by an older build)"
            );
        }
    });
    builder
}

/// The store layout this build writes.
pub const SCHEMA: &str = "1";

/// Number of `u64` counters in a stored aggregate.
pub const COUNTER_WORDS: usize = 17;

/// What an aggregate is keyed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Dimension {
    /// API key id.
    ApiKey = 0,
    /// API consumer.
    Consumer = 1,
    /// Subscription.
    Subscription = 2,
    /// API.
    Api = 3,
    /// Route.
    Route = 4,
    /// The billing line of a subscription: `<api>/<consumer>/<subscription>` (ids have no `/`),
    /// so that the export names all three. Not a query parameter.
    SubscriptionLine = 5,
}

impl Dimension {
    /// Every dimension.
    pub const ALL: [Self; 5] = [
        Self::ApiKey,
        Self::Consumer,
        Self::Subscription,
        Self::Api,
        Self::Route,
    ];

    /// The query parameter naming it.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ApiKey => "apikey",
            Self::Consumer => "consumer",
            Self::Subscription => "subscription",
            Self::Api => "api",
            Self::Route => "route",
            Self::SubscriptionLine => "subscription_line",
        }
    }

    fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            5 => Some(Self::SubscriptionLine),
            b => Self::ALL.get(usize::from(b)).copied(),
        }
    }
}

/// One stored aggregate row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AggRow {
    /// Dimension.
    pub dim: Dimension,
    /// Id in that dimension.
    pub id: String,
    /// 15-minute UTC bucket start, ms.
    pub bucket_ms: i64,
    /// Lateness level.
    pub level: u8,
    /// Counters.
    pub counters: UsageCounters,
}

/// What a commit changed, for totals publishing and metrics.
#[derive(Debug, Clone, Default)]
pub struct CommitSummary {
    /// API keys whose admitted calls changed.
    pub changed_keys: BTreeSet<String>,
    /// What the chunk did.
    pub stats: FoldStats,
}

/// The ledger's store. Cheap to share (`Arc<Store>`): queries read in their own read
/// transactions while the fold writes.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// `<store>.pid`: this process's pid, so that another process refused the store can name
    /// it; removed when the store closes.
    pid_file: Option<std::path::PathBuf>,
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(path) = &self.pid_file {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Creates a fresh store file at `path` whole or not at all: redb writes a new file's magic
/// number last, so a process killed while creating one would leave a file that no later start
/// can open. The store is created under a name of this process's own, synced, then linked to
/// `path` (which fails, harmlessly, when another process created it meanwhile).
fn create_atomically(path: &Path) -> Result<(), LedgerError> {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".init-{}", std::process::id()));
    let tmp = std::path::PathBuf::from(name);
    let io = |what: &str, e: std::io::Error| {
        LedgerError::with(LedgerErrorKind::Io, format!("{what} {}", tmp.display()), e)
    };
    let _ = std::fs::remove_file(&tmp);
    let db = builder().create(&tmp).map_err(|e| {
        LedgerError::with(
            LedgerErrorKind::Store,
            format!("create store {}", tmp.display()),
            e,
        )
    })?;
    drop(Store::init(db)?);
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("sync", e))?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io("link", e)),
    }
    if let Some(dir) = path.parent() {
        let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
    }
    Ok(())
}

/// The file beside the store naming the process that has it open.
fn pid_file(store: &Path) -> std::path::PathBuf {
    let mut name = store.as_os_str().to_owned();
    name.push(".pid");
    name.into()
}

impl Store {
    /// Opens (or creates) the store at `path`, creating its directory.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Locked`] when another process has it open (redb locks the file; the
    /// error names that process when it can), [`LedgerErrorKind::Store`] if the file cannot be
    /// opened otherwise, [`LedgerErrorKind::Corrupt`] if it is not a ledger store of this schema.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| {
                LedgerError::with(LedgerErrorKind::Io, format!("create {}", dir.display()), e)
            })?;
        }
        if !path.exists() {
            create_atomically(path)?;
        }
        let started = std::time::Instant::now();
        let db = builder().create(path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => LedgerError::new(
                LedgerErrorKind::Locked,
                format!(
                    "store {} is open in {}",
                    path.display(),
                    gateway_events::holder::describe(&pid_file(path))
                        .unwrap_or_else(|| "another process".to_owned())
                ),
            ),
            redb::DatabaseError::Storage(redb::StorageError::Io(e))
                if e.kind() == std::io::ErrorKind::InvalidData =>
            {
                LedgerError::new(
                    LedgerErrorKind::Corrupt,
                    format!(
                        "store {} is not a redb file (a start killed while creating it, before \
                         this version created stores atomically?): move it away and start again; \
                         the ledger folds the log from its start into a new store",
                        path.display()
                    ),
                )
            }
            e => LedgerError::with(
                LedgerErrorKind::Store,
                format!("open store {}", path.display()),
                e,
            ),
        })?;
        let opened = started.elapsed();
        if opened > std::time::Duration::from_secs(1) {
            tracing::warn!(
                store = %path.display(),
                ms = opened.as_millis() as u64,
                "ledger store: slow open"
            );
        }
        let mut store = Self::init(db)?;
        let pid_file = pid_file(path);
        // Best effort: it only names this process in another one's error.
        if gateway_events::holder::write(&pid_file).is_ok() {
            store.pid_file = Some(pid_file);
        }
        Ok(store)
    }

    /// A store in memory (tests, benches, property checks).
    ///
    /// # Errors
    ///
    /// As [`Store::open`].
    pub fn in_memory() -> Result<Self, LedgerError> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(LedgerError::store("create in-memory store"))?;
        Self::init(db)
    }

    fn init(db: Database) -> Result<Self, LedgerError> {
        let tx = begin_write(&db)?;
        {
            tx.open_table(AGG).map_err(LedgerError::store("open agg"))?;
            tx.open_table(TOTALS)
                .map_err(LedgerError::store("open totals"))?;
            tx.open_table(PRODUCERS)
                .map_err(LedgerError::store("open producers"))?;
            tx.open_table(POSITIONS)
                .map_err(LedgerError::store("open positions"))?;
            tx.open_table(QUARANTINE)
                .map_err(LedgerError::store("open quarantine"))?;
            tx.open_table(HISTORY)
                .map_err(LedgerError::store("open history"))?;
            tx.open_table(COUNTERS)
                .map_err(LedgerError::store("open counters"))?;
            tx.open_table(RESETS)
                .map_err(LedgerError::store("open resets"))?;
            tx.open_table(BASELINE)
                .map_err(LedgerError::store("open reset baseline"))?;
            let mut meta = tx
                .open_table(META)
                .map_err(LedgerError::store("open meta"))?;
            let schema = meta
                .get("schema")
                .map_err(LedgerError::store("read schema"))?
                .map(|v| v.value().to_owned());
            match schema.as_deref() {
                None => {
                    meta.insert("schema", SCHEMA)
                        .map_err(LedgerError::store("write schema"))?;
                }
                Some(SCHEMA) => {}
                Some(other) => {
                    return Err(LedgerError::new(
                        LedgerErrorKind::Corrupt,
                        format!("store schema {other:?}, this build reads {SCHEMA:?}"),
                    ));
                }
            }
        }
        tx.commit().map_err(LedgerError::store("commit init"))?;
        Ok(Self { db, pid_file: None })
    }

    /// Writes a chunk: adds its rows to the aggregates and totals, and writes the changed
    /// producers' sequence state, the changed positions, the quarantined records, the entity
    /// history and the counters, all in ONE transaction. After a crash the store holds the
    /// chunk whole or not at all, with the positions that go with it.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`]: nothing of the chunk was written; the caller rebuilds its
    /// fold from the store and reads again from the stored positions.
    pub fn commit(
        &self,
        delta: &Delta,
        producers: &HashMap<ProducerKey, ProducerState>,
        positions: &BTreeMap<String, SourcePos>,
    ) -> Result<CommitSummary, LedgerError> {
        let mut summary = CommitSummary {
            changed_keys: BTreeSet::new(),
            stats: delta.stats,
        };
        let mut aggs: BTreeMap<Vec<u8>, [u64; COUNTER_WORDS]> = BTreeMap::new();
        let mut totals: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for (key, counters) in delta.rows.iter() {
            let words = *counters;
            let admitted = words[0];
            for (dim, id) in dimensions(&key) {
                let slot = aggs
                    .entry(agg_key(dim, &id, key.bucket_ms, key.level))
                    .or_insert([0; COUNTER_WORDS]);
                add_words(slot, &words);
            }
            if admitted > 0 {
                for (period, value) in [(0u8, key.day), (1u8, key.month)] {
                    let slot = totals
                        .entry(totals_key(period, key.apikey, value, key.node))
                        .or_insert(0);
                    *slot = slot.saturating_add(admitted);
                }
                if !summary.changed_keys.contains(key.apikey) {
                    summary.changed_keys.insert(key.apikey.to_string());
                }
            }
        }

        let tx = begin_write(&self.db)?;
        {
            let mut table = tx.open_table(AGG).map_err(LedgerError::store("open agg"))?;
            for (key, add) in &aggs {
                let mut words = table
                    .get(key.as_slice())
                    .map_err(LedgerError::store("read agg"))?
                    .map_or([0; COUNTER_WORDS], |v| decode_words(v.value()));
                add_words(&mut words, add);
                table
                    .insert(key.as_slice(), encode_words(&words).as_slice())
                    .map_err(LedgerError::store("write agg"))?;
            }
            // Resets before the chunk's totals: a reset's baseline is the store's totals as
            // they were plus what the chunk held of the key when the reset was folded.
            write_resets(&tx, delta, &mut summary)?;
            let mut table = tx
                .open_table(TOTALS)
                .map_err(LedgerError::store("open totals"))?;
            for (key, add) in &totals {
                add_u64(&mut table, key, *add, ("read totals", "write totals"))?;
            }
            let mut table = tx
                .open_table(PRODUCERS)
                .map_err(LedgerError::store("open producers"))?;
            for key in &delta.producers {
                if let Some(state) = producers.get(key) {
                    table
                        .insert(
                            producer_key(key).as_slice(),
                            encode_producer(state).as_slice(),
                        )
                        .map_err(LedgerError::store("write producer"))?;
                }
            }
            let mut table = tx
                .open_table(POSITIONS)
                .map_err(LedgerError::store("open positions"))?;
            for source in &delta.sources {
                if let Some(pos) = positions.get(source) {
                    table
                        .insert(source.as_str(), encode_position(pos).as_slice())
                        .map_err(LedgerError::store("write position"))?;
                }
            }
            let mut table = tx
                .open_table(QUARANTINE)
                .map_err(LedgerError::store("open quarantine"))?;
            for q in &delta.quarantine {
                let value = serde_json::json!({
                    "source": q.source,
                    "offset": q.offset,
                    "kind": q.kind,
                    "error": q.error,
                    "bytes": q.payload.len(),
                    "payload_hex": hex(&q.payload),
                });
                table
                    .insert(
                        quarantine_key(&q.source, q.offset).as_str(),
                        value.to_string().as_bytes(),
                    )
                    .map_err(LedgerError::store("write quarantine"))?;
            }
            let mut table = tx
                .open_table(HISTORY)
                .map_err(LedgerError::store("open history"))?;
            for h in &delta.history {
                table
                    .insert(
                        history_key(h.kind, &h.entity_id, Some(h.version)).as_slice(),
                        h.json.as_slice(),
                    )
                    .map_err(LedgerError::store("write history"))?;
            }
            let mut table = tx
                .open_table(COUNTERS)
                .map_err(LedgerError::store("open counters"))?;
            for (name, add) in delta.stats.fields() {
                if add == 0 {
                    continue;
                }
                let current = table
                    .get(name)
                    .map_err(LedgerError::store("read counter"))?
                    .map_or(0, |v| v.value());
                table
                    .insert(name, current.saturating_add(add))
                    .map_err(LedgerError::store("write counter"))?;
            }
        }
        tx.commit().map_err(LedgerError::store("commit"))?;
        Ok(summary)
    }

    /// Every producer's sequence state.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`] or [`LedgerErrorKind::Corrupt`].
    pub fn producers(&self) -> Result<HashMap<ProducerKey, ProducerState>, LedgerError> {
        let mut out = HashMap::new();
        self.scan(PRODUCERS, &[], |k, v| {
            let key = decode_producer_key(k).ok_or_else(|| corrupt("producer key"))?;
            let state = decode_producer(v).ok_or_else(|| corrupt("producer state"))?;
            out.insert(key, state);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every source's position.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`] or [`LedgerErrorKind::Corrupt`].
    pub fn positions(&self) -> Result<BTreeMap<String, SourcePos>, LedgerError> {
        let mut out = BTreeMap::new();
        self.scan_named(POSITIONS, |k, v| {
            let pos = decode_position(v).ok_or_else(|| corrupt("position"))?;
            out.insert(k.to_owned(), pos);
            Ok(())
        })?;
        Ok(out)
    }

    /// The fold's counters, summed over every commit.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn stats(&self) -> Result<FoldStats, LedgerError> {
        let tx = self
            .db
            .begin_read()
            .map_err(LedgerError::store("begin read"))?;
        let table = tx
            .open_table(COUNTERS)
            .map_err(LedgerError::store("open counters"))?;
        let mut stats = FoldStats::default();
        for item in table.iter().map_err(LedgerError::store("scan counters"))? {
            let (k, v) = item.map_err(LedgerError::store("scan counters"))?;
            stats.set(k.value(), v.value());
        }
        Ok(stats)
    }

    /// The aggregates of `id` in `dim` with a bucket in `from_ms..to_ms`, in bucket order.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`] or [`LedgerErrorKind::Corrupt`].
    pub fn aggregates(
        &self,
        dim: Dimension,
        id: &str,
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<AggRow>, LedgerError> {
        let mut out = Vec::new();
        let prefix = agg_prefix(dim, id);
        let start = agg_key(dim, id, from_ms, 0);
        self.scan(AGG, &start, |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            let row = decode_agg(k, v).ok_or_else(|| corrupt("aggregate"))?;
            if row.bucket_ms >= to_ms {
                return Ok(false);
            }
            out.push(row);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Calls `each` with every aggregate of `dim` whose bucket is in `from_ms..to_ms`, in key
    /// order (by id, then bucket).
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`] or [`LedgerErrorKind::Corrupt`].
    pub fn each_aggregate(
        &self,
        dim: Dimension,
        from_ms: i64,
        to_ms: i64,
        mut each: impl FnMut(AggRow),
    ) -> Result<(), LedgerError> {
        let prefix = [dim as u8];
        self.scan(AGG, &prefix, |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            let row = decode_agg(k, v).ok_or_else(|| corrupt("aggregate"))?;
            if (from_ms..to_ms).contains(&row.bucket_ms) {
                each(row);
            }
            Ok(true)
        })
    }

    /// The totals of `apikey` for `day` and its month, with the per-node breakdown; `None` if
    /// the key has no admitted call in that month.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`] or [`LedgerErrorKind::Corrupt`].
    pub fn totals(
        &self,
        apikey: &str,
        day: u32,
        updated_at: i64,
        node: Option<&str>,
    ) -> Result<Option<TotalsRecord>, LedgerError> {
        let month = day / 100;
        let mut nodes = self.node_calls(TOTALS, apikey, day)?;
        if nodes.is_empty() {
            return Ok(None);
        }
        let quotas_reset_at = self.reset_of(apikey)?;
        if quotas_reset_at.is_some() {
            for (node_id, before) in self.node_calls(BASELINE, apikey, day)? {
                if let Some(slot) = nodes.get_mut(&node_id) {
                    slot.daily_calls = slot.daily_calls.saturating_sub(before.daily_calls);
                    slot.monthly_calls = slot.monthly_calls.saturating_sub(before.monthly_calls);
                }
            }
        }
        let (daily, monthly) = nodes.values().fold((0u64, 0u64), |(d, m), n| {
            (
                d.saturating_add(n.daily_calls),
                m.saturating_add(n.monthly_calls),
            )
        });
        Ok(Some(TotalsRecord {
            apikey: apikey.to_owned(),
            day,
            month,
            daily_calls: daily,
            monthly_calls: monthly,
            updated_at,
            node: node.map(str::to_owned),
            nodes,
            quotas_reset_at,
        }))
    }

    /// `apikey`'s calls by node on `day` (`YYYYMMDD`) and in its month, from `table` (`totals`
    /// or `reset_baseline`, keyed alike).
    fn node_calls(
        &self,
        table: TableDefinition<&[u8], &[u8]>,
        apikey: &str,
        day: u32,
    ) -> Result<BTreeMap<String, NodeCalls>, LedgerError> {
        let mut nodes: BTreeMap<String, NodeCalls> = BTreeMap::new();
        for (period, value) in [(0u8, day), (1u8, day / 100)] {
            let prefix = totals_key(period, apikey, value, "");
            self.scan(table, &prefix, |k, v| {
                if !k.starts_with(&prefix) {
                    return Ok(false);
                }
                let node_id = k
                    .get(prefix.len()..)
                    .and_then(|n| std::str::from_utf8(n).ok())
                    .ok_or_else(|| corrupt("totals key"))?;
                let calls = read_u64(v);
                let slot = nodes.entry(node_id.to_owned()).or_default();
                if period == 0 {
                    slot.daily_calls = calls;
                } else {
                    slot.monthly_calls = calls;
                }
                Ok(true)
            })?;
        }
        Ok(nodes)
    }

    /// The latest quota reset of `apikey` folded, if any (ms since the epoch).
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn reset_of(&self, apikey: &str) -> Result<Option<i64>, LedgerError> {
        let tx = self
            .db
            .begin_read()
            .map_err(LedgerError::store("begin read"))?;
        let table = tx
            .open_table(RESETS)
            .map_err(LedgerError::store("open resets"))?;
        Ok(table
            .get(apikey)
            .map_err(LedgerError::store("read reset"))?
            .map(|v| v.value()))
    }

    /// Every key's latest quota reset (for [`crate::fold::Fold::with_resets`]).
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn resets(&self) -> Result<HashMap<String, i64>, LedgerError> {
        let mut out = HashMap::new();
        self.scan_named(RESETS, |k, at| {
            out.insert(k.to_owned(), at);
            Ok(())
        })?;
        Ok(out)
    }

    /// Every API key with admitted calls in `month` (`YYYYMM`).
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`] or [`LedgerErrorKind::Corrupt`].
    pub fn keys_in_month(&self, month: u32) -> Result<BTreeSet<String>, LedgerError> {
        let mut out = BTreeSet::new();
        self.scan(TOTALS, &[1u8], |k, _| {
            let Some((apikey, rest)) = k.get(1..).and_then(split_str) else {
                return Err(corrupt("totals key"));
            };
            let period = rest
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_be_bytes);
            if period == Some(month) && !out.contains(apikey) {
                out.insert(apikey.to_owned());
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Every version of entity `kind/id` ever folded, oldest first: the events' JSON.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn history(&self, kind: &str, id: &str) -> Result<Vec<Vec<u8>>, LedgerError> {
        let prefix = history_key(kind, id, None);
        let mut out = Vec::new();
        self.scan(HISTORY, &prefix, |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            out.push(v.to_vec());
            Ok(true)
        })?;
        Ok(out)
    }

    /// Calls `each` with every folded event of entity kind `kind` (every id, every version), in
    /// key order.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn each_history(&self, kind: &str, mut each: impl FnMut(&[u8])) -> Result<(), LedgerError> {
        let mut prefix = Vec::new();
        push_str(&mut prefix, kind);
        self.scan(HISTORY, &prefix, |k, v| {
            if !k.starts_with(&prefix) {
                return Ok(false);
            }
            each(v);
            Ok(true)
        })
    }

    /// The quarantined records (their description, payload in hex), in source/offset order.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn quarantine(&self) -> Result<Vec<serde_json::Value>, LedgerError> {
        let tx = self
            .db
            .begin_read()
            .map_err(LedgerError::store("begin read"))?;
        let table = tx
            .open_table(QUARANTINE)
            .map_err(LedgerError::store("open quarantine"))?;
        let mut out = Vec::new();
        for item in table
            .iter()
            .map_err(LedgerError::store("scan quarantine"))?
        {
            let (_, v) = item.map_err(LedgerError::store("scan quarantine"))?;
            out.push(serde_json::from_slice(v.value()).unwrap_or(serde_json::Value::Null));
        }
        Ok(out)
    }

    /// SHA-256 over the ledger's state, canonically: the aggregates, the totals, the producers'
    /// sequence state and the entity history, each table in key order, every key and value
    /// length-prefixed. Positions, counters and the quarantine are left out: two stores that
    /// folded the same log hold the same state whatever their positions' names or how many
    /// times a record was re-read. Hex.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`].
    pub fn state_hash(&self) -> Result<String, LedgerError> {
        let mut hasher = Sha256::new();
        for (name, table) in [
            ("agg", AGG),
            ("totals", TOTALS),
            ("producers", PRODUCERS),
            ("history", HISTORY),
        ] {
            hasher.update(name.as_bytes());
            self.scan(table, &[], |k, v| {
                hasher.update((k.len() as u64).to_le_bytes());
                hasher.update(k);
                hasher.update((v.len() as u64).to_le_bytes());
                hasher.update(v);
                Ok(true)
            })?;
        }
        Ok(hex(&hasher.finalize()))
    }

    /// Writes every aggregate, total, producer, position and quarantined record as JSON lines.
    ///
    /// # Errors
    ///
    /// [`LedgerErrorKind::Store`], or [`LedgerErrorKind::Io`] writing `out`.
    pub fn dump(&self, out: &mut dyn std::io::Write) -> Result<(), LedgerError> {
        let io = |e| LedgerError::with(LedgerErrorKind::Io, "write dump", e);
        let mut lines = Vec::new();
        self.scan(AGG, &[], |k, v| {
            let row = decode_agg(k, v).ok_or_else(|| corrupt("aggregate"))?;
            let mut line = counters_json(&row.counters);
            if let Some(obj) = line.as_object_mut() {
                obj.insert("type".into(), "aggregate".into());
                obj.insert("dimension".into(), row.dim.as_str().into());
                obj.insert("id".into(), row.id.into());
                obj.insert("bucket_ms".into(), row.bucket_ms.into());
                obj.insert("late".into(), row.level.into());
            }
            lines.push(line);
            Ok(true)
        })?;
        self.scan(TOTALS, &[], |k, v| {
            let (kind, apikey, period, node) =
                decode_totals_key(k).ok_or_else(|| corrupt("totals key"))?;
            let calls = read_u64(v);
            lines.push(serde_json::json!({
                "type": if kind == 0 { "daily_calls" } else { "monthly_calls" },
                "apikey": apikey, "period": period, "node": node, "calls": calls,
            }));
            Ok(true)
        })?;
        let mut resets: Vec<_> = self.resets()?.into_iter().collect();
        resets.sort();
        for (apikey, at) in resets {
            lines.push(serde_json::json!({"type": "quotas_reset", "apikey": apikey, "at": at}));
        }
        self.scan(BASELINE, &[], |k, v| {
            let (kind, apikey, period, node) =
                decode_totals_key(k).ok_or_else(|| corrupt("reset baseline key"))?;
            lines.push(serde_json::json!({
                "type": if kind == 0 { "daily_calls_before_reset" } else { "monthly_calls_before_reset" },
                "apikey": apikey, "period": period, "node": node, "calls": read_u64(v),
            }));
            Ok(true)
        })?;
        for line in &lines {
            writeln!(out, "{line}").map_err(io)?;
        }
        let mut producers: Vec<_> = self.producers()?.into_iter().collect();
        producers.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, state) in producers {
            let line = serde_json::json!({"type": "producer", "producer": key, "next": state.next,
                "above": state.above, "missing": state.missing()});
            writeln!(out, "{line}").map_err(io)?;
        }
        for (source, pos) in self.positions()? {
            let line = serde_json::json!({"type": "position", "source": source,
                "next": pos.next, "high_water_ms": pos.high_water_ms});
            writeln!(out, "{line}").map_err(io)?;
        }
        for q in self.quarantine()? {
            let line = serde_json::json!({"type": "quarantined", "record": q});
            writeln!(out, "{line}").map_err(io)?;
        }
        let stats = serde_json::to_value(self.stats()?).unwrap_or_default();
        writeln!(
            out,
            "{}",
            serde_json::json!({"type": "counters", "counters": stats})
        )
        .map_err(io)?;
        writeln!(
            out,
            "{}",
            serde_json::json!({"type": "state_hash", "state_hash": self.state_hash()?})
        )
        .map_err(io)?;
        Ok(())
    }

    /// Calls `each(key, value)` for the rows of a byte-keyed table from `start` on, until it
    /// returns `Ok(false)`.
    /// Every row of a table keyed by name, in key order.
    fn scan_named<V>(
        &self,
        def: TableDefinition<&str, V>,
        mut each: impl FnMut(&str, V::SelfType<'_>) -> Result<(), LedgerError>,
    ) -> Result<(), LedgerError>
    where
        V: redb::Value + 'static,
    {
        let tx = self
            .db
            .begin_read()
            .map_err(LedgerError::store("begin read"))?;
        let table = tx
            .open_table(def)
            .map_err(LedgerError::store("open table"))?;
        for item in table.iter().map_err(LedgerError::store("scan"))? {
            let (k, v) = item.map_err(LedgerError::store("scan"))?;
            each(k.value(), v.value())?;
        }
        Ok(())
    }

    fn scan(
        &self,
        def: TableDefinition<&[u8], &[u8]>,
        start: &[u8],
        mut each: impl FnMut(&[u8], &[u8]) -> Result<bool, LedgerError>,
    ) -> Result<(), LedgerError> {
        let tx = self
            .db
            .begin_read()
            .map_err(LedgerError::store("begin read"))?;
        let table = tx
            .open_table(def)
            .map_err(LedgerError::store("open table"))?;
        let range = table
            .range::<&[u8]>(start..)
            .map_err(LedgerError::store("scan"))?;
        for item in range {
            let (k, v) = item.map_err(LedgerError::store("scan"))?;
            if !each(k.value(), v.value())? {
                break;
            }
        }
        Ok(())
    }
}

/// Writes the chunk's quota resets (each newer one replaces its key's baseline with the store's
/// totals plus the chunk's calls before it), then adds the calls the chunk put before a reset.
fn write_resets(
    tx: &redb::WriteTransaction,
    delta: &Delta,
    summary: &mut CommitSummary,
) -> Result<(), LedgerError> {
    if delta.resets.is_empty() && delta.baseline.is_empty() {
        return Ok(());
    }
    let mut resets = tx
        .open_table(RESETS)
        .map_err(LedgerError::store("open resets"))?;
    let totals = tx
        .open_table(TOTALS)
        .map_err(LedgerError::store("open totals"))?;
    let mut baseline = tx
        .open_table(BASELINE)
        .map_err(LedgerError::store("open reset baseline"))?;
    for reset in &delta.resets {
        let known = resets
            .get(reset.apikey.as_str())
            .map_err(LedgerError::store("read reset"))?
            .map(|v| v.value());
        if known.is_some_and(|k| k >= reset.at) {
            continue;
        }
        resets
            .insert(reset.apikey.as_str(), reset.at)
            .map_err(LedgerError::store("write reset"))?;
        let mut before: BTreeMap<Vec<u8>, u64> = BTreeMap::new();
        for period in [0u8, 1u8] {
            let mut prefix = vec![period];
            push_str(&mut prefix, &reset.apikey);
            let stale: Vec<Vec<u8>> = baseline
                .range::<&[u8]>(prefix.as_slice()..)
                .map_err(LedgerError::store("scan reset baseline"))?
                .map_while(|item| {
                    item.ok()
                        .map(|(k, _)| k.value().to_vec())
                        .filter(|k| k.starts_with(&prefix))
                })
                .collect();
            for key in stale {
                baseline
                    .remove(key.as_slice())
                    .map_err(LedgerError::store("clear reset baseline"))?;
            }
            for item in totals
                .range::<&[u8]>(prefix.as_slice()..)
                .map_err(LedgerError::store("scan totals"))?
            {
                let (k, v) = item.map_err(LedgerError::store("scan totals"))?;
                if !k.value().starts_with(&prefix) {
                    break;
                }
                before.insert(k.value().to_vec(), read_u64(v.value()));
            }
        }
        for ((period, id, node), calls) in &reset.chunk_calls {
            let slot = before
                .entry(totals_key(*period, &reset.apikey, *id, node))
                .or_insert(0);
            *slot = slot.saturating_add(*calls);
        }
        for (key, calls) in &before {
            baseline
                .insert(key.as_slice(), calls.to_le_bytes().as_slice())
                .map_err(LedgerError::store("write reset baseline"))?;
        }
        summary.changed_keys.insert(reset.apikey.clone());
    }
    for ((period, apikey, id, node), calls) in &delta.baseline {
        let key = totals_key(*period, apikey, *id, node);
        add_u64(
            &mut baseline,
            &key,
            *calls,
            ("read reset baseline", "write reset baseline"),
        )?;
    }
    Ok(())
}

/// Adds `add` (saturating) to the little-endian counter at `key` of a totals-shaped table (0
/// when absent); `context` names the read and the write in errors.
fn add_u64(
    table: &mut redb::Table<&[u8], &[u8]>,
    key: &[u8],
    add: u64,
    context: (&'static str, &'static str),
) -> Result<(), LedgerError> {
    let current = table
        .get(key)
        .map_err(LedgerError::store(context.0))?
        .map_or(0, |v| read_u64(v.value()));
    table
        .insert(key, current.saturating_add(add).to_le_bytes().as_slice())
        .map_err(LedgerError::store(context.1))?;
    Ok(())
}

fn read_u64(bytes: &[u8]) -> u64 {
    <[u8; 8]>::try_from(bytes).map_or(0, u64::from_le_bytes)
}

fn corrupt(what: &str) -> LedgerError {
    LedgerError::new(LedgerErrorKind::Corrupt, format!("store: bad {what}"))
}

/// The dimensions a row counts in.
fn dimensions<'a>(
    key: &RowRef<'a>,
) -> impl Iterator<Item = (Dimension, std::borrow::Cow<'a, str>)> {
    use std::borrow::Cow;
    let line = key.subscription.map(|s| {
        (
            Dimension::SubscriptionLine,
            Cow::Owned(subscription_line(
                key.api.unwrap_or_default(),
                key.consumer.unwrap_or_default(),
                s,
            )),
        )
    });
    [
        Some((Dimension::ApiKey, Cow::Borrowed(key.apikey))),
        key.consumer
            .map(|c| (Dimension::Consumer, Cow::Borrowed(c))),
        key.subscription
            .map(|s| (Dimension::Subscription, Cow::Borrowed(s))),
        key.api.map(|a| (Dimension::Api, Cow::Borrowed(a))),
        Some((Dimension::Route, Cow::Borrowed(key.route))),
        line,
    ]
    .into_iter()
    .flatten()
}

/// The id of a subscription's billing line.
#[must_use]
pub fn subscription_line(api: &str, consumer: &str, subscription: &str) -> String {
    format!("{api}/{consumer}/{subscription}")
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes().get(..usize::from(len)).unwrap_or_default());
}

fn split_str(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<2>()?;
    let len = usize::from(u16::from_be_bytes(*len));
    let s = std::str::from_utf8(rest.get(..len)?).ok()?;
    Some((s, rest.get(len..)?))
}

/// Big-endian with the sign bit flipped: byte order is numeric order.
fn ordered_i64(v: i64) -> [u8; 8] {
    ((v as u64) ^ (1 << 63)).to_be_bytes()
}

fn agg_prefix(dim: Dimension, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(3 + id.len() + 9);
    key.push(dim as u8);
    push_str(&mut key, id);
    key
}

fn agg_key(dim: Dimension, id: &str, bucket_ms: i64, level: u8) -> Vec<u8> {
    let mut key = agg_prefix(dim, id);
    key.extend_from_slice(&ordered_i64(bucket_ms));
    key.push(level);
    key
}

fn decode_agg(k: &[u8], v: &[u8]) -> Option<AggRow> {
    let (dim, rest) = k.split_first()?;
    let (id, rest) = split_str(rest)?;
    let (bucket, rest) = rest.split_first_chunk::<8>()?;
    let level = *rest.first()?;
    Some(AggRow {
        dim: Dimension::from_byte(*dim)?,
        id: id.to_owned(),
        bucket_ms: (u64::from_be_bytes(*bucket) ^ (1 << 63)) as i64,
        level,
        counters: from_words(&decode_words(v)),
    })
}

fn totals_key(period: u8, apikey: &str, value: u32, node: &str) -> Vec<u8> {
    let mut key = vec![period];
    push_str(&mut key, apikey);
    key.extend_from_slice(&value.to_be_bytes());
    key.extend_from_slice(node.as_bytes());
    key
}

/// `(period 0 = day | 1 = month, apikey, day or month id, node)` of a `totals` (or
/// `reset_baseline`) key.
fn decode_totals_key(k: &[u8]) -> Option<(u8, &str, u32, std::borrow::Cow<'_, str>)> {
    let (kind, rest) = k.split_first()?;
    let (apikey, rest) = split_str(rest)?;
    let period = u32::from_be_bytes(*rest.first_chunk::<4>()?);
    let node = String::from_utf8_lossy(rest.get(4..)?);
    Some((*kind, apikey, period, node))
}

fn producer_key(key: &ProducerKey) -> Vec<u8> {
    let mut out = Vec::new();
    push_str(&mut out, &key.node);
    out.extend_from_slice(&key.epoch.to_be_bytes());
    out.extend_from_slice(&key.core.to_be_bytes());
    out.extend_from_slice(&key.partition.to_be_bytes());
    out
}

fn decode_producer_key(bytes: &[u8]) -> Option<ProducerKey> {
    let (node, rest) = split_str(bytes)?;
    let (epoch, rest) = rest.split_first_chunk::<8>()?;
    let (core, rest) = rest.split_first_chunk::<2>()?;
    let (partition, _) = rest.split_first_chunk::<4>()?;
    Some(ProducerKey {
        node: node.to_owned(),
        epoch: u64::from_be_bytes(*epoch),
        core: u16::from_be_bytes(*core),
        partition: u32::from_be_bytes(*partition),
    })
}

fn encode_producer(state: &ProducerState) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + 8 * state.above.len());
    out.extend_from_slice(&state.next.to_le_bytes());
    for seq in &state.above {
        out.extend_from_slice(&seq.to_le_bytes());
    }
    out
}

fn decode_producer(bytes: &[u8]) -> Option<ProducerState> {
    let (next, mut rest) = bytes.split_first_chunk::<8>()?;
    let mut state = ProducerState {
        next: u64::from_le_bytes(*next),
        above: BTreeSet::new(),
    };
    while let Some((seq, tail)) = rest.split_first_chunk::<8>() {
        state.above.insert(u64::from_le_bytes(*seq));
        rest = tail;
    }
    rest.is_empty().then_some(state)
}

fn encode_position(pos: &SourcePos) -> [u8; 16] {
    let mut out = [0u8; 16];
    let (a, b) = out.split_at_mut(8);
    a.copy_from_slice(&pos.next.to_le_bytes());
    b.copy_from_slice(&pos.high_water_ms.to_le_bytes());
    out
}

fn decode_position(bytes: &[u8]) -> Option<SourcePos> {
    let (next, rest) = bytes.split_first_chunk::<8>()?;
    let (hw, _) = rest.split_first_chunk::<8>()?;
    Some(SourcePos {
        next: u64::from_le_bytes(*next),
        high_water_ms: i64::from_le_bytes(*hw),
    })
}

fn quarantine_key(source: &str, offset: u64) -> String {
    format!("{source}@{offset:020}")
}

/// History key: kind, id, then the version big-endian so versions come out in order.
fn history_key(kind: &str, id: &str, version: Option<u64>) -> Vec<u8> {
    let mut key = Vec::new();
    push_str(&mut key, kind);
    push_str(&mut key, id);
    if let Some(v) = version {
        key.extend_from_slice(&v.to_be_bytes());
    }
    key
}

/// The counters as 17 words, in a fixed order.
#[must_use]
pub fn to_words(c: &UsageCounters) -> [u64; COUNTER_WORDS] {
    let r = &c.rejected;
    let s = &c.status;
    [
        c.admitted,
        r.auth,
        r.disabled,
        r.not_authorized,
        r.restriction,
        r.read_only,
        r.throttled,
        r.quota_daily,
        r.quota_monthly,
        r.other,
        c.bytes_in,
        c.bytes_out,
        s.informational,
        s.success,
        s.redirection,
        s.client_error,
        s.server_error,
    ]
}

/// The inverse of [`to_words`].
#[must_use]
pub fn from_words(w: &[u64; COUNTER_WORDS]) -> UsageCounters {
    let [
        admitted,
        auth,
        disabled,
        not_authorized,
        restriction,
        read_only,
        throttled,
        quota_daily,
        quota_monthly,
        other,
        bytes_in,
        bytes_out,
        informational,
        success,
        redirection,
        client_error,
        server_error,
    ] = *w;
    UsageCounters {
        admitted,
        rejected: gateway_model::event::Rejections {
            auth,
            disabled,
            not_authorized,
            restriction,
            read_only,
            throttled,
            quota_daily,
            quota_monthly,
            other,
        },
        bytes_in,
        bytes_out,
        status: gateway_model::event::StatusClasses {
            informational,
            success,
            redirection,
            client_error,
            server_error,
        },
    }
}

/// Counters as words: admitted, the 9 rejection reasons, bytes in, bytes out, the 5 status
/// classes.
pub type Words = [u64; COUNTER_WORDS];

/// The words of archived counters, read straight from a validated batch.
#[must_use]
pub fn archived_words(c: &gateway_model::event::ArchivedUsageCounters) -> Words {
    let r = &c.rejected;
    let s = &c.status;
    [
        c.admitted.to_native(),
        r.auth.to_native(),
        r.disabled.to_native(),
        r.not_authorized.to_native(),
        r.restriction.to_native(),
        r.read_only.to_native(),
        r.throttled.to_native(),
        r.quota_daily.to_native(),
        r.quota_monthly.to_native(),
        r.other.to_native(),
        c.bytes_in.to_native(),
        c.bytes_out.to_native(),
        s.informational.to_native(),
        s.success.to_native(),
        s.redirection.to_native(),
        s.client_error.to_native(),
        s.server_error.to_native(),
    ]
}

/// Adds `add` to `into`, word by word, saturating.
pub fn add_words(into: &mut [u64; COUNTER_WORDS], add: &[u64; COUNTER_WORDS]) {
    for (a, b) in into.iter_mut().zip(add) {
        *a = a.saturating_add(*b);
    }
}

fn encode_words(w: &[u64; COUNTER_WORDS]) -> [u8; COUNTER_WORDS * 8] {
    let mut out = [0u8; COUNTER_WORDS * 8];
    for (chunk, word) in out.chunks_exact_mut(8).zip(w) {
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    out
}

fn decode_words(bytes: &[u8]) -> [u64; COUNTER_WORDS] {
    let mut out = [0u64; COUNTER_WORDS];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        *word = <[u8; 8]>::try_from(chunk).map_or(0, u64::from_le_bytes);
    }
    out
}

/// Counters as JSON (`calls`, `rejected`, `rejected_by_reason`, bytes, `status`).
#[must_use]
pub fn counters_json(c: &UsageCounters) -> serde_json::Value {
    serde_json::json!({
        "calls": c.admitted,
        "rejected": c.rejected.total(),
        "rejected_by_reason": c.rejected,
        "bytes_in": c.bytes_in,
        "bytes_out": c.bytes_out,
        "status": c.status,
    })
}

/// Lowercase hex.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        for nibble in [b >> 4, b & 15] {
            out.push(char::from(
                DIGITS.get(usize::from(nibble)).copied().unwrap_or(b'0'),
            ));
        }
    }
    out
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn opening_creates_whole_files_names_holders_and_explains_foreign_files() {
        let dir = std::env::temp_dir().join(format!("ledger-store-open-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("ledger").join("ledger.redb");
        let store = Store::open(&path).unwrap();
        let names: Vec<String> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains(".init-")), "{names:?}");
        assert!(pid_file(&path).exists());
        // A second opener is told who holds it.
        let held = Store::open(&path).unwrap_err();
        assert_eq!(held.kind, LedgerErrorKind::Locked);
        assert!(
            held.to_string().contains("is open in this process"),
            "{held}"
        );
        drop(store);
        assert!(!pid_file(&path).exists());
        assert!(Store::open(&path).is_ok());

        // What a start killed while redb created the file used to leave behind.
        let foreign = dir.join("foreign.redb");
        std::fs::write(&foreign, vec![0u8; 4096]).unwrap();
        let e = Store::open(&foreign).unwrap_err();
        assert_eq!(e.kind, LedgerErrorKind::Corrupt);
        assert!(e.to_string().contains("is not a redb file"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[cfg(test)]
mod kill_tests {
    use std::io::BufRead;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const WRITER: &str = "TOLLGATE_STORE_WRITER";

    /// The writer half of the tests below, run in a child process of this test binary: commits
    /// until killed, as the ledger does (`quick`) or with plain redb commits (the old way).
    #[test]
    #[ignore = "run by a_store_killed_while_committing_opens_without_a_full_repair"]
    fn writer_until_killed() {
        let Some(path) = std::env::var_os(WRITER) else {
            return;
        };
        let path = std::path::PathBuf::from(path);
        let quick = std::env::var_os("TOLLGATE_STORE_PLAIN").is_none();
        let store = Store::open(&path).unwrap();
        let mut said = false;
        for n in 0u64.. {
            if quick {
                store
                    .commit(&Delta::default(), &HashMap::new(), &BTreeMap::new())
                    .unwrap();
            } else {
                let tx = store.db.begin_write().unwrap();
                tx.open_table(COUNTERS).unwrap().insert("n", n).unwrap();
                tx.commit().unwrap();
            }
            if !said {
                println!("writing");
                said = true;
            }
        }
    }

    /// Kills a child committing to `path` in a loop, then opens the file and says whether redb
    /// had to repair it page by page.
    fn kill_writer_and_reopen(path: &Path, plain: bool) -> bool {
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "--exact",
            "store::kill_tests::writer_until_killed",
            "--ignored",
            "--nocapture",
        ])
        .env(WRITER, path)
        .stdout(std::process::Stdio::piped());
        if plain {
            cmd.env("TOLLGATE_STORE_PLAIN", "1");
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        assert!(
            stdout
                .lines()
                .map_while(Result::ok)
                .any(|l| l.contains("writing")),
            "the writer never committed"
        );
        std::thread::sleep(std::time::Duration::from_millis(150));
        child.kill().unwrap(); // SIGKILL, mid-commit or between two
        child.wait().unwrap();
        let repaired = Arc::new(AtomicBool::new(false));
        let flag = repaired.clone();
        let mut b = Database::builder();
        b.set_repair_callback(move |_| flag.store(true, Ordering::Relaxed));
        let db = b.create(path).unwrap();
        drop(db);
        // And the ledger opens it.
        drop(Store::open(path).unwrap());
        repaired.load(Ordering::Relaxed)
    }

    #[test]
    fn a_store_killed_while_committing_opens_without_a_full_repair() {
        let dir = std::env::temp_dir().join(format!("ledger-store-kill-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("ledger.redb");
        drop(Store::open(&path).unwrap());
        // The old way first: the test bites.
        assert!(
            kill_writer_and_reopen(&path, true),
            "plain commits killed: redb should have repaired the file"
        );
        for _ in 0..3 {
            assert!(
                !kill_writer_and_reopen(&path, false),
                "the ledger's commits killed: the open walked the whole file"
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
