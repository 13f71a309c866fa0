//! Service identities on a real API server: a MailCluster gets a CA of its own and one identity
//! Secret per component (and one for the operator), each naming its role and signed by that
//! CA; a lost identity is issued again, and a replaced CA re-issues them all.

mod common;

use common::cluster::eventually;
use common::platform::{CLUSTER, PROMPTLY, Platform, yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kubemail_operator::build::cluster::{Component, names};
use kubemail_operator::build::identity::{ROLES, ca_of, identity_of};
use kubemail_operator::crd::MailCluster;
use kubemail_runtime::identity::{CertificateAuthority, Role, ServiceIdentity};

/// The certificate of `role`'s identity Secret, if it is there and proves `role` under `ca_pem`.
async fn proven(platform: &Platform, role: Role, ca_pem: &str) -> Option<String> {
    let secret = platform.get::<Secret>(&names::identity_secret("mail", role)).await?;
    let identity = identity_of(&secret)?;
    (identity.ca == ca_pem && ServiceIdentity::from_issued(role, &identity).is_ok()).then_some(identity.certificate)
}

/// Whether every role's identity Secret proves its role under `ca_pem`.
async fn all_proven(platform: &Platform, ca_pem: &str) -> bool {
    for role in ROLES {
        if proven(platform, role, ca_pem).await.is_none() {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread")]
async fn each_component_gets_its_own_identity_from_the_clusters_ca() {
    let platform = Platform::start("identity", &[]).await;
    platform.apply(&yaml::<MailCluster>(CLUSTER)).await;
    let ca_name = names::service_ca("mail");
    eventually("the cluster's CA", PROMPTLY, || async { platform.get::<Secret>(&ca_name).await.is_some() }).await;
    let ca = ca_of(&platform.get::<Secret>(&ca_name).await.unwrap()).expect("a CA in the Secret");
    let ca_pem = ca.certificate_pem().to_string();
    eventually("an identity for each role", PROMPTLY, || all_proven(&platform, &ca_pem)).await;

    // Each Deployment mounts its component's identity.
    for component in Component::ALL {
        let name = names::deployment("mail", component);
        eventually("the Deployment", PROMPTLY, || async { platform.get::<Deployment>(&name).await.is_some() }).await;
        let deployment = platform.get::<Deployment>(&name).await.unwrap();
        let pod = deployment.spec.unwrap().template.spec.unwrap();
        let mounted = pod.volumes.iter().flatten().find_map(|volume| volume.secret.as_ref()?.secret_name.clone());
        assert_eq!(mounted, Some(names::identity_secret("mail", component.role())), "{}", component.name());
    }

    // A lost identity is issued again, by the same CA.
    let frontend = names::identity_secret("mail", Role::ImapFrontend);
    let before = proven(&platform, Role::ImapFrontend, &ca_pem).await.unwrap();
    platform.delete::<Secret>(&frontend).await;
    eventually("the frontend's identity issued again", PROMPTLY, || async {
        proven(&platform, Role::ImapFrontend, &ca_pem).await.is_some_and(|now| now != before)
    })
    .await;

    // A CA replaced by hand (a suspected leak) re-issues every identity under the new one.
    let replacement = CertificateAuthority::generate("replacement").unwrap();
    let mut secret = platform.get::<Secret>(&ca_name).await.unwrap();
    secret.data = kubemail_operator::build::identity::build_ca_secret(
        &platform.get::<MailCluster>("mail").await.unwrap(),
        &replacement,
    )
    .data;
    secret.metadata.managed_fields = None;
    platform.api::<Secret>().replace(&ca_name, &Default::default(), &secret).await.unwrap();
    let new_pem = replacement.certificate_pem().to_string();
    eventually("every identity under the new CA", PROMPTLY, || all_proven(&platform, &new_pem)).await;
}
