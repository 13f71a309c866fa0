//! A MailDomain with an issuer, without cert-manager and with its CRDs installed: the domain
//! says cert-manager is missing; once it is there, the operator asks it for a certificate and
//! follows the Certificate's Ready condition; without the issuer again, the operator signs
//! its own. (cert-manager's controller does not run here: the test writes the Certificate's
//! status as it would.)

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::cluster::{self, Operator, eventually, kubectl, succeeded};
use common::platform::{DOMAIN, PROMPTLY, Platform, condition, yaml};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, DynamicObject};
use kubemail_operator::crd::MailDomain;

const CRD: &str = "certificates.cert-manager.io";

#[tokio::test(flavor = "multi_thread")]
async fn a_domain_asks_cert_manager_when_it_is_there() {
    // Absent, whatever an earlier run of the suite left.
    let client = cluster::client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    if crds.get_opt(CRD).await.unwrap().is_some() {
        crds.delete(CRD, &DeleteParams::default()).await.unwrap();
        eventually("cert-manager's CRD is gone", Duration::from_secs(60), || async {
            crds.get_opt(CRD).await.unwrap().is_none()
        })
        .await;
    }
    let mut platform = Platform::start("certs", &[]).await;
    let with_issuer = DOMAIN
        .replace("  dkim: {algorithm: Ed25519}\n", "  tls: {issuerRef: {name: letsencrypt, kind: ClusterIssuer}}\n");
    platform.apply(&yaml::<MailDomain>(&with_issuer)).await;
    let domain = platform.wait_for_domain("CertificateReady", "False", "CertManagerNotInstalled").await;
    assert_eq!(condition(&domain.status.unwrap().conditions, "Ready"), ("False", "CertManagerNotInstalled"));

    // Installed while the operator runs: the next look at the domain asks for a certificate.
    let dir = PathBuf::from(std::env::var("KUBEMAIL_TEST_CERT_MANAGER_CRDS").unwrap());
    cluster::apply_crds(&client, &cluster::crds_in(&dir, &["cert-manager.io_certificates.yaml"])).await;
    platform.apply(&yaml::<MailDomain>(&with_issuer.replace("messages: 1000", "messages: 1001"))).await;
    platform.wait_for_domain("CertificateReady", "False", "Requested").await;
    let certificates: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        platform.namespace(),
        &kubemail_operator::build::domain::certificate_resource(),
    );
    let certificate = certificates.get("op-test").await.expect("a Certificate");
    assert_eq!(certificate.data["spec"]["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(certificate.data["spec"]["secretName"], "op-test-tls");
    assert_eq!(certificate.data["spec"]["dnsNames"][1], "imap.op.test");

    // An operator started with cert-manager there watches the Certificates: their status wakes
    // the domain at once.
    platform.operator.stop();
    platform.operator = Operator::start(
        platform.namespace(),
        &platform.release.service_account(),
        &format!("http://{}", platform.mailstore.admin_address),
        &[],
    );
    let issued =
        r#"{"status": {"conditions": [{"type": "Ready", "status": "True", "reason": "Ready", "message": "issued"}]}}"#;
    succeeded(
        "kubectl patch the Certificate's status",
        kubectl(&[
            "patch",
            "certificate",
            "op-test",
            "-n",
            platform.namespace(),
            "--subresource=status",
            "--type=merge",
            "-p",
            issued,
        ]),
    );
    let domain = platform.wait_for_domain("CertificateReady", "True", "Issued").await;
    assert_eq!(condition(&domain.status.unwrap().conditions, "Ready").0, "True");

    // Without the issuer again, cert-manager stops managing the Secret and the operator signs.
    platform.apply(&yaml::<MailDomain>(DOMAIN)).await;
    platform.wait_for_domain("CertificateReady", "True", "SelfSigned").await;
    eventually("the Certificate is deleted", PROMPTLY, || async {
        certificates.get_opt("op-test").await.unwrap().is_none()
    })
    .await;
    let tls: k8s_openapi::api::core::v1::Secret = platform.get("op-test-tls").await.expect("the self-signed Secret");
    assert_eq!(tls.type_.as_deref(), Some("kubernetes.io/tls"));
}
