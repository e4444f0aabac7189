//! Time: [`At`], the one type for a moment the engine records (a run's start and end, a
//! task transition, a command's start, an approval, an abort request, a lock taken), in UTC
//! on the `time` crate's calendar; spans of time are `std::time::Duration`.
//!
//! Both are written as seconds in a float (Unix seconds for a moment), as every earlier
//! version wrote them: the journal's REAL columns, etcd's JSON records, `status --format
//! json`, `--events jsonl` and reports. Old journals and records read as they are, and no
//! output changes shape. A moment keeps whole microseconds, what such a float holds
//! exactly for dates of this era, so that one read back equals the one written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// A moment, in UTC, to the microsecond.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct At(OffsetDateTime);

const MICROS: i128 = 1_000;

impl At {
    /// 1970-01-01 00:00:00 UTC.
    pub const EPOCH: At = At(OffsetDateTime::UNIX_EPOCH);

    pub fn now() -> At {
        At::from_datetime(OffsetDateTime::now_utc())
    }

    fn from_datetime(d: OffsetDateTime) -> At {
        let nanos = d.unix_timestamp_nanos();
        At(
            OffsetDateTime::from_unix_timestamp_nanos(nanos - nanos.rem_euclid(MICROS))
                .unwrap_or(d),
        )
    }

    /// The moment `secs` Unix seconds name; `None` if not finite or past the calendar.
    pub fn from_unix(secs: f64) -> Option<At> {
        if !secs.is_finite() {
            return None;
        }
        let micros = (secs * 1e6).round() as i128;
        OffsetDateTime::from_unix_timestamp_nanos(micros * MICROS)
            .ok()
            .map(At)
    }

    /// The moment `secs` whole Unix seconds name; `None` past the calendar.
    pub fn from_unix_secs(secs: i64) -> Option<At> {
        OffsetDateTime::from_unix_timestamp(secs).ok().map(At)
    }

    /// Unix seconds: what stores and JSON outputs hold.
    pub fn unix(self) -> f64 {
        let micros = self.0.unix_timestamp_nanos() / MICROS;
        micros as f64 / 1e6
    }

    /// Whole Unix seconds.
    pub fn unix_secs(self) -> i64 {
        self.0.unix_timestamp()
    }

    /// The time from `earlier` to this moment; zero if `earlier` is later (a clock set
    /// back must not make a negative span).
    pub fn since(self, earlier: At) -> Duration {
        Duration::try_from(self.0 - earlier.0).unwrap_or(Duration::ZERO)
    }

    /// `span` later (unchanged if that is past the calendar's end, the year 9999).
    pub fn after(self, span: Duration) -> At {
        time::Duration::try_from(span)
            .ok()
            .and_then(|span| self.0.checked_add(span))
            .map_or(self, At::from_datetime)
    }
}

/// `2026-11-21 23:08:36Z`.
impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
            time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z");
        match self.0.format(FORMAT) {
            // Padded like a string, so a width (`{:20}`) lines columns up.
            Ok(s) => f.pad(&s),
            Err(_) => f.pad(&format!("@{}", self.unix_secs())),
        }
    }
}

impl Serialize for At {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.unix())
    }
}

impl<'de> Deserialize<'de> for At {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<At, D::Error> {
        let secs = f64::deserialize(d)?;
        At::from_unix(secs)
            .ok_or_else(|| serde::de::Error::custom(format!("{secs} is not a time (Unix seconds)")))
    }
}

impl rusqlite::ToSql for At {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(self.unix().into())
    }
}

impl rusqlite::types::FromSql for At {
    fn column_result(v: rusqlite::types::ValueRef<'_>) -> rusqlite::types::FromSqlResult<At> {
        let secs = f64::column_result(v)?;
        At::from_unix(secs).ok_or_else(|| {
            rusqlite::types::FromSqlError::Other(format!("{secs} is not a time").into())
        })
    }
}

/// A `Duration` as seconds in a float: `#[serde(with = "crate::clock::secs")]`.
pub mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// A stored span (seconds in a float) read back; a negative or broken one is zero.
pub fn span(secs: f64) -> Duration {
    Duration::try_from_secs_f64(secs).unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_utc_to_the_second() {
        assert_eq!(
            At::from_unix(0.0).unwrap().to_string(),
            "1970-01-01 00:00:00Z"
        );
        let t = At::from_unix(1_795_302_516.75).unwrap();
        assert_eq!(t.to_string(), "2026-11-21 23:08:36Z");
        assert_eq!(t.unix_secs(), 1_795_302_516);
    }

    /// A width lines a time up in a column, as it did when times were strings.
    #[test]
    fn pads_to_a_width() {
        let t = At::from_unix(0.0).unwrap();
        assert_eq!(format!("[{t:22}]"), "[1970-01-01 00:00:00Z  ]");
    }

    #[test]
    fn reads_back_what_it_wrote() {
        let t = At::now();
        assert_eq!(At::from_unix(t.unix()), Some(t));
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(serde_json::from_str::<At>(&json).unwrap(), t);
        // What earlier versions wrote: a float, or a whole number.
        assert_eq!(serde_json::from_str::<At>("100").unwrap().unix(), 100.0);
        assert_eq!(
            serde_json::to_string(&At::from_unix(100.5).unwrap()).unwrap(),
            "100.5"
        );
        assert!(At::from_unix(f64::NAN).is_none());
    }

    #[test]
    fn spans_never_go_negative() {
        let a = At::from_unix(100.0).unwrap();
        let b = a.after(Duration::from_millis(2500));
        assert_eq!(b.unix(), 102.5);
        assert_eq!(b.since(a), Duration::from_millis(2500));
        assert_eq!(a.since(b), Duration::ZERO);
    }

    #[test]
    fn a_journal_column_holds_unix_seconds() {
        let c = rusqlite::Connection::open_in_memory().unwrap();
        c.execute_batch("CREATE TABLE t (at REAL); INSERT INTO t VALUES (5);")
            .unwrap();
        let old: At = c.query_row("SELECT at FROM t", [], |r| r.get(0)).unwrap();
        assert_eq!(old.unix(), 5.0);
        let now = At::now();
        c.execute("INSERT INTO t VALUES (?1)", [now]).unwrap();
        let back: At = c
            .query_row("SELECT at FROM t WHERE at > 5", [], |r| r.get(0))
            .unwrap();
        assert_eq!(back, now);
        let raw: f64 = c
            .query_row("SELECT at FROM t WHERE at > 5", [], |r| r.get(0))
            .unwrap();
        assert_eq!(raw, now.unix());
    }
}
