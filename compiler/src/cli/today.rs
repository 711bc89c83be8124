//! Today's date (UTC), the one clock reading waddlec makes: it only decides
//! whether an expired temporary rule is warned about, never what is written.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::blueprint::Date;

/// `WADDLEC_TODAY=YYYY-MM-DD` overrides the clock (for tests and for asking
/// "what will warn next month?").
pub fn today() -> Date {
    if let Some(date) = std::env::var("WADDLEC_TODAY").ok().and_then(|v| parse(&v)) {
        return date;
    }
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_from_days((seconds / 86_400) as i64)
}

fn parse(text: &str) -> Option<Date> {
    let mut parts = text.trim().split('-');
    let date = Date {
        year: parts.next()?.parse().ok()?,
        month: parts.next()?.parse().ok()?,
        day: parts.next()?.parse().ok()?,
    };
    parts.next().is_none().then_some(date)
}

/// Days since 1970-01-01 → proleptic Gregorian date (Howard Hinnant's algorithm).
fn civil_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date {
        year: year as u16,
        month: month as u8,
        day: day as u8,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_days_to_dates() {
        assert_eq!(
            civil_from_days(0),
            Date {
                year: 1970,
                month: 1,
                day: 1
            }
        );
        assert_eq!(
            civil_from_days(20_516),
            Date {
                year: 2026,
                month: 3,
                day: 4
            }
        );
        assert_eq!(
            civil_from_days(11_016),
            Date {
                year: 2000,
                month: 2,
                day: 29
            }
        );
    }

    #[test]
    fn parses_overrides() {
        assert_eq!(
            parse("2027-01-02"),
            Some(Date {
                year: 2027,
                month: 1,
                day: 2
            })
        );
        assert_eq!(parse("2027-01"), None);
    }
}
