//! What every reconcile shares: the API client, the mailstore clients, the event recorder and
//! the retry schedule of failing objects.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::controller::Action;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::mailstore::Mailstores;

/// The first retry of a failing object, doubled on each failure up to [`MAX_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(5);
const MAX_RETRY: Duration = Duration::from_secs(300);

pub struct Context {
    pub client: kube::Client,
    pub mailstores: Mailstores,
    /// The image tag of a MailCluster that names none: the operator's own version.
    pub default_tag: String,
    recorder: Recorder,
    retries: Retries,
}

impl Context {
    pub fn new(client: kube::Client, mailstores: Mailstores, default_tag: String, instance: Option<String>) -> Context {
        let reporter = Reporter { controller: crate::build::MANAGER.to_string(), instance };
        Context {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            mailstores,
            default_tag,
            retries: Retries::default(),
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
