//! A MailCluster's service identities: the CA the operator keeps for it in a Secret, and one
//! Secret per component laid out as cert-manager lays out a Certificate's (`tls.crt`,
//! `tls.key`, `ca.crt`), which the component mounts as its `--service-tls-dir`. The operator
//! issues each identity for a day and issues it again when a third of its life is left; the
//! kubelet then updates the mounted files and the service takes them into use.
//!
//! With `spec.serviceIdentity.issuer: CertManager`, cert-manager does both instead
//! ([`build_cert_manager_identities`]): the same Secrets, with the same keys.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kubemail_runtime::identity::{CA_FILE, CertificateAuthority, IssuedIdentity, Role};
use kubemail_runtime::tls::{CERTIFICATE_FILE, KEY_FILE};

use super::cluster::{Component, names};
use super::{labels, owned_meta};
use crate::crd::MailCluster;

/// How long an identity is valid.
pub const VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// When the operator issues an identity again: written on its Secret, so a restarted operator
/// knows without parsing the certificate.
pub const RENEW_AFTER_ANNOTATION: &str = "kubemail.io/renew-after";

/// The roles that get an identity Secret: the four components and the operator itself, which
/// reads its own to call the mailstore's Admin API.
pub const ROLES: [Role; 5] =
    [Role::SmtpIngress, Role::DeliveryQueue, Role::Mailstore, Role::ImapFrontend, Role::Operator];

impl Component {
    /// The identity the component's pods hold.
    pub fn role(self) -> Role {
        match self {
            Component::SmtpIngress => Role::SmtpIngress,
            Component::DeliveryQueue => Role::DeliveryQueue,
            Component::Mailstore => Role::Mailstore,
            Component::ImapFrontend => Role::ImapFrontend,
        }
    }
}

/// How long the CA cert-manager makes lasts, and how long before its end it is made again
/// (the identities it signed then follow within their own renewal).
const CA_DURATION: &str = "8760h";
const CA_RENEW_BEFORE: &str = "720h";
/// An identity's renewal with cert-manager: with a third of its day left, as the operator does.
const IDENTITY_DURATION: &str = "24h";
const IDENTITY_RENEW_BEFORE: &str = "8h";

/// cert-manager's Issuer resource.
pub fn issuer_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("cert-manager.io", "v1", "Issuer"))
}

/// What asks cert-manager for `cluster`'s identities: the Issuers (a self-signed one, and one
/// that signs with the cluster's CA), then the Certificates (the CA's, then one per role), in
/// the order they must be applied.
pub fn build_cert_manager_identities(cluster: &MailCluster) -> (Vec<DynamicObject>, Vec<DynamicObject>) {
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let object = |resource: &ApiResource, object_name: String, spec: serde_json::Value| {
        let mut object = DynamicObject::new(&object_name, resource);
        object.metadata = owned_meta(cluster, object_name, labels(&name, None));
        object.data = serde_json::json!({ "spec": spec });
        object
    };
    let issuer_ref = |issuer: String| serde_json::json!({"name": issuer, "kind": "Issuer", "group": "cert-manager.io"});
    // The Secrets carry the operator's labels, so its watch of its Secrets sees them.
    let secret_template = serde_json::json!({ "labels": labels(&name, None) });
    let issuers = vec![
        object(&issuer_resource(), names::service_ca_root(&name), serde_json::json!({"selfSigned": {}})),
        object(
            &issuer_resource(),
            names::service_ca(&name),
            serde_json::json!({"ca": {"secretName": names::service_ca(&name)}}),
        ),
    ];
    let certificate = super::domain::certificate_resource();
    let mut certificates = vec![object(
        &certificate,
        names::service_ca(&name),
        serde_json::json!({
            "isCA": true,
            "commonName": format!("kubemail {namespace}/{name} service CA"),
            "secretName": names::service_ca(&name),
            "secretTemplate": secret_template,
            "duration": CA_DURATION,
            "renewBefore": CA_RENEW_BEFORE,
            "privateKey": {"algorithm": "ECDSA", "size": 256},
            "issuerRef": issuer_ref(names::service_ca_root(&name)),
        }),
    )];
    certificates.extend(ROLES.iter().map(|role| {
        object(
            &certificate,
            names::identity_secret(&name, *role),
            serde_json::json!({
                "secretName": names::identity_secret(&name, *role),
                "secretTemplate": secret_template,
                "dnsNames": [role.dns_name()],
                "duration": IDENTITY_DURATION,
                "renewBefore": IDENTITY_RENEW_BEFORE,
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
                "usages": ["digital signature", "key encipherment", "server auth", "client auth"],
                "issuerRef": issuer_ref(names::service_ca(&name)),
            }),
        )
    }));
    (issuers, certificates)
}

/// The Secret that keeps `cluster`'s CA: its certificate and its key.
pub fn build_ca_secret(cluster: &MailCluster, authority: &CertificateAuthority) -> Secret {
    Secret {
        metadata: owned_meta(cluster, names::service_ca(&cluster.name_any()), labels(&cluster.name_any(), None)),
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            (CERTIFICATE_FILE.to_string(), ByteString(authority.certificate_pem().as_bytes().to_vec())),
            (KEY_FILE.to_string(), ByteString(authority.key_pem().as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// The CA kept in `secret`, if it holds one.
pub fn ca_of(secret: &Secret) -> Option<CertificateAuthority> {
    CertificateAuthority::from_pem(&text(secret, CERTIFICATE_FILE)?, &text(secret, KEY_FILE)?).ok()
}

/// The value of `key` in `secret`, as text.
fn text(secret: &Secret, key: &str) -> Option<String> {
    String::from_utf8(secret.data.as_ref()?.get(key)?.0.clone()).ok()
}

/// The Secret of `role`'s identity, to be issued again after `renew_after`.
pub fn build_identity_secret(
    cluster: &MailCluster,
    role: Role,
    identity: &IssuedIdentity,
    renew_after: Timestamp,
) -> Secret {
    let mut metadata =
        owned_meta(cluster, names::identity_secret(&cluster.name_any(), role), labels(&cluster.name_any(), None));
    metadata.annotations = Some(BTreeMap::from([(RENEW_AFTER_ANNOTATION.to_string(), renew_after.to_string())]));
    Secret {
        metadata,
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            (CA_FILE.to_string(), ByteString(identity.ca.as_bytes().to_vec())),
            (CERTIFICATE_FILE.to_string(), ByteString(identity.certificate.as_bytes().to_vec())),
            (KEY_FILE.to_string(), ByteString(identity.key.as_bytes().to_vec())),
        ])),
        ..Default::default()
    }
}

/// The identity an identity Secret holds.
pub fn identity_of(secret: &Secret) -> Option<IssuedIdentity> {
    Some(IssuedIdentity {
        certificate: text(secret, CERTIFICATE_FILE)?,
        key: text(secret, KEY_FILE)?,
        ca: text(secret, CA_FILE)?,
    })
}

/// When the identity in `secret` is to be issued again; `None` when it must be now: there is
/// none, it was signed by another CA than `ca_pem`, or its time has come.
pub fn renewal_due(secret: Option<&Secret>, ca_pem: &str, now: Timestamp) -> Option<Timestamp> {
    let secret = secret?;
    if identity_of(secret)?.ca != ca_pem {
        return None;
    }
    let renew_after: Timestamp = secret.annotations().get(RENEW_AFTER_ANNOTATION)?.parse().ok()?;
    (now < renew_after).then_some(renew_after)
}

/// When an identity issued `now` is to be issued again: with a third of its life left.
pub fn renew_after(now: Timestamp) -> Timestamp {
    let two_thirds = k8s_openapi::jiff::SignedDuration::from_secs((VALIDITY.as_secs() * 2 / 3) as i64);
    now.checked_add(two_thirds).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use kubemail_runtime::identity::ServiceIdentity;

    use super::*;

    fn cluster() -> MailCluster {
        serde_yaml::from_str(
            "apiVersion: kubemail.io/v1alpha1\nkind: MailCluster\nmetadata: {name: mail, namespace: mx, uid: u1}\n\
             spec: {hostname: mx.example.org, database: {uriSecretRef: {name: db, key: uri}}, nats: {url: 'nats://nats:4222'}}",
        )
        .unwrap()
    }

    #[test]
    fn each_role_gets_an_identity_of_its_own_renewed_with_a_third_of_its_life_left() {
        let cluster = cluster();
        let authority = CertificateAuthority::generate("mail").unwrap();
        let ca = build_ca_secret(&cluster, &authority);
        assert_eq!(ca.metadata.name.as_deref(), Some("mail-service-ca"));
        let kept = ca_of(&ca).expect("the CA is read back from its Secret");
        assert_eq!(kept.certificate_pem(), authority.certificate_pem());

        let now = Timestamp::now();
        let issued = kept.issue(Role::ImapFrontend, VALIDITY).unwrap();
        let secret = build_identity_secret(&cluster, Role::ImapFrontend, &issued, renew_after(now));
        assert_eq!(secret.metadata.name.as_deref(), Some("mail-identity-imap-frontend"));
        assert_eq!(secret.metadata.owner_references.as_ref().unwrap()[0].name, "mail");
        let held = identity_of(&secret).unwrap();
        assert!(ServiceIdentity::from_issued(Role::ImapFrontend, &held).is_ok(), "the frontend's identity");
        assert!(ServiceIdentity::from_issued(Role::Mailstore, &held).is_err(), "and no other role's");

        let due = renewal_due(Some(&secret), authority.certificate_pem(), now).expect("not due yet");
        let hours = (due.as_second() - now.as_second()) / 3600;
        assert_eq!(hours, 16, "two thirds of a day");
        assert_eq!(renewal_due(Some(&secret), authority.certificate_pem(), due), None, "due at its time");
        assert_eq!(renewal_due(None, authority.certificate_pem(), now), None, "none yet");
        let other = CertificateAuthority::generate("other").unwrap();
        assert_eq!(renewal_due(Some(&secret), other.certificate_pem(), now), None, "the CA was replaced");
    }
}
