//! Manifest timestamps: parsed with their UTC offset kept, written the way Pydantic writes a `datetime`.
//!
//! koi-net writes `YYYY-MM-DDTHH:MM:SS[.ffffff]Z` for UTC (the fraction only when non-zero, always six digits)
//! and `…+02:00` for other offsets. Signatures cover these bytes, so the format is part of the protocol.

use std::fmt;

use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point in time with the UTC offset it was written with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Timestamp(DateTime<FixedOffset>);

/// A timestamp that is not ISO 8601 / RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid timestamp `{text}`: expected RFC 3339, e.g. `2026-11-24T12:00:00Z`")]
pub struct TimestampError {
    /// The offending text.
    pub text: String,
}

impl Timestamp {
    /// The current time in UTC, truncated to microseconds (Python's resolution).
    pub fn now() -> Timestamp {
        let now = Utc::now();
        let micros = now.nanosecond() / 1_000 * 1_000;
        let now = now.with_nanosecond(micros).unwrap_or(now);
        Timestamp(now.fixed_offset())
    }

    /// Parses RFC 3339; a timestamp without an offset is taken as UTC, as koi-net treats naive datetimes.
    pub fn parse(text: &str) -> Result<Timestamp, TimestampError> {
        let parsed = DateTime::parse_from_rfc3339(text).or_else(|_| {
            NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
                .map(|naive| naive.and_utc().fixed_offset())
        });
        match parsed {
            // Only what Python's datetime, and so koi-net, can hold: years 1 to 9999 and no leap second (`:60`).
            // chrono takes both, but writes them back in forms it does not read again, so a manifest holding one
            // would not read back as received (both found by fuzzing).
            Ok(dt)
                if chrono::Timelike::nanosecond(&dt) < 1_000_000_000
                    && (1..=9999).contains(&chrono::Datelike::year(&dt)) =>
            {
                Ok(Timestamp(dt))
            }
            _ => Err(TimestampError {
                text: text.to_owned(),
            }),
        }
    }

    /// The instant in UTC.
    pub fn to_utc(&self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }

    /// Microseconds since the Unix epoch (for ordering keys).
    pub fn unix_micros(&self) -> i64 {
        self.0.timestamp_micros()
    }

    /// RFC 3339 in UTC with a `Z` suffix, e.g. for API output.
    pub fn to_rfc3339_utc(&self) -> String {
        self.to_utc().to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(value: DateTime<Utc>) -> Self {
        Timestamp(value.fixed_offset())
    }
}

impl From<DateTime<FixedOffset>> for Timestamp {
    fn from(value: DateTime<FixedOffset>) -> Self {
        Timestamp(value)
    }
}

impl PartialOrd for Timestamp {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Timestamp {
    /// Ordered by instant; the offset does not matter.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dt = self.0;
        write!(f, "{}", dt.format("%Y-%m-%dT%H:%M:%S"))?;
        let micros = dt.nanosecond() / 1_000;
        if micros != 0 {
            write!(f, ".{micros:06}")?;
        }
        let offset = dt.offset().local_minus_utc();
        if offset == 0 {
            f.write_str("Z")
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let offset = offset.abs();
            write!(f, "{sign}{:02}:{:02}", offset / 3600, (offset % 3600) / 60)
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Timestamp::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leap_second_or_a_year_python_cannot_hold_is_refused() {
        for text in [
            "2026-11-24T12:00:60Z",
            "2026-11-24T23:59:60.5+00:00",
            "2026-11-24T12:00:60",
        ] {
            assert!(Timestamp::parse(text).is_err(), "{text}");
        }
        assert!(Timestamp::parse("2026-11-24T12:00:59.999999Z").is_ok());
    }

    #[test]
    fn written_as_pydantic_writes_datetimes() {
        for (input, expected) in [
            ("2026-11-24T12:00:00Z", "2026-11-24T12:00:00Z"),
            ("2026-11-24T12:00:00.12Z", "2026-11-24T12:00:00.120000Z"),
            ("2026-11-24T12:00:00.000001Z", "2026-11-24T12:00:00.000001Z"),
            ("2026-11-24T12:00:00+02:00", "2026-11-24T12:00:00+02:00"),
            ("2026-11-24T12:00:00.5+00:00", "2026-11-24T12:00:00.500000Z"),
            ("2026-11-20T09:15:02-05:00", "2026-11-20T09:15:02-05:00"),
            ("2026-11-24T12:50:35.443470", "2026-11-24T12:50:35.443470Z"),
        ] {
            assert_eq!(
                Timestamp::parse(input).unwrap().to_string(),
                expected,
                "{input}"
            );
        }
    }

    #[test]
    fn ordering_is_by_instant() {
        let a = Timestamp::parse("2026-11-24T12:00:00+02:00").unwrap();
        let b = Timestamp::parse("2026-11-24T11:00:00Z").unwrap();
        assert!(a < b);
        assert_eq!(a.to_rfc3339_utc(), "2026-11-24T10:00:00Z");
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let err = Timestamp::parse("yesterday").unwrap_err();
        assert!(err.to_string().contains("yesterday"));
    }
}
