//! Consent (`--consent`): the report-content version the operator accepted
//! ([`report::consent`]), what the volunteer leaves out for it, and how it says so.
//!
//! Fields that `--omit` can name are not even collected ([`omits`]); then every field the
//! accepted version lacks is removed from the anonymized report ([`apply`]), by the one list
//! in `report`. What was left out ([`Withheld`]) goes to the status ConfigMap (key
//! `consent`), a Normal Event and `volunteer status`, until the operator accepts the newer
//! version. `volunteer consent` ([`explain`]) prints what each newer version adds.

use std::collections::BTreeSet;
use std::fmt::Write;

use report::Report;
use report::consent::{self, CURRENT};

use crate::omit::Omit;

/// The report field an `--omit` value removes (the same name but for `ages`).
pub(crate) fn field(o: Omit) -> &'static str {
    match o {
        Omit::Ages => "workloads.ageHours",
        o => o.section(),
    }
}

/// The `--omit` values for fields version `accepted` lacks: not even collected.
pub(crate) fn omits(accepted: u32) -> BTreeSet<Omit> {
    Omit::all()
        .into_iter()
        .filter(|&o| !consent::is_accepted(field(o), accepted))
        .collect()
}

/// What the volunteer left out of one report for lack of consent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Withheld {
    /// The version the operator accepted.
    pub(crate) accepted: u32,
    /// The version this volunteer's reports have.
    pub(crate) current: u32,
    /// The fields left out, outermost only, in the versions' order.
    pub(crate) fields: Vec<String>,
}

/// `report` (anonymized with `omit` ∪ [`omits`]) with only what version `accepted` includes,
/// and what was left out: the fields removed, and the sections not collected for consent
/// alone (not also `--omit`ted by the operator). Their `skipped` entries go too: the operator
/// did not omit them, and the report says nothing of what it was not allowed to carry.
pub(crate) fn apply(
    mut report: Report,
    accepted: u32,
    omit: &BTreeSet<Omit>,
) -> Result<(Report, Withheld), serde_json::Error> {
    let for_consent: Vec<Omit> = omits(accepted).difference(omit).copied().collect();
    if let Some(skipped) = &mut report.skipped {
        skipped.retain(|s| !for_consent.iter().any(|o| o.section() == s.section));
        if skipped.is_empty() {
            report.skipped = None;
        }
    }
    let (report, removed) = consent::restrict(report, accepted)?;
    let mut fields: Vec<String> = removed;
    for o in for_consent {
        let path = field(o);
        // Only the outermost: `workloads.ageHours` goes with `workloads`.
        if !for_consent_parent(path, accepted) && !fields.iter().any(|f| f == path) {
            fields.push(path.to_owned());
        }
    }
    fields.sort_by_key(|f| consent::position(f));
    Ok((
        report,
        Withheld {
            accepted,
            current: CURRENT,
            fields,
        },
    ))
}

/// Whether a field enclosing `path` is itself one version `accepted` lacks.
fn for_consent_parent(path: &str, accepted: u32) -> bool {
    path.match_indices('.')
        .any(|(i, _)| !consent::is_accepted(&path[..i], accepted))
}

const NOTHING: &str = "nothing withheld";

impl Withheld {
    /// The status ConfigMap's `consent` value, e.g. `accepted 1, current 2, withheld:
    /// reportID, namespaces` or `accepted 2, current 2, nothing withheld`.
    pub(crate) fn to_status(&self) -> String {
        let what = if self.fields.is_empty() {
            NOTHING.to_owned()
        } else {
            format!("withheld: {}", self.fields.join(", "))
        };
        format!(
            "accepted {}, current {}, {what}",
            self.accepted, self.current
        )
    }

    /// A `consent` value read back; `None` if it is not one.
    pub(crate) fn from_status(s: &str) -> Option<Withheld> {
        let rest = s.strip_prefix("accepted ")?;
        let (accepted, rest) = rest.split_once(", current ")?;
        let (current, what) = rest.split_once(", ")?;
        let fields = if what == NOTHING {
            Vec::new()
        } else {
            what.strip_prefix("withheld: ")?
                .split(", ")
                .map(str::to_owned)
                .collect()
        };
        Some(Withheld {
            accepted: accepted.parse().ok()?,
            current: current.parse().ok()?,
            fields,
        })
    }

    /// How to see and accept what was left out, in one sentence.
    pub(crate) fn how_to_accept(&self) -> String {
        format!(
            "`volunteer consent --consent {}` lists what version {} adds; accept it with --consent {} (SPARTAKUS_CONSENT={})",
            self.accepted,
            if self.accepted + 1 == self.current {
                self.current.to_string()
            } else {
                format!("{} to {}", self.accepted + 1, self.current)
            },
            self.current,
            self.current
        )
    }

    /// The note of the Event that says a report was sent without some fields.
    pub(crate) fn event_note(&self, report_id: &str) -> String {
        format!(
            "report {report_id} left out what consent version {} does not include: {}. {}",
            self.accepted,
            self.fields.join(", "),
            self.how_to_accept()
        )
    }
}

/// `volunteer status`'s consent rows from the ConfigMap's `consent` value (none for a status
/// written before there was one).
pub(crate) fn status_rows(value: Option<&str>) -> Vec<(&'static str, String)> {
    let Some(value) = value else {
        return Vec::new();
    };
    let Some(w) = Withheld::from_status(value) else {
        return vec![("consent", value.to_owned())];
    };
    if w.fields.is_empty() {
        return vec![(
            "consent",
            format!("version {} accepted: nothing withheld", w.accepted),
        )];
    }
    vec![
        (
            "consent",
            format!(
                "version {} accepted; this volunteer's reports are version {}",
                w.accepted, w.current
            ),
        ),
        ("withheld", w.fields.join(", ")),
        ("", w.how_to_accept()),
    ]
}

/// What `volunteer consent` prints for an operator who accepted version `accepted`: exactly
/// the fields each newer version adds.
pub(crate) fn explain(accepted: u32) -> String {
    let mut out = String::new();
    let newer = consent::newer_than(accepted);
    if newer.is_empty() {
        let _ = writeln!(
            out,
            "Consent: version {accepted} accepted, the newest this volunteer knows: its reports leave nothing out for lack of consent."
        );
        return out;
    }
    let _ = writeln!(
        out,
        "Consent: version {accepted} accepted (--consent, SPARTAKUS_CONSENT); this volunteer's reports are version {CURRENT}."
    );
    let _ = writeln!(
        out,
        "Until a newer version is accepted, every report leaves out the fields it adds:"
    );
    for v in newer {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Version {} (introduced {}): {}",
            v.number, v.introduced, v.summary
        );
        let width = v.fields.iter().map(|f| f.path.len()).max().unwrap_or(0);
        for f in v.fields {
            let _ = writeln!(out, "  {:<width$}  {}", f.path, f.about);
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "To accept version {CURRENT}: --consent {CURRENT}, or SPARTAKUS_CONSENT={CURRENT} (the CronJob's environment in k8s/volunteer)."
    );
    let _ = writeln!(
        out,
        "What each field may hold, and why it does not identify the cluster: docs/report.md."
    );
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    #[test]
    fn every_omit_value_names_a_field_of_a_consent_version() {
        for o in Omit::all() {
            assert!(consent::version_of(field(o)).is_some(), "{}", o.section());
        }
    }

    #[test]
    fn version_one_does_not_collect_namespaces_or_workloads() {
        assert_eq!(
            omits(1),
            BTreeSet::from([Omit::Namespaces, Omit::Workloads, Omit::Ages])
        );
        assert!(omits(CURRENT).is_empty());
    }

    #[test]
    fn the_status_value_reads_back() {
        for w in [
            Withheld {
                accepted: 1,
                current: 2,
                fields: vec!["reportID".into(), "workloads".into()],
            },
            Withheld {
                accepted: 2,
                current: 2,
                fields: vec![],
            },
        ] {
            assert_eq!(Withheld::from_status(&w.to_status()), Some(w));
        }
        assert_eq!(
            Withheld {
                accepted: 1,
                current: 2,
                fields: vec!["reportID".into(), "workloads".into()],
            }
            .to_status(),
            "accepted 1, current 2, withheld: reportID, workloads"
        );
        assert_eq!(Withheld::from_status("something else"), None);
    }

    #[test]
    fn status_rows_say_what_was_withheld_and_how_to_accept_it() {
        let rows = status_rows(Some("accepted 1, current 2, withheld: reportID, workloads"));
        assert_eq!(
            rows,
            [
                (
                    "consent",
                    "version 1 accepted; this volunteer's reports are version 2".to_owned()
                ),
                ("withheld", "reportID, workloads".to_owned()),
                (
                    "",
                    "`volunteer consent --consent 1` lists what version 2 adds; accept it with --consent 2 (SPARTAKUS_CONSENT=2)".to_owned()
                ),
            ]
        );
        assert_eq!(
            status_rows(Some("accepted 2, current 2, nothing withheld")),
            [("consent", "version 2 accepted: nothing withheld".to_owned())]
        );
        assert!(status_rows(None).is_empty());
    }

    #[test]
    fn at_the_current_version_explain_says_nothing_is_left_out() {
        assert!(explain(CURRENT).contains("leave nothing out"));
        assert!(explain(1).contains("\n  workloads.ageHours.p90"));
    }
}
