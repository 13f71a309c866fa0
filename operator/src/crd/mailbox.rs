//! `Mailbox`: an address that receives mail and logs in over IMAP and submission.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Conditions, SecretKeyRef};
use super::domain::Quota;

/// An address as the mailstore accepts it: a dot-atom local part (RFC 5322 §3.4.1, without
/// quoted strings) and a lower-case domain.
pub const ADDRESS_PATTERN: &str = r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*@([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]([a-z0-9-]{0,61}[a-z0-9])?$";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubemail.io",
    version = "v1alpha1",
    kind = "Mailbox",
    namespaced,
    status = "MailboxStatus",
    shortname = "mbx",
    category = "mail",
    doc = "A mail account: its address, password, quota and aliases",
    printcolumn(name = "Address", type_ = "string", json_path = ".spec.address"),
    printcolumn(name = "Used", type_ = "string", json_path = ".status.usage.storage"),
    printcolumn(name = "Quota", type_ = "string", json_path = ".status.quota.storage"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": "!has(self.aliases) || self.aliases.all(a, a.substring(a.lastIndexOf('@')) == self.address.substring(self.address.lastIndexOf('@')))",
    "message": "aliases must be addresses of the mailbox's own domain"
}]))]
pub struct MailboxSpec {
    /// The address (`alice@example.com`); its domain must be a MailDomain of this namespace.
    /// It cannot change: create another Mailbox and alias the old address to it.
    #[schemars(length(min = 3, max = 254), regex(pattern = ADDRESS_PATTERN))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "address is immutable"}]))]
    pub address: String,
    /// The Secret key holding the password. The operator hashes it into the mailstore and
    /// again whenever the Secret changes; the mailstore never keeps the password itself.
    pub password_secret_ref: SecretKeyRef,
    /// Without it, the domain's default quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Quota>,
    /// Further addresses of the same domain delivered to this mailbox.
    #[serde(default)]
    #[schemars(length(max = 100), inner(regex(pattern = ADDRESS_PATTERN), length(max = 254)))]
    pub aliases: Vec<String>,
    /// A suspended account receives no mail (senders get a temporary failure) and cannot log
    /// in; its mail is kept.
    #[serde(default)]
    pub suspended: bool,
    /// What deleting this resource does to the account: `Retain` (the default) suspends it and
    /// keeps its mail; `Delete` removes the account and its mail.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailboxStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    /// What the account holds, as the mailstore counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Amounts>,
    /// The quota in force (the Mailbox's own or its domain's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<Amounts>,
    /// The password Secret's `resourceVersion` when the password was last set, so a changed
    /// Secret is noticed without keeping anything derived from the password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_version: Option<String>,
}

/// Storage and message counts, each both exact and in a unit a reader takes in at a glance.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Amounts {
    /// `1.5Gi`, `12Mi`; absent for no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<u64>,
}
