//! Liberal readers for the values families publish, shared by every family module.
//!
//! Devices disagree on case and type (`ON`/`on`/`true`/`1`, `Online`/`online`/`true`/
//! `{"state":"online"}`), so everything read goes through here; everything *sent* is built by the
//! family module in exactly the family's spelling.

use serde_json::Value;

use crate::error::MessageError;

/// Largest payload looked at. Zigbee2MQTT's `bridge/devices` is the biggest message expected
/// (a few hundred kilobytes for a large network).
pub(crate) const MAX_PAYLOAD: usize = 4 << 20;

/// The payload as trimmed UTF-8 text.
pub(crate) fn text<'a>(topic: &str, payload: &'a [u8]) -> Result<&'a str, MessageError> {
    check_size(topic, payload)?;
    std::str::from_utf8(payload)
        .map(str::trim)
        .map_err(|_| MessageError::InvalidUtf8 {
            topic: topic.to_owned(),
        })
}

/// The payload parsed as JSON.
pub(crate) fn json(topic: &str, payload: &[u8]) -> Result<Value, MessageError> {
    check_size(topic, payload)?;
    serde_json::from_slice(payload).map_err(|source| MessageError::InvalidJson {
        topic: topic.to_owned(),
        source,
    })
}

fn check_size(topic: &str, payload: &[u8]) -> Result<(), MessageError> {
    if payload.len() > MAX_PAYLOAD {
        return Err(MessageError::TooLarge {
            topic: topic.to_owned(),
            len: payload.len(),
        });
    }
    Ok(())
}

/// An error for a value that is not what the topic should carry.
pub(crate) fn invalid(topic: &str, value: &str) -> MessageError {
    let mut value = value.to_owned();
    if value.len() > 64 {
        let mut cut = 64;
        while !value.is_char_boundary(cut) {
            cut -= 1;
        }
        value.truncate(cut);
    }
    MessageError::InvalidValue {
        topic: topic.to_owned(),
        value,
    }
}

/// `ON`, `on`, `true`, `1`, `yes`, `open` are on; `OFF`, `off`, `false`, `0`, `no`, `closed` are off.
pub(crate) fn on_off(s: &str) -> Option<bool> {
    let s = s.trim().trim_matches('"').trim();
    const ON: [&str; 5] = ["on", "true", "1", "yes", "open"];
    const OFF: [&str; 5] = ["off", "false", "0", "no", "closed"];
    if ON.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if OFF.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

/// [`on_off`] for a JSON value: a boolean, 0/1, or one of the strings.
pub(crate) fn json_on_off(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::Number(n) => match n.as_u64() {
            Some(0) => Some(false),
            Some(1) => Some(true),
            _ => None,
        },
        Value::String(s) => on_off(s),
        _ => None,
    }
}

/// `online`/`Online`/`true`/`1`/`connected` are online; `offline`/`false`/`0`/`disconnected` are
/// offline; a JSON object `{"state":"online"}` (Zigbee2MQTT 1.35+) is read through its `state`.
pub(crate) fn availability(s: &str) -> Option<bool> {
    let s = s.trim();
    if s.starts_with('{') {
        let v: Value = serde_json::from_str(s).ok()?;
        return v.get("state").and_then(json_availability);
    }
    let s = s.trim_matches('"').trim();
    const UP: [&str; 4] = ["online", "true", "1", "connected"];
    const DOWN: [&str; 4] = ["offline", "false", "0", "disconnected"];
    if UP.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        Some(true)
    } else if DOWN.iter().any(|w| s.eq_ignore_ascii_case(w)) {
        Some(false)
    } else {
        None
    }
}

fn json_availability(v: &Value) -> Option<bool> {
    match v {
        Value::Bool(b) => Some(*b),
        Value::String(s) => availability(s),
        _ => None,
    }
}

/// A finite number from text (`"12.5"`, `" 3 "`).
pub(crate) fn number(s: &str) -> Option<f64> {
    s.trim()
        .trim_matches('"')
        .parse::<f64>()
        .ok()
        .filter(|x| x.is_finite())
}

/// A finite number from a JSON number or numeric string.
pub(crate) fn json_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64().filter(|x| x.is_finite()),
        Value::String(s) => number(s),
        _ => None,
    }
}

/// Applies the small subset of Home Assistant value templates that discovery configs use in
/// practice: `{{ value }}`, `{{ value_json.a.b }}`, `{{ value_json['a'] }}`,
/// `{{ value_json["a"].b }}`, with any `| filter` suffix ignored. Returns the selected value as
/// text, or `None` when the template is of another kind or the path is missing.
pub(crate) fn apply_template(template: &str, payload: &str) -> Option<String> {
    let inner = template.trim();
    let inner = inner.strip_prefix("{{")?.strip_suffix("}}")?;
    let expr = inner.split('|').next()?.trim();
    if expr == "value" {
        return Some(payload.to_owned());
    }
    let mut rest = expr.strip_prefix("value_json")?;
    let mut v: Value = serde_json::from_str(payload).ok()?;
    while !rest.is_empty() {
        let key;
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            key = r[..end].trim().to_owned();
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            key = r[..end].trim().trim_matches(['\'', '"']).to_owned();
            rest = &r[end + 1..];
        } else {
            return None;
        }
        v = match v {
            Value::Object(mut map) => map.remove(&key)?,
            Value::Array(mut items) => {
                let i: usize = key.parse().ok()?;
                if i >= items.len() {
                    return None;
                }
                items.swap_remove(i)
            }
            _ => return None,
        };
    }
    Some(match v {
        Value::String(s) => s,
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_off_spellings() {
        for s in ["ON", "on", "On", "true", "1", " \"ON\" ", "yes"] {
            assert_eq!(on_off(s), Some(true), "{s}");
        }
        for s in ["OFF", "off", "false", "0", "no"] {
            assert_eq!(on_off(s), Some(false), "{s}");
        }
        for s in ["", "toggle", "2", "onn"] {
            assert_eq!(on_off(s), None, "{s}");
        }
        assert_eq!(json_on_off(&Value::Bool(true)), Some(true));
        assert_eq!(json_on_off(&serde_json::json!(0)), Some(false));
        assert_eq!(json_on_off(&serde_json::json!(null)), None);
    }

    #[test]
    fn availability_spellings() {
        for s in ["Online", "online", "true", "{\"state\":\"online\"}", "1"] {
            assert_eq!(availability(s), Some(true), "{s}");
        }
        for s in ["Offline", "offline", "false", "{\"state\":\"offline\"}"] {
            assert_eq!(availability(s), Some(false), "{s}");
        }
        for s in ["", "{}", "{\"state\":3}", "maybe", "{broken"] {
            assert_eq!(availability(s), None, "{s}");
        }
    }

    #[test]
    fn numbers_are_finite() {
        assert_eq!(number("12.5"), Some(12.5));
        assert_eq!(number("NaN"), None);
        assert_eq!(number("inf"), None);
        assert_eq!(json_number(&serde_json::json!("3")), Some(3.0));
    }

    #[test]
    fn templates() {
        let p = r#"{"ENERGY":{"Power":12,"Total":1.5},"POWER":"ON","a":[5,6]}"#;
        assert_eq!(
            apply_template("{{ value_json.ENERGY.Power }}", p).as_deref(),
            Some("12")
        );
        assert_eq!(
            apply_template("{{value_json['POWER']}}", p).as_deref(),
            Some("ON")
        );
        assert_eq!(
            apply_template("{{ value_json[\"ENERGY\"].Total | float }}", p).as_deref(),
            Some("1.5")
        );
        assert_eq!(
            apply_template("{{ value_json.a[1] }}", p).as_deref(),
            Some("6")
        );
        assert_eq!(apply_template("{{ value }}", "ON").as_deref(), Some("ON"));
        assert_eq!(apply_template("{{ value_json.missing }}", p), None);
        assert_eq!(apply_template("{% if x %}", p), None);
        assert_eq!(apply_template("{{ value_json.x }}", "not json"), None);
    }
}
