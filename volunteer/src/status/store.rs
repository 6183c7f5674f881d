//! The status's Kubernetes I/O: reading and writing the ConfigMap (get, then update or
//! create, once more on a conflict), the Warning Event on a failed attempt, and the Normal
//! Event when the report left fields out for lack of consent. What is written is decided in
//! [`super::record`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};

use super::record::{
    Attempt, MAX_ERROR, MAX_STORED_GZIP, Outcome, Status, StatusError, key, to_data, truncate,
};
use crate::config::StatusTarget;
use crate::consent::Withheld;

/// The status ConfigMap and the namespace's Events, through the volunteer's client.
#[derive(Clone)]
pub(crate) struct Store {
    configmaps: Api<ConfigMap>,
    events: Api<Event>,
    namespace: String,
    name: String,
}

impl Store {
    /// The store for `target`, in its namespace or the client's default one (the pod's own
    /// in a cluster, else the kubeconfig context's).
    pub(crate) fn new(client: &kube::Client, target: &StatusTarget) -> Store {
        let namespace = target
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_owned());
        Store {
            configmaps: Api::namespaced(client.clone(), &namespace),
            events: Api::namespaced(client.clone(), &namespace),
            name: target.name.clone(),
            namespace,
        }
    }

    /// `namespace/name` of the ConfigMap.
    pub(crate) fn configmap(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// The recorded status, `None` if there is none yet.
    pub(crate) async fn read(&self) -> Result<Option<Status>, StatusError> {
        self.configmaps
            .get_opt(&self.name)
            .await
            .map(|cm| cm.as_ref().map(Status::parse))
            .map_err(|e| StatusError::Read(self.configmap(), e))
    }

    /// Records `attempt` and what it left out for lack of consent; on failure emits a Warning
    /// Event, and when fields were left out a Normal one. Never fails: what cannot be written
    /// is logged as a warning.
    pub(crate) async fn record(&self, attempt: &Attempt<'_>, withheld: &Withheld) {
        let uid = match self.write(attempt, withheld).await {
            Ok(uid) => {
                tracing::info!(configmap = %self.configmap(), outcome = attempt.outcome.as_str(), "status recorded");
                Some(uid)
            }
            Err(e) => {
                self.warn(&e, "status not recorded");
                None
            }
        };
        if attempt.outcome == Outcome::Failed {
            let note = format!(
                "report {} to {} not delivered: {}",
                attempt.report_id,
                attempt.collector_host,
                attempt.error.as_deref().unwrap_or("unknown error")
            );
            if let Err(e) = self
                .event("Warning", "ReportNotDelivered", &note, uid.clone())
                .await
            {
                self.warn(&e, "event not emitted");
            }
        }
        // Until the operator accepts the newer version, each report says so.
        if !withheld.fields.is_empty() {
            let note = withheld.event_note(&attempt.report_id);
            if let Err(e) = self.event("Normal", "FieldsWithheld", &note, uid).await {
                self.warn(&e, "event not emitted");
            }
        }
    }

    fn warn(&self, e: &kube::Error, what: &str) {
        let hint = match e {
            kube::Error::Api(s) if s.code == 403 => format!(
                "; the volunteer's Role in {ns} must allow get and update on configmaps/{name}, create on configmaps, and create on events.k8s.io events",
                ns = self.namespace,
                name = self.name
            ),
            _ => String::new(),
        };
        tracing::warn!(configmap = %self.configmap(), error = %plumbing::Chain(e), "{what} (the report itself is not affected){hint}");
    }

    /// get, then update (or create); once more on a conflict with a concurrent writer.
    /// Returns the ConfigMap's UID.
    async fn write(
        &self,
        attempt: &Attempt<'_>,
        withheld: &Withheld,
    ) -> Result<String, kube::Error> {
        let pp = PostParams {
            field_manager: Some("spartakus-volunteer".into()),
            ..Default::default()
        };
        let mut tries = 0;
        loop {
            tries += 1;
            let previous = self.configmaps.get_opt(&self.name).await?;
            let (mut data, binary) = to_data(previous.as_ref(), attempt, MAX_STORED_GZIP);
            data.insert(key::CONSENT.to_owned(), withheld.to_status());
            let result = match previous {
                Some(mut cm) => {
                    cm.data = Some(data);
                    cm.binary_data = (!binary.is_empty()).then_some(binary);
                    self.configmaps.replace(&self.name, &pp, &cm).await
                }
                None => {
                    let cm = ConfigMap {
                        metadata: ObjectMeta {
                            name: Some(self.name.clone()),
                            labels: Some(BTreeMap::from([(
                                "app.kubernetes.io/name".to_owned(),
                                "spartakus-volunteer".to_owned(),
                            )])),
                            ..Default::default()
                        },
                        data: Some(data),
                        binary_data: (!binary.is_empty()).then_some(binary),
                        ..Default::default()
                    };
                    self.configmaps.create(&pp, &cm).await
                }
            };
            match result {
                Ok(cm) => return Ok(cm.metadata.uid.unwrap_or_default()),
                Err(kube::Error::Api(s)) if s.code == 409 && tries < 2 => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// An Event of `type_` and `reason` regarding the ConfigMap (`uid`: its UID, if known).
    async fn event(
        &self,
        type_: &str,
        reason: &str,
        note: &str,
        uid: Option<String>,
    ) -> Result<(), kube::Error> {
        let now = jiff::Timestamp::now();
        let event = Event {
            metadata: ObjectMeta {
                name: Some(format!("{}.{:x}", self.name, now.as_nanosecond())),
                namespace: Some(self.namespace.clone()),
                ..Default::default()
            },
            event_time: Some(MicroTime(now)),
            type_: Some(type_.into()),
            reason: Some(reason.into()),
            action: Some("SendReport".into()),
            note: Some(truncate(note, MAX_ERROR)),
            reporting_controller: Some("spartakus.dev/volunteer".into()),
            reporting_instance: Some("spartakus-volunteer".into()),
            regarding: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                uid,
                ..Default::default()
            }),
            ..Default::default()
        };
        self.events.create(&PostParams::default(), &event).await?;
        Ok(())
    }
}
