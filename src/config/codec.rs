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
//! Reading tries JSON first and falls back to the raw text, so a value typed by hand
//! (`etcdctl put /app/name hello`) just works. Writing checks that what it writes reads back as
//! the same value, and picks the form that does:
//!
//! - A string is stored raw unless its raw text would itself parse as a JSON string (it starts
//!   and ends with `"`): a `String` holding `8080` is stored `8080`, and reads back as a string.
//! - Where the raw text would read back as something else, because the type also accepts
//!   numbers, booleans, null or arrays (a `serde_json::Value::String("123")`, an untagged enum
//!   whose string variant holds `true`), the value is stored JSON-quoted: `"123"`.
//! - A value that reads back as something else in every form (a non-finite float, which JSON
//!   writes as `null`) is refused: [`encode`] returns an error and nothing is saved.
//!
//! "The same value" means the same serde data: the value read back serializes to the same JSON
//! tree as the value written (maps compared as maps).
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

/// A type a field can hold with the default codec: anything serde can write and read.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be stored in a field: it must implement serde's `Serialize` and `Deserialize`",
    label = "`{Self}` is not `Serialize + Deserialize`",
    note = "add `#[derive(serde::Serialize, serde::Deserialize)]` to `{Self}`; if it derives EtcdConfig, mark the field `#[etcd(nested)]`; or give the field a codec with `#[etcd(with = \"module\")]`"
)]
pub trait FieldValue: Serialize + DeserializeOwned {}

#[diagnostic::do_not_recommend]
impl<T: Serialize + DeserializeOwned> FieldValue for T {}

/// The default codec of one field type, looked up once per field by the derive: the one
/// place that requires [`FieldValue`], so a type without serde's traits is one error under
/// the field's type.
#[doc(hidden)]
pub struct Codec<T> {
    pub encode: fn(&T) -> Result<String, String>,
    pub decode: fn(&str) -> Result<T, String>,
    /// A sample value's JSON, for the schema of a map entry.
    pub sample: fn() -> Option<String>,
}

/// [`encode`] and [`decode`] for `T`.
#[doc(hidden)]
pub const fn codec_of<T: FieldValue>() -> Codec<T> {
    Codec {
        encode: encode::<T>,
        decode: decode::<T>,
        sample: super::sample::sample_json::<T>,
    }
}

/// A `validate` function: `fn(&S) -> Result<(), String>`.
#[diagnostic::on_unimplemented(
    message = "`validate` must name a function `fn(&{S}) -> Result<(), String>`",
    label = "not a `fn(&{S}) -> Result<(), String>`"
)]
pub trait ValidateFn<S> {
    #[doc(hidden)]
    fn check(&self, value: &S) -> Result<(), String>;
}

impl<S, F: Fn(&S) -> Result<(), String>> ValidateFn<S> for F {
    fn check(&self, value: &S) -> Result<(), String> {
        self(value)
    }
}

/// Runs a struct's `validate` function (the derive's call, spanned at the attribute).
#[doc(hidden)]
pub fn validate_with<S>(value: &S, check: impl ValidateFn<S>) -> Result<(), String> {
    check.check(value)
}

/// Encodes a serde value by the rules above; an error if no form reads back as `value`.
pub fn encode<T: Serialize + DeserializeOwned>(value: &T) -> Result<String, String> {
    let tree = serde_json::to_value(value).map_err(|e| e.to_string())?;
    if let serde_json::Value::String(text) = &tree {
        if !reads_as_json_string(text) && reads_back_as::<T>(text, &tree) {
            return Ok(text.clone()); // the raw text, as a person would type it
        }
    }
    // Grown to fit, not from serde_json's 128 bytes: a live config keeps what it stored.
    let json = tree.to_string();
    if reads_back_as::<T>(&json, &tree) {
        return Ok(json);
    }
    Err(match decode::<T>(&json) {
        Ok(other) => format!(
            "{json} would load back as {}, not as the value saved",
            serde_json::to_string(&other).unwrap_or_default()
        ),
        Err(reason) => format!("{json} would not load back: {reason}"),
    })
}

/// Whether `text` decodes to a value with the same serde data as `tree`.
fn reads_back_as<T: Serialize + DeserializeOwned>(text: &str, tree: &serde_json::Value) -> bool {
    decode::<T>(text)
        .ok()
        .and_then(|back| serde_json::to_value(&back).ok())
        .is_some_and(|back| back == *tree)
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

/// Go's format, computed in whole nanoseconds so every `Duration` that [`format_duration`] writes
/// (up to `u64::MAX` seconds) reads back exactly; a fraction below a nanosecond is rounded.
fn parse_go_duration(text: &str) -> Option<Duration> {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let text = text.strip_prefix('+').unwrap_or(text);
    if text == "0" {
        return Some(Duration::ZERO);
    }
    let mut rest = text;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let whole_len = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        let whole = &rest[..whole_len];
        rest = &rest[whole_len..];
        let fraction = match rest.strip_prefix('.') {
            Some(after) => {
                let len = after
                    .find(|c: char| !c.is_ascii_digit())
                    .unwrap_or(after.len());
                rest = &after[len..];
                &after[..len]
            }
            None => "",
        };
        if whole.is_empty() && fraction.is_empty() {
            return None;
        }
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: u128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => NANOS_PER_SEC,
            "m" => 60 * NANOS_PER_SEC,
            "h" => 3600 * NANOS_PER_SEC,
            _ => return None,
        };
        rest = &rest[unit_len..];
        let whole: u128 = if whole.is_empty() {
            0
        } else {
            whole.parse().ok()?
        };
        total = total.checked_add(whole.checked_mul(nanos_per_unit)?)?;
        // Digits past the 20th are far below a nanosecond even for hours.
        let fraction = &fraction[..fraction.len().min(20)];
        if !fraction.is_empty() {
            let scale = 10u128.pow(fraction.len() as u32);
            let digits: u128 = fraction.parse().ok()?;
            // Rounded to the nearest nanosecond; 20 digits times 3.6e12 fits in u128.
            let part = (digits * nanos_per_unit + scale / 2) / scale;
            total = total.checked_add(part)?;
        }
    }
    let secs = u64::try_from(total / NANOS_PER_SEC).ok()?;
    Some(Duration::new(secs, (total % NANOS_PER_SEC) as u32))
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
        assert_eq!(encode(&"http://a:80".to_owned()).unwrap(), "http://a:80");
        assert_eq!(encode(&"8080".to_owned()).unwrap(), "8080");
        assert_eq!(encode(&"\"quoted\"".to_owned()).unwrap(), r#""\"quoted\"""#);
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
        assert_eq!(
            encode(&vec!["a".to_owned(), "b".to_owned()]).unwrap(),
            r#"["a","b"]"#
        );
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
