//! A MailCluster's service identities: the CA the operator keeps for it in a Secret, and one
//! Secret per component laid out as cert-manager lays out a Certificate's (`tls.crt`,
//! `tls.key`, `ca.crt`), which the component mounts as its `--service-tls-dir`. The operator
//! issues each identity for a day and issues it again when a third of its life is left; the
//! kubelet then updates the mounted files and the service takes them into use.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
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
