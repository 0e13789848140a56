//! The retry policy: which outcomes are retried, exponential backoff with jitter, `Retry-After`.
//!
//! One implementation for every outgoing call of the project (sink delivery, CTS and IAM calls,
//! chaos-sink backends): callers classify each attempt as success, transient or permanent failure.
//! [`Backoff`] paces the loops that wait out an outage for as long as it lasts (neo4j-sink's reconnects,
//! the exporter's start-up, window retries and event redelivery).

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, SystemTime};

/// Exponential backoff with jitter, bounded in attempts and delay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts at most).
    pub max_retries: u32,
    /// Delay before the first retry (before jitter).
    pub initial_backoff: Duration,
    /// Upper bound of the computed backoff.
    pub max_backoff: Duration,
    /// Upper bound for a server's `Retry-After`, so a hostile or broken value cannot park us for hours.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 10,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(300),
        }
    }
}

/// How an attempt failed.
#[derive(Debug)]
pub enum Failure<E> {
    /// Worth trying again, optionally not before the server's `Retry-After`.
    Transient {
        /// What went wrong.
        error: E,
        /// The server's requested delay.
        retry_after: Option<Duration>,
    },
    /// Trying again cannot help.
    Permanent(E),
}

impl<E> Failure<E> {
    /// A transient failure without a server-requested delay.
    pub fn transient(error: E) -> Self {
        Failure::Transient {
            error,
            retry_after: None,
        }
    }
}

/// The end of a retried operation that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum RetryError<E> {
    /// The operation failed in a way that retrying cannot fix.
    #[error("{0}")]
    Permanent(E),
    /// Every attempt failed transiently.
    #[error("gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: E,
    },
}

impl<E> RetryError<E> {
    /// The underlying error, whichever way it ended.
    pub fn into_inner(self) -> E {
        match self {
            RetryError::Permanent(e) | RetryError::Exhausted { last: e, .. } => e,
        }
    }
}

/// What an HTTP status means for a sender, with Knative's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 404 (pod warming), 408, 409, 425, 429 and 5xx.
    Retryable,
    /// Every other status (other 4xx, 3xx): do not retry.
    Permanent,
}

/// Classifies a status code the way Knative's dispatcher does, plus 425 Too Early.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        404 | 408 | 409 | 425 | 429 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Permanent,
    }
}

/// Parses `Retry-After`: delta-seconds or an HTTP-date (relative to `now`; a past date is zero).
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let date = httpdate::parse_http_date(value).ok()?;
    Some(date.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The pauses of a loop that waits out an outage for as long as it lasts (reconnecting, polling again,
/// redelivering): `initial`, doubling up to `max`, again from `initial` after [`Backoff::reset`] (a
/// success). For a bounded number of attempts use [`RetryPolicy`]. No jitter unless [`Backoff::jittered`]
/// (one process waiting for one server gains nothing from it; many clients of one server do).
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    jitter: bool,
}

impl Backoff {
    /// Pauses from `initial`, doubling, at most `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            next: initial.min(max),
            jitter: false,
        }
    }

    /// The same with "equal jitter" (between half and all of each pause), as [`RetryPolicy::backoff`].
    pub fn jittered(mut self) -> Self {
        self.jitter = true;
        self
    }

    /// Back to `initial` (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }

    /// The next pause; the one after it is twice as long (up to `max`).
    pub fn pause(&mut self) -> Duration {
        let exp = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        if !self.jitter {
            return exp;
        }
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.pause())
    }
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (0-based): `initial * 2^retry`, capped, with
    /// "equal jitter" (between half and all of it) so that clients spread out but never hammer.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(retry.min(31)))
            .min(self.max_backoff);
        let half = exp / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }

    /// The delay before retry number `retry`: the backoff, or the server's `Retry-After` when longer.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(retry);
        match retry_after {
            Some(ra) => backoff.max(ra.min(self.max_retry_after)),
            None => backoff,
        }
    }

    /// Runs `op` (given the 0-based attempt number) until it succeeds, fails permanently, or the
    /// retries are used up, sleeping between attempts. Each retry is logged at `warn` with `what`.
    pub async fn run<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<T, RetryError<E>>
    where
        E: Display,
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, Failure<E>>>,
    {
        let mut attempt = 0u32;
        loop {
            match op(attempt).await {
                Ok(v) => return Ok(v),
                Err(Failure::Permanent(e)) => return Err(RetryError::Permanent(e)),
                Err(Failure::Transient { error, retry_after }) => {
                    if attempt >= self.max_retries {
                        return Err(RetryError::Exhausted {
                            attempts: attempt + 1,
                            last: error,
                        });
                    }
                    let delay = self.delay(attempt, retry_after);
                    tracing::warn!(
                        what,
                        attempt = attempt + 1,
                        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        error = %error,
                        "transient failure, retrying"
                    );
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_starts_over_after_a_reset() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(200), ms(1000));
        let first: Vec<Duration> = b.by_ref().take(5).collect();
        assert_eq!(first, vec![ms(200), ms(400), ms(800), ms(1000), ms(1000)]);
        b.reset();
        assert_eq!(b.pause(), ms(200));
        let mut j = Backoff::new(ms(1000), ms(1000)).jittered();
        for _ in 0..20 {
            let p = j.pause();
            assert!(p >= ms(500) && p <= ms(1000), "{p:?}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn knative_status_classes() {
        for s in [200, 202, 204] {
            assert_eq!(classify_status(s), StatusClass::Success);
        }
        for s in [404, 408, 409, 425, 429, 500, 501, 502, 503, 504] {
            assert_eq!(classify_status(s), StatusClass::Retryable, "{s}");
        }
        for s in [301, 400, 401, 403, 405, 413, 415, 422] {
            assert_eq!(classify_status(s), StatusClass::Permanent, "{s}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        let earlier = httpdate::fmt_http_date(now - Duration::from_secs(30));
        assert_eq!(parse_retry_after(&earlier, now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 20,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        };
        for _ in 0..200 {
            let b0 = p.backoff(0);
            assert!(
                b0 >= Duration::from_millis(50) && b0 <= Duration::from_millis(100),
                "{b0:?}"
            );
            let b3 = p.backoff(3);
            assert!(
                b3 >= Duration::from_millis(400) && b3 <= Duration::from_millis(800),
                "{b3:?}"
            );
            let b30 = p.backoff(30);
            assert!(
                b30 >= Duration::from_secs(1) && b30 <= Duration::from_secs(2),
                "{b30:?}"
            );
        }
        assert!(p.delay(0, Some(Duration::from_secs(5))) >= Duration::from_secs(5));
        assert_eq!(
            p.delay(0, Some(Duration::from_secs(3600))),
            Duration::from_secs(10)
        );
    }

    fn fast() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
            max_retry_after: Duration::from_millis(5),
        }
    }

    #[tokio::test]
    async fn run_retries_transient_until_success() {
        let calls = AtomicU32::new(0);
        let out = fast()
            .run("test", |attempt| {
                calls.fetch_add(1, Ordering::SeqCst);
                async move {
                    if attempt < 2 {
                        Err(Failure::transient("flaky"))
                    } else {
                        Ok(attempt)
                    }
                }
            })
            .await;
        assert_eq!(out.unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn run_stops_on_permanent_and_when_exhausted() {
        let calls = AtomicU32::new(0);
        let out: Result<(), _> = fast()
            .run("test", |_| {
                calls.fetch_add(1, Ordering::SeqCst);
                async { Err(Failure::Permanent("bad request")) }
            })
            .await;
        assert!(matches!(out, Err(RetryError::Permanent("bad request"))));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let out: Result<(), _> = fast()
            .run("test", |_| async { Err(Failure::transient("down")) })
            .await;
        match out {
            Err(RetryError::Exhausted { attempts, last }) => {
                assert_eq!(attempts, 4);
                assert_eq!(last, "down");
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
