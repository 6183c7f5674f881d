//! The dashboard: two HTML pages and their stylesheet, drawn from the published files alone.
//!
//! [`render`] is a pure function from the published documents (`snapshot.json` of the newest
//! snapshot, `index.json`, the `series/ID.json` drawn over time, and `ledger.json` when there is
//! one) to HTML. It decides nothing about privacy: it shows exactly the cells the files hold,
//! `other`, `unknown` and withheld metrics included, and states the guarantee and the noise the
//! files state (`disclose` alone decides what is published, `privacy` what it costs).
//! `render_methodology` explains how the numbers are made, with this snapshot's parameters.
//! Markup comes from maud's templates, which escape every value; charts are inline SVG written
//! the same way; the pages need no JavaScript and load nothing but their own stylesheet, so
//! they work under a Content-Security-Policy that forbids every other origin.
//!
//! [`publish`] reads the files, renders, and writes `index.html`, `methodology.html` and
//! `dashboard.css` beside them when they changed.
//!
//! - `files`: reading the published documents, writing the pages beside them.
//! - `page`: the dashboard page; `methodology`: the methodology page; `layout`: what both share.
//! - `cells`: a metric's rows as the pages read them.
//! - `bar_chart`: one metric's cells as bars; `line_chart`: a metric's shares over time.
//! - `scale`: the charts' round share scales; `format`: numbers as the pages write them.

mod bar_chart;
mod cells;
mod files;
mod format;
mod layout;
mod line_chart;
mod methodology;
mod page;
mod scale;

use crate::ledger::Ledger;
use crate::output::{Index, Series};
use crate::snapshot::Snapshot;

pub use files::{publish, read};
pub use format::thousands;
pub(crate) use methodology::render_methodology;
pub use page::render;

/// The page's file name in the published directory.
pub const PAGE: &str = "index.html";
/// The methodology page's file name in the published directory.
pub const METHODOLOGY: &str = "methodology.html";
/// The stylesheet's file name in the published directory.
pub const STYLESHEET: &str = "dashboard.css";
/// The stylesheet (the only file the page loads).
pub const CSS: &str = include_str!("dashboard.css");

/// Everything the page is drawn from, as read from the published directory.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    /// The newest snapshot (the one `latest.json` names).
    pub(crate) snapshot: Snapshot,
    /// Every kept snapshot.
    pub(crate) index: Index,
    /// The series of the metrics drawn over time (`Metric::over_time`) that exist, in the order
    /// of `METRICS`.
    pub(crate) series: Vec<Series>,
    /// Every release and what all of them cost, when the folder has a `ledger.json`.
    pub(crate) ledger: Option<Ledger>,
}

/// What the page says beyond the files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Options {
    /// Where the privacy summary links to (the manual's page "Privacy and the published
    /// statistics" in the operator's copy of the source); `None`: the published `SCHEMA.md`.
    pub privacy_url: Option<String>,
}
