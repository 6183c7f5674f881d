//! The publication calendar: which days are over, which are publication days under a cadence,
//! and which snapshot a periodic round owes. Read by the rounds (`run`) and by the metrics
//! that say how overdue a snapshot is (`serve`).

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use crate::config::Cadence;

/// The last day that is over at `now` (UTC).
pub fn last_complete_day(now: Timestamp) -> Date {
    let today = now.to_zoned(TimeZone::UTC).date();
    today.yesterday().unwrap_or(today)
}

/// Publication days in `from..=to`.
pub(crate) fn publication_days(cadence: Cadence, from: Date, to: Date) -> Vec<Date> {
    let mut days = Vec::new();
    let mut d = from;
    // Bounded by the dates: at most a few thousand days.
    while d <= to {
        if cadence.publishes_on(d) {
            days.push(d);
        }
        match d.tomorrow() {
            Ok(next) => d = next,
            Err(_) => break,
        }
    }
    days
}

/// The newest publication day up to `last`, within a week of it.
pub(crate) fn latest_publication_day(cadence: Cadence, last: Date) -> Option<Date> {
    publication_days(
        cadence,
        last.checked_sub(jiff::Span::new().days(6)).unwrap_or(last),
        last,
    )
    .last()
    .copied()
}

/// The publication days up to `latest` that the cadence asks for after `newest` (the newest
/// kept snapshot): only `latest` when nothing is kept.
pub(crate) fn due_by_cadence(cadence: Cadence, newest: Option<Date>, latest: Date) -> Vec<Date> {
    match newest {
        None => vec![latest],
        Some(newest) if newest >= latest => Vec::new(),
        Some(newest) => {
            let after = newest.tomorrow().unwrap_or(newest);
            publication_days(cadence, after, latest)
        }
    }
}

/// The oldest snapshot the cadence says is due at `now` and not published, with `newest` the
/// newest published: what a periodic round computes first (without `--date` or
/// `--backfill-from`).
pub(crate) fn oldest_due(cadence: Cadence, newest: Option<Date>, now: Timestamp) -> Option<Date> {
    let latest = latest_publication_day(cadence, last_complete_day(now))?;
    due_by_cadence(cadence, newest, latest).first().copied()
}

/// When the snapshot of `date` becomes due: midnight UTC after it.
pub(crate) fn end_of_day(date: Date) -> Timestamp {
    crate::store::Window { date, days: 1 }.end()
}
