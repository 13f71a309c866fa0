//! kubemail on a real node, as a platform team runs it: the image built from the release
//! binaries running as pods (operator included), installed with helm the way `scripts/cluster
//! demo` and the README do it, and mail carried through its Kubernetes Services, through
//! scaling, rolling restarts and lost pods, to `helm uninstall`.
//!
//! The tests share one platform, and take turns on it: they restart, scale and delete its pods.

mod common;

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use common::node::{Attempt, Demo, IdleClients, NodeCluster, SmtpStream, imap_subjects, swaks};

const NAMESPACE: &str = "mail";
/// The demo's NATS users (`scripts/lib/demo.sh`), one per component, each with its Secret
/// `mail-nats-<user>`.
const NATS_USERS: [&str; 4] = ["smtp-ingress", "delivery-queue", "mailstore", "imap-frontend"];

/// The demo platform, installed once per run, and this test's turn on it.
struct Platform {
    cluster: NodeCluster,
    demo: Demo,
    _turn: MutexGuard<'static, ()>,
}

fn platform() -> Platform {
    static TURN: Mutex<()> = Mutex::new(());
    static DEMO: OnceLock<Demo> = OnceLock::new();
    let turn = TURN.lock().unwrap_or_else(PoisonError::into_inner);
    let cluster = NodeCluster::from_env();
    let demo = DEMO
        .get_or_init(|| {
            let demo = cluster.demo();
            eprintln!("scripts/cluster demo ready in {:.0?}", demo.took);
            demo
        })
        .clone();
    Platform { cluster, demo, _turn: turn }
}

impl Platform {
    fn address(&self, user: &str) -> String {
        format!("{user}@{}", self.demo.domain)
    }

    /// The Subjects in `user`'s INBOX, read over IMAP through the Service.
    fn subjects(&self, user: &str) -> Vec<String> {
        imap_subjects(&self.demo.imap, &self.address(user), &self.demo.password)
            .unwrap_or_else(|error| panic!("{error}"))
    }

    /// Waits up to `patience` until `user`'s INBOX holds every subject in `expected`; returns
    /// the INBOX's Subjects then.
    fn wait_for_subjects(&self, user: &str, expected: &[String], patience: Duration) -> Vec<String> {
        let deadline = Instant::now() + patience;
        loop {
            let subjects = self.subjects(user);
            let missing: Vec<&String> = expected.iter().filter(|subject| !subjects.contains(subject)).collect();
            if missing.is_empty() {
                return subjects;
            }
            assert!(Instant::now() < deadline, "not in {user}'s INBOX within {patience:?}: {missing:?}");
            std::thread::sleep(Duration::from_secs(1));
        }
    }

    /// Changes the platform's helm release (`--reuse-values` and `values`) and waits until the
    /// operator has rolled `deployment` to where `jsonpath` of it prints `expected`.
    fn upgrade(&self, values: &[&str], deployment: &str, jsonpath: &str, expected: &str) {
        let chart = common::cluster::chart();
        let args = [&["upgrade", "mail", chart.to_str().unwrap(), "-n", NAMESPACE, "--reuse-values"], values].concat();
        self.cluster.helm_ok(&args);
        self.cluster.wait_for_jsonpath(
            &format!("{deployment} after helm upgrade {values:?}"),
            &["-n", NAMESPACE, "deployment", deployment],
            jsonpath,
            expected,
            Duration::from_secs(120),
        );
        self.cluster.rolled_out(NAMESPACE, deployment);
    }

    /// A stream of mail from alice to bob (`Subject: TAG N`) running through `disruption`,
    /// with a few seconds of it before and after; how each message went.
    fn stream_through(&self, tag: &str, disruption: impl FnOnce()) -> Vec<Attempt> {
        let stream = SmtpStream::start(&self.demo.smtp, &self.address("alice"), &self.address("bob"), tag);
        std::thread::sleep(Duration::from_secs(3));
        disruption();
        std::thread::sleep(Duration::from_secs(3));
        let attempts = stream.stop();
        eprintln!("{tag}: {} messages sent, not accepted: {:#?}", attempts.len(), not_accepted(&attempts));
        attempts
    }

    /// Waits for every message `attempts` says was accepted, tagged `tag`, in `user`'s INBOX,
    /// and checks that each is there once and that no message of the stream came twice.
    fn assert_delivered_exactly_once(&self, user: &str, tag: &str, attempts: &[Attempt]) {
        let accepted: Vec<String> = attempts
            .iter()
            .filter_map(|attempt| match attempt {
                Attempt::Accepted(n) => Some(format!("{tag} {n}")),
                Attempt::NotAccepted { .. } => None,
            })
            .collect();
        // A message that met a lost pod is retried a minute after it was accepted.
        let subjects = self.wait_for_subjects(user, &accepted, Duration::from_secs(240));
        let mut copies: BTreeMap<&str, usize> = BTreeMap::new();
        for subject in subjects.iter().filter(|subject| subject.starts_with(&format!("{tag} "))) {
            *copies.entry(subject).or_default() += 1;
        }
        let twice: Vec<_> = copies.iter().filter(|(_, count)| **count > 1).collect();
        assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    }
}

/// Everything of the platform runs on the node and mail goes through its Services: swaks sends
/// to the SMTP Service's NodePort on 127.0.0.1 and to its ClusterIP (through kube-proxy), IMAP
/// over STARTTLS reads both from the IMAP Service's NodePort, and a client in IDLE on each
/// frontend replica hears of both.
#[test]
fn the_demo_platform_carries_mail_through_its_services() {
    let platform = platform();
    let (cluster, demo) = (&platform.cluster, &platform.demo);

    // Every tier runs twice, from the image, as the non-root user.
    let pods = cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "pods",
        "-o",
        "jsonpath={range .items[*]}{.metadata.labels.app\\.kubernetes\\.io/component} {.status.phase} {.spec.containers[0].image}{\"\\n\"}{end}",
    ]);
    for component in ["smtp-ingress", "delivery-queue", "mailstore", "imap-frontend"] {
        let running =
            pods.lines().filter(|line| line.starts_with(&format!("{component} Running kubemail.local/"))).count();
        assert_eq!(running, 2, "two {component} pods running from the local image:\n{pods}");
    }
    let operator =
        cluster.kubectl_ok(&["-n", "kubemail-system", "get", "pods", "-o", "jsonpath={.items[*].status.phase}"]);
    assert_eq!(operator, "Running", "the operator runs as a pod");

    // One client in IDLE on each frontend, reached at its pod's address.
    let frontends = cluster.ready_pods(NAMESPACE, "imap-frontend");
    assert_eq!(frontends.len(), 2, "{frontends:?}");
    let (alice, bob) = (platform.address("alice"), platform.address("bob"));
    let mut idlers: Vec<IdleClients> = frontends
        .iter()
        .map(|pod| IdleClients::start(&format!("{}:2143", pod.ip), &alice, &demo.password, 1))
        .collect();
    for idler in &mut idlers {
        // The demo read mail through one of them: the other may still be waiting for the
        // kubelet to mount its certificate before it offers STARTTLS.
        idler.wait_until("entered IDLE", Duration::from_secs(110), |client| client.idles == 1);
    }
    let before: Vec<u64> = idlers.iter().map(|idler| idler.clients[0].exists).collect();

    // The demo's mailboxes outlive a run on a cluster someone keeps: this run's messages are
    // told apart by a nonce.
    let nonce = std::process::id();
    let through_node_port = format!("through the NodePort {nonce}");
    let through_cluster_ip = format!("through the ClusterIP {nonce}");
    let first = Instant::now();
    let sent =
        swaks(&demo.smtp, &["--from", &bob, "--to", &alice, "--header", &format!("Subject: {through_node_port}")]);
    assert!(sent.status.success(), "swaks to the NodePort {}: {}", demo.smtp, common::cluster::printed(&sent));
    let cluster_ip = cluster.cluster_ip(NAMESPACE, "mail-smtp", "smtp");
    let sent =
        swaks(&cluster_ip, &["--from", &bob, "--to", &alice, "--header", &format!("Subject: {through_cluster_ip}")]);
    assert!(sent.status.success(), "swaks to the ClusterIP {cluster_ip}: {}", common::cluster::printed(&sent));

    let expected = [through_node_port, through_cluster_ip];
    let subjects = platform.wait_for_subjects("alice", &expected, Duration::from_secs(60));
    eprintln!("both messages in alice's INBOX {:.1?} after the first was sent", first.elapsed());
    let received: Vec<&String> = subjects
        .iter()
        .filter(|subject| subject.starts_with("through the ") && subject.ends_with(&format!(" {nonce}")))
        .collect();
    assert_eq!(received, [&expected[0], &expected[1]], "alice's INBOX over IMAP at {}", demo.imap);
    for ((idler, before), pod) in idlers.iter_mut().zip(before).zip(&frontends) {
        idler.wait_until(&format!("on {} heard of both messages", pod.name), Duration::from_secs(30), |client| {
            client.exists >= before + 2
        });
    }
}

/// Mail to an outside address leaves through the delivery queue, DKIM-signed with the key the
/// operator made for the domain, to the MTA the release routes the outside domain to; the
/// signature verifies against the DNS record the MailDomain's status publishes.
#[tokio::test(flavor = "multi_thread")]
async fn mail_to_an_outside_address_leaves_dkim_signed() {
    use kubemail_testkit::mta::{Mta, Options};
    let platform = platform();
    let (cluster, demo) = (&platform.cluster, &platform.demo);
    let mta = Mta::start(Options { listen: Some(cluster.node_ip()), ..Options::default() }).await;
    let route = format!("remote.test={}", mta.address);
    platform.upgrade(
        &["--set-json", &format!(r#"deliveryQueue.routes=[{{"domain":"remote.test","host":"{}"}}]"#, mta.address)],
        "mail-delivery-queue",
        "{.spec.template.spec.containers[0].env[?(@.name==\"KUBEMAIL_MX_OVERRIDES\")].value}",
        &route,
    );

    let bob = platform.address("bob");
    let subject = format!("to the world {}", std::process::id());
    let sent = swaks(
        &demo.submission,
        &[
            "--tls",
            "--auth",
            "PLAIN",
            "--auth-user",
            &bob,
            "--auth-password",
            &demo.password,
            "--from",
            &bob,
            "--to",
            "friend@remote.test",
            "--header",
            &format!("Subject: {subject}"),
        ],
    );
    assert!(sent.status.success(), "swaks to submission {}: {}", demo.submission, common::cluster::printed(&sent));
    let deadline = Instant::now() + Duration::from_secs(60);
    let received = loop {
        let received = mta.received();
        if let Some(message) = received.into_iter().find(|m| String::from_utf8_lossy(&m.data).contains(&subject)) {
            break message;
        }
        assert!(Instant::now() < deadline, "the MTA at {} received nothing within 60 s", mta.address);
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(
        (received.mail_from.as_str(), received.recipients.as_slice()),
        (bob.as_str(), &["friend@remote.test".to_string()][..])
    );
    let selector_record = cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "maildomain",
        "example-test",
        "-o",
        "jsonpath={range .status.dnsRecords[?(@.type==\"TXT\")]}{.name}={.value}{\"\\n\"}{end}",
    ]);
    let (name, record) = selector_record
        .lines()
        .find_map(|line| line.split_once('=').filter(|(name, _)| name.contains("._domainkey.")))
        .unwrap_or_else(|| panic!("the MailDomain publishes a DKIM record: {selector_record}"));
    let result = kubemail_testkit::dkim::verify(&received.data, &format!("{name}."), record).await;
    assert_eq!(result, mail_auth::DkimResult::Pass, "{}", String::from_utf8_lossy(&received.data));

    platform.upgrade(
        &["--set-json", "deliveryQueue.routes=[]"],
        "mail-delivery-queue",
        "{.spec.template.spec.containers[0].env[?(@.name==\"KUBEMAIL_MX_OVERRIDES\")].value}",
        "",
    );
}

/// The frontends scale from 2 to 4 by the release's values, and a rolling restart of all four
/// under 20 clients in IDLE ends every client's session with `* BYE` (or a closed
/// connection); each connects again through the Service, and with the restart over, each is
/// in IDLE with every message, hearing of the next.
#[test]
fn imap_scales_out_and_idle_clients_ride_a_rolling_restart() {
    let platform = platform();
    let (cluster, demo) = (&platform.cluster, &platform.demo);
    platform.upgrade(&["--set", "imap.replicas=4"], "mail-imap-frontend", "{.status.readyReplicas}", "4");
    assert_eq!(cluster.ready_pods(NAMESPACE, "imap-frontend").len(), 4);

    let alice = platform.address("alice");
    let mut idlers = IdleClients::start(&demo.imap, &alice, &demo.password, 20);
    idlers.wait_until("entered IDLE", Duration::from_secs(60), |client| client.idles == 1);
    let restarted_at = Instant::now();
    cluster.kubectl_ok(&["-n", NAMESPACE, "rollout", "restart", "deployment/mail-imap-frontend"]);
    cluster.rolled_out(NAMESPACE, "mail-imap-frontend");
    // Every client lost its session and is back in IDLE.
    idlers.wait_until("was told goodbye and reconnected", Duration::from_secs(120), |client| {
        let ended = client.byes + client.closes;
        ended >= 1 && client.idles == ended + 1
    });
    eprintln!("rolling restart of 4 frontends under 20 IDLE clients: {:.0?}", restarted_at.elapsed());
    let byes: usize = idlers.clients.iter().map(|client| client.byes).sum();
    let retries: Vec<&String> = idlers.clients.iter().flat_map(|client| &client.retries).collect();
    eprintln!(
        "{byes} BYE, {} closed, {} reconnections retried",
        idlers.clients.iter().map(|c| c.closes).sum::<usize>(),
        retries.len()
    );
    assert!(retries.is_empty(), "a reconnection through the Service failed: {retries:?}");

    let subject = format!("after the restart {}", std::process::id());
    let bob = platform.address("bob");
    let sent = swaks(&demo.smtp, &["--from", &bob, "--to", &alice, "--header", &format!("Subject: {subject}")]);
    assert!(sent.status.success(), "swaks: {}", common::cluster::printed(&sent));
    let count = platform.wait_for_subjects("alice", &[subject], Duration::from_secs(60)).len() as u64;
    idlers.wait_until("heard of every message", Duration::from_secs(30), |client| client.exists == count);

    platform.upgrade(&["--set", "imap.replicas=2"], "mail-imap-frontend", "{.spec.replicas}", "2");
}

/// Senders keep sending, a new connection per message, while every smtp-ingress pod is
/// replaced: no connection is refused and no message lost, since a terminating pod serves
/// until the proxies have forgotten it and then finishes its sessions.
#[test]
fn smtp_senders_ride_a_rolling_restart_of_smtp_ingress() {
    let platform = platform();
    let cluster = &platform.cluster;
    let tag = format!("rolling {}", std::process::id());
    let attempts = platform.stream_through(&tag, || {
        cluster.kubectl_ok(&["-n", NAMESPACE, "rollout", "restart", "deployment/mail-smtp-ingress"]);
        cluster.rolled_out(NAMESPACE, "mail-smtp-ingress");
    });
    assert!(attempts.len() >= 20, "the stream kept sending: {attempts:?}");
    let refused = not_accepted(&attempts);
    assert!(refused.is_empty(), "not accepted during the rolling restart: {refused:#?}");
    platform.assert_delivered_exactly_once("bob", &tag, &attempts);
}

/// One pod of each tier is deleted in turn while mail streams in: every message answered
/// `250` is delivered, once; what was not accepted was told so with a temporary SMTP reply,
/// for the sender to retry.
#[test]
fn deleting_a_pod_of_each_tier_loses_no_acknowledged_mail() {
    let platform = platform();
    let cluster = &platform.cluster;
    let tag = format!("deleted pods {}", std::process::id());
    let attempts = platform.stream_through(&tag, || {
        for component in ["smtp-ingress", "delivery-queue", "mailstore", "imap-frontend"] {
            let victim = cluster.ready_pods(NAMESPACE, component).remove(0);
            cluster.kubectl_ok(&["-n", NAMESPACE, "delete", "pod", &victim.name, "--wait=true", "--timeout=2m"]);
            cluster.rolled_out(NAMESPACE, &format!("mail-{component}"));
            std::thread::sleep(Duration::from_secs(3));
        }
    });
    assert!(attempts.len() >= 40, "the stream kept sending: {attempts:?}");
    for attempt in not_accepted(&attempts) {
        assert!(
            matches!(attempt, Attempt::NotAccepted { code: Some(400..500), .. }),
            "only a temporary reply, never a lost connection or a bounce: {attempt:?}"
        );
    }
    platform.assert_delivered_exactly_once("bob", &tag, &attempts);
}

fn not_accepted(attempts: &[Attempt]) -> Vec<&Attempt> {
    attempts.iter().filter(|attempt| matches!(attempt, Attempt::NotAccepted { .. })).collect()
}

/// A second release, in a namespace of its own, whose domain's certificate comes from an
/// issuer that never issues: the MailCluster becomes Ready without any certificate, and its
/// frontend offers no STARTTLS (so no login either). Once the certificate's Secret is written,
/// as cert-manager would, the same pod offers STARTTLS, without a restart. Then
/// `helm uninstall` removes everything the chart and the operator made, and the namespace
/// deletes.
#[test]
fn a_release_serves_tls_once_its_certificate_appears_and_uninstalls_cleanly() {
    let platform = platform();
    let cluster = &platform.cluster;
    // With cert-manager's CRDs the operator asks for a Certificate (it looks when it starts).
    let crds = std::path::Path::new(&std::env::var("KUBEMAIL_TEST_CERT_MANAGER_CRDS").expect("scripts/test sets it"))
        .join("cert-manager.io_certificates.yaml");
    cluster.kubectl_ok(&["apply", "--server-side", "-f", crds.to_str().unwrap()]);
    cluster.kubectl_ok(&["-n", "kubemail-system", "rollout", "restart", "deployment/kubemail-operator"]);
    cluster.rolled_out("kubemail-system", "kubemail-operator");

    let namespace = format!("late-tls-{}", std::process::id());
    let ns = namespace.as_str();
    cluster.kubectl_ok(&["create", "namespace", ns]);
    // The demo's database, through its Service in the demo's namespace.
    let database = cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "secret",
        "mail-db-app",
        "-o",
        "go-template={{index .data \"uri\" | base64decode}}",
    ]);
    cluster.kubectl_ok(&[
        "-n",
        ns,
        "create",
        "secret",
        "generic",
        "late-db",
        &format!("--from-literal=uri={database}"),
    ]);
    let password = &platform.demo.password;
    let literal = format!("--from-literal=password={password}");
    cluster.kubectl_ok(&["-n", ns, "create", "secret", "generic", "carol-password", &literal]);
    // The demo's NATS users and the NATS server's CA, as the demo's namespace has them.
    let copied = |name: &str, key: &str| {
        let template = format!("go-template={{{{index .data \"{key}\" | base64decode}}}}");
        cluster.kubectl_ok(&["-n", NAMESPACE, "get", "secret", name, "-o", &template])
    };
    for user in NATS_USERS {
        let name = format!("mail-nats-{user}");
        let username = format!("--from-literal=username={}", copied(&name, "username"));
        let password = format!("--from-literal=password={}", copied(&name, "password"));
        let kind = "--type=kubernetes.io/basic-auth";
        cluster.kubectl_ok(&["-n", ns, "create", "secret", "generic", &name, kind, &username, &password]);
    }
    let ca = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(ca.path(), copied("nats-ca", "ca.crt")).unwrap();
    let ca_file = format!("--from-file=ca.crt={}", ca.path().display());
    cluster.kubectl_ok(&["-n", ns, "create", "secret", "generic", "nats-ca", &ca_file]);
    let image = cluster.kubectl_ok(&[
        "-n",
        NAMESPACE,
        "get",
        "deployment",
        "mail-imap-frontend",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].image}",
    ]);
    let (repository, tag) = image.rsplit_once(':').expect("REPOSITORY:TAG");
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        values.path(),
        format!(
            "operator: {{enabled: false}}
image: {{repository: {repository}, tag: {tag}, pullPolicy: Never}}
cluster:
  enabled: true
  name: late
  hostname: mail.late.test
  database: {{uriSecret: {{name: late-db, key: uri}}}}
  nats:
    url: tls://nats.nats.svc:4222
    credentials: {{smtpIngress: mail-nats-smtp-ingress, deliveryQueue: mail-nats-delivery-queue,
      mailstore: mail-nats-mailstore, imapFrontend: mail-nats-imap-frontend}}
    caSecretRef: {{name: nats-ca, key: ca.crt}}
smtp: {{replicas: 1}}
imap: {{replicas: 1}}
deliveryQueue: {{replicas: 1}}
mailstore: {{replicas: 1}}
domains:
- {{name: late-test, domain: late.test, issuerRef: {{name: never-issues, kind: Issuer}}}}
mailboxes:
- {{name: carol, address: carol@late.test, passwordSecret: {{name: carol-password, key: password}}}}
"
        ),
    )
    .unwrap();
    let chart = common::cluster::chart();
    cluster.helm_ok(&["install", "late", chart.to_str().unwrap(), "-n", ns, "-f", values.path().to_str().unwrap()]);
    cluster.kubectl_ok(&["-n", ns, "wait", "--for=condition=Ready", "--timeout=5m", "mailcluster/late"]);
    cluster.kubectl_ok(&["-n", ns, "wait", "--for=create", "--timeout=2m", "certificate.cert-manager.io/late-test"]);
    let secret = cluster.kubectl_ok(&[
        "-n",
        ns,
        "get",
        "certificate.cert-manager.io/late-test",
        "-o",
        "jsonpath={.spec.secretName}",
    ]);
    let imap = cluster.node_port(ns, "late-imap", "imap");
    let frontend = cluster.ready_pods(ns, "imap-frontend");
    assert_eq!(frontend.len(), 1, "{frontend:?}");
    // The Service answers once kube-proxy has the new pod's endpoint; the frontend then has
    // no STARTTLS to offer.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match imap_subjects(&imap, "carol@late.test", password) {
            Ok(subjects) => panic!("carol's INBOX read without a certificate: {subjects:?}"),
            Err(error) if error.contains("TLS not supported") => break,
            Err(error) => assert!(Instant::now() < deadline, "the IMAP Service did not answer within 60 s: {error}"),
        }
        std::thread::sleep(Duration::from_millis(500));
    }

    let certified = rcgen::generate_simple_self_signed(vec!["mail.late.test".to_string()]).unwrap();
    let files = tempfile::tempdir().unwrap();
    let (certificate, key) = (files.path().join("tls.crt"), files.path().join("tls.key"));
    std::fs::write(&certificate, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let written = Instant::now();
    cluster.kubectl_ok(&[
        "-n",
        ns,
        "create",
        "secret",
        "tls",
        &secret,
        &format!("--cert={}", certificate.display()),
        &format!("--key={}", key.display()),
    ]);
    let deadline = written + Duration::from_secs(180);
    while let Err(error) = imap_subjects(&imap, "carol@late.test", password) {
        assert!(Instant::now() < deadline, "no STARTTLS within 180 s of the certificate: {error}");
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!("STARTTLS offered {:.0?} after the certificate's Secret was written", written.elapsed());
    assert_eq!(cluster.ready_pods(ns, "imap-frontend"), frontend, "the same pod, never restarted");

    cluster.helm_ok(&["uninstall", "late", "-n", ns, "--wait", "--timeout", "3m"]);
    // What the test made stays until the namespace goes; nothing else may.
    let mut ours = vec![
        "configmap/kube-root-ca.crt".to_string(),
        "secret/carol-password".to_string(),
        "secret/late-db".to_string(),
        format!("secret/{secret}"),
        "secret/nats-ca".to_string(),
    ];
    ours.extend(NATS_USERS.map(|user| format!("secret/mail-nats-{user}")));
    ours.sort();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let left = cluster.kubectl_ok(&[
            "-n",
            ns,
            "get",
            "mailclusters,maildomains,mailboxes,certificates.cert-manager.io,deployments,replicasets,pods,services,\
             endpointslices,configmaps,secrets,serviceaccounts,roles,rolebindings,poddisruptionbudgets,\
             horizontalpodautoscalers,networkpolicies",
            "-o",
            "name",
        ]);
        // `deployment.apps/late-smtp-ingress` → `deployment/late-smtp-ingress`
        let mut left: Vec<String> = left
            .lines()
            .filter_map(|line| line.split_once('/'))
            .map(|(kind, name)| format!("{}/{name}", kind.split('.').next().unwrap()))
            .filter(|name| name != "serviceaccount/default")
            .collect();
        left.sort();
        if left == ours {
            break;
        }
        assert!(Instant::now() < deadline, "left 180 s after helm uninstall: {left:?}");
        std::thread::sleep(Duration::from_secs(1));
    }
    cluster.kubectl_ok(&["delete", "namespace", ns, "--timeout=3m"]);
    let gone = cluster.kubectl(&["get", "namespace", ns]);
    assert!(String::from_utf8_lossy(&gone.stderr).contains("NotFound"), "{}", common::cluster::printed(&gone));
}

/// The image `scripts/cluster image` assembles without Docker is the one the Dockerfile
/// describes: the same user, command, exposed ports and binaries in the same place, and the
/// base's CA certificates and nonroot user.
#[test]
fn the_local_image_is_the_one_the_dockerfile_describes() {
    let cluster = NodeCluster::from_env();
    let dockerfile = std::fs::read_to_string(common::cluster::repository().join("Dockerfile")).unwrap();
    let expected = common::node::DockerfileImage::parse(&dockerfile);
    let image = common::node::ImageFile::open(&cluster.dir.join("node/images/kubemail.tar"));

    assert_eq!(image.config["User"].as_str(), Some(expected.user.as_str()), "USER");
    assert_eq!(image.config["Cmd"], serde_json::json!(expected.cmd), "CMD");
    let mut ports: Vec<String> =
        image.config["ExposedPorts"].as_object().map(|ports| ports.keys().cloned().collect()).unwrap_or_default();
    ports.sort();
    assert_eq!(ports, expected.exposed_ports, "EXPOSE");
    for binary in &expected.binaries {
        let path = format!("{}{binary}", expected.binary_dir);
        assert!(image.files.contains(&path), "{path} is in the image; it has {:?}", image.files);
    }
    // What the distroless base gives the Dockerfile's image.
    for path in ["etc/ssl/certs/ca-certificates.crt", "etc/passwd", "tmp/"] {
        assert!(image.files.iter().any(|file| file == path), "{path} is in the image");
    }
    assert!(image.read("etc/passwd").contains("nonroot:x:65532:65532:"), "the nonroot user of uid 65532");
}
