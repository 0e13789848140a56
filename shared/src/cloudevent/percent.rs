//! Percent-encoding of binary-mode header values (CloudEvents HTTP binding, section 3.1.3.2).
//!
//! Space, `"`, `%` and every byte outside printable ASCII (U+0021..U+007E) of the UTF-8 encoding
//! MUST be percent-encoded; receivers decode and then interpret the bytes as UTF-8.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode, utf8_percent_encode};
use std::borrow::Cow;

/// Characters to escape in addition to the controls and non-ASCII bytes `percent_encoding` always escapes.
const HEADER_VALUE: &AsciiSet = &CONTROLS.add(b' ').add(b'"').add(b'%').add(0x7f);

/// Encodes an attribute value for a `ce-*` header.
pub fn encode(value: &str) -> Cow<'_, str> {
    utf8_percent_encode(value, HEADER_VALUE).into()
}

/// Decodes a `ce-*` header value; `None` when the decoded bytes are not UTF-8.
///
/// A `%` that does not start a valid escape is kept as it is (lenient, like the SDKs).
pub fn decode(raw: &[u8]) -> Option<String> {
    match percent_decode(raw).decode_utf8() {
        Ok(s) => Some(s.into_owned()),
        Err(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_the_binding_requires() {
        assert_eq!(encode("plain-ascii_value/1"), "plain-ascii_value/1");
        assert_eq!(encode("two words"), "two%20words");
        assert_eq!(encode("say \"hi\""), "say%20%22hi%22");
        assert_eq!(encode("100%"), "100%25");
        assert_eq!(encode("Grüße €"), "Gr%C3%BC%C3%9Fe%20%E2%82%AC");
        assert_eq!(encode("tab\tnl\n"), "tab%09nl%0A");
    }

    #[test]
    fn decodes_escapes_and_rejects_invalid_utf8() {
        assert_eq!(
            decode(b"Gr%C3%BC%C3%9Fe%20%E2%82%AC").as_deref(),
            Some("Grüße €")
        );
        assert_eq!(decode(b"100%25").as_deref(), Some("100%"));
        assert_eq!(decode(b"50%zz").as_deref(), Some("50%zz"));
        assert_eq!(decode(b"%FF%FE"), None);
    }

    #[test]
    fn round_trips_any_string() {
        for s in [
            "",
            " ",
            "%%",
            "\"quoted\"",
            "日本語 テキスト",
            "a\u{7f}b",
            "mixed %20 literal",
        ] {
            assert_eq!(decode(encode(s).as_bytes()).as_deref(), Some(s));
        }
    }
}
