//! The BigQuery side of the stored tables: the committed schemas and view, how to authenticate,
//! and the one client constructor the ingester (writer) and stats (reader) both use.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use gcp_bigquery_client::Client;
use gcp_bigquery_client::auth::Authenticator;
use gcp_bigquery_client::client_builder::ClientBuilder;
use gcp_bigquery_client::error::BQError;
use gcp_bigquery_client::model::table_field_schema::TableFieldSchema;

use crate::table::TableRef;

/// The committed reports table schema (`schema/bigquery.json`).
pub const SCHEMA_JSON: &str = include_str!("../schema/bigquery.json");

/// The committed schema of the tombstones table (`schema/bigquery-tombstones.json`).
pub const TOMBSTONES_JSON: &str = include_str!("../schema/bigquery-tombstones.json");

/// The committed query of the deduplicating view (`schema/bigquery-view.sql`), its table written
/// `PROJECT.DATASET.TABLE`.
pub const VIEW_SQL: &str = include_str!("../schema/bigquery-view.sql");

/// The placeholder for the table in [`VIEW_SQL`].
const TABLE_PLACEHOLDER: &str = "PROJECT.DATASET.TABLE";

/// The committed reports schema, parsed.
pub fn schema() -> Result<Vec<TableFieldSchema>, serde_json::Error> {
    serde_json::from_str(SCHEMA_JSON)
}

/// The committed tombstones schema, parsed.
pub fn tombstones_schema() -> Result<Vec<TableFieldSchema>, serde_json::Error> {
    serde_json::from_str(TOMBSTONES_JSON)
}

/// The view's query over `table`: [`VIEW_SQL`] without its leading comment (the contract for
/// readers of the repository; the view carries a description instead), the placeholder replaced.
pub fn view_query(table: &TableRef) -> String {
    let statement: Vec<&str> = VIEW_SQL
        .lines()
        .skip_while(|l| l.trim().is_empty() || l.trim_start().starts_with("--"))
        .collect();
    statement.join("\n").trim().replace(
        TABLE_PLACEHOLDER,
        &format!("{}.{}.{}", table.project, table.dataset, table.table),
    )
}

/// How a BigQuery client authenticates.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Credentials {
    /// Application Default Credentials: `GOOGLE_APPLICATION_CREDENTIALS`, gcloud, or the metadata
    /// server (workload identity on GKE).
    #[default]
    Default,
    /// A service-account key file.
    KeyFile(PathBuf),
    /// No credentials: for an emulator only.
    None,
}

impl std::fmt::Debug for Credentials {
    // The path is not secret, but keep the shape obvious in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Default => f.write_str("Default"),
            Credentials::KeyFile(p) => write!(f, "KeyFile({})", p.display()),
            Credentials::None => f.write_str("None"),
        }
    }
}

impl FromStr for Credentials {
    type Err = String;

    /// A flag's value: `none` for no credentials, else a key file's path.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("empty: give a key file's path, or `none` for an emulator".into()),
            "none" => Ok(Credentials::None),
            path => Ok(Credentials::KeyFile(PathBuf::from(path))),
        }
    }
}

/// Sends no token, for an emulator. The trait is declared with `async_trait`; this is its
/// expansion, written out to need no crate for one method.
#[derive(Debug, Clone, Copy)]
pub struct Anonymous;

impl Authenticator for Anonymous {
    fn access_token<'a, 'b>(
        &'a self,
    ) -> Pin<Box<dyn Future<Output = Result<String, BQError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async { Ok(String::new()) })
    }
}

/// The default of [`client`]'s `request_timeout`: every HTTP request to BigQuery (insertAll, a
/// job's creation, one poll, one page of results, a DML statement) ends by then, answered or
/// not. It must exceed the longest wait a request asks the server for: jobs.query and
/// getQueryResults are asked to wait at most [`LONG_POLL`].
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest a jobs.query or getQueryResults call asks BigQuery to wait for the job before
/// answering (`timeoutMs`): well inside [`REQUEST_TIMEOUT`], so a healthy long poll is never cut.
pub const LONG_POLL: Duration = Duration::from_secs(10);

/// A client at `endpoint` (the v2 API base URL, e.g. an emulator's
/// `http://127.0.0.1:9050/bigquery/v2`; Google's when `None`), authenticated by `credentials`,
/// whose every request is abandoned after `request_timeout` (connecting included), so a server
/// that accepts a connection and never answers fails the call instead of hanging it.
/// Reads credentials; makes no API call.
pub async fn client(
    endpoint: Option<&str>,
    credentials: &Credentials,
    request_timeout: Duration,
) -> Result<Client, BQError> {
    let mut builder = ClientBuilder::new();
    let http = reqwest::Client::builder()
        .timeout(request_timeout)
        .connect_timeout(request_timeout.min(Duration::from_secs(10)))
        .build()
        .map_err(BQError::RequestError)?;
    builder.with_client(http);
    if let Some(endpoint) = endpoint {
        builder.with_v2_base_url(endpoint.trim_end_matches('/').to_owned());
    }
    match credentials {
        Credentials::None => builder.build_from_authenticator(Arc::new(Anonymous)).await,
        Credentials::KeyFile(path) => {
            builder
                .build_from_service_account_key_file(&path.to_string_lossy())
                .await
        }
        Credentials::Default => builder.build_from_application_default_credentials().await,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_committed_schemas_parse_and_the_view_names_its_table() {
        assert!(schema().unwrap().iter().any(|f| f.name == "reportID"));
        assert!(!tombstones_schema().unwrap().is_empty());
        let t = TableRef::parse("my-proj/d/reports").unwrap();
        let q = view_query(&t);
        assert!(
            q.contains("my-proj.d.reports") && !q.contains(TABLE_PLACEHOLDER),
            "{q}"
        );
        assert!(!q.trim_start().starts_with("--"));
    }

    #[test]
    fn the_manual_shows_the_committed_view() {
        let manual = include_str!("../../docs/collector.md");
        let statement = view_query(&TableRef {
            project: "PROJECT".into(),
            dataset: "DATASET".into(),
            table: "TABLE".into(),
        });
        assert!(
            manual.contains(&statement),
            "docs/collector.md lacks:\n{statement}"
        );
    }

    #[test]
    fn credentials_are_a_key_file_or_none() {
        assert_eq!("none".parse(), Ok(Credentials::None));
        assert_eq!(
            "/k.json".parse(),
            Ok(Credentials::KeyFile(PathBuf::from("/k.json")))
        );
        assert!("".parse::<Credentials>().is_err());
        assert_eq!(Credentials::default(), Credentials::Default);
    }
}
