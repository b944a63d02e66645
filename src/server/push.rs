//! `POST /push` and `POST /write-to-online-store` for plain feature views: the request's
//! `df` made into the Arrow batch Feast makes of it (`pa.Table.from_pandas(pd.DataFrame(
//! df))`), then written by the store's Arrow writer, whose bytes are those of Feast's
//! `_convert_arrow_to_proto` and `online_write_batch` for that batch.
//!
//! Only a `df` whose every column pandas reads one way is taken: all integers (int64),
//! numbers with a fraction or exponent among them (float64), all booleans or all
//! strings; event (and created) times as ISO 8601 strings of one shape, read as
//! `pd.to_datetime` reads them. Anything else (a null, a list, mixed types, columns of
//! unequal lengths, no rows, an integer past int64, a time pandas would parse some
//! other way) goes to Feast's app, as do offline pushes and views Feast writes another
//! way: the catalog names the views and push sources taken here.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow_schema::{Field, Schema};
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::access::Asked;
use crate::redis::RedisClient;
use crate::store::{write_arrow, StoreError, ViewPlan};

/// A feature view written natively: its plan (every feature, the batch source's event
/// time column) and the created-time column Feast parses (and does not store).
pub struct WritableView {
    pub name: String,
    pub plan: Arc<ViewPlan>,
    pub created_column: Option<String>,
}

fn yes() -> bool {
    true
}

/// The body of `POST /push`, as Feast's `PushFeaturesRequest` reads it, but for its
/// `df` (skipped: it is read once the request is allowed, by `DfBody`).
#[derive(Deserialize)]
struct PushBody<'a> {
    #[serde(borrow)]
    push_source_name: Cow<'a, str>,
    #[allow(dead_code)]
    df: IgnoredAny,
    #[serde(default = "yes")]
    allow_registry_cache: bool,
    #[serde(borrow, default)]
    to: Option<Cow<'a, str>>,
    // Read so that a body Feast refuses (not a boolean) goes to Feast; it applies to
    // on-demand views only, never written here.
    #[serde(default = "yes")]
    #[allow(dead_code)]
    transform_on_write: bool,
}

/// The body of `POST /write-to-online-store` (Feast's `WriteToFeatureStoreRequest`),
/// but for its `df`.
#[derive(Deserialize)]
struct WriteBody<'a> {
    #[serde(borrow)]
    feature_view_name: Cow<'a, str>,
    #[allow(dead_code)]
    df: IgnoredAny,
    #[serde(default = "yes")]
    allow_registry_cache: bool,
    #[serde(default = "yes")]
    #[allow(dead_code)]
    transform_on_write: bool,
}

/// A write body's `df`.
#[derive(Deserialize)]
struct DfBody<'a> {
    #[serde(borrow)]
    df: HashMap<Cow<'a, str>, Vec<&'a RawValue>>,
}

/// A write the native path takes: the views written, each given the same batch.
pub struct Write<'c> {
    pub views: Vec<&'c WritableView>,
}

impl Write<'_> {
    /// What Feast's auth decides on: `WRITE_ONLINE` on every view written.
    pub fn asked(&self) -> Asked {
        Asked {
            written: self.views.iter().map(|view| view.name.clone()).collect(),
            ..Asked::default()
        }
    }
}

/// The columns of a `df`, by name, as pandas types them.
pub struct Columns {
    by_name: HashMap<String, ArrayRef>,
}

/// One JSON value as Python's `json` gives it to pandas.
enum Cell {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
}

fn cell(raw: &RawValue) -> Option<Cell> {
    let text = raw.get();
    match text.as_bytes().first()? {
        b'"' => serde_json::from_str::<String>(text).ok().map(Cell::Str),
        b't' | b'f' => serde_json::from_str::<bool>(text).ok().map(Cell::Bool),
        b'-' | b'0'..=b'9' => {
            if text.bytes().any(|b| matches!(b, b'.' | b'e' | b'E')) {
                // Rust's parse rounds correctly, as Python's float() does.
                text.parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(Cell::Float)
            } else {
                text.parse::<i64>().ok().map(Cell::Int)
            }
        }
        _ => None,
    }
}

/// The column pandas makes of `values` (as Arrow types it), when it is one this path
/// takes.
fn column(values: &[&RawValue]) -> Option<ArrayRef> {
    let cells = values.iter().map(|raw| cell(raw)).collect::<Option<Vec<_>>>()?;
    Some(match cells.first()? {
        Cell::Int(_) if cells.iter().all(|c| matches!(c, Cell::Int(_))) => Arc::new(
            cells
                .iter()
                .map(|c| if let Cell::Int(i) = c { Some(*i) } else { None })
                .collect::<Option<Vec<i64>>>()
                .map(Int64Array::from)?,
        ),
        Cell::Int(_) | Cell::Float(_) => Arc::new(
            cells
                .iter()
                .map(|c| match c {
                    Cell::Int(i) => Some(*i as f64),
                    Cell::Float(f) => Some(*f),
                    _ => None,
                })
                .collect::<Option<Vec<f64>>>()
                .map(Float64Array::from)?,
        ),
        Cell::Bool(_) => Arc::new(
            cells
                .iter()
                .map(|c| if let Cell::Bool(b) = c { Some(*b) } else { None })
                .collect::<Option<Vec<bool>>>()
                .map(BooleanArray::from)?,
        ),
        Cell::Str(_) => Arc::new(
            cells
                .iter()
                .map(|c| {
                    if let Cell::Str(s) = c {
                        Some(s.as_str())
                    } else {
                        None
                    }
                })
                .collect::<Option<Vec<&str>>>()
                .map(StringArray::from)?,
        ),
    })
}

impl Columns {
    fn of(df: HashMap<Cow<'_, str>, Vec<&RawValue>>) -> Option<Self> {
        let rows = df.values().next()?.len();
        if rows == 0 || df.values().any(|values| values.len() != rows) {
            return None;
        }
        let by_name = df
            .into_iter()
            .map(|(name, values)| Some((name.into_owned(), column(&values)?)))
            .collect::<Option<_>>()?;
        Some(Self { by_name })
    }

    fn array(&self, name: &str) -> Option<ArrayRef> {
        self.by_name.get(name).cloned()
    }

    /// The times of column `name` in microseconds since the epoch, as Feast stores them
    /// (`pd.to_datetime`, then `to_pydatetime`, which drops nanoseconds).
    fn times(&self, name: &str) -> Option<Vec<i64>> {
        let texts = self.by_name.get(name)?.as_string_opt::<i32>()?;
        // pandas infers one format from the first time and holds the others to it.
        let shape = |text: &str| {
            text.bytes()
                .map(|b| if b.is_ascii_digit() { b'0' } else { b })
                .collect::<Vec<_>>()
        };
        let first = shape(texts.iter().next()??);
        texts
            .iter()
            .map(|text| {
                let text = text?;
                if shape(text) == first {
                    iso8601_micros(text)
                } else {
                    None
                }
            })
            .collect()
    }

    /// The batch `view` is written from; `None` when a column it needs is missing or
    /// not of a type this path takes.
    fn batch(&self, view: &WritableView) -> Option<RecordBatch> {
        let plan = &view.plan;
        let event_column = plan.timestamp_column.as_deref()?;
        if let Some(created) = &view.created_column {
            self.times(created)?;
        }
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        for name in plan.join_keys.iter().chain(plan.features.iter().map(|f| &f.name)) {
            if fields.iter().any(|f: &Field| f.name() == name) {
                continue;
            }
            let array = self.array(name)?;
            fields.push(Field::new(name, array.data_type().clone(), false));
            arrays.push(array);
        }
        let times: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(self.times(event_column)?).with_timezone("UTC"));
        fields.push(Field::new(event_column, times.data_type().clone(), false));
        arrays.push(times);
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).ok()
    }
}

/// The views a `POST /push` body writes, when the native path takes it (an online push
/// to views all written here); its `df` is only skipped over.
pub fn parse_push<'c>(
    body: &[u8],
    pushes: &'c HashMap<String, Vec<String>>,
    writable: &'c HashMap<String, WritableView>,
) -> Option<Write<'c>> {
    let parsed: PushBody = serde_json::from_slice(body).ok()?;
    if !parsed.allow_registry_cache || parsed.to.as_deref().unwrap_or("online") != "online" {
        return None;
    }
    let names = pushes.get(parsed.push_source_name.as_ref())?;
    let views = names
        .iter()
        .map(|name| writable.get(name))
        .collect::<Option<Vec<_>>>()?;
    Some(Write { views })
}

/// The view a `POST /write-to-online-store` body writes, when the native path takes it.
pub fn parse_write<'c>(body: &[u8], writable: &'c HashMap<String, WritableView>) -> Option<Write<'c>> {
    let parsed: WriteBody = serde_json::from_slice(body).ok()?;
    if !parsed.allow_registry_cache {
        return None;
    }
    let view = writable.get(parsed.feature_view_name.as_ref())?;
    Some(Write { views: vec![view] })
}

/// The columns of a write body's `df`, when the native path takes them.
pub fn columns(body: &[u8]) -> Option<Columns> {
    let parsed: DfBody = serde_json::from_slice(body).ok()?;
    Columns::of(parsed.df)
}

/// Writes `columns` to every view of `write`; `Ok(false)` when a view's columns are not
/// of a type this path takes. Views written before such a view are written again by
/// Feast's app, as Feast's push does: the rows are no newer than those stored then, and
/// skipped.
pub async fn write(client: &RedisClient, write: &Write<'_>, columns: &Columns) -> Result<bool, StoreError> {
    let Some(batches) = write
        .views
        .iter()
        .map(|view| columns.batch(view))
        .collect::<Option<Vec<_>>>()
    else {
        return Ok(false);
    };
    for (view, batch) in write.views.iter().zip(&batches) {
        if write_arrow(client, &view.plan, batch).await?.is_none() {
            return Ok(false);
        }
    }
    Ok(true)
}

fn number(text: &[u8]) -> Option<i64> {
    if text.is_empty() || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(text.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if year % 4 == 0 && (year % 100 != 0 || year % 400 == 0) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// `YYYY-MM-DD`, optionally followed by `T` or a space and `HH:MM:SS` with up to nine
/// fraction digits, then optionally `Z` or an offset `±HH:MM`/`±HHMM`, in microseconds
/// since the epoch (a time without a zone is UTC, as Feast's `make_tzaware` makes it);
/// `None` for anything else, or a time outside pandas' nanosecond range.
fn iso8601_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (year, month, day) = (number(&b[0..4])?, number(&b[5..7])?, number(&b[8..10])?);
    if !(1678..=2261).contains(&year)
        || !(1..=12).contains(&month)
        || !(1..=days_in_month(year, month)).contains(&day)
    {
        return None;
    }
    let mut seconds = days_from_civil(year, month, day) * 86_400;
    let mut micros = 0;
    let mut rest = &b[10..];
    if !rest.is_empty() {
        if rest.len() < 9 || !matches!(rest[0], b'T' | b' ') || rest[3] != b':' || rest[6] != b':' {
            return None;
        }
        let (hour, minute, second) = (number(&rest[1..3])?, number(&rest[4..6])?, number(&rest[7..9])?);
        if hour > 23 || minute > 59 || second > 59 {
            return None;
        }
        seconds += hour * 3600 + minute * 60 + second;
        rest = &rest[9..];
        if let Some(fraction) = rest.strip_prefix(b".") {
            let digits = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
            if !(1..=9).contains(&digits) {
                return None;
            }
            let kept = &fraction[..digits.min(6)];
            micros = number(kept)? * 10_i64.pow(6 - kept.len() as u32);
            rest = &fraction[digits..];
        }
        match rest {
            [] => {}
            [b'Z'] => {}
            [sign @ (b'+' | b'-'), offset @ ..] => {
                let (hours, minutes) = match offset {
                    [h1, h2, b':', m1, m2] | [h1, h2, m1, m2] => (number(&[*h1, *h2])?, number(&[*m1, *m2])?),
                    _ => return None,
                };
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let offset = hours * 3600 + minutes * 60;
                seconds -= if *sign == b'+' { offset } else { -offset };
            }
            _ => return None,
        }
    }
    Some(seconds * 1_000_000 + micros)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Array;

    #[test]
    fn iso8601_times_are_read_as_pandas_reads_them() {
        assert_eq!(iso8601_micros("1970-01-01"), Some(0));
        assert_eq!(iso8601_micros("2024-02-29T12:30:15"), Some(1_709_209_815_000_000));
        assert_eq!(
            iso8601_micros("2024-02-29 12:30:15.5Z"),
            Some(1_709_209_815_500_000)
        );
        assert_eq!(
            iso8601_micros("2024-02-29T12:30:15.123456789+01:00"),
            Some(1_709_206_215_123_456)
        );
        assert_eq!(
            iso8601_micros("2024-02-29T12:30:15-0130"),
            Some(1_709_215_215_000_000)
        );
        for refused in [
            "2023-02-29",
            "2024-13-01",
            "2024-01-01T24:00:00",
            "2024-01-01T00:00",
            "1600-01-01",
            "2024-01-01T00:00:00.",
            "2024-01-01T00:00:00.1234567890",
            "2024-01-01T00:00:00+1",
            "20240101",
        ] {
            assert_eq!(iso8601_micros(refused), None, "{refused}");
        }
    }

    fn columns(json: &str) -> Option<Columns> {
        let df: HashMap<Cow<str>, Vec<&RawValue>> = serde_json::from_str(json).unwrap();
        Columns::of(df)
    }

    #[test]
    fn columns_are_typed_as_pandas_types_them_or_not_taken() {
        let taken =
            columns(r#"{"i": [1, -2], "f": [1, 2.5], "b": [true, false], "s": ["a", "\u00e9"]}"#).unwrap();
        let column = |name: &str| taken.by_name[name].as_ref();
        assert_eq!(column("i"), &Int64Array::from(vec![1, -2]) as &dyn Array);
        assert_eq!(column("f"), &Float64Array::from(vec![1.0, 2.5]) as &dyn Array);
        assert_eq!(column("b"), &BooleanArray::from(vec![true, false]) as &dyn Array);
        assert_eq!(column("s"), &StringArray::from(vec!["a", "é"]) as &dyn Array);
        for refused in [
            r#"{"a": [1, null]}"#,
            r#"{"a": [1, "2"]}"#,
            r#"{"a": [true, 1]}"#,
            r#"{"a": [[1]]}"#,
            r#"{"a": [9223372036854775808]}"#,
            r#"{"a": [1], "b": [1, 2]}"#,
            r#"{"a": []}"#,
            "{}",
        ] {
            assert!(columns(refused).is_none(), "{refused}");
        }
    }

    #[test]
    fn times_of_one_shape_only() {
        let same = columns(r#"{"t": ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00Z"]}"#).unwrap();
        assert_eq!(
            same.times("t"),
            Some(vec![1_704_067_200_000_000, 1_704_153_600_000_000])
        );
        let mixed = columns(r#"{"t": ["2024-01-01T00:00:00Z", "2024-01-02T00:00:00.5Z"]}"#).unwrap();
        assert_eq!(mixed.times("t"), None);
    }
}
