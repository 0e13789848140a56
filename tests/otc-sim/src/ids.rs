//! Deterministic identifiers and small time helpers.
//!
//! Everything the simulator makes up (project ids, user ids, trace ids, resource ids) is derived from the seed,
//! so two simulators started with the same seed and anchor hold the same ground truth.

use std::time::{SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};

/// SplitMix64 finaliser: a cheap, well-mixed hash of one `u64`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Mixes a seed with a stream label and an index into one well-distributed value.
pub(crate) fn mix(seed: u64, label: &str, index: u64) -> u64 {
    let mut h = splitmix64(seed);
    for b in label.bytes() {
        h = splitmix64(h ^ u64::from(b));
    }
    splitmix64(h ^ splitmix64(index))
}

/// 32 lower-case hex characters, the shape of OTC project, domain and user ids.
pub(crate) fn hex32(seed: u64, label: &str, index: u64) -> String {
    let hi = mix(seed, label, index);
    let lo = mix(seed ^ 0x5EED, label, index);
    format!("{hi:016x}{lo:016x}")
}

/// Formats 128 random bits as a version-4 UUID (`8-4-4-4-12`, lower case).
pub(crate) fn uuid_v4(bits: u128) -> String {
    let v = (bits & !(0xF_u128 << 76)) | (0x4_u128 << 76);
    let v = (v & !(0x3_u128 << 62)) | (0x2_u128 << 62);
    let h = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// RFC 3339 UTC with microseconds, as OTC IAM writes `expires_at` / `issued_at`.
pub(crate) fn iam_time(ms: i64) -> String {
    DateTime::<Utc>::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string()
}

/// Constant-time comparison of two byte strings (length is not hidden).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_and_variant() {
        let u = uuid_v4(u128::MAX);
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }

    #[test]
    fn ids_are_deterministic_and_distinct() {
        assert_eq!(hex32(1, "project", 0), hex32(1, "project", 0));
        assert_ne!(hex32(1, "project", 0), hex32(2, "project", 0));
        assert_ne!(hex32(1, "project", 0), hex32(1, "project", 1));
        assert_eq!(hex32(1, "x", 0).len(), 32);
    }

    #[test]
    fn iam_time_format() {
        assert_eq!(iam_time(1_700_000_000_123), "2023-11-14T22:13:20.123000Z");
    }
}
