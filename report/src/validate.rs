//! Validation rules. Every failure is a [`FieldError`] naming the field path
//! (e.g. `nodes[3].capacity[1].value`) and the rule it breaks.

use crate::Report;
use std::fmt;

/// Most nodes a report may list.
pub const MAX_NODES: usize = 15_000;

/// One broken rule at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Path of the field, e.g. `nodes[3].capacity[1].value`.
    pub path: String,
    /// The rule, e.g. `not a Kubernetes quantity`.
    pub rule: String,
}

impl FieldError {
    /// A new error at `path` for `rule`.
    pub fn new(path: impl Into<String>, rule: impl Into<String>) -> Self {
        FieldError {
            path: path.into(),
            rule: rule.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.rule)
    }
}

/// Every rule broken by `report`, in field order; empty when valid.
pub(crate) fn check(report: &Report) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if report.version.is_empty() {
        errors.push(FieldError::new("version", "required"));
    }
    if report.cluster_id.is_empty() {
        errors.push(FieldError::new("clusterID", "required"));
    }
    if let Some(id) = &report.report_id
        && crate::ReportId::parse(id).is_none()
    {
        errors.push(FieldError::new("reportID", "not a UUID in 8-4-4-4-12 form"));
    }
    if let Some(nodes) = &report.nodes
        && nodes.len() > MAX_NODES
    {
        errors.push(FieldError::new("nodes", format!("more than {MAX_NODES} nodes")));
    }
    errors
}
