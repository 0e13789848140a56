//! Windows in event time: contiguous, non-overlapping `[from, to)` intervals of `CTS_FROM` length, each
//! ending at least `CTS_LAG_SECONDS` before now so that traces CTS records late are already queryable.
//!
//! A trace has one `time`, so it falls in exactly one window: with the cursor advancing only past completed
//! windows, no trace is delivered twice by one process and none is skipped.

use chrono::DateTime;
use std::fmt;

/// CTS keeps traces 7 days; a cursor older than this is moved forward (the traces are gone).
pub const RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;
/// Margin kept inside the retention horizon when a cursor is moved forward.
const RETENTION_MARGIN_MS: i64 = 5 * 60 * 1000;

/// A half-open interval of trace times, epoch milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First millisecond in the window.
    pub from_ms: i64,
    /// First millisecond after the window.
    pub to_ms: i64,
}

impl Window {
    /// Whether a trace time belongs to the window.
    pub fn contains(&self, time_ms: i64) -> bool {
        self.from_ms <= time_ms && time_ms < self.to_ms
    }
}

/// Epoch ms as RFC 3339 (for logs).
pub fn rfc3339(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms)
        .map(|t| shared::cloudevent::json::format_time(&t))
        .unwrap_or_else(|| ms.to_string())
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}, {})", rfc3339(self.from_ms), rfc3339(self.to_ms))
    }
}

/// What the poller should do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Query this window now.
    Ready(Window),
    /// Nothing is due before this wall-clock time (epoch ms).
    WaitUntil(i64),
}

/// Plans windows from a cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planner {
    /// Window length (ms).
    pub len_ms: i64,
    /// Lag allowance (ms).
    pub lag_ms: i64,
}

impl Planner {
    /// A planner for a window length and lag allowance.
    pub fn new(len: std::time::Duration, lag: std::time::Duration) -> Self {
        let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4);
        Self {
            len_ms: ms(len).max(1),
            lag_ms: ms(lag),
        }
    }

    /// The newest time a window may end at, at `now_ms`.
    pub fn horizon(&self, now_ms: i64) -> i64 {
        now_ms - self.lag_ms
    }

    /// Where a process without a saved cursor starts: one window before the horizon (the original looked
    /// back `CTS_FROM` minutes).
    pub fn initial_cursor(&self, now_ms: i64) -> i64 {
        self.horizon(now_ms) - self.len_ms
    }

    /// A cursor older than the CTS retention is moved to just inside it; returns the new cursor when moved.
    pub fn clamp_to_retention(&self, cursor_ms: i64, now_ms: i64) -> Option<i64> {
        let oldest = now_ms - RETENTION_MS + RETENTION_MARGIN_MS;
        (cursor_ms < oldest).then_some(oldest)
    }

    /// The next full window after `cursor_ms` (polling mode): ready when it ends before the horizon,
    /// otherwise the time to wait for. While behind (after downtime) windows come back to back.
    pub fn next(&self, cursor_ms: i64, now_ms: i64) -> Next {
        let to_ms = cursor_ms + self.len_ms;
        if to_ms <= self.horizon(now_ms) {
            Next::Ready(Window {
                from_ms: cursor_ms,
                to_ms,
            })
        } else {
            Next::WaitUntil(to_ms + self.lag_ms)
        }
    }

    /// The next window for `--once`: from the cursor up to `end_ms`, at most one window length; `None` when
    /// the cursor has reached `end_ms`.
    pub fn next_until(&self, cursor_ms: i64, end_ms: i64) -> Option<Window> {
        (cursor_ms < end_ms).then(|| Window {
            from_ms: cursor_ms,
            to_ms: (cursor_ms + self.len_ms).min(end_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn windows_are_contiguous_and_end_before_the_lag() {
        let p = Planner::new(Duration::from_secs(300), Duration::from_secs(60));
        let now = 1_700_000_000_000;
        let cursor = p.initial_cursor(now);
        assert_eq!(cursor, now - 360_000);
        let Next::Ready(w1) = p.next(cursor, now) else {
            panic!("first window is due at once")
        };
        assert_eq!(
            w1,
            Window {
                from_ms: now - 360_000,
                to_ms: now - 60_000
            }
        );
        // The next one is due one window length later, plus the lag.
        assert_eq!(p.next(w1.to_ms, now), Next::WaitUntil(now + 300_000));
        let Next::Ready(w2) = p.next(w1.to_ms, now + 300_000) else {
            panic!("due")
        };
        assert_eq!(w2.from_ms, w1.to_ms);
        assert_eq!(w2.to_ms - w2.from_ms, 300_000);
        assert!(w2.contains(w2.from_ms) && !w2.contains(w2.to_ms) && !w1.contains(w2.from_ms));
    }

    #[test]
    fn catching_up_after_downtime() {
        let p = Planner::new(Duration::from_secs(60), Duration::ZERO);
        let now = 1_000_000_000;
        let mut cursor = now - 5 * 60_000 - 1;
        let mut n = 0;
        while let Next::Ready(w) = p.next(cursor, now) {
            assert_eq!(w.from_ms, cursor);
            cursor = w.to_ms;
            n += 1;
        }
        assert_eq!(n, 5);
        assert!(cursor <= now);
    }

    #[test]
    fn once_windows_cover_exactly_up_to_the_end() {
        let p = Planner::new(Duration::from_secs(60), Duration::ZERO);
        let mut cursor = 0;
        let mut windows = Vec::new();
        while let Some(w) = p.next_until(cursor, 150_000) {
            windows.push(w);
            cursor = w.to_ms;
        }
        assert_eq!(
            windows,
            vec![
                Window {
                    from_ms: 0,
                    to_ms: 60_000
                },
                Window {
                    from_ms: 60_000,
                    to_ms: 120_000
                },
                Window {
                    from_ms: 120_000,
                    to_ms: 150_000
                },
            ]
        );
    }

    #[test]
    fn retention_clamp() {
        let p = Planner::new(Duration::from_secs(60), Duration::ZERO);
        let now = 10 * RETENTION_MS;
        assert_eq!(p.clamp_to_retention(now - 3_600_000, now), None);
        assert_eq!(
            p.clamp_to_retention(now - 8 * 24 * 3_600_000, now),
            Some(now - RETENTION_MS + RETENTION_MARGIN_MS)
        );
    }

    #[test]
    fn display() {
        let w = Window {
            from_ms: 1_700_000_000_000,
            to_ms: 1_700_000_300_000,
        };
        assert_eq!(
            w.to_string(),
            "[2023-11-14T22:13:20Z, 2023-11-14T22:18:20Z)"
        );
    }
}
