//! The status stage: conditions after the Kubernetes API conventions, and the status patch.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Result;
use crate::build::MANAGER;

/// One condition as a reconcile finds it, before it is dated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub type_: &'static str,
    pub status: bool,
    /// `PascalCase`, for machines (`SecretNotFound`).
    pub reason: &'static str,
    /// For people: what is wrong and what to do about it.
    pub message: String,
}

impl Found {
    pub fn yes(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Found {
        Found { type_, status: true, reason, message: message.into() }
    }

    pub fn no(type_: &'static str, reason: &'static str, message: impl Into<String>) -> Found {
        Found { type_, status: false, reason, message: message.into() }
    }
}

/// `previous` brought up to `found` for `generation`. A condition's transition time is the
/// time its status last flipped, so it stays as it was unless the status changes.
pub fn conditions(previous: &[Condition], found: &[Found], generation: Option<i64>, now: Timestamp) -> Vec<Condition> {
    found
        .iter()
        .map(|found| {
            let status = if found.status { "True" } else { "False" };
            let before = previous.iter().find(|c| c.type_ == found.type_);
            let last_transition_time = match before {
                Some(before) if before.status == status => before.last_transition_time.clone(),
                _ => Time(now),
            };
            Condition {
                type_: found.type_.to_string(),
                status: status.to_string(),
                reason: found.reason.to_string(),
                message: found.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// The conditions whose status or reason differs from `previous` (new ones included): the
/// transitions a user should see as Events.
pub fn changed<'a>(previous: &[Condition], now: &'a [Condition]) -> Vec<&'a Condition> {
    now.iter()
        .filter(|condition| {
            previous
                .iter()
                .find(|c| c.type_ == condition.type_)
                .is_none_or(|c| c.status != condition.status || c.reason != condition.reason)
        })
        .collect()
}

/// Writes `status` into the status subresource of `object` with server-side apply.
pub async fn patch<K>(api: &Api<K>, object: &K, status: impl Serialize) -> Result<()>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&object.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> Timestamp {
        Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn a_transition_time_moves_only_when_the_status_flips() {
        let first = conditions(&[], &[Found::no("Ready", "Progressing", "starting")], Some(1), at(100));
        assert_eq!(first[0].last_transition_time, Time(at(100)));
        let same = conditions(&first, &[Found::no("Ready", "Waiting", "still starting")], Some(2), at(200));
        assert_eq!(same[0].last_transition_time, Time(at(100)), "same status, same time");
        assert_eq!((same[0].reason.as_str(), same[0].observed_generation), ("Waiting", Some(2)));
        assert_eq!(changed(&first, &same).len(), 1, "a new reason is worth an event");
        assert!(changed(&same, &same).is_empty());
        let ready = conditions(&same, &[Found::yes("Ready", "Ready", "up")], Some(2), at(300));
        assert_eq!(ready[0].last_transition_time, Time(at(300)));
        assert_eq!(changed(&same, &ready).len(), 1);
        assert_eq!(changed(&[], &ready).len(), 1, "a new condition is a transition");
    }
}
