//! Property tests of the wire escaping: InfluxDB line protocol (tags, field keys, string fields)
//! and Prometheus label values read back exactly by parsers that follow the servers' rules (the
//! line-protocol rules were checked against the real InfluxDB 1.x: a backslash escapes only `,`,
//! `=` and space in tags, and a trailing backslash cannot be parsed).

use chaos_sink::backends::influxdb::encoding::{Field, Line};
use chaos_sink::backends::pushgateway::encoding::escape_label_value;
use chaos_sink::config::Precision;
use chrono::{DateTime, Utc};
use proptest::prelude::*;

/// Key/value pairs in the order of the line.
type Pairs = Vec<(String, String)>;

/// Splits an InfluxDB line into (measurement+tags, fields, timestamp) at unescaped spaces outside
/// quoted strings, and unescapes the tag values.
fn parse_line(line: &str) -> (Pairs, Pairs, String) {
    let chars: Vec<char> = line.trim_end_matches('\n').chars().collect();
    let mut sections = vec![String::new()];
    let (mut i, mut quoted) = (0, false);
    while i < chars.len() {
        let c = chars[i];
        // InfluxDB: outside quoted strings a backslash escapes only `,`, `=` and space; inside
        // them it escapes `"` and `\`.
        if c == '\\' && i + 1 < chars.len() && (quoted || matches!(chars[i + 1], ',' | '=' | ' ')) {
            sections.last_mut().unwrap().push(c);
            sections.last_mut().unwrap().push(chars[i + 1]);
            i += 2;
            continue;
        }
        if c == '"' && sections.len() == 2 {
            // Quotes only mean something in the field section (tag values hold them literally).
            quoted = !quoted;
        }
        if c == ' ' && !quoted {
            sections.push(String::new());
        } else {
            sections.last_mut().unwrap().push(c);
        }
        i += 1;
    }
    assert_eq!(sections.len(), 3, "{line:?} -> {sections:?}");
    let tags = split_unescaped(&sections[0], ',')
        .into_iter()
        .skip(1)
        .map(|kv| {
            let parts = split_unescaped(&kv, '=');
            assert_eq!(parts.len(), 2, "{kv:?}");
            (unescape_key(&parts[0]), unescape_key(&parts[1]))
        })
        .collect();
    let fields = split_fields(&sections[1]);
    (tags, fields, sections[2].clone())
}

fn split_unescaped(s: &str, sep: char) -> Vec<String> {
    let mut out = vec![String::new()];
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() && matches!(chars[i + 1], ',' | '=' | ' ') {
            out.last_mut().unwrap().push(chars[i]);
            out.last_mut().unwrap().push(chars[i + 1]);
            i += 2;
            continue;
        }
        if chars[i] == sep {
            out.push(String::new());
        } else {
            out.last_mut().unwrap().push(chars[i]);
        }
        i += 1;
    }
    out
}

fn unescape_key(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() && matches!(chars[i + 1], ',' | '=' | ' ') {
            out.push(chars[i + 1]);
            i += 2;
        } else {
            out.push(chars[i]);
            i += 1;
        }
    }
    out
}

fn split_fields(s: &str) -> Vec<(String, String)> {
    // key=value pairs; string values are quoted with \" and \\ escaped.
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let mut key = String::new();
        while chars[i] != '=' {
            key.push(chars[i]);
            i += 1;
        }
        i += 1; // '='
        let mut value = String::new();
        if chars[i] == '"' {
            i += 1;
            while chars[i] != '"' {
                if chars[i] == '\\' {
                    i += 1;
                }
                value.push(chars[i]);
                i += 1;
            }
            i += 1;
        } else {
            while i < chars.len() && chars[i] != ',' {
                value.push(chars[i]);
                i += 1;
            }
        }
        out.push((unescape_key(&key), value));
        if i < chars.len() && chars[i] == ',' {
            i += 1;
        }
    }
    out
}

/// What a tag value is stored as: line breaks become spaces, trailing backslashes `/`.
fn expected_tag(s: &str) -> String {
    let t = s.trim_end_matches('\\');
    let mut out: String = t
        .chars()
        .map(|c| {
            if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            }
        })
        .collect();
    out.extend(std::iter::repeat_n('/', s.len() - t.len()));
    out
}

fn time() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-11-23T09:29:52.876732Z")
        .unwrap()
        .with_timezone(&Utc)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn line_protocol_tags_and_strings_read_back(
        title in "\\PC{1,40}",
        activity in "[a-z ,=\\\\\"]{1,20}",
        text in "\\PC{0,60}",
    ) {
        let title = format!("x{title}"); // tags cannot start with a space-escape ambiguity at the start
        let mut out = String::new();
        let mut line = Line::new(&mut out, "chaos_toolkit.activities", &[("activity", &activity), ("experiment", &title)]);
        line.field("output", Field::Str(&text)).field("duration", Field::Float(0.25));
        line.finish(&time(), Precision::Us);
        let (tags, fields, ts) = parse_line(&out);
        let expected: Vec<(String, String)> = [("activity", &activity), ("experiment", &title)]
            .iter()
            .filter(|(_, v)| !expected_tag(v).is_empty())
            .map(|(k, v)| (k.to_string(), expected_tag(v)))
            .collect();
        prop_assert_eq!(tags, expected);
        prop_assert_eq!(&fields[0], &("output".to_owned(), text.clone()));
        prop_assert_eq!(&fields[1], &("duration".to_owned(), "0.25".to_owned()));
        prop_assert_eq!(ts, time().timestamp_micros().to_string());
    }

    #[test]
    fn prometheus_label_values_read_back(value in "\\PC{0,40}|[\\\\\"\n]{0,10}") {
        let mut out = String::new();
        escape_label_value(&value, &mut out);
        prop_assert!(!out.contains('\n'));
        let mut back = String::new();
        let mut chars = out.chars();
        while let Some(c) = chars.next() {
            if c == '\\' {
                match chars.next() {
                    Some('n') => back.push('\n'),
                    Some(o) => back.push(o),
                    None => prop_assert!(false, "dangling backslash"),
                }
            } else {
                prop_assert!(c != '"', "unescaped quote");
                back.push(c);
            }
        }
        prop_assert_eq!(back, value);
    }
}
