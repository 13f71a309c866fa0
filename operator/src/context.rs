//! What every reconcile shares: the operator's settings, the API client, the caches the
//! controllers fill, the mailstore clients, the event recorder and the retry schedule of
//! failing objects.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Resource};

use crate::cache::Caches;
use crate::mailstore::{Admin, Mailstores};

/// The first retry of a failing object, doubled on each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

/// What the operator is started with, the same for every term it leads.
#[derive(Clone)]
pub struct Settings {
    pub client: kube::Client,
    pub mailstores: Mailstores,
    /// The image tag of a MailCluster that names none: the operator's own version.
    pub default_tag: String,
    /// This replica's name in Events.
    pub instance: Option<String>,
    /// The one namespace whose resources this set of controllers reconciles; `None`: every
    /// namespace.
    pub watch_namespace: Option<String>,
    /// How often a Mailbox's usage is read from the mailstore.
    pub usage_refresh: Duration,
}

impl Settings {
    /// `K` in the namespaces the operator reconciles.
    pub fn watched<K>(&self) -> Api<K>
    where
        K: Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match &self.watch_namespace {
            Some(namespace) => Api::namespaced(self.client.clone(), namespace),
            None => Api::all(self.client.clone()),
        }
    }
}

pub struct Context {
    pub client: kube::Client,
    pub mailstores: Mailstores,
    pub default_tag: String,
    pub usage_refresh: Duration,
    pub caches: Caches,
    recorder: Recorder,
    retries: Retries,
}

impl Context {
    pub fn new(settings: &Settings, caches: Caches) -> Context {
        let reporter = Reporter { controller: crate::build::MANAGER.to_string(), instance: settings.instance.clone() };
        Context {
            recorder: Recorder::new(settings.client.clone(), reporter),
            client: settings.client.clone(),
            mailstores: settings.mailstores.clone(),
            default_tag: settings.default_tag.clone(),
            usage_refresh: settings.usage_refresh,
            caches,
            retries: Retries::default(),
        }
    }

    /// The Admin API of the mailstore of the MailCluster `cluster` in `namespace`.
    pub async fn admin(&self, cluster: &str, namespace: &str) -> crate::Result<Admin> {
        self.mailstores.admin(&self.client, &self.caches, cluster, namespace).await
    }

    /// [`Context::admin`] for removing something from the mailstore: without the operator's
    /// identity (its MailCluster gone with it) the mailstore is as good as down, and that is
    /// answered as a mailstore that is down answers, UNAVAILABLE.
    pub async fn admin_for_removal(
        &self,
        cluster: &str,
        namespace: &str,
    ) -> crate::Result<std::result::Result<Admin, tonic::Status>> {
        match self.admin(cluster, namespace).await {
            Ok(admin) => Ok(Ok(admin)),
            Err(crate::Error::MailstoreUnreachable { message, .. }) => Ok(Err(tonic::Status::unavailable(message))),
            Err(error) => Err(error),
        }
    }

    /// Records an Event on `object`; one that cannot be recorded is logged, not fatal.
    pub async fn event(&self, object: &ObjectReference, warning: bool, reason: &str, note: String, action: &str) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, object).await {
            tracing::warn!(%error, reason, "cannot record an event");
        }
    }

    /// When to try `key` again after a failure: sooner at first, then less and less often.
    pub fn retry_after_failure(&self, key: String) -> Action {
        Action::requeue(self.retries.after_failure(key))
    }

    /// Forgets the failures of `key` once it reconciles.
    pub fn succeeded(&self, key: &str) {
        self.retries.succeeded(key);
    }
}

/// The failures in a row of each object, and the delay before its next try.
#[derive(Default)]
struct Retries(Mutex<HashMap<String, u32>>);

impl Retries {
    fn after_failure(&self, key: String) -> Duration {
        let mut failures = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let count = failures.entry(key).or_insert(0);
        let delay = FIRST_RETRY.saturating_mul(1 << (*count).min(10)).min(MAX_RETRY);
        *count += 1;
        delay
    }

    fn succeeded(&self, key: &str) {
        self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_in_a_row_back_off_until_a_success() {
        let retries = Retries::default();
        let delays: Vec<u64> = (0..9).map(|_| retries.after_failure("mx/alice".into()).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
        assert_eq!(retries.after_failure("mx/bob".into()).as_secs(), 5, "each object on its own");
        retries.succeeded("mx/alice");
        assert_eq!(retries.after_failure("mx/alice".into()).as_secs(), 5);
    }
}
