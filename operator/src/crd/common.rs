//! Parts the three resources share: references, conditions, byte quantities.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The API group of every kubemail resource.
pub const GROUP: &str = "kubemail.io";
/// Their one version.
pub const VERSION: &str = "v1alpha1";

/// A key of a Secret in the resource's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// The Secret's name.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// The key within the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// Another resource in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalRef {
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A size in bytes, written as a Kubernetes quantity (`500Mi`, `5Gi`, `1G`) or a plain number,
/// so sizes read like every other size in a manifest.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(untagged)]
pub enum ByteSize {
    Bytes(u64),
    Quantity(String),
}

impl ByteSize {
    /// The CEL rule that keeps a size positive and well formed; the apiserver checks it, so a
    /// wrong size is refused at `kubectl apply` rather than found by the operator. (`sign` is
    /// not a method of a quantity in the API server's CEL library; `isInteger` makes
    /// `asInteger` safe.)
    pub const POSITIVE: &str =
        "isQuantity(string(self)) && quantity(string(self)).isInteger() && quantity(string(self)).asInteger() > 0";

    /// The number of bytes; `None` for a quantity that is not a whole, non-negative byte count.
    pub fn bytes(&self) -> Option<u64> {
        match self {
            ByteSize::Bytes(bytes) => Some(*bytes),
            ByteSize::Quantity(text) => crate::quantity::parse_bytes(text),
        }
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "ByteSize".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A size in bytes: a number or a Kubernetes quantity such as 500Mi or 5Gi.",
            "x-kubernetes-int-or-string": true,
            "x-kubernetes-validations": [{
                "rule": ByteSize::POSITIVE,
                "message": "must be a positive number of bytes, such as 500Mi or 5Gi"
            }]
        })
    }
}

/// The condition types every resource reports, after the Kubernetes API conventions.
pub mod condition {
    /// Everything the resource asks for is in place and working.
    pub const READY: &str = "Ready";
    /// The operator is still bringing the resource to what it asks for.
    pub const PROGRESSING: &str = "Progressing";
    /// The resource cannot be brought to what it asks for until something changes.
    pub const DEGRADED: &str = "Degraded";
}

/// The status conditions of a resource, as the API conventions list them.
pub type Conditions = Vec<Condition>;
