//! Service identities on a real API server: a MailCluster gets a CA of its own and one identity
//! Secret per component (and one for the operator), each naming its role and signed by that
//! CA; a lost identity is issued again, and a replaced CA re-issues them all. With cert-manager
//! chosen, the operator asks it for the same Secrets instead.

mod common;

use common::cluster::eventually;
use common::platform::{CLUSTER, PROMPTLY, Platform, yaml};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kubemail_operator::build::cluster::{Component, names};
use kubemail_operator::build::domain::certificate_resource;
use kubemail_operator::build::identity::{ROLES, ca_of, identity_of, issuer_resource};
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

#[tokio::test(flavor = "multi_thread")]
async fn with_cert_manager_the_operator_asks_it_for_each_identity() {
    let client = common::cluster::client().await;
    let dir = std::path::PathBuf::from(std::env::var("KUBEMAIL_TEST_CERT_MANAGER_CRDS").unwrap());
    let crds = ["cert-manager.io_certificates.yaml", "cert-manager.io_issuers.yaml"];
    common::cluster::apply_crds(&client, &common::cluster::crds_in(&dir, &crds)).await;
    let platform = Platform::start("identity-cm", &[]).await;
    let with_cert_manager =
        format!("{}  serviceIdentity: {{issuer: CertManager}}\n", CLUSTER.replace("{name: mail}", "{name: cm}"));
    platform.apply(&yaml::<MailCluster>(&with_cert_manager)).await;

    // The objects pass cert-manager's own schemas on the API server.
    let api = |resource: &kube::api::ApiResource| -> kube::Api<kube::api::DynamicObject> {
        kube::Api::namespaced_with(platform.client.clone(), platform.namespace(), resource)
    };
    let (issuers, certificates) = (api(&issuer_resource()), api(&certificate_resource()));
    let last = names::identity_secret("cm", Role::Operator);
    eventually("the Certificates", PROMPTLY, || async { certificates.get_opt(&last).await.unwrap().is_some() }).await;
    let root = issuers.get(&names::service_ca_root("cm")).await.expect("the self-signed Issuer");
    assert!(root.data["spec"]["selfSigned"].is_object());
    let ca_issuer = issuers.get(&names::service_ca("cm")).await.expect("the CA Issuer");
    assert_eq!(ca_issuer.data["spec"]["ca"]["secretName"], names::service_ca("cm"));
    let ca = certificates.get(&names::service_ca("cm")).await.expect("the CA's Certificate");
    assert_eq!(ca.data["spec"]["isCA"], true);
    assert_eq!(ca.data["spec"]["issuerRef"]["name"], names::service_ca_root("cm"));
    for role in ROLES {
        let certificate = certificates.get(&names::identity_secret("cm", role)).await.expect("a Certificate per role");
        let spec = &certificate.data["spec"];
        assert_eq!(spec["secretName"], names::identity_secret("cm", role), "{role}: the Secret its pods mount");
        assert_eq!(spec["dnsNames"][0], role.dns_name(), "{role}: the name the mailstore authorizes");
        assert_eq!(spec["issuerRef"]["name"], names::service_ca("cm"));
        let usages: Vec<&str> = spec["usages"].as_array().unwrap().iter().filter_map(|u| u.as_str()).collect();
        assert!(usages.contains(&"client auth") && usages.contains(&"server auth"), "{role}: {usages:?}");
    }
    // cert-manager, not the operator, writes the Secrets.
    assert!(platform.get::<Secret>(&names::service_ca("cm")).await.is_none(), "the operator made a CA of its own");

    // Which CA signs is fixed for the cluster's life.
    let refused = platform
        .api::<MailCluster>()
        .patch(
            "cm",
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"serviceIdentity": {"issuer": "Operator"}}})),
        )
        .await
        .expect_err("the issuer cannot change");
    assert!(refused.to_string().contains("serviceIdentity.issuer is immutable"), "{refused}");
}
