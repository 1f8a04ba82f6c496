//! The wall clock, read in one place: milliseconds since the Unix epoch (UTC), as every event,
//! entity and quota window counts time. A clock before 1970 reads 0; one past `i64::MAX` ms
//! saturates. Monotonic intervals (timeouts, rates) use `std::time::Instant` instead.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
#[must_use]
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    #[test]
    fn now_is_after_this_code_was_written_and_moves_forward() {
        let a = super::now_ms();
        assert!(a > 1_764_892_800_000, "{a}"); // 2025-12-05
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(super::now_ms() > a);
    }
}
