//! Wire formats of Tollgate's three event streams (DESIGN §4, docs/events.md).
//!
//! - [`UsageBatch`] (`tollgate.usage`): per-core usage deltas, rkyv-encoded behind a format
//!   version byte and validated with bytecheck when read, so bytes from a broker or a journal are
//!   never trusted.
//! - [`EntityEvent`] (`tollgate.entities`, compacted on `kind/entity_id`): JSON envelopes of
//!   entity changes.
//! - [`TotalsRecord`] (`tollgate.totals`, compacted on the API key id): the ledger's per-key
//!   consumption for the current day and month.
//!
//! This module only turns values into bytes and bytes into values. It never does IO, never reads
//! a clock (times and calendar days are fields the caller fills in), never panics and never uses
//! `unsafe` on input: empty, truncated, foreign or hostile bytes come back as an [`EventError`].
//! Formats only ever grow by a new version; decoders keep reading every version ever written.

mod calendar;
mod entity;
mod error;
mod partition;
mod totals;
mod usage;

#[cfg(test)]
mod tests;

pub use calendar::{is_calendar_day, is_calendar_month};
pub use entity::{ENTITIES_TOPIC, EntityAction, EntityEvent, EntityKind};
pub use error::{EventError, EventErrorKind};
pub use partition::{FNV1A_64_OFFSET, FNV1A_64_PRIME, fnv1a_64, partition_for};
pub use totals::{NodeCalls, TOTALS_TOPIC, TotalsRecord};
pub use usage::{
    ArchivedRejections, ArchivedStatusClasses, ArchivedUsageBatch, ArchivedUsageCounters,
    ArchivedUsageEntry, ProducerId, RejectReason, Rejections, StatusClasses, USAGE_BATCH_VERSION,
    USAGE_TOPIC, UsageBatch, UsageCounters, UsageDecoder, UsageEntry, UsageIdentity, decode,
    encode, encode_into,
};
