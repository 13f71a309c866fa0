//! What a `MailCluster` becomes: a Deployment per component, the Services in front of the mail
//! ports and of the mailstore, a headless Service for metrics, a PodDisruptionBudget per
//! component, the IMAP frontends' HorizontalPodAutoscaler when asked for, and the ConfigMap of
//! settings every component reads.
//!
//! The components listen on unprivileged ports in their containers (they run as non-root
//! without capabilities); the Services map the standard mail ports onto them.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricIdentifier, MetricSpec,
    MetricTarget, PodsMetricSource, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Capabilities, ConfigMap, ConfigMapEnvSource, Container, ContainerPort, EnvFromSource, EnvVar, EnvVarSource,
    HTTPGetAction, KeyToPath, Lifecycle, LifecycleHandler, LocalObjectReference, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ProjectedVolumeSource, ResourceRequirements, SeccompProfile, SecretKeySelector,
    SecretProjection, SecretVolumeSource, SecurityContext, Service, ServicePort, ServiceSpec, SleepAction,
    TopologySpreadConstraint, Volume, VolumeMount, VolumeProjection,
};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::{Resource, ResourceExt};
use kubemail_runtime::deployment::mount::{DKIM_DIR, IDENTITY_DIR, NATS_CA_DIR, NATS_CREDENTIALS_DIR, TLS_DIR};
use kubemail_runtime::deployment::{env, file};

use super::{labels, owned_meta};
use crate::crd::MailCluster;
use crate::crd::cluster::{ComponentSpec, MailServiceSpec, NatsCredentialsSpec, ServiceType};

/// Ports inside the containers, and the Service ports in front of them.
pub mod port {
    pub const SMTP: (i32, i32) = (2525, 25);
    pub const SUBMISSION: (i32, i32) = (2587, 587);
    pub const SUBMISSIONS: (i32, i32) = (2465, 465);
    pub const IMAP: (i32, i32) = (2143, 143);
    pub const IMAPS: (i32, i32) = (2993, 993);
    pub const POP3: (i32, i32) = (2110, 110);
    pub const POP3S: (i32, i32) = (2995, 995);
    pub const GRPC: i32 = 7070;
    /// The mailstore's Admin API, on its own port so that only the operator is let through.
    pub const ADMIN_GRPC: i32 = 7071;
    /// `/healthz`, `/readyz` and `/metrics` of every component.
    pub const HTTP: i32 = 9090;
}

/// The pod template annotation that changes with the settings, so new settings roll the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "kubemail.io/config-hash";

/// Replicas of a component whose spec names none: two, so one pod going away leaves service.
const DEFAULT_REPLICAS: i32 = 2;
/// How long a terminating pod keeps serving before it is sent SIGTERM: the time for its
/// endpoint's removal to reach kube-proxy on every node and the cloud load balancers, so no
/// new connection is sent to a listener that has closed (a refused connection is a bounce or
/// an error dialog for a client).
const PRE_STOP_SLEEP_SECONDS: i64 = 10;

/// The four services of a MailCluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Component {
    SmtpIngress,
    DeliveryQueue,
    Mailstore,
    ImapFrontend,
}

impl Component {
    pub const ALL: [Component; 4] =
        [Component::SmtpIngress, Component::DeliveryQueue, Component::Mailstore, Component::ImapFrontend];

    /// The component's name in labels and object names, and its binary in the image.
    pub fn name(self) -> &'static str {
        match self {
            Component::SmtpIngress => "smtp-ingress",
            Component::DeliveryQueue => "delivery-queue",
            Component::Mailstore => "mailstore",
            Component::ImapFrontend => "imap-frontend",
        }
    }

    fn spec(self, cluster: &MailCluster) -> &ComponentSpec {
        let spec = &cluster.spec;
        match self {
            Component::SmtpIngress => &spec.smtp_ingress.component,
            Component::DeliveryQueue => &spec.delivery_queue.component,
            Component::Mailstore => &spec.mailstore,
            Component::ImapFrontend => &spec.imap_frontend.exposed.component,
        }
    }

    /// The Secret of the component's NATS user.
    fn nats_user(self, credentials: &NatsCredentialsSpec) -> &str {
        match self {
            Component::SmtpIngress => &credentials.smtp_ingress,
            Component::DeliveryQueue => &credentials.delivery_queue,
            Component::Mailstore => &credentials.mailstore,
            Component::ImapFrontend => &credentials.imap_frontend,
        }
    }

    /// Whether clients reach the component through a Service: its endpoints must be gone
    /// from every node's proxy (and cloud load balancer) before it stops accepting.
    fn serves_through_a_service(self) -> bool {
        self != Component::DeliveryQueue
    }

    /// From the start of a pod's termination to SIGKILL: the preStop sleep, then the time the
    /// binary gives open sessions to end after SIGTERM (`SHUTDOWN_GRACE` in smtp-ingress and
    /// imap-frontend; the mailstore's gRPC calls and the queue's deliveries are short), and a
    /// margin for the process to exit.
    fn termination_grace_seconds(self) -> i64 {
        let sessions = match self {
            Component::SmtpIngress => 30,
            Component::ImapFrontend | Component::DeliveryQueue | Component::Mailstore => 10,
        };
        let sleep = if self.serves_through_a_service() { PRE_STOP_SLEEP_SECONDS } else { 0 };
        sleep + sessions + 5
    }

    /// Named container ports and the environment variables that make the binary listen there.
    pub(crate) fn listeners(self, cluster: &MailCluster) -> Vec<Listener> {
        match self {
            Component::SmtpIngress => vec![
                ("smtp", port::SMTP.0, env::SMTP_LISTEN),
                ("submission", port::SUBMISSION.0, env::SUBMISSION_LISTEN),
                ("submissions", port::SUBMISSIONS.0, env::SUBMISSIONS_LISTEN),
            ],
            Component::DeliveryQueue => Vec::new(),
            Component::Mailstore => {
                vec![("grpc", port::GRPC, env::GRPC_LISTEN), ("admin-grpc", port::ADMIN_GRPC, env::ADMIN_GRPC_LISTEN)]
            }
            Component::ImapFrontend => {
                let mut listeners =
                    vec![("imap", port::IMAP.0, env::IMAP_LISTEN), ("imaps", port::IMAPS.0, env::IMAPS_LISTEN)];
                if cluster.spec.imap_frontend.pop3.enabled {
                    listeners.push(("pop3", port::POP3.0, env::POP3_LISTEN));
                    listeners.push(("pop3s", port::POP3S.0, env::POP3S_LISTEN));
                }
                listeners
            }
        }
    }
}

/// A container port's name, its number, and the variable that makes the binary listen on it.
pub(crate) type Listener = (&'static str, i32, &'static str);

/// A domain the cluster serves, as its pods mount it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DomainMount {
    pub domain: String,
    /// The Secret with `tls.crt` and `tls.key`.
    pub certificate_secret: String,
    /// The Secret with `dkim.key` and `selector`.
    pub dkim_secret: String,
}

/// Everything a MailCluster becomes, built from the resource and the domains that name it.
#[derive(Clone, Debug)]
pub struct ClusterObjects {
    pub config: ConfigMap,
    pub deployments: Vec<Deployment>,
    pub services: Vec<Service>,
    pub disruption_budgets: Vec<PodDisruptionBudget>,
    /// The IMAP frontends' autoscaler, when the spec asks for one.
    pub autoscaler: Option<HorizontalPodAutoscaler>,
    /// None when the spec turns them off.
    pub network_policies: Vec<NetworkPolicy>,
}

/// The objects of `cluster`, whose pods mount `domains` (sorted by domain, so the pod template
/// does not change with the order they were listed in). `default_tag` is the image tag when the
/// spec names none: the operator's own version.
pub fn build_cluster(cluster: &MailCluster, domains: &[DomainMount], default_tag: &str) -> ClusterObjects {
    let mut domains = domains.to_vec();
    domains.sort_by(|a, b| a.domain.cmp(&b.domain));
    let config = build_config(cluster);
    let hash = config_hash(&config);
    ClusterObjects {
        deployments: Component::ALL
            .iter()
            .map(|&component| build_deployment(cluster, component, &domains, default_tag, &hash))
            .collect(),
        services: build_services(cluster),
        disruption_budgets: Component::ALL
            .iter()
            .map(|&component| build_disruption_budget(cluster, component))
            .collect(),
        autoscaler: build_autoscaler(cluster),
        network_policies: super::network::build_network_policies(cluster),
        config,
    }
}

/// The names of the cluster's objects, in one place for builders, status and tests.
pub mod names {
    use super::Component;

    pub fn deployment(cluster: &str, component: Component) -> String {
        format!("{cluster}-{}", component.name())
    }
    pub fn config(cluster: &str) -> String {
        format!("{cluster}-config")
    }
    pub fn smtp_service(cluster: &str) -> String {
        format!("{cluster}-smtp")
    }
    pub fn imap_service(cluster: &str) -> String {
        format!("{cluster}-imap")
    }
    pub fn mailstore_service(cluster: &str) -> String {
        format!("{cluster}-mailstore")
    }
    pub fn metrics_service(cluster: &str) -> String {
        format!("{cluster}-metrics")
    }
    /// The Secret that keeps the cluster's CA; with cert-manager, also the Certificate that
    /// asks for it and the Issuer that signs with it.
    pub fn service_ca(cluster: &str) -> String {
        format!("{cluster}-service-ca")
    }
    /// With cert-manager: the self-signed Issuer that signs the cluster's CA.
    pub fn service_ca_root(cluster: &str) -> String {
        format!("{cluster}-service-ca-root")
    }
    /// The Secret of `role`'s service identity.
    pub fn identity_secret(cluster: &str, role: kubemail_runtime::identity::Role) -> String {
        format!("{cluster}-identity-{role}")
    }
    /// The mailstore's gRPC address inside the cluster, for the other components.
    pub fn mailstore_url(cluster: &str, namespace: &str) -> String {
        format!("http://{}.{namespace}.svc:{}", mailstore_service(cluster), super::port::GRPC)
    }
    /// The mailstore's Admin API inside the cluster, for the operator.
    pub fn admin_url(cluster: &str, namespace: &str) -> String {
        format!("http://{}.{namespace}.svc:{}", mailstore_service(cluster), super::port::ADMIN_GRPC)
    }
}

/// The settings every component reads from its environment (each takes the ones it knows).
pub fn build_config(cluster: &MailCluster) -> ConfigMap {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    let namespace = cluster.namespace().unwrap_or_default();
    let mut data = BTreeMap::from([
        (env::HOSTNAME.to_string(), spec.hostname.clone()),
        (env::NATS_URL.to_string(), spec.nats.url.clone()),
        (env::MAILSTORE.to_string(), names::mailstore_url(&name, &namespace)),
        (env::HTTP_LISTEN.to_string(), format!("0.0.0.0:{}", port::HTTP)),
    ]);
    if let Some(bytes) = spec.limits.max_message_size.as_ref().and_then(|size| size.bytes()) {
        data.insert(env::MAX_MESSAGE_SIZE.to_string(), bytes.to_string());
    }
    if let Some(replicas) = spec.nats.replicas {
        data.insert(env::NATS_REPLICAS.to_string(), replicas.to_string());
    }
    if let Some(recipients) = spec.limits.max_recipients {
        data.insert(env::MAX_RECIPIENTS.to_string(), recipients.to_string());
    }
    if !spec.proxy_protocol_trusted_cidrs.is_empty() {
        data.insert(env::PROXY_TRUSTED_CIDRS.to_string(), spec.proxy_protocol_trusted_cidrs.join(","));
    }
    ConfigMap {
        metadata: owned_meta(cluster, names::config(&name), labels(&name, None)),
        data: Some(data),
        ..Default::default()
    }
}

/// A digest of the settings, for [`CONFIG_HASH_ANNOTATION`].
fn config_hash(config: &ConfigMap) -> String {
    let text = serde_json::to_string(&config.data).unwrap_or_default();
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    digest.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn build_deployment(
    cluster: &MailCluster,
    component: Component,
    domains: &[DomainMount],
    default_tag: &str,
    config_hash: &str,
) -> Deployment {
    let spec = &cluster.spec;
    let name = cluster.name_any();
    let component_labels = labels(&name, Some(component));
    let listeners = component.listeners(cluster);
    let mut vars: Vec<EnvVar> = listeners.iter().map(|(_, port, var)| env(var, format!("0.0.0.0:{port}"))).collect();
    // Every component's identity for gRPC between the services.
    vars.push(env(env::SERVICE_TLS_DIR, IDENTITY_DIR));
    let mut volumes = vec![secret_volume("identity", &names::identity_secret(&name, component.role()), None)];
    let mut mounts = vec![mount("identity", IDENTITY_DIR)];
    if let Some(credentials) = &spec.nats.credentials {
        vars.push(env(env::NATS_CREDENTIALS_DIR, NATS_CREDENTIALS_DIR));
        volumes.push(secret_volume("nats-credentials", component.nats_user(credentials), None));
        mounts.push(mount("nats-credentials", NATS_CREDENTIALS_DIR));
    }
    if let Some(ca) = &spec.nats.ca_secret_ref {
        vars.push(env(env::NATS_CA_FILE, format!("{NATS_CA_DIR}/{}", file::NATS_CA)));
        volumes.push(secret_volume("nats-ca", &ca.name, Some((&ca.key, file::NATS_CA))));
        mounts.push(mount("nats-ca", NATS_CA_DIR));
    }
    match component {
        Component::SmtpIngress | Component::ImapFrontend => {
            vars.push(env(env::TLS_DIR, TLS_DIR));
            volumes.push(projected("tls", domains, |d| (&d.certificate_secret, &[file::CERTIFICATE, file::KEY])));
            mounts.push(mount("tls", TLS_DIR));
        }
        Component::DeliveryQueue => {
            vars.push(env(env::DKIM_DIR, DKIM_DIR));
            let routes = &spec.delivery_queue.routes;
            if !routes.is_empty() {
                let overrides: Vec<String> =
                    routes.iter().map(|route| format!("{}={}", route.domain, route.host)).collect();
                vars.push(env(env::MX_OVERRIDES, overrides.join(",")));
            }
            volumes.push(projected("dkim", domains, |d| (&d.dkim_secret, &[file::DKIM_KEY, file::DKIM_SELECTOR])));
            mounts.push(mount("dkim", DKIM_DIR));
        }
        Component::Mailstore => {
            let uri = &spec.database.uri_secret_ref;
            vars.push(EnvVar {
                name: env::DATABASE_URL.to_string(),
                value_from: Some(EnvVarSource {
                    secret_key_ref: Some(SecretKeySelector {
                        name: uri.name.clone(),
                        key: uri.key.clone(),
                        optional: Some(false),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            });
            if let Some(connections) = spec.database.max_connections {
                vars.push(env(env::DATABASE_MAX_CONNECTIONS, connections.to_string()));
            }
        }
    }
    let mut ports: Vec<ContainerPort> = listeners
        .iter()
        .map(|(port_name, port, _)| ContainerPort {
            name: Some(port_name.to_string()),
            container_port: *port,
            ..Default::default()
        })
        .collect();
    ports.push(ContainerPort { name: Some("http".to_string()), container_port: port::HTTP, ..Default::default() });
    let image = format!("{}:{}", spec.image.repository, spec.image.tag.as_deref().unwrap_or(default_tag));
    let container = Container {
        name: component.name().to_string(),
        image: Some(image),
        image_pull_policy: spec.image.pull_policy.map(|policy| format!("{policy:?}")),
        command: Some(vec![component.name().to_string()]),
        env_from: Some(vec![EnvFromSource {
            config_map_ref: Some(ConfigMapEnvSource { name: names::config(&name), optional: Some(false) }),
            ..Default::default()
        }]),
        env: Some(vars),
        ports: Some(ports),
        readiness_probe: Some(probe("/readyz", 5)),
        liveness_probe: Some(probe("/healthz", 10)),
        resources: Some(component.spec(cluster).resources.clone().unwrap_or_else(default_resources)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities { drop: Some(vec!["ALL".to_string()]), ..Default::default() }),
            ..Default::default()
        }),
        volume_mounts: Some(mounts),
        lifecycle: component.serves_through_a_service().then(|| Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction { seconds: PRE_STOP_SLEEP_SECONDS }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let autoscaled = component == Component::ImapFrontend && spec.imap_frontend.autoscaling.is_some();
    Deployment {
        metadata: owned_meta(cluster, names::deployment(&name, component), component_labels.clone()),
        spec: Some(DeploymentSpec {
            // An autoscaler owns the count: a replicas field here would fight it on every apply.
            replicas: if autoscaled {
                None
            } else {
                Some(component.spec(cluster).replicas.unwrap_or(DEFAULT_REPLICAS))
            },
            selector: LabelSelector { match_labels: Some(component_labels.clone()), ..Default::default() },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(component_labels.clone()),
                    annotations: Some(BTreeMap::from([(CONFIG_HASH_ANNOTATION.to_string(), config_hash.to_string())])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    containers: vec![container],
                    termination_grace_period_seconds: Some(component.termination_grace_seconds()),
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    image_pull_secrets: (!spec.image.pull_secrets.is_empty()).then(|| {
                        spec.image.pull_secrets.iter().map(|name| LocalObjectReference { name: name.clone() }).collect()
                    }),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(65532),
                        run_as_group: Some(65532),
                        // The TLS and DKIM keys are mounted 0440: the kubelet gives them this
                        // group, or the non-root user could not read them.
                        fs_group: Some(65532),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".to_string(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    // Replicas on different nodes where the scheduler can: one node lost is
                    // not the whole tier lost.
                    topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                        max_skew: 1,
                        topology_key: "kubernetes.io/hostname".to_string(),
                        when_unsatisfiable: "ScheduleAnyway".to_string(),
                        label_selector: Some(LabelSelector {
                            match_labels: Some(component_labels),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A projected volume of one Secret per domain, each key under `<domain>/`. The Secrets are
/// optional so pods start before a new domain's certificate is issued; the services reload
/// the files when they appear or change.
fn projected<'a>(
    name: &str,
    domains: &'a [DomainMount],
    secret: impl Fn(&'a DomainMount) -> (&'a String, &'static [&'static str]),
) -> Volume {
    let sources = domains
        .iter()
        .map(|domain| {
            let (secret_name, keys) = secret(domain);
            VolumeProjection {
                secret: Some(SecretProjection {
                    name: secret_name.clone(),
                    items: Some(
                        keys.iter()
                            .map(|key| KeyToPath {
                                key: key.to_string(),
                                path: format!("{}/{key}", domain.domain),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    optional: Some(true),
                }),
                ..Default::default()
            }
        })
        .collect();
    Volume {
        name: name.to_string(),
        projected: Some(ProjectedVolumeSource { sources: Some(sources), default_mode: Some(0o440) }),
        ..Default::default()
    }
}

/// A volume of the Secret `secret` (of `item`'s key only, under its file name, when given),
/// readable by the pod's group only; the pod waits until the Secret is there.
fn secret_volume(name: &str, secret: &str, item: Option<(&str, &str)>) -> Volume {
    Volume {
        name: name.to_string(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_string()),
            default_mode: Some(0o440),
            optional: Some(false),
            items: item.map(|(key, path)| vec![KeyToPath { key: key.to_string(), path: path.to_string(), mode: None }]),
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount { name: name.to_string(), mount_path: path.to_string(), read_only: Some(true), ..Default::default() }
}

fn env(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar { name: name.to_string(), value: Some(value.into()), ..Default::default() }
}

fn probe(path: &str, period_seconds: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_string()),
            port: IntOrString::String("http".to_string()),
            ..Default::default()
        }),
        period_seconds: Some(period_seconds),
        ..Default::default()
    }
}

/// Requests when the spec sets none: a CPU request is what CPU autoscaling measures against.
fn default_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_string(), Quantity("100m".to_string())),
            ("memory".to_string(), Quantity("64Mi".to_string())),
        ])),
        ..Default::default()
    }
}

pub fn build_services(cluster: &MailCluster) -> Vec<Service> {
    let name = cluster.name_any();
    let spec = &cluster.spec;
    let service_port = |port_name: &str, (_, port): (i32, i32)| ServicePort {
        name: Some(port_name.to_string()),
        port,
        target_port: Some(IntOrString::String(port_name.to_string())),
        protocol: Some("TCP".to_string()),
        ..Default::default()
    };
    vec![
        mail_service(
            cluster,
            names::smtp_service(&name),
            Component::SmtpIngress,
            &spec.smtp_ingress.service,
            vec![
                service_port("smtp", port::SMTP),
                service_port("submission", port::SUBMISSION),
                service_port("submissions", port::SUBMISSIONS),
            ],
        ),
        mail_service(
            cluster,
            names::imap_service(&name),
            Component::ImapFrontend,
            &spec.imap_frontend.exposed.service,
            [("imap", port::IMAP), ("imaps", port::IMAPS)]
                .into_iter()
                .chain(
                    spec.imap_frontend
                        .pop3
                        .enabled
                        .then_some([("pop3", port::POP3), ("pop3s", port::POP3S)])
                        .into_iter()
                        .flatten(),
                )
                .map(|(port_name, ports)| service_port(port_name, ports))
                .collect(),
        ),
        Service {
            metadata: owned_meta(cluster, names::mailstore_service(&name), labels(&name, Some(Component::Mailstore))),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_string()),
                selector: Some(labels(&name, Some(Component::Mailstore))),
                ports: Some(
                    [("grpc", port::GRPC), ("admin-grpc", port::ADMIN_GRPC)]
                        .map(|(port_name, port)| ServicePort {
                            name: Some(port_name.to_string()),
                            port,
                            target_port: Some(IntOrString::String(port_name.to_string())),
                            app_protocol: Some("kubernetes.io/h2c".to_string()),
                            ..Default::default()
                        })
                        .into(),
                ),
                ..Default::default()
            }),
            ..Default::default()
        },
        // Headless, over every component's pods: what a ServiceMonitor scrapes.
        Service {
            metadata: owned_meta(cluster, names::metrics_service(&name), labels(&name, None)),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".to_string()),
                selector: Some(labels(&name, None)),
                ports: Some(vec![ServicePort {
                    name: Some("http".to_string()),
                    port: port::HTTP,
                    target_port: Some(IntOrString::String("http".to_string())),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        },
    ]
}

fn mail_service(
    cluster: &MailCluster,
    service_name: String,
    component: Component,
    exposure: &MailServiceSpec,
    ports: Vec<ServicePort>,
) -> Service {
    let component_labels = labels(&cluster.name_any(), Some(component));
    let mut metadata = owned_meta(cluster, service_name, component_labels.clone());
    if !exposure.annotations.is_empty() {
        metadata.annotations = Some(exposure.annotations.clone());
    }
    let external = exposure.type_ != ServiceType::ClusterIP;
    Service {
        metadata,
        spec: Some(ServiceSpec {
            type_: Some(format!("{:?}", exposure.type_)),
            // Only a Service reachable from outside has an external traffic policy.
            external_traffic_policy: external.then(|| format!("{:?}", exposure.external_traffic_policy)),
            selector: Some(component_labels),
            ports: Some(ports),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn build_disruption_budget(cluster: &MailCluster, component: Component) -> PodDisruptionBudget {
    let name = cluster.name_any();
    PodDisruptionBudget {
        metadata: owned_meta(cluster, names::deployment(&name, component), labels(&name, Some(component))),
        spec: Some(PodDisruptionBudgetSpec {
            // One pod at a time during node drains; a single-replica component may still go.
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(LabelSelector { match_labels: Some(labels(&name, Some(component))), ..Default::default() }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The metric the connection target reads (through a custom-metrics adapter).
pub const CONNECTIONS_METRIC: &str = "kubemail_imap_connections_open";

pub fn build_autoscaler(cluster: &MailCluster) -> Option<HorizontalPodAutoscaler> {
    let scaling = cluster.spec.imap_frontend.autoscaling.as_ref()?;
    let name = cluster.name_any();
    let mut metrics = Vec::new();
    if let Some(percent) = scaling.target_cpu_utilization {
        metrics.push(MetricSpec {
            type_: "Resource".to_string(),
            resource: Some(ResourceMetricSource {
                name: "cpu".to_string(),
                target: MetricTarget {
                    type_: "Utilization".to_string(),
                    average_utilization: Some(percent),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    if let Some(connections) = scaling.target_connections_per_pod {
        metrics.push(MetricSpec {
            type_: "Pods".to_string(),
            pods: Some(PodsMetricSource {
                metric: MetricIdentifier { name: CONNECTIONS_METRIC.to_string(), selector: None },
                target: MetricTarget {
                    type_: "AverageValue".to_string(),
                    average_value: Some(Quantity(connections.to_string())),
                    ..Default::default()
                },
            }),
            ..Default::default()
        });
    }
    let deployment = names::deployment(&name, Component::ImapFrontend);
    Some(HorizontalPodAutoscaler {
        metadata: owned_meta(cluster, deployment.clone(), labels(&name, Some(Component::ImapFrontend))),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some(<Deployment as Resource>::api_version(&()).to_string()),
                kind: <Deployment as Resource>::kind(&()).to_string(),
                name: deployment,
            },
            min_replicas: Some(scaling.min_replicas),
            max_replicas: scaling.max_replicas,
            metrics: Some(metrics),
            ..Default::default()
        }),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: mail, namespace: mx, uid: 5a1e7f9e-0000-4000-8000-000000000001}
spec:
  hostname: mail.example.com
  database: {uriSecretRef: {name: mail-db-app, key: uri}}
  nats: {url: 'nats://nats.nats.svc:4222'}
";

    fn cluster(extra: &str) -> MailCluster {
        serde_yaml::from_str(&format!("{CLUSTER}{extra}")).unwrap()
    }

    fn domains() -> Vec<DomainMount> {
        ["example.org", "example.com"]
            .iter()
            .map(|domain| DomainMount {
                domain: domain.to_string(),
                certificate_secret: format!("{domain}-tls"),
                dkim_secret: format!("{domain}-dkim"),
            })
            .collect()
    }

    fn deployment(objects: &ClusterObjects, component: Component) -> &Deployment {
        let name = names::deployment("mail", component);
        objects.deployments.iter().find(|d| d.metadata.name.as_deref() == Some(&name)).unwrap()
    }

    fn pod(deployment: &Deployment) -> &PodSpec {
        deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap()
    }

    fn env_of(deployment: &Deployment) -> BTreeMap<String, EnvVar> {
        let container = &pod(deployment).containers[0];
        container.env.iter().flatten().map(|var| (var.name.clone(), var.clone())).collect()
    }

    fn service<'a>(objects: &'a ClusterObjects, name: &str) -> &'a ServiceSpec {
        objects.services.iter().find(|s| s.metadata.name.as_deref() == Some(name)).unwrap().spec.as_ref().unwrap()
    }

    #[test]
    fn every_component_runs_twice_as_non_root_with_probes() {
        let objects = build_cluster(&cluster(""), &[], "0.1.0");
        assert_eq!(objects.deployments.len(), 4);
        for deployment in &objects.deployments {
            assert_eq!(deployment.spec.as_ref().unwrap().replicas, Some(2));
            let pod = pod(deployment);
            let container = &pod.containers[0];
            assert_eq!(container.image.as_deref(), Some("ghcr.io/kubemail/kubemail:0.1.0"));
            assert_eq!(container.command.as_ref().unwrap()[0], container.name, "the binary of the component");
            let security = container.security_context.as_ref().unwrap();
            assert_eq!(security.read_only_root_filesystem, Some(true));
            assert_eq!(security.allow_privilege_escalation, Some(false));
            assert_eq!(security.capabilities.as_ref().unwrap().drop.as_deref(), Some(&["ALL".to_string()][..]));
            let pod_security = pod.security_context.as_ref().unwrap();
            assert_eq!(pod_security.run_as_non_root, Some(true));
            assert_eq!(pod_security.fs_group, pod_security.run_as_group, "the mounted keys' group is the user's");
            let readiness = container.readiness_probe.as_ref().unwrap().http_get.as_ref().unwrap();
            assert_eq!(readiness.path.as_deref(), Some("/readyz"));
            assert!(container.ports.iter().flatten().any(|p| p.name.as_deref() == Some("http")));
            // Every owned object points at the cluster as its controller.
            let owner = &deployment.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str(), owner.controller),
                ("MailCluster", "mail", Some(true))
            );
        }
        assert!(objects.autoscaler.is_none());
        assert_eq!(objects.disruption_budgets.len(), 4);
    }

    #[test]
    fn a_terminating_pod_serves_until_the_proxies_forget_it_then_finishes_its_sessions() {
        let objects = build_cluster(&cluster(""), &[], "0.1.0");
        for component in Component::ALL {
            let pod = pod(deployment(&objects, component));
            let sleep = pod.containers[0]
                .lifecycle
                .as_ref()
                .and_then(|lifecycle| lifecycle.pre_stop.as_ref())
                .and_then(|handler| handler.sleep.as_ref())
                .map(|sleep| sleep.seconds);
            let grace = pod.termination_grace_period_seconds.unwrap();
            if component == Component::DeliveryQueue {
                assert_eq!(sleep, None, "nothing reaches the queue through a Service");
            } else {
                assert_eq!(sleep, Some(PRE_STOP_SLEEP_SECONDS), "{component:?} sleeps before SIGTERM");
            }
            assert!(
                grace > sleep.unwrap_or(0) + 5,
                "{component:?}: {grace} s leaves its sessions time after the sleep"
            );
        }
        let smtp = pod(deployment(&objects, Component::SmtpIngress));
        assert_eq!(
            smtp.termination_grace_period_seconds,
            Some(PRE_STOP_SLEEP_SECONDS + 30 + 5),
            "an SMTP transaction has its 30 s after SIGTERM"
        );
    }

    #[test]
    fn delivery_routes_reach_the_queue_as_mx_overrides() {
        let objects = build_cluster(&cluster(""), &[], "0.1.0");
        assert!(!env_of(deployment(&objects, Component::DeliveryQueue)).contains_key("KUBEMAIL_MX_OVERRIDES"));
        let routed = cluster(
            "  deliveryQueue:\n    routes:\n    - {domain: partner.example, host: 'mx.partner.internal:2525'}\n    - {domain: lab.example, host: '[fd00::1]:25'}\n",
        );
        let objects = build_cluster(&routed, &[], "0.1.0");
        assert_eq!(
            env_of(deployment(&objects, Component::DeliveryQueue))["KUBEMAIL_MX_OVERRIDES"].value.as_deref(),
            Some("partner.example=mx.partner.internal:2525,lab.example=[fd00::1]:25")
        );
    }

    #[test]
    fn the_settings_reach_every_component() {
        let objects = build_cluster(
            &cluster(
                "  limits: {maxMessageSize: 25Mi, maxRecipients: 50}\n  proxyProtocolTrustedCidrs: [10.0.0.0/8, 192.168.0.0/16]\n",
            ),
            &[],
            "0.1.0",
        );
        let data = objects.config.data.as_ref().unwrap();
        assert_eq!(data["KUBEMAIL_HOSTNAME"], "mail.example.com");
        assert_eq!(data["KUBEMAIL_NATS_URL"], "nats://nats.nats.svc:4222");
        assert_eq!(data["KUBEMAIL_MAILSTORE"], "http://mail-mailstore.mx.svc:7070");
        assert_eq!(data["KUBEMAIL_MAX_MESSAGE_SIZE"], (25u64 << 20).to_string());
        assert_eq!(data["KUBEMAIL_MAX_RECIPIENTS"], "50");
        assert_eq!(data["KUBEMAIL_PROXY_TRUSTED_CIDRS"], "10.0.0.0/8,192.168.0.0/16");
        for deployment in &objects.deployments {
            let from = pod(deployment).containers[0].env_from.as_ref().unwrap();
            assert_eq!(from[0].config_map_ref.as_ref().unwrap().name, "mail-config");
        }
        let database = &env_of(deployment(&objects, Component::Mailstore))["KUBEMAIL_DATABASE_URL"];
        let secret = database.value_from.as_ref().unwrap().secret_key_ref.as_ref().unwrap();
        assert_eq!((secret.name.as_str(), secret.key.as_str()), ("mail-db-app", "uri"));
        assert!(database.value.is_none(), "the database URI stays in its Secret");
    }

    #[test]
    fn three_nats_replicas_are_asked_for_when_the_spec_says_so() {
        let replicated: MailCluster = serde_yaml::from_str(
            &CLUSTER
                .replace("nats: {url: 'nats://nats.nats.svc:4222'}", "nats: {url: 'nats://nats:4222', replicas: 3}"),
        )
        .unwrap();
        assert_eq!(build_config(&replicated).data.unwrap()["KUBEMAIL_NATS_REPLICAS"], "3");
        assert!(!build_config(&cluster("")).data.unwrap().contains_key("KUBEMAIL_NATS_REPLICAS"), "the default is 1");
    }

    #[test]
    fn new_settings_roll_the_pods() {
        let hash = |objects: &ClusterObjects| {
            let template = &objects.deployments[0].spec.as_ref().unwrap().template;
            template.metadata.as_ref().unwrap().annotations.as_ref().unwrap()[CONFIG_HASH_ANNOTATION].clone()
        };
        let before = hash(&build_cluster(&cluster(""), &[], "0.1.0"));
        assert_eq!(before, hash(&build_cluster(&cluster(""), &[], "0.1.0")), "the same settings, the same pods");
        let after = hash(&build_cluster(&cluster("  limits: {maxRecipients: 10}\n"), &[], "0.1.0"));
        assert_ne!(before, after);
    }

    #[test]
    fn mail_ports_are_exposed_with_the_client_address_kept() {
        let objects = build_cluster(&cluster(""), &[], "0.1.0");
        let smtp = service(&objects, "mail-smtp");
        assert_eq!(smtp.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(smtp.external_traffic_policy.as_deref(), Some("Local"));
        let ports: Vec<i32> = smtp.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [25, 587, 465]);
        let imap = service(&objects, "mail-imap");
        assert_eq!(imap.ports.iter().flatten().map(|p| p.port).collect::<Vec<_>>(), [143, 993]);
        // Each Service port targets a port its pods name.
        for (service_name, component) in [
            ("mail-smtp", Component::SmtpIngress),
            ("mail-imap", Component::ImapFrontend),
            ("mail-mailstore", Component::Mailstore),
        ] {
            let container = &pod(deployment(&objects, component)).containers[0];
            for port in service(&objects, service_name).ports.iter().flatten() {
                let IntOrString::String(target) = port.target_port.as_ref().unwrap() else { panic!() };
                assert!(container.ports.iter().flatten().any(|p| p.name.as_ref() == Some(target)), "{target}");
            }
            assert_eq!(service(&objects, service_name).selector.as_ref(), Some(&labels("mail", Some(component))));
        }
        let mailstore = service(&objects, "mail-mailstore");
        assert_eq!(mailstore.type_.as_deref(), Some("ClusterIP"));
        let ports: Vec<i32> = mailstore.ports.iter().flatten().map(|p| p.port).collect();
        assert_eq!(ports, [7070, 7071], "the MailStore API, and the Admin API on its own port");
        assert_eq!(service(&objects, "mail-metrics").cluster_ip.as_deref(), Some("None"));
    }

    #[test]
    fn pop3_is_served_on_110_and_995_only_when_asked_for() {
        let pop3_ports = |objects: &ClusterObjects| {
            let container = &pod(deployment(objects, Component::ImapFrontend)).containers[0];
            let listening: Vec<_> = ["KUBEMAIL_POP3_LISTEN", "KUBEMAIL_POP3S_LISTEN"]
                .iter()
                .filter_map(|var| env_of(deployment(objects, Component::ImapFrontend)).get(*var)?.value.clone())
                .collect();
            let named: Vec<_> = container.ports.iter().flatten().filter_map(|p| p.name.clone()).collect();
            let exposed: Vec<_> = service(objects, "mail-imap").ports.iter().flatten().map(|p| p.port).collect();
            (listening, named, exposed)
        };
        let (listening, named, exposed) = pop3_ports(&build_cluster(&cluster(""), &[], "0.1.0"));
        assert!(listening.is_empty(), "off by default, yet listening on {listening:?}");
        assert_eq!((named, exposed), (vec!["imap".into(), "imaps".into(), "http".into()], vec![143, 993]));

        let enabled = build_cluster(&cluster("  imapFrontend:\n    pop3: {enabled: true}\n"), &[], "0.1.0");
        let (listening, named, exposed) = pop3_ports(&enabled);
        assert_eq!(listening, ["0.0.0.0:2110", "0.0.0.0:2995"]);
        assert_eq!(named, ["imap", "imaps", "pop3", "pop3s", "http"]);
        assert_eq!(exposed, [143, 993, 110, 995]);
        let service_ports = service(&enabled, "mail-imap").ports.clone().unwrap();
        let targets: Vec<_> = service_ports.iter().map(|p| p.target_port.clone().unwrap()).collect();
        assert_eq!(&targets[2..], [IntOrString::String("pop3".into()), IntOrString::String("pop3s".into())]);
    }

    #[test]
    fn an_internal_service_has_no_external_traffic_policy() {
        let objects = build_cluster(
            &cluster(
                "  imapFrontend:\n    service: {type: ClusterIP}\n  smtpIngress:\n    service: {type: NodePort, externalTrafficPolicy: Cluster, annotations: {lb: x}}\n",
            ),
            &[],
            "0.1.0",
        );
        let imap = service(&objects, "mail-imap");
        assert_eq!((imap.type_.as_deref(), imap.external_traffic_policy.as_deref()), (Some("ClusterIP"), None));
        let smtp = service(&objects, "mail-smtp");
        assert_eq!(
            (smtp.type_.as_deref(), smtp.external_traffic_policy.as_deref()),
            (Some("NodePort"), Some("Cluster"))
        );
        let smtp_meta =
            &objects.services.iter().find(|s| s.metadata.name.as_deref() == Some("mail-smtp")).unwrap().metadata;
        assert_eq!(smtp_meta.annotations.as_ref().unwrap()["lb"], "x");
    }

    #[test]
    fn an_autoscaler_owns_the_frontends_replicas() {
        let objects = build_cluster(
            &cluster(
                "  imapFrontend:\n    replicas: 3\n    autoscaling: {minReplicas: 2, maxReplicas: 8, targetCPUUtilization: 70, targetConnectionsPerPod: 5000}\n",
            ),
            &[],
            "0.1.0",
        );
        let autoscaler = objects.autoscaler.as_ref().unwrap().spec.as_ref().unwrap();
        assert_eq!(autoscaler.scale_target_ref.name, "mail-imap-frontend");
        assert_eq!(autoscaler.scale_target_ref.kind, "Deployment");
        assert_eq!((autoscaler.min_replicas, autoscaler.max_replicas), (Some(2), 8));
        let metrics = autoscaler.metrics.as_ref().unwrap();
        assert_eq!(metrics[0].resource.as_ref().unwrap().target.average_utilization, Some(70));
        let pods = metrics[1].pods.as_ref().unwrap();
        assert_eq!(pods.metric.name, CONNECTIONS_METRIC);
        assert_eq!(pods.target.average_value, Some(Quantity("5000".to_string())));
        assert_eq!(deployment(&objects, Component::ImapFrontend).spec.as_ref().unwrap().replicas, None);
        assert_eq!(deployment(&objects, Component::SmtpIngress).spec.as_ref().unwrap().replicas, Some(2));
    }

    #[test]
    fn replicas_and_resources_follow_the_spec() {
        let objects = build_cluster(
            &cluster(
                "  smtpIngress:\n    replicas: 5\n    resources: {limits: {memory: 256Mi}}\n  imapFrontend: {replicas: 3}\n",
            ),
            &[],
            "0.1.0",
        );
        assert_eq!(deployment(&objects, Component::SmtpIngress).spec.as_ref().unwrap().replicas, Some(5));
        assert_eq!(deployment(&objects, Component::ImapFrontend).spec.as_ref().unwrap().replicas, Some(3));
        let resources = pod(deployment(&objects, Component::SmtpIngress)).containers[0].resources.clone().unwrap();
        assert_eq!(resources.limits.unwrap()["memory"], Quantity("256Mi".to_string()));
        let defaults = pod(deployment(&objects, Component::Mailstore)).containers[0].resources.clone().unwrap();
        assert!(defaults.requests.unwrap().contains_key("cpu"), "CPU autoscaling needs a request");
    }

    #[test]
    fn each_component_connects_to_nats_as_its_own_user_over_tls_when_the_spec_says_so() {
        let objects = build_cluster(&cluster(""), &[], "0.1.0");
        let without = env_of(deployment(&objects, Component::SmtpIngress));
        assert!(
            !without.contains_key("KUBEMAIL_NATS_CREDENTIALS_DIR") && !without.contains_key("KUBEMAIL_NATS_CA_FILE")
        );

        let mut secured = cluster("");
        secured.spec.nats.credentials = Some(NatsCredentialsSpec {
            smtp_ingress: "nats-smtp".into(),
            delivery_queue: "nats-queue".into(),
            mailstore: "nats-store".into(),
            imap_frontend: "nats-imap".into(),
        });
        secured.spec.nats.ca_secret_ref =
            Some(crate::crd::common::SecretKeyRef { name: "nats-tls".into(), key: "ca.pem".into() });
        let objects = build_cluster(&secured, &[], "0.1.0");
        for (component, user) in [
            (Component::SmtpIngress, "nats-smtp"),
            (Component::DeliveryQueue, "nats-queue"),
            (Component::Mailstore, "nats-store"),
            (Component::ImapFrontend, "nats-imap"),
        ] {
            let deployment = deployment(&objects, component);
            let volumes = pod(deployment).volumes.clone().unwrap();
            let volume = |name: &str| volumes.iter().find(|v| v.name == name).unwrap().secret.clone().unwrap();
            assert_eq!(volume("nats-credentials").secret_name.as_deref(), Some(user));
            let ca = volume("nats-ca");
            assert_eq!(ca.secret_name.as_deref(), Some("nats-tls"));
            assert_eq!(ca.items.unwrap()[0], KeyToPath { key: "ca.pem".into(), path: "ca.crt".into(), mode: None });
            let vars = env_of(deployment);
            assert_eq!(vars["KUBEMAIL_NATS_CREDENTIALS_DIR"].value.as_deref(), Some(NATS_CREDENTIALS_DIR));
            assert_eq!(vars["KUBEMAIL_NATS_CA_FILE"].value.as_deref(), Some("/etc/kubemail/nats-ca/ca.crt"));
            let mounts = pod(deployment).containers[0].volume_mounts.clone().unwrap();
            assert!(mounts.iter().any(|m| m.name == "nats-credentials" && m.mount_path == NATS_CREDENTIALS_DIR));
            assert!(mounts.iter().any(|m| m.name == "nats-ca" && m.mount_path == NATS_CA_DIR));
        }
    }

    #[test]
    fn each_component_mounts_its_own_identity() {
        let objects = build_cluster(&cluster(""), &[], "0.1.0");
        for component in Component::ALL {
            let pod = pod(deployment(&objects, component));
            let volume = pod.volumes.iter().flatten().find(|v| v.name == "identity").unwrap();
            let secret = volume.secret.as_ref().unwrap();
            assert_eq!(secret.secret_name, Some(format!("mail-identity-{}", component.name())));
            assert_eq!(secret.optional, Some(false), "a pod waits for its identity");
            let container = &pod.containers[0];
            assert!(
                container.volume_mounts.iter().flatten().any(|m| m.name == "identity" && m.mount_path == IDENTITY_DIR)
            );
            assert_eq!(
                env_of(deployment(&objects, component))["KUBEMAIL_SERVICE_TLS_DIR"].value.as_deref(),
                Some(IDENTITY_DIR)
            );
        }
    }

    #[test]
    fn domains_are_mounted_where_the_services_look_for_them() {
        let objects = build_cluster(&cluster(""), &domains(), "0.1.0");
        let projected_paths = |component: Component, volume: &str| -> Vec<(String, String)> {
            let volumes = pod(deployment(&objects, component)).volumes.as_ref().unwrap();
            let volume = volumes.iter().find(|v| v.name == volume).unwrap();
            let sources = volume.projected.as_ref().unwrap().sources.as_ref().unwrap();
            sources
                .iter()
                .flat_map(|source| {
                    let secret = source.secret.as_ref().unwrap();
                    assert_eq!(secret.optional, Some(true), "pods start before a new certificate is issued");
                    secret
                        .items
                        .iter()
                        .flatten()
                        .map(|item| (secret.name.clone(), item.path.clone()))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        let tls = [
            ("example.com-tls", "example.com/tls.crt"),
            ("example.com-tls", "example.com/tls.key"),
            ("example.org-tls", "example.org/tls.crt"),
            ("example.org-tls", "example.org/tls.key"),
        ]
        .map(|(s, p)| (s.to_string(), p.to_string()));
        assert_eq!(projected_paths(Component::SmtpIngress, "tls"), tls);
        assert_eq!(projected_paths(Component::ImapFrontend, "tls"), tls);
        assert_eq!(
            env_of(deployment(&objects, Component::ImapFrontend))["KUBEMAIL_TLS_DIR"].value.as_deref(),
            Some(TLS_DIR)
        );
        let dkim = projected_paths(Component::DeliveryQueue, "dkim");
        assert_eq!(dkim[0], ("example.com-dkim".to_string(), "example.com/dkim.key".to_string()));
        assert_eq!(dkim[1], ("example.com-dkim".to_string(), "example.com/selector".to_string()));
        assert_eq!(
            env_of(deployment(&objects, Component::DeliveryQueue))["KUBEMAIL_DKIM_DIR"].value.as_deref(),
            Some(DKIM_DIR)
        );
        // The listing order of the domains does not change the pods.
        let mut reversed = domains();
        reversed.reverse();
        assert_eq!(build_cluster(&cluster(""), &reversed, "0.1.0").deployments, objects.deployments);
    }
}
