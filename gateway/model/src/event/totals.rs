//! Per-key consumption published by the ledger (`tollgate.totals`), compact JSON.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::calendar::check_day_month;
use super::error::EventError;

/// Kafka topic (and journal stream) of totals, compacted on the API key id.
pub const TOTALS_TOPIC: &str = "tollgate.totals";

const WHAT: &str = "totals record";

/// The admitted calls of one API key for the current day and month, as folded by the ledger.
///
/// A gateway enforcing quotas adds the consumption of the *other* nodes
/// ([`calls_excluding`](Self::calls_excluding)) to its own exact local count; counts for a day
/// or month other than the current one are stale and read as 0.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotalsRecord {
    /// API key id; also the record's key on the topic.
    pub apikey: String,
    /// The day `daily_calls` counts, `YYYYMMDD` in the gateways' time zone.
    pub day: u32,
    /// The month `monthly_calls` counts, `YYYYMM`; always `day / 100`.
    pub month: u32,
    /// Admitted calls on `day`, all nodes.
    pub daily_calls: u64,
    /// Admitted calls in `month`, all nodes; never below `daily_calls`.
    pub monthly_calls: u64,
    /// When the ledger published this, ms since the Unix epoch.
    pub updated_at: i64,
    /// The ledger instance that published it, for diagnostics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The same counts by gateway node id, when the ledger breaks them down; they sum to
    /// `daily_calls` and `monthly_calls`. Lets a gateway subtract what it already counts itself.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub nodes: BTreeMap<String, NodeCalls>,
    /// The key's latest quota reset the ledger had folded (`DELETE /api/apikeys/{id}/quotas`,
    /// ms since the epoch): the counts are the calls since it. A gateway that knows of a later
    /// reset skips the record (it still counts calls from before that reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quotas_reset_at: Option<i64>,
}

/// Admitted calls of one gateway node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeCalls {
    /// On the record's day.
    pub daily_calls: u64,
    /// In the record's month.
    pub monthly_calls: u64,
}

impl TotalsRecord {
    /// The calls of every node but `node`. Without a breakdown, or if `node` is not in it, that
    /// is every call.
    #[must_use]
    pub fn calls_excluding(&self, node: &str) -> NodeCalls {
        let own = self.nodes.get(node).copied().unwrap_or_default();
        NodeCalls {
            daily_calls: self.daily_calls.saturating_sub(own.daily_calls),
            monthly_calls: self.monthly_calls.saturating_sub(own.monthly_calls),
        }
    }

    /// Checks a real `day`, `month == day / 100`, `daily_calls <= monthly_calls`, and that a
    /// per-node breakdown, if any, sums to the totals.
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] naming the field.
    pub fn validate(&self) -> Result<(), EventError> {
        if let Err((field, reason)) = check_day_month(self.day, self.month) {
            return Err(EventError::invalid(WHAT, field, reason));
        }
        if self.daily_calls > self.monthly_calls {
            return Err(EventError::invalid(
                WHAT,
                "daily_calls",
                format!(
                    "{} exceeds monthly_calls ({})",
                    self.daily_calls, self.monthly_calls
                ),
            ));
        }
        if self.nodes.is_empty() {
            return Ok(());
        }
        // u128: the sum of any number of u64 counts that fits in memory cannot overflow it.
        let (daily, monthly) = self.nodes.values().fold((0u128, 0u128), |(d, m), calls| {
            (
                d.saturating_add(u128::from(calls.daily_calls)),
                m.saturating_add(u128::from(calls.monthly_calls)),
            )
        });
        if daily != u128::from(self.daily_calls) || monthly != u128::from(self.monthly_calls) {
            return Err(EventError::invalid(
                WHAT,
                "nodes",
                format!(
                    "sum to {daily} daily and {monthly} monthly calls, totals are {} and {}",
                    self.daily_calls, self.monthly_calls
                ),
            ));
        }
        Ok(())
    }

    /// Compact JSON of the record.
    ///
    /// # Errors
    ///
    /// [`EventError::Invalid`] if [`validate`](Self::validate) fails.
    pub fn encode(&self) -> Result<Vec<u8>, EventError> {
        self.validate()?;
        EventError::to_json(WHAT, self)
    }

    /// Parses and validates a record.
    ///
    /// # Errors
    ///
    /// [`EventError::Json`] with the field path, line and column; [`EventError::Invalid`] if
    /// [`validate`](Self::validate) fails.
    pub fn decode(bytes: &[u8]) -> Result<Self, EventError> {
        let record: Self = EventError::from_json(WHAT, bytes)?;
        record.validate()?;
        Ok(record)
    }
}
