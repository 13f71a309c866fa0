//! `MailCluster`: one running mail platform — the four services, their Services, autoscaling
//! and disruption budgets.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{ByteSize, Conditions, SecretKeyRef};

/// The image every component runs unless the spec names another.
pub const DEFAULT_IMAGE: &str = "ghcr.io/kubemail/kubemail";

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "kubemail.io",
    version = "v1alpha1",
    kind = "MailCluster",
    namespaced,
    status = "MailClusterStatus",
    shortname = "mc",
    category = "mail",
    doc = "A kubemail platform: SMTP ingress, delivery queue, mailstore and IMAP frontends",
    printcolumn(name = "Hostname", type_ = "string", json_path = ".spec.hostname"),
    printcolumn(name = "SMTP", type_ = "string", json_path = ".status.components.smtpIngress.summary"),
    printcolumn(name = "IMAP", type_ = "string", json_path = ".status.components.imapFrontend.summary"),
    printcolumn(name = "Ready", type_ = "string", json_path = r#".status.conditions[?(@.type=="Ready")].status"#),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[serde(rename_all = "camelCase")]
pub struct MailClusterSpec {
    /// The host name the servers greet with and publish as MX (for example `mail.example.com`).
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
    )]
    pub hostname: String,
    /// The container image of every component.
    #[serde(default)]
    pub image: ImageSpec,
    /// PostgreSQL: the Secret key holding its connection URI (CloudNativePG's `<cluster>-app`
    /// Secret has it under `uri`).
    pub database: DatabaseSpec,
    /// NATS with JetStream.
    pub nats: NatsSpec,
    /// Message limits the SMTP and IMAP listeners enforce.
    #[serde(default)]
    pub limits: LimitsSpec,
    /// Client addresses allowed to send a PROXY protocol header (a load balancer in front).
    /// Without it, no PROXY header is accepted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_protocol_trusted_cidrs: Vec<String>,
    #[serde(default)]
    pub smtp_ingress: ExposedComponentSpec,
    #[serde(default)]
    pub delivery_queue: DeliveryQueueSpec,
    #[serde(default)]
    pub mailstore: ComponentSpec,
    #[serde(default)]
    pub imap_frontend: ImapFrontendSpec,
    /// NetworkPolicies that admit only the flows the platform uses.
    #[serde(default)]
    pub network_policy: NetworkPolicySpec,
    /// Who issues the components' identities for gRPC between them.
    #[serde(default)]
    pub service_identity: ServiceIdentitySpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceIdentitySpec {
    /// `Operator` (the default): the operator keeps a CA in a Secret and issues each
    /// component's certificate itself. `CertManager`: it sets up cert-manager Issuers (a
    /// self-signed one for the CA, a CA Issuer) and asks for a Certificate per component, into
    /// the same Secrets; cert-manager must be installed. Fixed when the cluster is made: a
    /// change would have two CAs sign identities the components must trust at once.
    #[serde(default)]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "serviceIdentity.issuer is immutable"}]))]
    pub issuer: IdentityIssuer,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum IdentityIssuer {
    #[default]
    Operator,
    CertManager,
}

/// Which traffic reaches the platform's pods. Inside the cluster only the designed flows are
/// let in: the mail services to the mailstore's API, the operator to its Admin API, scrapers
/// to the metrics port; from outside, mail clients to the mail ports. A network plugin that
/// does not enforce NetworkPolicies ignores them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicySpec {
    /// On by default.
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The addresses (CIDRs) that may reach the SMTP, IMAP and POP3 ports; when empty, every
    /// address and every pod.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(regex(pattern = r"^[0-9a-fA-F:.]+/[0-9]{1,3}$")))]
    pub mail_clients: Vec<String>,
    /// The labels of the namespaces whose pods may scrape the metrics port (Prometheus'); when
    /// empty, every namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metrics_namespace_labels: BTreeMap<String, String>,
}

impl Default for NetworkPolicySpec {
    fn default() -> Self {
        NetworkPolicySpec { enabled: true, mail_clients: Vec::new(), metrics_namespace_labels: BTreeMap::new() }
    }
}

fn enabled() -> bool {
    true
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImageSpec {
    #[serde(default = "default_image")]
    pub repository: String,
    /// Defaults to the operator's own version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_policy: Option<PullPolicy>,
    /// Secrets holding credentials for a private registry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pull_secrets: Vec<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        ImageSpec { repository: default_image(), tag: None, pull_policy: None, pull_secrets: Vec::new() }
    }
}

fn default_image() -> String {
    DEFAULT_IMAGE.to_string()
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DatabaseSpec {
    /// The Secret key whose value is a `postgres://` URI.
    pub uri_secret_ref: SecretKeyRef,
    /// Connections each mailstore replica opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 1000))]
    pub max_connections: Option<u32>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsSpec {
    /// For example `nats://nats.nats.svc:4222`.
    #[schemars(length(min = 1))]
    pub url: String,
    /// Copies JetStream keeps of the queue and the spool: 3 on a cluster of three NATS servers
    /// keeps acknowledged mail through the loss of one. With 1 (the default) the single
    /// server must write each message to disk before acknowledging it (`sync_interval: always`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 5))]
    pub replicas: Option<u8>,
    /// Each component's NATS user: `kubernetes.io/basic-auth` Secrets (keys `username` and
    /// `password`), one per component, whose permissions the NATS server limits to the
    /// subjects the component uses (the chart's `examples/nats-values.yaml`). Without it the
    /// components connect without a user, and NATS must let anyone in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<NatsCredentialsSpec>,
    /// The CA certificate (PEM) that signed the NATS server's: with it every component
    /// connects over TLS and trusts only a server this CA vouches for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// The Secret holding each component's NATS user.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NatsCredentialsSpec {
    #[schemars(length(min = 1, max = 253))]
    pub smtp_ingress: String,
    #[schemars(length(min = 1, max = 253))]
    pub delivery_queue: String,
    #[schemars(length(min = 1, max = 253))]
    pub mailstore: String,
    #[schemars(length(min = 1, max = 253))]
    pub imap_frontend: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LimitsSpec {
    /// The largest message accepted over SMTP and IMAP APPEND (default 50Mi).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_message_size: Option<ByteSize>,
    /// Recipients per SMTP transaction (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_recipients: Option<u32>,
}

/// A component's size. Without `replicas`, two run (one for the delivery queue's and the
/// mailstore's singletons would be a single point of failure).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
}

/// A component that listens on mail ports from outside the cluster.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExposedComponentSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,
    #[serde(default)]
    pub service: MailServiceSpec,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryQueueSpec {
    #[serde(flatten)]
    pub component: ComponentSpec,
    /// Where mail to a domain goes instead of the domain's MX hosts, as Postfix's transport
    /// map does: a partner reached over a private link, a test server, a domain whose MX
    /// records point back at this cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 100))]
    pub routes: Vec<DeliveryRoute>,
}

/// Mail to `domain` is delivered to `host` (port included) whatever its MX records say.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRoute {
    #[schemars(length(min = 3, max = 253), regex(pattern = super::domain::DOMAIN_PATTERN))]
    pub domain: String,
    /// `HOST:PORT` or `[IPv6]:PORT`.
    #[schemars(regex(pattern = r"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$"))]
    pub host: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ImapFrontendSpec {
    #[serde(flatten)]
    pub exposed: ExposedComponentSpec,
    /// A HorizontalPodAutoscaler for the frontends; it then owns their replica count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<AutoscalingSpec>,
    /// POP3 for devices that speak nothing else, served by the same frontends.
    #[serde(default)]
    pub pop3: Pop3Spec,
}

/// POP3 on ports 110 (STLS) and 995 (implicit TLS) of the IMAP Service.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Pop3Spec {
    /// Off by default: POP3 takes mail off the server, which few users of a shared platform
    /// want, and every open port is one more to defend.
    #[serde(default)]
    pub enabled: bool,
}

/// How the Service in front of a mail port is exposed.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailServiceSpec {
    #[serde(default, rename = "type")]
    pub type_: ServiceType,
    /// `Local` (the default) keeps the client's address, which SPF checks, rate limits and
    /// logs need; `Cluster` spreads load over every node but hides it (use PROXY protocol then).
    #[serde(default)]
    pub external_traffic_policy: TrafficPolicy,
    /// Annotations for the Service, for a cloud load balancer's settings.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum ServiceType {
    #[default]
    LoadBalancer,
    NodePort,
    ClusterIP,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, JsonSchema)]
pub enum TrafficPolicy {
    #[default]
    Local,
    Cluster,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "self.minReplicas <= self.maxReplicas", "message": "minReplicas must not exceed maxReplicas"},
    {"rule": "has(self.targetCPUUtilization) || has(self.targetConnectionsPerPod)",
     "message": "name a target: targetCPUUtilization, targetConnectionsPerPod or both"}
]))]
pub struct AutoscalingSpec {
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 1, max = 1000))]
    pub min_replicas: i32,
    #[schemars(range(min = 1, max = 1000))]
    pub max_replicas: i32,
    /// Average CPU use, in percent of the requested CPU.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "targetCPUUtilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_cpu_utilization: Option<i32>,
    /// Average open IMAP connections per frontend, from the `kubemail_imap_connections` metric
    /// (needs a metrics adapter such as prometheus-adapter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub target_connections_per_pod: Option<i32>,
}

fn default_min_replicas() -> i32 {
    2
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MailClusterStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Conditions,
    #[serde(default)]
    pub components: ComponentStatuses,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatuses {
    #[serde(default)]
    pub smtp_ingress: ComponentStatus,
    #[serde(default)]
    pub delivery_queue: ComponentStatus,
    #[serde(default)]
    pub mailstore: ComponentStatus,
    #[serde(default)]
    pub imap_frontend: ComponentStatus,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentStatus {
    /// Replicas the Deployment wants.
    #[serde(default)]
    pub replicas: i32,
    #[serde(default)]
    pub ready_replicas: i32,
    /// `ready/wanted`, for `kubectl get`.
    #[serde(default)]
    pub summary: String,
}
