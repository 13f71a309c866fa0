//! Server-side apply field ownership on a real API server: turning autoscaling on for the IMAP
//! frontends' Deployment hands its replica count over without ever lowering it (watched
//! through the transition), and turning it off hands the count back to the MailCluster.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::cluster::eventually;
use common::platform::{CLUSTER, PROMPTLY, Platform, yaml};
use futures::StreamExt as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::{WatchStreamExt as _, watcher};
use kubemail_operator::build::MANAGER;
use kubemail_operator::crd::MailCluster;

const FRONTENDS: &str = "mail-imap-frontend";

/// The field managers that own `spec.replicas` of `deployment`.
fn replica_owners(deployment: &Deployment) -> Vec<String> {
    deployment
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|entry| entry.fields_v1.as_ref().is_some_and(|fields| fields.0["f:spec"]["f:replicas"].is_object()))
        .filter_map(|entry| entry.manager.clone())
        .collect()
}

fn replicas(deployment: &Deployment) -> Option<i32> {
    deployment.spec.as_ref().and_then(|spec| spec.replicas)
}

#[tokio::test(flavor = "multi_thread")]
async fn autoscaling_takes_the_replica_count_over_without_lowering_it_and_gives_it_back() {
    let platform = Platform::start("ownership", &[]).await;
    let three = format!("{CLUSTER}  imapFrontend:\n    replicas: 3\n");
    platform.apply(&yaml::<MailCluster>(&three)).await;
    eventually("the frontends run 3 replicas", PROMPTLY, || async {
        platform.get::<Deployment>(FRONTENDS).await.is_some_and(|d| replicas(&d) == Some(3))
    })
    .await;
    let deployment = platform.get::<Deployment>(FRONTENDS).await.unwrap();
    assert_eq!(replica_owners(&deployment), [MANAGER]);

    // Every replica count the API server holds from here on, as a watch sees it.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let config = watcher::Config::default().fields(&format!("metadata.name={FRONTENDS}"));
    let watching = tokio::spawn({
        let (api, seen) = (platform.api::<Deployment>(), seen.clone());
        async move {
            let mut changes = watcher(api, config).applied_objects().boxed();
            while let Some(Ok(deployment)) = changes.next().await {
                seen.lock().unwrap().push(replicas(&deployment));
            }
        }
    });

    let autoscaled = format!(
        "{CLUSTER}  imapFrontend:\n    replicas: 3\n    autoscaling: {{minReplicas: 2, maxReplicas: 6, targetCPUUtilization: 60}}\n"
    );
    platform.apply(&yaml::<MailCluster>(&autoscaled)).await;
    eventually("the operator gives the count up to the autoscaler", PROMPTLY, || async {
        platform.get::<HorizontalPodAutoscaler>(FRONTENDS).await.is_some()
            && platform
                .get::<Deployment>(FRONTENDS)
                .await
                .is_some_and(|d| !replica_owners(&d).contains(&MANAGER.to_string()))
    })
    .await;
    // The autoscaler's controller (in kube-controller-manager) has looked at it too.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let deployment = platform.get::<Deployment>(FRONTENDS).await.unwrap();
    assert_eq!(replicas(&deployment), Some(3));
    let counts = seen.lock().unwrap().clone();
    assert!(!counts.is_empty(), "the watch saw the Deployment");
    assert!(counts.iter().all(|count| count.is_some_and(|count| count >= 3)), "the count went below 3: {counts:?}");

    // Off again: the MailCluster's count, owned by the operator, and no autoscaler.
    let four = format!("{CLUSTER}  imapFrontend:\n    replicas: 4\n");
    platform.apply(&yaml::<MailCluster>(&four)).await;
    eventually("the MailCluster's count is back", PROMPTLY, || async {
        platform.get::<HorizontalPodAutoscaler>(FRONTENDS).await.is_none()
            && platform
                .get::<Deployment>(FRONTENDS)
                .await
                .is_some_and(|d| replicas(&d) == Some(4) && replica_owners(&d) == [MANAGER])
    })
    .await;
    watching.abort();
}
