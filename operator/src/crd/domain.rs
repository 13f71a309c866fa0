//! `MailDomain`: a domain a MailCluster receives and sends mail for — its certificate, DKIM
//! key, default quota, catch-all, and the DNS records to publish.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ByteSize, Conditions, LocalRef};

/// The pattern of a DNS domain name in lower case, as mail addresses carry it.
pub const DOMAIN_PATTERN: &str = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubemail.io",
    version = "v1alpha1",
    kind = "MailDomain",
    namespaced,
    status = "MailDomainStatus",
    shortname = "md",
    category = "mail",
    doc = "A mail domain served by a MailCluster",
    printcolumn(name = "Domain", type_ = "string", json_path = ".spec.domain"),
    printcolumn(
        name = "Cert",
        type_ = "string",
        json_path = r#".status.conditions[?(@.type=="CertificateReady")].status"#
    ),
    printcolumn(name = "DKIM", type_ = "string", json_path = r#".status.conditions[?(@.type=="DkimReady")].status"#),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MailDomainSpec {
    /// The MailCluster serving the domain.
    pub cluster_ref: LocalRef,
    /// The domain, in lower case (`example.com`). It cannot change: create another MailDomain.
    #[schemars(length(min = 3, max = 253), regex(pattern = DOMAIN_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "domain is immutable"}]))]
    pub domain: String,
    /// The certificate for the domain's mail host names.
    #[serde(default)]
    pub tls: TlsSpec,
    #[serde(default)]
    pub dkim: DkimSpec,
    /// The quota of a Mailbox of this domain that names none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_quota: Option<Quota>,
    /// Where mail to an unknown address of the domain goes: a local part of the domain
    /// (`postmaster`) or a whole address. Without it, unknown addresses are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 254))]
    pub catch_all: Option<String>,
    /// The DMARC policy published for the domain.
    #[serde(default)]
    pub dmarc: DmarcSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// A cert-manager issuer: the operator asks cert-manager for the certificate. Without it the
    /// operator makes a self-signed one (fine for testing; clients will warn).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_ref: Option<IssuerRef>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IssuerRef {
    #[schemars(length(min = 1))]
    pub name: String,
    #[serde(default)]
    pub kind: IssuerKind,
    /// The issuer's API group (`cert-manager.io` unless an external issuer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IssuerKind {
    #[default]
    Issuer,
    ClusterIssuer,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DkimSpec {
    /// The selector published in DNS (`<selector>._domainkey.<domain>`).
    #[serde(default = "default_selector")]
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub selector: String,
    #[serde(default)]
    pub algorithm: DkimAlgorithm,
}

impl Default for DkimSpec {
    fn default() -> Self {
        DkimSpec { selector: default_selector(), algorithm: DkimAlgorithm::default() }
    }
}

fn default_selector() -> String {
    "kubemail".to_string()
}

/// RSA-2048 is what every verifier understands; Ed25519 (RFC 8463) is shorter and faster but
/// not yet checked by every receiver.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DkimAlgorithm {
    #[default]
    #[serde(rename = "RSA-2048")]
    Rsa2048,
    Ed25519,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Quota {
    /// The mail an account may keep, in bytes (`5Gi`). Without it, no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<ByteSize>,
    /// The messages an account may keep. Without it, no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub messages: Option<u64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DmarcSpec {
    #[serde(default)]
    pub policy: DmarcPolicy,
    /// Where receivers send aggregate reports (`rua`), as `mailto:` addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report_to: Vec<String>,
}

/// Every message the platform sends is DKIM-signed and leaves from the MX hosts, so receivers
/// may quarantine what fails; `none` only monitors.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DmarcPolicy {
    None,
    #[default]
    Quarantine,
    Reject,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailDomainStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    /// The records to publish in the domain's zone for mail to reach it and be trusted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_records: Vec<DnsRecord>,
    /// The Secret holding the domain's certificate (`tls.crt`, `tls.key`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_secret: Option<String>,
    /// The Secret holding the DKIM private key (`dkim.key`) and `selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dkim_secret: Option<String>,
}

/// One resource record, as a zone file would hold it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DnsRecord {
    /// The owner name, fully qualified without the trailing dot.
    pub name: String,
    /// `MX`, `TXT`, `A`…
    #[serde(rename = "type")]
    pub type_: String,
    /// The record data; a TXT value as one string (split it into 255-octet chunks if the DNS
    /// provider asks).
    pub value: String,
    /// What the record is for.
    pub purpose: String,
}
