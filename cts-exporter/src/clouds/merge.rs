//! Gap filling between the layers (clouds.yaml over secure.yaml over the vendor profile over `OS_*`), and
//! reading scalars out of the merged document (numbers in YAML are text to OpenStack).

use serde_json::Value;

/// Copies from `src` every key `dst` does not have (or has as null), recursing into mappings.
pub(super) fn fill_gaps(dst: &mut Value, src: &Value) {
    let (Value::Object(d), Value::Object(s)) = (dst, src) else {
        return;
    };
    for (k, v) in s {
        match d.get_mut(k) {
            None | Some(Value::Null) => {
                d.insert(k.clone(), v.clone());
            }
            Some(existing @ Value::Object(_)) => fill_gaps(existing, v),
            Some(_) => {}
        }
    }
}

/// A scalar as text (YAML gives numbers for unquoted digits, e.g. a numeric password or project id).
pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
    .filter(|s| !s.is_empty())
}

pub(super) fn str_at(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for key in path {
        cur = cur.get(*key)?;
    }
    scalar(cur)
}
