//! What both pages share: the head, the licence note, the synthetic-data notice.

use maud::{Markup, html};

use super::STYLESHEET;
use crate::snapshot::{LICENSE, LICENSE_URL, Snapshot};

/// The head of a page titled `title`.
pub(super) fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            meta name="color-scheme" content="light";
            title { (title) }
            link rel="stylesheet" href=(STYLESHEET);
            // No favicon request: the page loads nothing but its stylesheet.
            link rel="icon" href="data:,";
        }
    }
}

/// The data's licence, as every page states it.
pub(super) fn licence_note() -> Markup {
    html! {
        p.licence {
            "The data is licensed under the "
            a rel="license" href=(LICENSE_URL) { "Community Data License Agreement – Permissive 2.0" }
            " (" code { (LICENSE) } "); every folder has a "
            a href="LICENSE.txt" { "LICENSE.txt" } " that says so."
        }
    }
}

/// The notice on both pages when the snapshot counts reports marked synthetic.
pub(super) fn synthetic_notice(s: &Snapshot) -> Markup {
    html! {
        @if s.synthetic_included {
            p.notice.synthetic role="note" {
                strong { "Synthetic data. " }
                "This snapshot includes reports marked "
                code { "spartakus.dev/synthetic=true" }
                ": a generated demonstration population, not real clusters."
            }
        }
    }
}
