//! Usage batches (`tollgate.usage`): per-core usage deltas, rkyv behind a version byte.
//!
//! Wire layout of version 1 (docs/events.md):
//!
//! ```text
//! [0x01] [archive length: u32 little-endian] [rkyv 0.8 archive of UsageBatch]
//! ```
//!
//! The archive uses rkyv's default format (little-endian, 32-bit relative pointers, aligned) and
//! is laid out as if it began at offset 0, so it must be read from 16-byte-aligned memory; the
//! decoder copies it into an aligned scratch buffer (one `memcpy`, no allocation once warm).
//! The length makes every truncation an error instead of a misread, and bytecheck validates
//! every pointer, length, UTF-8 string and option tag before anything is read.

use std::fmt;

use rkyv::rancor;
use rkyv::ser::{Positional, Writer};
use rkyv::util::AlignedVec;
use serde::{Deserialize, Serialize};

use super::calendar::check_day_month;
use super::error::EventError;
use super::partition::partition_for;

/// Kafka topic (and journal stream) of usage batches.
pub const USAGE_TOPIC: &str = "tollgate.usage";

/// The format version this build writes. Decoders read every version up to this one.
pub const USAGE_BATCH_VERSION: u8 = 1;

const WHAT: &str = "usage batch";

/// Bytes before the archive: the version byte and the archive length.
const FRAME_HEADER: usize = 1 + 4;

/// The usage deltas one core accumulated for one partition over one window.
///
/// `(node, epoch, core, partition)` names the producer ([`ProducerId`]); `sequence` increases
/// strictly, by one, for each batch that producer sends, so a ledger deduplicates replays with
/// one integer per producer and notices gaps.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug), compare(PartialEq))]
#[serde(deny_unknown_fields)]
pub struct UsageBatch {
    /// The gateway node id (from its config).
    pub node: String,
    /// Boot epoch of the node: a value that grows with every start (ms of the start time, say),
    /// so sequences restart at 0 without clashing with the previous run's.
    pub epoch: u64,
    /// The core that produced the batch.
    pub core: u16,
    /// The partition of every entry: `partition_for(entry.apikey, partitions)`.
    pub partition: u32,
    /// The partition count the producer used; at least 1, greater than `partition`.
    pub partitions: u32,
    /// Strictly increasing per producer, starting at 0 for each epoch.
    pub sequence: u64,
    /// Start of the accumulation window, ms since the Unix epoch, inclusive.
    pub window_start_ms: i64,
    /// End of the accumulation window, ms since the Unix epoch, exclusive; `>= window_start_ms`.
    pub window_end_ms: i64,
    /// The deltas, at most one per identity ([`UsageEntry::identity`]) by convention.
    pub entries: Vec<UsageEntry>,
}

/// The usage of one key on one route on one calendar day, over the batch's window.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug), compare(PartialEq))]
#[serde(deny_unknown_fields)]
pub struct UsageEntry {
    /// API key id (`clientId`); decides the partition.
    pub apikey: String,
    /// The API the route belongs to, if any.
    pub api: Option<String>,
    /// The route id.
    pub route: String,
    /// The API consumer the key belongs to, if any.
    pub consumer: Option<String>,
    /// The subscription the call was billed to, if any.
    pub subscription: Option<String>,
    /// Calendar day in the gateway's time zone, `YYYYMMDD` (e.g. `20240229`).
    pub day: u32,
    /// Calendar month of `day`, `YYYYMM`; always `day / 100`.
    pub month: u32,
    /// What happened.
    pub counters: UsageCounters,
}

/// Counters of one usage entry; also the value a ledger folds entries into.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug), compare(PartialEq))]
#[serde(deny_unknown_fields)]
pub struct UsageCounters {
    /// Calls admitted (the only calls that consume quota).
    pub admitted: u64,
    /// Calls rejected, by reason.
    pub rejected: Rejections,
    /// Request bytes received from clients (head and body), admitted and rejected calls.
    pub bytes_in: u64,
    /// Response bytes sent to clients (head and body), admitted and rejected calls.
    pub bytes_out: u64,
    /// Status classes of the responses the clients received, admitted and rejected calls.
    pub status: StatusClasses,
}

/// Why a call made with an identified API key was refused. A closed set: a new reason is a new
/// format version.
///
/// Calls without a key, or with an unknown key, have no key to account them to and appear only
/// in metrics. Upstream failures are not rejections: the call was admitted, and its 502/503/504
/// shows in [`StatusClasses::server_error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// Bad secret, bad or badly signed JWT (401).
    Auth,
    /// Key disabled or past `validUntil` (401).
    Disabled,
    /// Key not authorised for this API or route (`authorizedEntities`,
    /// `constrainedServicesOnly`) (403).
    NotAuthorized,
    /// Refused by the key's or the route's restrictions: forbidden or not-found path (403/404).
    Restriction,
    /// Write method on a read-only key (405).
    ReadOnly,
    /// Over `throttlingQuota` (429).
    Throttled,
    /// Over `dailyQuota` (429).
    QuotaDaily,
    /// Over `monthlyQuota` (429).
    QuotaMonthly,
    /// Anything else the gateway refused after identifying the key.
    Other,
}

impl RejectReason {
    /// Every reason, in field order.
    pub const ALL: [Self; 9] = [
        Self::Auth,
        Self::Disabled,
        Self::NotAuthorized,
        Self::Restriction,
        Self::ReadOnly,
        Self::Throttled,
        Self::QuotaDaily,
        Self::QuotaMonthly,
        Self::Other,
    ];

    /// The snake_case name, as in JSON and metric labels.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Auth => "auth",
            Self::Disabled => "disabled",
            Self::NotAuthorized => "not_authorized",
            Self::Restriction => "restriction",
            Self::ReadOnly => "read_only",
            Self::Throttled => "throttled",
            Self::QuotaDaily => "quota_daily",
            Self::QuotaMonthly => "quota_monthly",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Rejected calls, one counter per [`RejectReason`].
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug), compare(PartialEq))]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)] // each field is the counter of the `RejectReason` of the same name
pub struct Rejections {
    pub auth: u64,
    pub disabled: u64,
    pub not_authorized: u64,
    pub restriction: u64,
    pub read_only: u64,
    pub throttled: u64,
    pub quota_daily: u64,
    pub quota_monthly: u64,
    pub other: u64,
}

impl Rejections {
    /// The counter of `reason`.
    #[must_use]
    pub const fn get(&self, reason: RejectReason) -> u64 {
        match reason {
            RejectReason::Auth => self.auth,
            RejectReason::Disabled => self.disabled,
            RejectReason::NotAuthorized => self.not_authorized,
            RejectReason::Restriction => self.restriction,
            RejectReason::ReadOnly => self.read_only,
            RejectReason::Throttled => self.throttled,
            RejectReason::QuotaDaily => self.quota_daily,
            RejectReason::QuotaMonthly => self.quota_monthly,
            RejectReason::Other => self.other,
        }
    }

    /// Adds `calls` to the counter of `reason` (saturating).
    pub fn add(&mut self, reason: RejectReason, calls: u64) {
        let counter = match reason {
            RejectReason::Auth => &mut self.auth,
            RejectReason::Disabled => &mut self.disabled,
            RejectReason::NotAuthorized => &mut self.not_authorized,
            RejectReason::Restriction => &mut self.restriction,
            RejectReason::ReadOnly => &mut self.read_only,
            RejectReason::Throttled => &mut self.throttled,
            RejectReason::QuotaDaily => &mut self.quota_daily,
            RejectReason::QuotaMonthly => &mut self.quota_monthly,
            RejectReason::Other => &mut self.other,
        };
        *counter = counter.saturating_add(calls);
    }

    /// All rejected calls (saturating).
    #[must_use]
    pub fn total(&self) -> u64 {
        RejectReason::ALL
            .iter()
            .fold(0u64, |sum, &reason| sum.saturating_add(self.get(reason)))
    }

    /// Adds every counter of `other` (saturating).
    pub fn merge(&mut self, other: &Self) {
        for reason in RejectReason::ALL {
            self.add(reason, other.get(reason));
        }
    }
}

/// Responses by status class. Statuses outside 100–599 are not counted.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug), compare(PartialEq))]
#[serde(deny_unknown_fields)]
pub struct StatusClasses {
    /// 1xx.
    pub informational: u64,
    /// 2xx.
    pub success: u64,
    /// 3xx.
    pub redirection: u64,
    /// 4xx, the gateway's own rejections included.
    pub client_error: u64,
    /// 5xx, the gateway's 502/503/504 included.
    pub server_error: u64,
}

impl StatusClasses {
    /// Counts one response with `status`; returns false (and counts nothing) outside 100–599.
    pub fn record(&mut self, status: u16) -> bool {
        let counter = match status / 100 {
            1 => &mut self.informational,
            2 => &mut self.success,
            3 => &mut self.redirection,
            4 => &mut self.client_error,
            5 => &mut self.server_error,
            _ => return false,
        };
        *counter = counter.saturating_add(1);
        true
    }

    /// All counted responses (saturating).
    #[must_use]
    pub const fn total(&self) -> u64 {
        self.informational
            .saturating_add(self.success)
            .saturating_add(self.redirection)
            .saturating_add(self.client_error)
            .saturating_add(self.server_error)
    }

    /// Adds every counter of `other` (saturating).
    pub const fn merge(&mut self, other: &Self) {
        self.informational = self.informational.saturating_add(other.informational);
        self.success = self.success.saturating_add(other.success);
        self.redirection = self.redirection.saturating_add(other.redirection);
        self.client_error = self.client_error.saturating_add(other.client_error);
        self.server_error = self.server_error.saturating_add(other.server_error);
    }
}

impl UsageCounters {
    /// Adds every counter of `other` (saturating: a sum that overflows `u64` stays at
    /// `u64::MAX` rather than wrapping to a small bill).
    pub fn merge(&mut self, other: &Self) {
        self.admitted = self.admitted.saturating_add(other.admitted);
        self.rejected.merge(&other.rejected);
        self.bytes_in = self.bytes_in.saturating_add(other.bytes_in);
        self.bytes_out = self.bytes_out.saturating_add(other.bytes_out);
        self.status.merge(&other.status);
    }

    /// Whether every counter is zero (such an entry need not be sent).
    #[must_use]
    pub fn is_zero(&self) -> bool {
        *self == Self::default()
    }
}

impl From<&ArchivedRejections> for Rejections {
    fn from(a: &ArchivedRejections) -> Self {
        Self {
            auth: a.auth.to_native(),
            disabled: a.disabled.to_native(),
            not_authorized: a.not_authorized.to_native(),
            restriction: a.restriction.to_native(),
            read_only: a.read_only.to_native(),
            throttled: a.throttled.to_native(),
            quota_daily: a.quota_daily.to_native(),
            quota_monthly: a.quota_monthly.to_native(),
            other: a.other.to_native(),
        }
    }
}

impl From<&ArchivedStatusClasses> for StatusClasses {
    fn from(a: &ArchivedStatusClasses) -> Self {
        Self {
            informational: a.informational.to_native(),
            success: a.success.to_native(),
            redirection: a.redirection.to_native(),
            client_error: a.client_error.to_native(),
            server_error: a.server_error.to_native(),
        }
    }
}

impl From<&ArchivedUsageCounters> for UsageCounters {
    fn from(a: &ArchivedUsageCounters) -> Self {
        Self {
            admitted: a.admitted.to_native(),
            rejected: Rejections::from(&a.rejected),
            bytes_in: a.bytes_in.to_native(),
            bytes_out: a.bytes_out.to_native(),
            status: StatusClasses::from(&a.status),
        }
    }
}

/// What a usage entry is about: entries with equal identities are merged by adding counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)] // the fields of `UsageEntry` of the same name
pub struct UsageIdentity<'a> {
    pub apikey: &'a str,
    pub api: Option<&'a str>,
    pub route: &'a str,
    pub consumer: Option<&'a str>,
    pub subscription: Option<&'a str>,
    pub day: u32,
    pub month: u32,
}

impl UsageEntry {
    /// Everything but the counters.
    #[must_use]
    pub fn identity(&self) -> UsageIdentity<'_> {
        UsageIdentity {
            apikey: &self.apikey,
            api: self.api.as_deref(),
            route: &self.route,
            consumer: self.consumer.as_deref(),
            subscription: self.subscription.as_deref(),
            day: self.day,
            month: self.month,
        }
    }

    /// Adds `other`'s counters to this entry's if both have the same identity; returns whether
    /// it did (on `false` nothing changed).
    #[must_use = "entries with different identities are not merged"]
    pub fn merge(&mut self, other: &Self) -> bool {
        if self.identity() != other.identity() {
            return false;
        }
        self.counters.merge(&other.counters);
        true
    }
}

impl ArchivedUsageEntry {
    /// Everything but the counters, borrowed from the archive.
    #[must_use]
    pub fn identity(&self) -> UsageIdentity<'_> {
        UsageIdentity {
            apikey: self.apikey.as_str(),
            api: self.api.as_ref().map(|s| s.as_str()),
            route: self.route.as_str(),
            consumer: self.consumer.as_ref().map(|s| s.as_str()),
            subscription: self.subscription.as_ref().map(|s| s.as_str()),
            day: self.day.to_native(),
            month: self.month.to_native(),
        }
    }

    /// The counters, in native byte order.
    #[must_use]
    pub fn counters(&self) -> UsageCounters {
        UsageCounters::from(&self.counters)
    }
}

/// The producer of a usage batch: the scope in which `sequence` increases.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProducerId {
    /// Gateway node id.
    pub node: String,
    /// Boot epoch of the node.
    pub epoch: u64,
    /// Core of the node.
    pub core: u16,
    /// Partition of the batch.
    pub partition: u32,
}

impl fmt::Display for ProducerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}@{}/core{}/p{}",
            self.node, self.epoch, self.core, self.partition
        )
    }
}

impl UsageBatch {
    /// The producer whose sequence this batch continues.
    #[must_use]
    pub fn producer(&self) -> ProducerId {
        ProducerId {
            node: self.node.clone(),
            epoch: self.epoch,
            core: self.core,
            partition: self.partition,
        }
    }

    /// Checks the invariants that [`encode`] and [`decode`] enforce: `1 <= partitions`,
    /// `partition < partitions`, `window_start_ms <= window_end_ms`, and for every entry a real
    /// `day`, `month == day / 100` and `partition_for(apikey, partitions) == partition`.
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), EventError> {
        check_batch(
            Header {
                partition: self.partition,
                partitions: self.partitions,
                window_start_ms: self.window_start_ms,
                window_end_ms: self.window_end_ms,
            },
            self.entries
                .iter()
                .map(|e| (e.apikey.as_str(), e.day, e.month)),
        )
    }
}

impl ArchivedUsageBatch {
    /// The producer whose sequence this batch continues.
    #[must_use]
    pub fn producer(&self) -> ProducerId {
        ProducerId {
            node: self.node.as_str().to_owned(),
            epoch: self.epoch.to_native(),
            core: self.core.to_native(),
            partition: self.partition.to_native(),
        }
    }

    /// Same checks as [`UsageBatch::validate`], on the archive.
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] naming the first offending field.
    pub fn validate(&self) -> Result<(), EventError> {
        check_batch(
            Header {
                partition: self.partition.to_native(),
                partitions: self.partitions.to_native(),
                window_start_ms: self.window_start_ms.to_native(),
                window_end_ms: self.window_end_ms.to_native(),
            },
            self.entries
                .iter()
                .map(|e| (e.apikey.as_str(), e.day.to_native(), e.month.to_native())),
        )
    }
}

struct Header {
    partition: u32,
    partitions: u32,
    window_start_ms: i64,
    window_end_ms: i64,
}

fn check_batch<'a>(
    header: Header,
    entries: impl Iterator<Item = (&'a str, u32, u32)>,
) -> Result<(), EventError> {
    if header.partitions == 0 {
        return Err(EventError::invalid(
            WHAT,
            "partitions",
            "must be at least 1",
        ));
    }
    if header.partition >= header.partitions {
        return Err(EventError::invalid(
            WHAT,
            "partition",
            format!(
                "{} is not below partitions ({})",
                header.partition, header.partitions
            ),
        ));
    }
    if header.window_start_ms > header.window_end_ms {
        return Err(EventError::invalid(
            WHAT,
            "window_end_ms",
            format!(
                "{} is before window_start_ms ({})",
                header.window_end_ms, header.window_start_ms
            ),
        ));
    }
    for (index, (apikey, day, month)) in entries.enumerate() {
        if let Err((field, reason)) = check_day_month(day, month) {
            return Err(EventError::invalid(
                WHAT,
                format!("entries[{index}].{field}"),
                reason,
            ));
        }
        let expected = partition_for(apikey, header.partitions);
        if expected != header.partition {
            return Err(EventError::invalid(
                WHAT,
                format!("entries[{index}].apikey"),
                format!(
                    "key {apikey:?} belongs to partition {expected} of {}, not {}",
                    header.partitions, header.partition
                ),
            ));
        }
    }
    Ok(())
}

/// Encodes `batch` (version [`USAGE_BATCH_VERSION`]) into a new buffer.
///
/// # Errors
///
/// [`EventError::Invalid`] if the batch breaks an invariant ([`UsageBatch::validate`]): a
/// producer learns of its bug here, not from a ledger that refuses the batch.
/// [`EventError::Encode`] if the archive would exceed 4 GiB.
pub fn encode(batch: &UsageBatch) -> Result<Vec<u8>, EventError> {
    let mut out = Vec::new();
    encode_into(batch, &mut out)?;
    Ok(out)
}

/// Appends the encoding of `batch` to `out`, so that a reused buffer (cleared by the caller)
/// makes encoding allocation-free once warm. On error `out` is left as it was.
///
/// # Errors
///
/// As [`encode`].
pub fn encode_into(batch: &UsageBatch, out: &mut Vec<u8>) -> Result<(), EventError> {
    batch.validate()?;
    let start = out.len();
    out.push(USAGE_BATCH_VERSION);
    out.extend_from_slice(&[0; 4]);
    let base = out.len();
    let written = rkyv::api::high::to_bytes_in::<_, rancor::Error>(batch, Tail { out, base })
        .map_err(|err| encode_error(Box::new(err)))
        .and_then(|tail| {
            u32::try_from(tail.out.len().saturating_sub(base))
                .map_err(|err| encode_error(Box::new(err)))
        });
    match written {
        Ok(len) => {
            if let Some(slot) = out.get_mut(start + 1..base) {
                slot.copy_from_slice(&len.to_le_bytes());
            }
            Ok(())
        }
        Err(err) => {
            out.truncate(start);
            Err(err)
        }
    }
}

fn encode_error(source: Box<dyn std::error::Error + Send + Sync>) -> EventError {
    EventError::Encode { what: WHAT, source }
}

/// An rkyv writer appending to a `Vec<u8>` whose positions count from `base`, so the archive is
/// laid out as if it started at offset 0 whatever precedes it in the buffer.
struct Tail<'a> {
    out: &'a mut Vec<u8>,
    base: usize,
}

impl Positional for Tail<'_> {
    fn pos(&self) -> usize {
        self.out.len().saturating_sub(self.base)
    }
}

impl<E> Writer<E> for Tail<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes an encoded batch of any supported version.
///
/// Allocates a scratch buffer per call; a consumer decoding many batches keeps a
/// [`UsageDecoder`].
///
/// # Errors
///
/// [`EventError::Empty`], [`EventError::UnknownVersion`], [`EventError::Framing`] (truncated or
/// padded), [`EventError::InvalidArchive`] (bytecheck refused it) or [`EventError::Invalid`]
/// (well formed, but an invariant of [`UsageBatch::validate`] is broken).
pub fn decode(bytes: &[u8]) -> Result<UsageBatch, EventError> {
    UsageDecoder::new().decode(bytes)
}

/// Decodes usage batches through a reused, aligned scratch buffer.
#[derive(Debug, Default)]
pub struct UsageDecoder {
    scratch: AlignedVec,
}

impl UsageDecoder {
    /// A decoder with an empty scratch buffer.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Validates `bytes` and returns a zero-copy view of the batch, borrowed from the decoder's
    /// scratch buffer: the ledger folds it without building a `UsageBatch`.
    ///
    /// # Errors
    ///
    /// As [`decode`].
    pub fn access(&mut self, bytes: &[u8]) -> Result<&ArchivedUsageBatch, EventError> {
        let archive = archive_of(bytes)?;
        self.scratch.clear();
        self.scratch.extend_from_slice(archive);
        let batch = rkyv::access::<ArchivedUsageBatch, rancor::Error>(self.scratch.as_slice())
            .map_err(|source| EventError::InvalidArchive { what: WHAT, source })?;
        batch.validate()?;
        Ok(batch)
    }

    /// Validates `bytes` and builds the batch they encode.
    ///
    /// # Errors
    ///
    /// As [`decode`].
    pub fn decode(&mut self, bytes: &[u8]) -> Result<UsageBatch, EventError> {
        let batch = self.access(bytes)?;
        rkyv::deserialize::<UsageBatch, rancor::Error>(batch)
            .map_err(|source| EventError::InvalidArchive { what: WHAT, source })
    }
}

/// Checks the version byte and the length, and returns the archive.
fn archive_of(bytes: &[u8]) -> Result<&[u8], EventError> {
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(EventError::Empty { what: WHAT });
    };
    if version != USAGE_BATCH_VERSION {
        return Err(EventError::UnknownVersion {
            what: WHAT,
            found: version,
            latest: USAGE_BATCH_VERSION,
        });
    }
    let Some((len, archive)) = rest.split_first_chunk::<4>() else {
        return Err(EventError::Framing {
            what: WHAT,
            reason: format!(
                "{} bytes in all, the header alone is {FRAME_HEADER}",
                bytes.len()
            ),
        });
    };
    let declared = u32::from_le_bytes(*len);
    if usize::try_from(declared).ok() != Some(archive.len()) {
        return Err(EventError::Framing {
            what: WHAT,
            reason: format!(
                "the header declares a {declared}-byte archive, {} bytes follow",
                archive.len()
            ),
        });
    }
    Ok(archive)
}
