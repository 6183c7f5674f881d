//! The API server's Table form of a list: one row of printed columns per object (what
//! `kubectl get` shows), without the object (`includeObject=None`). Its wire types, and the
//! AGE column read back into seconds.
//!
//! Why a Table: to count a kind and summarize its ages, the volunteer needs no more than a row
//! per object, and a Table row is about a tenth of the object's metadata on the wire (metadata
//! carries `managedFields`, which no list parameter can leave out). A Table has no namespace
//! column, so per-namespace counts come from elsewhere (`collect`).
//!
//! AGE is printed by the API server from `creationTimestamp` (apimachinery's
//! `duration.HumanDuration`): `45s`, `3m20s`, `95m`, `5h12m`, `30h`, `3d4h`, `87d`, `2y41d`,
//! `9y`. Below 8 days it is exact to the hour, from 8 days to the day (in 365-day years from 2
//! years), from 8 years to the year; `age_seconds` reads it back as the shortest age it can
//! mean.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta;
use serde::Deserialize;

/// The `Accept` header that asks for a Table.
pub const ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io";
/// The query parameter that leaves the objects out of a Table's rows.
pub const NO_OBJECTS: (&str, &str) = ("includeObject", "None");
/// The name of the column the API server prints `creationTimestamp` in.
pub(crate) const AGE_COLUMN: &str = "Age";

/// One page of a Table list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Table {
    /// The list's `continue` token and `remainingItemCount`.
    #[serde(default)]
    pub(crate) metadata: ListMeta,
    /// The columns, in the order of each row's cells.
    #[serde(default)]
    pub(crate) column_definitions: Vec<Column>,
    /// One row per object.
    #[serde(default)]
    pub(crate) rows: Vec<Row>,
}

/// One column of a [`Table`]; only its name is read.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Column {
    /// e.g. `Name`, `Age`.
    pub(crate) name: String,
}

/// One row of a [`Table`]: the cells of one object.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Row {
    /// The printed values, in column order. Only the AGE cell is read; the rest (names,
    /// addresses, images) are dropped with the page and never leave the process.
    #[serde(default)]
    pub(crate) cells: Vec<serde_json::Value>,
}

impl Table {
    /// Where the AGE column is, if the server prints one.
    pub(crate) fn age_column(&self) -> Option<usize> {
        self.column_definitions
            .iter()
            .position(|c| c.name == AGE_COLUMN)
    }

    /// The page's continue token, if more pages follow.
    pub(crate) fn continue_token(&self) -> Option<&str> {
        self.metadata.continue_.as_deref().filter(|t| !t.is_empty())
    }

    /// How many objects the whole list holds, known from the first page alone: its rows plus
    /// the server's `remainingItemCount`. `None` when more pages follow and the server did not
    /// say how many objects they hold.
    pub(crate) fn list_len(&self) -> Option<u64> {
        let rows = self.rows.len() as u64;
        match (self.continue_token(), self.metadata.remaining_item_count) {
            (None, _) => Some(rows),
            (Some(_), Some(rest)) => u64::try_from(rest).ok().map(|rest| rows + rest),
            (Some(_), None) => None,
        }
    }

    /// The age in seconds of each row whose AGE cell can be read (`<unknown>`, printed for an
    /// object without a creation time, cannot).
    pub(crate) fn ages(&self, column: usize) -> impl Iterator<Item = u64> + '_ {
        self.rows
            .iter()
            .filter_map(move |r| r.cells.get(column)?.as_str().and_then(age_seconds))
    }
}

/// The shortest age in seconds that a printed AGE can mean: `3d4h` → 273,600; `<unknown>`,
/// `<invalid>` or anything else → `None`.
pub(crate) fn age_seconds(printed: &str) -> Option<u64> {
    if printed.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in printed.chars() {
        if let Some(d) = c.to_digit(10) {
            number = Some(number.unwrap_or(0).checked_mul(10)?.checked_add(d.into())?);
            continue;
        }
        let unit: u64 = match c {
            'y' => 365 * 86_400,
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    // A number without a unit is not a printed duration.
    if number.is_some() {
        return None;
    }
    Some(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// apimachinery's `duration.HumanDuration`, transcribed from v0.37.2, to check
    /// [`age_seconds`] against every shape it prints.
    fn human_duration(seconds: i64) -> String {
        if seconds < -1 {
            return "<invalid>".into();
        } else if seconds < 0 {
            return "0s".into();
        } else if seconds < 60 * 2 {
            return format!("{seconds}s");
        }
        let minutes = seconds / 60;
        if minutes < 10 {
            let s = seconds % 60;
            return if s == 0 {
                format!("{minutes}m")
            } else {
                format!("{minutes}m{s}s")
            };
        } else if minutes < 60 * 3 {
            return format!("{minutes}m");
        }
        let hours = seconds / 3600;
        if hours < 8 {
            let m = minutes % 60;
            if m == 0 {
                format!("{hours}h")
            } else {
                format!("{hours}h{m}m")
            }
        } else if hours < 48 {
            format!("{hours}h")
        } else if hours < 24 * 8 {
            let h = hours % 24;
            if h == 0 {
                format!("{}d", hours / 24)
            } else {
                format!("{}d{h}h", hours / 24)
            }
        } else if hours < 24 * 365 * 2 {
            format!("{}d", hours / 24)
        } else if hours < 24 * 365 * 8 {
            let dy = (hours / 24) % 365;
            if dy == 0 {
                format!("{}y", hours / 24 / 365)
            } else {
                format!("{}y{dy}d", hours / 24 / 365)
            }
        } else {
            format!("{}y", hours / 24 / 365)
        }
    }

    #[test]
    fn printed_ages_read_back_as_the_shortest_age_they_can_mean() {
        for (printed, seconds) in [
            ("0s", 0),
            ("45s", 45),
            ("3m20s", 200),
            ("95m", 5_700),
            ("5h12m", 18_720),
            ("30h", 108_000),
            ("3d4h", 273_600),
            ("87d", 7_516_800),
            ("2y41d", 66_614_400),
            ("9y", 283_824_000),
        ] {
            assert_eq!(age_seconds(printed), Some(seconds), "{printed}");
        }
        for bad in [
            "",
            "<unknown>",
            "<invalid>",
            "5",
            "h",
            "3x",
            "1d2",
            "99999999999999999999y",
        ] {
            assert_eq!(age_seconds(bad), None, "{bad}");
        }
    }

    proptest! {
        /// Whole hours are exact below 8 days; from 8 days the printed age is whole days, from
        /// 8 years whole years, so it is short by less than one of those, never long.
        #[test]
        fn every_printed_age_reads_back_to_its_hour_day_or_year(seconds in 0i64..365 * 86_400 * 12) {
            let read = age_seconds(&human_duration(seconds)).unwrap() as i64;
            prop_assert!(read <= seconds);
            if seconds < 8 * 86_400 {
                prop_assert_eq!(read / 3600, seconds / 3600);
            } else if seconds < 8 * 365 * 86_400 {
                prop_assert!(seconds - read < 86_400, "{} read as {}", seconds, read);
            } else {
                prop_assert!(seconds - read < 365 * 86_400, "{} read as {}", seconds, read);
            }
        }
    }

    #[test]
    fn a_table_page_says_how_many_objects_the_whole_list_holds() {
        let page: Table = serde_json::from_value(serde_json::json!({
            "kind": "Table",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": "7", "continue": "abc", "remainingItemCount": 41},
            "columnDefinitions": [
                {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0},
                {"name": "Age", "type": "string", "format": "", "description": "", "priority": 0}
            ],
            "rows": [
                {"cells": ["web-1", "3d4h"], "object": null},
                {"cells": ["web-2", "<unknown>"], "object": null}
            ]
        }))
        .unwrap();
        assert_eq!(page.list_len(), Some(43));
        assert_eq!(page.continue_token(), Some("abc"));
        let age = page.age_column().unwrap();
        assert_eq!(page.ages(age).collect::<Vec<_>>(), [273_600]);

        let last: Table = serde_json::from_value(serde_json::json!({
            "metadata": {"continue": ""}, "rows": [{"cells": []}]
        }))
        .unwrap();
        assert_eq!(last.list_len(), Some(1));
        assert_eq!(last.age_column(), None);
        let unsaid: Table =
            serde_json::from_value(serde_json::json!({"metadata": {"continue": "x"}})).unwrap();
        assert_eq!(unsaid.list_len(), None);
    }
}
