//! The deployment contract, end to end: every service parses its configuration from exactly
//! the environment and files the operator builds for its pod, and loads what they point at.
//!
//! The test plays the kubelet: it takes each Deployment `build_cluster` makes, resolves the
//! ConfigMap and Secret references of its container, writes the Secrets the operator makes
//! (certificates, DKIM keys, service identities) and those a user provides (the database URI,
//! the NATS users, the NATS CA) where its volumes mount them, and runs the service's own flag
//! parser on the result. A renamed flag, variable, mount path or file on either side fails it.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Container, KeyToPath, Secret, Volume};
use kube::ResourceExt;
use kubemail_operator::build::cluster::{DomainMount, build_cluster};
use kubemail_operator::build::domain::{
    build_dkim_secret, build_self_signed_secret, certificate_secret_name, dkim_secret_name, tls_names,
};
use kubemail_operator::build::identity::build_identity_secret;
use kubemail_operator::crd::domain::DkimAlgorithm;
use kubemail_operator::crd::{MailCluster, MailDomain};
use kubemail_operator::keys::DkimKey;
use kubemail_runtime::deployment::file;
use kubemail_runtime::identity::{CertificateAuthority, Role};
use kubemail_runtime::shutdown::Shutdown;
use kubemail_runtime::tls;

const CLUSTER: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailCluster
metadata: {name: edge, namespace: mail, uid: 0c0ffee0-0000-4000-8000-000000000001}
spec:
  database: {uriSecretRef: {name: edge-db, key: uri}, maxConnections: 12}
  hostname: mx.example.com
  nats:
    url: 'tls://nats.nats.svc:4222'
    replicas: 3
    credentials: {smtpIngress: nats-smtp, deliveryQueue: nats-queue, mailstore: nats-store, imapFrontend: nats-imap}
    caSecretRef: {name: nats-ca, key: ca.pem}
  limits: {maxMessageSize: 25Mi, maxRecipients: 50}
  proxyProtocolTrustedCidrs: [10.0.0.0/8]
  deliveryQueue:
    routes: [{domain: example.net, host: 'relay.example.net:2525'}]
  imapFrontend:
    pop3: {enabled: true}
";

const DOMAIN: &str = "
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {name: example-com, namespace: mail, uid: 0c0ffee0-0000-4000-8000-000000000002}
spec:
  clusterRef: {name: edge}
  domain: example.com
  dkim: {selector: s2026, algorithm: Ed25519}
";

/// Where the operator mounts everything; the test's stand-in root replaces it.
const MOUNT_ROOT: &str = "/etc/kubemail/";

#[tokio::test]
async fn every_service_reads_the_environment_and_files_the_operator_gives_its_pod() {
    let cluster: MailCluster = serde_yaml::from_str(CLUSTER).unwrap();
    let domain: MailDomain = serde_yaml::from_str(DOMAIN).unwrap();
    let secrets = secrets(&cluster, &domain);
    let mounts = [DomainMount {
        domain: domain.spec.domain.clone(),
        certificate_secret: certificate_secret_name(&domain),
        dkim_secret: dkim_secret_name(&domain),
    }];
    let objects = build_cluster(&cluster, &mounts, "test");
    let shutdown = Shutdown::new();
    let mut checked = Vec::new();
    for deployment in &objects.deployments {
        let root = tempfile::tempdir().unwrap();
        let pod = Pod::start(deployment, &objects.config, &secrets, root.path());
        match pod.command.as_str() {
            "smtp-ingress" => {
                let config: kubemail_smtp_ingress::config::Config = pod.parse();
                assert_eq!(config.service.hostname, "mx.example.com");
                assert_eq!(config.service.mailstore, "http://edge-mailstore.mail.svc:7070");
                assert_eq!(config.smtp_listen.port(), 2525);
                assert_eq!(config.submission_listen.port(), 2587);
                assert_eq!(config.submissions_listen.port(), 2465);
                assert_eq!(config.limits.max_message_size, 25 << 20);
                assert_eq!(config.limits.max_recipients, 50);
                assert_eq!(config.nats_replicas, 3);
                assert_eq!(config.proxy_trusted_cidrs.len(), 1);
                assert_serves_the_domain_certificate(config.tls_dir.as_deref(), &shutdown);
                assert_connects_as(&config.service, Role::SmtpIngress, "smtp-user", &shutdown);
            }
            "delivery-queue" => {
                let config: kubemail_delivery_queue::config::Config = pod.parse();
                assert_eq!(config.service.hostname, "mx.example.com");
                assert_eq!(config.nats_replicas, 3);
                let routes: Vec<String> = config.delivery.mx_overrides.iter().map(|o| format!("{o:?}")).collect();
                assert!(routes.len() == 1 && routes[0].contains("example.net"), "{routes:?}");
                let keys = kubemail_delivery_queue::outbound::dkim::Keys::new(config.delivery.dkim_dir.unwrap());
                let message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
                let header = keys.sign("example.com", message).unwrap().expect("a signature for example.com");
                assert!(header.contains("s=s2026") && header.contains("d=example.com"), "{header}");
                assert_connects_as(&config.service, Role::DeliveryQueue, "queue-user", &shutdown);
            }
            "mailstore" => {
                let config: kubemail_mailstore::config::Config = pod.parse();
                assert_eq!(config.database_url, "postgres://kubemail@db.mail.svc/kubemail");
                assert_eq!(config.database_max_connections, 12);
                assert_eq!(config.grpc_listen.port(), 7070);
                assert_eq!(config.admin_grpc_listen.port(), 7071);
                assert_eq!(config.http_listen.port(), 9090);
                assert_eq!(config.max_message_size, 25 << 20);
                let access = config.nats.access(Role::Mailstore).expect("the NATS user's files");
                assert_eq!(access.credentials.as_ref().map(|c| c.username.as_str()), Some("store-user"));
                assert!(access.ca_file.as_deref().is_some_and(Path::exists), "the NATS CA file is mounted");
                let identity = config.identity.load(Role::Mailstore, &shutdown).unwrap().expect("an identity");
                assert_eq!(identity.role(), Role::Mailstore);
            }
            "imap-frontend" => {
                let config: kubemail_imap_frontend::config::Config = pod.parse();
                assert_eq!(config.service.hostname, "mx.example.com");
                assert_eq!(config.imap_listen.port(), 2143);
                assert_eq!(config.imaps_listen.port(), 2993);
                assert_eq!(config.pop3_listen.map(|a| a.port()), Some(2110));
                assert_eq!(config.pop3s_listen.map(|a| a.port()), Some(2995));
                assert_eq!(config.max_message_size, 25 << 20);
                assert_serves_the_domain_certificate(config.tls_dir.as_deref(), &shutdown);
                assert_connects_as(&config.service, Role::ImapFrontend, "imap-user", &shutdown);
            }
            other => panic!("a Deployment runs {other}, which this test does not know"),
        }
        checked.push(pod.command);
    }
    checked.sort();
    assert_eq!(checked, ["delivery-queue", "imap-frontend", "mailstore", "smtp-ingress"]);
    shutdown.trigger();
}

/// The Secrets a pod of the cluster may name: what the operator makes for `cluster` and
/// `domain`, and what a user provides beside them.
fn secrets(cluster: &MailCluster, domain: &MailDomain) -> BTreeMap<String, Secret> {
    let pair = tls::self_signed(&tls_names(&domain.spec.domain)).unwrap();
    let dkim = DkimKey::generate(DkimAlgorithm::Ed25519).unwrap();
    let authority = CertificateAuthority::generate("kubemail contract test").unwrap();
    let renew_after = kubemail_operator::build::identity::renew_after(k8s_openapi::jiff::Timestamp::now());
    let mut made = vec![build_self_signed_secret(domain, &pair), build_dkim_secret(domain, &dkim.pem)];
    for role in [Role::SmtpIngress, Role::DeliveryQueue, Role::Mailstore, Role::ImapFrontend] {
        let identity = authority.issue(role, Duration::from_secs(3600)).unwrap();
        made.push(build_identity_secret(cluster, role, &identity, renew_after));
    }
    let given = [
        ("edge-db", vec![("uri", "postgres://kubemail@db.mail.svc/kubemail")]),
        ("nats-smtp", basic_auth("smtp-user")),
        ("nats-queue", basic_auth("queue-user")),
        ("nats-store", basic_auth("store-user")),
        ("nats-imap", basic_auth("imap-user")),
        ("nats-ca", vec![("ca.pem", authority.certificate_pem())]),
    ];
    for (name, data) in given {
        made.push(Secret {
            metadata: kube::api::ObjectMeta { name: Some(name.to_string()), ..Default::default() },
            data: Some(data.into_iter().map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec()))).collect()),
            ..Default::default()
        });
    }
    made.into_iter().map(|secret| (secret.name_any(), secret)).collect()
}

/// A `kubernetes.io/basic-auth` Secret's data for a NATS user.
fn basic_auth(user: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![(file::NATS_USERNAME, user), (file::NATS_PASSWORD, "s3cret")]
}

/// A container as the kubelet would start it: its command, its environment, its volumes
/// written under `root`.
struct Pod {
    command: String,
    env: BTreeMap<String, String>,
}

impl Pod {
    fn start(deployment: &Deployment, config: &ConfigMap, secrets: &BTreeMap<String, Secret>, root: &Path) -> Pod {
        let spec = deployment.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
        let container: &Container = &spec.containers[0];
        let remap = |value: &str| value.replace(MOUNT_ROOT, &format!("{}/", root.display()));
        // envFrom first; `env` wins over it, as in Kubernetes.
        let mut env = BTreeMap::new();
        for source in container.env_from.iter().flatten() {
            let name = &source.config_map_ref.as_ref().expect("envFrom names the ConfigMap").name;
            assert_eq!(Some(name), config.metadata.name.as_ref());
            env.extend(config.data.clone().unwrap_or_default());
        }
        for var in container.env.iter().flatten() {
            let value = match (&var.value, &var.value_from) {
                (Some(value), _) => value.clone(),
                (None, Some(from)) => {
                    let reference = from.secret_key_ref.as_ref().expect("only Secret references");
                    secret_value(secrets, &reference.name, &reference.key)
                }
                (None, None) => String::new(),
            };
            env.insert(var.name.clone(), remap(&value));
        }
        for mount in container.volume_mounts.iter().flatten() {
            assert!(mount.mount_path.starts_with(MOUNT_ROOT), "{} is under {MOUNT_ROOT}", mount.mount_path);
            let volume = spec.volumes.iter().flatten().find(|v| v.name == mount.name).expect("the mounted volume");
            write_volume(volume, secrets, &PathBuf::from(remap(&mount.mount_path)));
        }
        Pod { command: container.command.as_ref().unwrap()[0].clone(), env }
    }

    /// The service's configuration, parsed by its own flags from this environment alone.
    fn parse<C: Parser>(&self) -> C {
        let stale: Vec<OsString> = std::env::vars_os()
            .map(|(name, _)| name)
            .filter(|name| name.to_string_lossy().starts_with("KUBEMAIL_"))
            .collect();
        // SAFETY: only this test changes or reads the environment in this binary (the other
        // test touches no variable), and its runtime is current-thread.
        unsafe {
            for name in stale {
                std::env::remove_var(name);
            }
            for (name, value) in &self.env {
                std::env::set_var(name, value);
            }
        }
        C::try_parse_from([&self.command])
            .unwrap_or_else(|e| panic!("{} refuses its pod's environment: {e}", self.command))
    }
}

/// Writes what `volume` holds into `dir`, as the kubelet mounts it.
fn write_volume(volume: &Volume, secrets: &BTreeMap<String, Secret>, dir: &Path) {
    // Each Secret of the volume, with the keys it projects to which paths (all keys when none).
    let mut sources: Vec<(String, Option<Vec<KeyToPath>>)> = Vec::new();
    if let Some(secret) = &volume.secret {
        sources.push((secret.secret_name.clone().unwrap(), secret.items.clone()));
    }
    for source in volume.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
        let secret = source.secret.as_ref().expect("projected Secrets only");
        sources.push((secret.name.clone(), secret.items.clone()));
    }
    assert!(!sources.is_empty(), "volume {} mounts Secrets", volume.name);
    for (secret, items) in sources {
        let data = secrets.get(&secret).and_then(|s| s.data.clone()).unwrap_or_else(|| panic!("no Secret {secret}"));
        let items: Vec<(String, String)> = match items {
            Some(items) => items.into_iter().map(|item| (item.key, item.path)).collect(),
            None => data.keys().map(|key| (key.clone(), key.clone())).collect(),
        };
        for (key, path) in items {
            let value = data.get(&key).unwrap_or_else(|| panic!("Secret {secret} has no key {key}"));
            let path = dir.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, &value.0).unwrap();
        }
    }
}

fn secret_value(secrets: &BTreeMap<String, Secret>, name: &str, key: &str) -> String {
    let data = secrets.get(name).and_then(|s| s.data.as_ref()).unwrap_or_else(|| panic!("no Secret {name}"));
    String::from_utf8(data[key].0.clone()).unwrap()
}

/// The certificate directory holds the domain's certificate, and the service's TLS loads it.
fn assert_serves_the_domain_certificate(dir: Option<&Path>, shutdown: &Shutdown) {
    let dir = dir.expect("a certificate directory");
    let store = tls::CertificateStore::open(dir).expect("the certificates load");
    assert_eq!(store.domains(), ["example.com"]);
    tls::ServerTls::from_dir(dir, Duration::from_secs(30), shutdown).expect("the service's TLS starts");
}

/// The service reaches NATS as its own user over TLS, and the mailstore with its own identity.
fn assert_connects_as(flags: &kubemail_runtime::service::ServiceFlags, role: Role, user: &str, shutdown: &Shutdown) {
    let access = flags.nats_access(role).expect("the NATS user's files");
    assert_eq!(access.credentials.as_ref().map(|c| c.username.as_str()), Some(user));
    assert!(access.ca_file.as_deref().is_some_and(Path::exists), "the NATS CA file is mounted");
    let identity = flags.identity.load(role, shutdown).unwrap().expect("an identity");
    assert_eq!(identity.role(), role);
    flags.mailstore_channel(role, shutdown).expect("a channel to the mailstore");
}

/// The delivery queue signs with every kind of key the operator makes for a MailDomain.
#[test]
fn the_delivery_queue_signs_with_every_kind_of_dkim_key_the_operator_makes() {
    for algorithm in [DkimAlgorithm::Rsa2048, DkimAlgorithm::Ed25519] {
        let key = DkimKey::generate(algorithm).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let domain = dir.path().join("example.com");
        std::fs::create_dir(&domain).unwrap();
        std::fs::write(domain.join(file::DKIM_KEY), &key.pem).unwrap();
        std::fs::write(domain.join(file::DKIM_SELECTOR), "kubemail").unwrap();
        let message = b"From: a@example.com\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nhello\r\n";
        let header = kubemail_delivery_queue::outbound::dkim::Keys::new(dir.path()).sign("example.com", message);
        let header = header.unwrap().expect("a signature");
        assert!(header.contains("s=kubemail") && header.contains("d=example.com"), "{header}");
    }
}
