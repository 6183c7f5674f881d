//! The dashboard's files: the published documents it is drawn from, and the pages it writes
//! beside them.

use crate::ledger::Ledger;
use crate::metrics::METRICS;
use crate::output::{Index, Latest, Output, OutputError, Series, write_atomic};

use super::{CSS, METHODOLOGY, Options, PAGE, Published, STYLESHEET, render, render_methodology};

/// Reads the newest snapshot, the index, the series and the ledger (if any) from `output`;
/// `None` when nothing is published yet.
pub fn read(output: &Output) -> Result<Option<Published>, OutputError> {
    let Some(latest) = output.read_json::<Latest>("latest.json")? else {
        return Ok(None);
    };
    let snapshot = output.read(latest.date)?;
    let index = output
        .read_json::<Index>("index.json")?
        .ok_or_else(|| OutputError::Format {
            path: output.root().join("index.json"),
            detail: "missing, but latest.json exists".into(),
        })?;
    let mut series = Vec::new();
    for m in METRICS.iter().filter(|m| m.over_time.is_some()) {
        if let Some(s) = output.read_json::<Series>(&format!("series/{}.json", m.id))? {
            series.push(s);
        }
    }
    let ledger = Ledger::load(output)?;
    Ok(Some(Published {
        snapshot,
        index,
        series,
        ledger,
    }))
}

/// Renders the pages of what `output` holds and writes them with their stylesheet, each only if
/// it changed. Returns whether a page exists now.
pub fn publish(output: &Output, options: &Options) -> Result<bool, OutputError> {
    let Some(published) = read(output)? else {
        return Ok(false);
    };
    write_if_changed(output, STYLESHEET, CSS.as_bytes())?;
    write_if_changed(
        output,
        METHODOLOGY,
        render_methodology(&published, options).as_bytes(),
    )?;
    write_if_changed(output, PAGE, render(&published, options).as_bytes())?;
    Ok(true)
}

fn write_if_changed(output: &Output, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
    let path = output.root().join(name);
    if std::fs::read(&path).ok().as_deref() == Some(bytes) {
        return Ok(());
    }
    write_atomic(&path, bytes)
}
