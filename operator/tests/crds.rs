//! The committed CRDs are what the code generates, and the CEL rules in them accept and refuse
//! what they say.

use kubemail_operator::crd::{MailCluster, MailDomain, Mailbox};

#[test]
fn committed_crds_and_cluster_role_match_the_code() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (file, generated) in kubemail_operator::generated::files().unwrap() {
        let committed = std::fs::read_to_string(root.join(&file)).unwrap_or_default();
        assert!(
            committed == generated,
            "{file} differs from what the code generates; run `cargo run -p kubemail-operator --bin crdgen`"
        );
    }
}

fn mailbox(yaml: &str) -> Mailbox {
    serde_yaml::from_str(yaml).unwrap()
}

const ALICE: &str = "
apiVersion: kubemail.io/v1alpha1
kind: Mailbox
metadata: {name: alice, namespace: mail}
spec:
  address: alice@example.com
  passwordSecretRef: {name: alice-password, key: password}
  quota: {storage: 5Gi, messages: 100000}
  aliases: [al@example.com, a.l@example.com]
";

#[test]
fn a_valid_mailbox_passes_its_rules() {
    mailbox(ALICE).validate_cel().unwrap();
}

#[test]
fn aliases_outside_the_mailbox_domain_are_refused() {
    let error = mailbox(&ALICE.replace("al@example.com", "al@example.org")).validate_cel().unwrap_err();
    assert!(error.to_string().contains("aliases must be addresses of the mailbox's own domain"), "{error}");
}

#[test]
fn quotas_must_be_positive_byte_counts() {
    for bad in ["0", "0Gi", "-1Gi", "0.5", "five"] {
        let error = mailbox(&ALICE.replace("storage: 5Gi", &format!("storage: \"{bad}\""))).validate_cel().unwrap_err();
        assert!(error.to_string().contains("must be a positive number of bytes"), "{bad}: {error}");
    }
    let error = mailbox(&ALICE.replace("storage: 5Gi", "storage: 0")).validate_cel().unwrap_err();
    assert!(error.to_string().contains("must be a positive number of bytes"), "{error}");
    mailbox(&ALICE.replace("storage: 5Gi", "storage: 1048576")).validate_cel().unwrap();
    mailbox(&ALICE.replace("storage: 5Gi", "storage: 1.5Gi")).validate_cel().unwrap();
}

#[test]
fn a_mailbox_address_cannot_change() {
    let old = mailbox(ALICE);
    let renamed = mailbox(&ALICE.replace("alice@example.com", "alicia@example.com"));
    let error = renamed.validate_cel_update(&old).unwrap_err();
    assert!(error.to_string().contains("address is immutable"), "{error}");
    let suspended = mailbox(&format!("{ALICE}  suspended: true\n"));
    suspended.validate_cel_update(&old).unwrap();
}

const DOMAIN: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {name: example-com, namespace: mail}
spec:
  clusterRef: {name: mail}
  domain: example.com
  defaultQuota: {storage: 1Gi}
";

#[test]
fn a_domain_name_cannot_change() {
    let old: MailDomain = serde_yaml::from_str(DOMAIN).unwrap();
    old.validate_cel().unwrap();
    let renamed: MailDomain =
        serde_yaml::from_str(&DOMAIN.replace("domain: example.com", "domain: example.org")).unwrap();
    let error = renamed.validate_cel_update(&old).unwrap_err();
    assert!(error.to_string().contains("domain is immutable"), "{error}");
    let bigger: MailDomain = serde_yaml::from_str(&DOMAIN.replace("1Gi", "2Gi")).unwrap();
    bigger.validate_cel_update(&old).unwrap();
}

const CLUSTER: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: mail, namespace: mail}
spec:
  hostname: mail.example.com
  database: {uriSecretRef: {name: mail-db-app, key: uri}}
  nats: {url: 'nats://nats.nats.svc:4222'}
  imapFrontend:
    autoscaling: {minReplicas: 2, maxReplicas: 10, targetCPUUtilization: 70}
";

#[test]
fn autoscaling_needs_a_sane_range_and_a_target() {
    let cluster: MailCluster = serde_yaml::from_str(CLUSTER).unwrap();
    cluster.validate_cel().unwrap();
    let inverted: MailCluster = serde_yaml::from_str(&CLUSTER.replace("maxReplicas: 10", "maxReplicas: 1")).unwrap();
    let error = inverted.validate_cel().unwrap_err();
    assert!(error.to_string().contains("minReplicas must not exceed maxReplicas"), "{error}");
    let aimless: MailCluster = serde_yaml::from_str(&CLUSTER.replace(", targetCPUUtilization: 70", "")).unwrap();
    let error = aimless.validate_cel().unwrap_err();
    assert!(error.to_string().contains("name a target"), "{error}");
}
