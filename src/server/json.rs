//! Feast's JSON for feature values and timestamps, as its feature server writes them
//! (`feast.feature_server_utils.convert_response_to_dict`): values as native JSON types,
//! bytes as base64, non-finite floats as "NaN"/"Infinity"/"-Infinity", timestamps as
//! RFC 3339 in UTC with as many fractional digits as they need.

use std::fmt::Write;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;

use crate::encoding::proto::{Val, Value};
use crate::encoding::Timestamp;

/// A stored value whose kind this writer does not render (maps, sets, nested lists...):
/// the request is then answered by Feast's own server code.
#[derive(Debug)]
pub struct Unsupported;

pub fn string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("\"NaN\"");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 {
            "\"Infinity\""
        } else {
            "\"-Infinity\""
        });
    } else {
        // Shortest text that reads back as the same double, as Python's repr.
        let _ = write!(out, "{value:?}");
    }
}

fn integer(out: &mut String, value: impl std::fmt::Display) {
    let _ = write!(out, "{value}");
}

fn array<T>(out: &mut String, items: &[T], mut each: impl FnMut(&mut String, &T)) {
    out.push('[');
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        each(out, item);
    }
    out.push(']');
}

pub fn base64(out: &mut String, bytes: &[u8]) {
    out.push('"');
    BASE64.encode_string(bytes, out);
    out.push('"');
}

/// Appends the JSON of a stored `feast.types.Value` (`None`: the hash had no field).
pub fn value(out: &mut String, value: Option<&Value>) -> Result<(), Unsupported> {
    let Some(val) = value.and_then(|v| v.val.as_ref()) else {
        out.push_str("null");
        return Ok(());
    };
    match val {
        Val::NullVal(_) => out.push_str("null"),
        Val::Int32Val(v) => integer(out, v),
        Val::Int64Val(v) | Val::UnixTimestampVal(v) => integer(out, v),
        Val::FloatVal(v) => float(out, f64::from(*v)),
        Val::DoubleVal(v) => float(out, *v),
        Val::StringVal(v) | Val::JsonVal(v) | Val::UuidVal(v) | Val::TimeUuidVal(v) | Val::DecimalVal(v) => {
            string(out, v)
        }
        Val::BytesVal(v) => base64(out, v),
        Val::BoolVal(v) => out.push_str(if *v { "true" } else { "false" }),
        Val::Int32ListVal(l) | Val::Int32SetVal(l) => array(out, &l.val, |o, v| integer(o, v)),
        Val::Int64ListVal(l)
        | Val::UnixTimestampListVal(l)
        | Val::Int64SetVal(l)
        | Val::UnixTimestampSetVal(l) => array(out, &l.val, |o, v| integer(o, v)),
        Val::FloatListVal(l) | Val::FloatSetVal(l) => array(out, &l.val, |o, v| float(o, f64::from(*v))),
        Val::DoubleListVal(l) | Val::DoubleSetVal(l) => array(out, &l.val, |o, v| float(o, *v)),
        Val::StringListVal(l)
        | Val::StringSetVal(l)
        | Val::JsonListVal(l)
        | Val::UuidListVal(l)
        | Val::TimeUuidListVal(l)
        | Val::UuidSetVal(l)
        | Val::TimeUuidSetVal(l)
        | Val::DecimalListVal(l)
        | Val::DecimalSetVal(l) => array(out, &l.val, |o, v| string(o, v)),
        Val::BytesListVal(l) | Val::BytesSetVal(l) => array(out, &l.val, |o, v| base64(o, v)),
        Val::BoolListVal(l) | Val::BoolSetVal(l) => {
            array(out, &l.val, |o, v| o.push_str(if *v { "true" } else { "false" }))
        }
        _ => return Err(Unsupported),
    }
    Ok(())
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

/// `timestamp` of the epoch: entity columns' event time in Feast's answers.
pub const EPOCH: &str = "\"1970-01-01T00:00:00Z\"";

/// Appends `value`'s last `width` decimal digits, zero-padded.
fn digits(out: &mut String, value: u64, width: usize) {
    let mut text = [b'0'; 9];
    let mut rest = value;
    for place in text[..width].iter_mut().rev() {
        *place = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.push_str(std::str::from_utf8(&text[..width]).expect("ASCII digits"));
}

/// Appends a timestamp as Feast's server writes it: `2021-08-25T12:00:00.123456Z`, with
/// no, 3, 6 or 9 fractional digits as the nanoseconds need. Written digit by digit: a
/// near-cache hit writes one per feature, and `write!` cost more than the rest of it.
pub fn timestamp(out: &mut String, ts: Timestamp) {
    let days = ts.seconds.div_euclid(86_400);
    let secs = ts.seconds.rem_euclid(86_400) as u64;
    let (year, month, day) = civil_from_days(days);
    out.push('"');
    if (0..=9999).contains(&year) {
        digits(out, year as u64, 4);
    } else {
        let _ = write!(out, "{year:04}");
    }
    out.push('-');
    digits(out, u64::from(month), 2);
    out.push('-');
    digits(out, u64::from(day), 2);
    out.push('T');
    digits(out, secs / 3600, 2);
    out.push(':');
    digits(out, secs % 3600 / 60, 2);
    out.push(':');
    digits(out, secs % 60, 2);
    let nanos = u64::from(ts.nanos.unsigned_abs());
    let (fraction, width) = match nanos {
        0 => (0, 0),
        n if n % 1_000_000 == 0 => (n / 1_000_000, 3),
        n if n % 1_000 == 0 => (n / 1_000, 6),
        n => (n, 9),
    };
    if width > 0 {
        out.push('.');
        digits(out, fraction, width);
    }
    out.push_str("Z\"");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoding::proto::{BytesList, DoubleList};

    fn json(v: Option<Val>) -> String {
        let mut out = String::new();
        value(&mut out, Some(&Value { val: v })).unwrap();
        out
    }

    #[test]
    fn values_are_native_json() {
        assert_eq!(json(None), "null");
        assert_eq!(json(Some(Val::Int64Val(-7))), "-7");
        assert_eq!(json(Some(Val::FloatVal(0.1))), "0.10000000149011612");
        assert_eq!(json(Some(Val::DoubleVal(1e300))), "1e300");
        assert_eq!(json(Some(Val::DoubleVal(2.0))), "2.0");
        assert_eq!(
            json(Some(Val::StringVal("a\"b\u{1}é".into()))),
            "\"a\\\"b\\u0001é\""
        );
        assert_eq!(json(Some(Val::BytesVal(b"hi".to_vec()))), "\"aGk=\"");
        assert_eq!(
            json(Some(Val::DoubleListVal(DoubleList {
                val: vec![1.5, f64::NAN, f64::NEG_INFINITY]
            }))),
            "[1.5,\"NaN\",\"-Infinity\"]"
        );
        assert_eq!(
            json(Some(Val::BytesListVal(BytesList {
                val: vec![vec![0], vec![]]
            }))),
            "[\"AA==\",\"\"]"
        );
    }

    #[test]
    fn timestamps_take_the_digits_they_need() {
        let text = |seconds, nanos| {
            let mut out = String::new();
            timestamp(&mut out, Timestamp { seconds, nanos });
            out
        };
        assert_eq!(text(0, 0), EPOCH);
        assert_eq!(
            text(1_629_892_800, 123_456_000),
            "\"2021-08-25T12:00:00.123456Z\""
        );
        assert_eq!(text(951_782_400, 5_000_000), "\"2000-02-29T00:00:00.005Z\"");
        assert_eq!(text(-1, 1), "\"1969-12-31T23:59:59.000000001Z\"");
        assert_eq!(
            text(253_402_300_799, 999_999_999),
            "\"9999-12-31T23:59:59.999999999Z\""
        );
        assert_eq!(text(-62_135_596_800, 0), "\"0001-01-01T00:00:00Z\"");
        assert_eq!(text(253_402_300_800, 0), "\"10000-01-01T00:00:00Z\"");
    }
}
