//! How field values are written as etcd values, so people can read and edit them with `etcdctl`.
//!
//! | Rust value                     | etcd value                                   |
//! |--------------------------------|----------------------------------------------|
//! | `String`                       | the text itself: `http://a:80`               |
//! | a string that is a JSON string | JSON-quoted, so it reads back exactly        |
//! | numbers, `bool`                | plain text: `8080`, `true`                   |
//! | unit enum variants             | their serde name: `info`                     |
//! | `Duration`                     | Go's duration format: `1m30s`, `250ms`       |
//! | anything else (serde)          | compact JSON: `["a","b"]`                    |
//!
//! A string is JSON-quoted only when its raw text would itself parse as a JSON string (it
//! starts and ends with `"`, give or take whitespace); every other string is stored raw. Reading
//! tries JSON first and falls back to the raw text, so every value round-trips exactly and a value
//! typed by hand (`etcdctl put /app/name hello`) just works.
//!
//! These functions are public so a custom codec (`#[etcd(with = "module")]`) can build on them.
//! Such a module has two functions:
//!
//! ```
//! pub mod upper {
//!     pub fn encode(value: &String) -> Result<String, String> {
//!         Ok(value.to_uppercase())
//!     }
//!     pub fn decode(text: &str) -> Result<String, String> {
//!         Ok(text.to_lowercase())
//!     }
//! }
//! ```

use std::fmt::Write as _;
use std::time::Duration;

use serde::de::{DeserializeOwned, IntoDeserializer};
use serde::Serialize;

/// Encodes a serde value by the rules above.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<String, String> {
    let json = serde_json::to_string(value).map_err(|e| e.to_string())?;
    if !json.starts_with('"') {
        return Ok(json); // number, bool, null, array or object: compact JSON
    }
    let text: String = serde_json::from_str(&json).map_err(|e| e.to_string())?;
    if reads_as_json_string(&text) {
        Ok(json)
    } else {
        Ok(text)
    }
}

/// Decodes a value written by [`encode`] or by hand.
pub fn decode<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    match serde_json::from_str::<T>(text) {
        Ok(value) => Ok(value),
        Err(json_error) => {
            let raw: Result<T, serde::de::value::Error> = T::deserialize(text.into_deserializer());
            match raw {
                Ok(value) => Ok(value),
                // Valid JSON of the wrong shape: the JSON error says more. Not JSON at all: the
                // raw-text error does ("invalid type: string, expected u16").
                Err(_) if serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok() => {
                    Err(json_error.to_string())
                }
                Err(raw_error) => Err(raw_error.to_string()),
            }
        }
    }
}

fn reads_as_json_string(text: &str) -> bool {
    serde_json::from_str::<String>(text).is_ok()
}

/// Writes a duration in Go's format, as etcd's own tools do: `0s`, `250ms`, `1.5s`, `1m30s`,
/// `2h0m0s`.
pub fn format_duration(duration: &Duration) -> String {
    let nanos = duration.as_nanos();
    let mut out = String::new();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos < 1_000_000_000 {
        let (unit, scale) = match nanos {
            n if n < 1_000 => ("ns", 1),
            n if n < 1_000_000 => ("µs", 1_000),
            _ => ("ms", 1_000_000),
        };
        write_fraction(&mut out, nanos / scale, nanos % scale, scale);
        out.push_str(unit);
        return out;
    }
    let secs = duration.as_secs();
    let (hours, minutes, seconds) = (secs / 3600, secs / 60 % 60, secs % 60);
    if hours > 0 {
        let _ = write!(out, "{hours}h");
    }
    if hours > 0 || minutes > 0 {
        let _ = write!(out, "{minutes}m");
    }
    write_fraction(
        &mut out,
        u128::from(seconds),
        u128::from(duration.subsec_nanos()),
        1_000_000_000,
    );
    out.push('s');
    out
}

/// `whole.fraction` with the fraction's trailing zeros (and a bare dot) dropped.
fn write_fraction(out: &mut String, whole: u128, fraction: u128, scale: u128) {
    let _ = write!(out, "{whole}");
    if fraction > 0 {
        let width = scale.ilog10() as usize;
        let digits = format!("{fraction:0width$}");
        let _ = write!(out, ".{}", digits.trim_end_matches('0'));
    }
}

/// Reads a duration in Go's format (`1m30s`, `1.5h`, `300ms`, `10us`) or humantime's
/// (`1m 30s`, `2 hours`, `1day`).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    parse_go_duration(text)
        .or_else(|| humantime::parse_duration(text).ok())
        .ok_or_else(|| "not a duration (expected e.g. `30s`, `1m30s`, `250ms`)".to_owned())
}

fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    let mut any = false;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let number: f64 = rest[..number_len].parse().ok()?;
        rest = &rest[number_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += number * nanos_per_unit;
        any = true;
    }
    (any && total.is_finite() && total < u64::MAX as f64)
        .then(|| Duration::from_nanos(total.round() as u64))
}

/// The codec `#[derive(EtcdConfig)]` uses for `Duration` fields (Go format).
#[doc(hidden)]
pub mod duration {
    use std::time::Duration;

    pub fn encode(value: &Duration) -> Result<String, String> {
        Ok(super::format_duration(value))
    }

    pub fn decode(text: &str) -> Result<Duration, String> {
        super::parse_duration(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_raw_unless_they_read_as_json_strings() {
        assert_eq!(encode("http://a:80").unwrap(), "http://a:80");
        assert_eq!(encode("8080").unwrap(), "8080");
        assert_eq!(encode("\"quoted\"").unwrap(), r#""\"quoted\"""#);
        assert_eq!(decode::<String>("http://a:80").unwrap(), "http://a:80");
        assert_eq!(decode::<String>("8080").unwrap(), "8080");
        assert_eq!(decode::<String>(r#""\"quoted\"""#).unwrap(), "\"quoted\"");
        assert_eq!(decode::<String>("\"hand typed\"").unwrap(), "hand typed");
    }

    #[test]
    fn numbers_bools_and_collections() {
        assert_eq!(encode(&8080u16).unwrap(), "8080");
        assert_eq!(decode::<u16>("8080").unwrap(), 8080);
        assert_eq!(encode(&true).unwrap(), "true");
        assert_eq!(encode(&vec!["a", "b"]).unwrap(), r#"["a","b"]"#);
        let too_big = decode::<u16>("70000").unwrap_err();
        assert!(
            too_big.contains("70000") && too_big.contains("u16"),
            "{too_big}"
        );
        assert!(decode::<u16>("abc").unwrap_err().contains("expected u16"));
    }

    #[test]
    fn go_durations() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_nanos(5), "5ns"),
            (Duration::from_nanos(1_500), "1.5µs"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1_500), "1.5s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(7200), "2h0m0s"),
            (Duration::from_secs(3661), "1h1m1s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(&duration), text);
            assert_eq!(parse_duration(text).unwrap(), duration, "{text}");
        }
        assert_eq!(parse_duration("1m 30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5h").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
