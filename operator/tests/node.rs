//! kubemail on a real node, as a platform team runs it: the image built from the release
//! binaries running as pods (operator included), installed with helm the way `scripts/cluster
//! demo` and the README do it, and mail carried through its Kubernetes Services.

mod common;

use std::time::{Duration, Instant};

use common::node::{NodeCluster, imap_subjects, swaks};

/// Everything of the platform runs on the node and mail goes through its Services: swaks sends
/// to the SMTP Service's NodePort on 127.0.0.1 and to its ClusterIP (through kube-proxy), and
/// IMAP over STARTTLS reads both from the IMAP Service's NodePort.
#[test]
fn the_demo_platform_carries_mail_through_its_services() {
    let cluster = NodeCluster::from_env();
    let demo = cluster.demo();
    eprintln!("scripts/cluster demo ready in {:.0?}", demo.took);

    // Every tier runs twice, from the image, as the non-root user.
    let pods = cluster.kubectl_ok(&[
        "-n",
        "mail",
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

    let alice = format!("alice@{}", demo.domain);
    let bob = format!("bob@{}", demo.domain);
    // The demo's mailboxes outlive a run on a cluster someone keeps: this run's messages are
    // told apart by a nonce.
    let nonce = std::process::id();
    let through_node_port = format!("through the NodePort {nonce}");
    let through_cluster_ip = format!("through the ClusterIP {nonce}");
    let first = Instant::now();
    let sent =
        swaks(&demo.smtp, &["--from", &bob, "--to", &alice, "--header", &format!("Subject: {through_node_port}")]);
    assert!(sent.status.success(), "swaks to the NodePort {}: {}", demo.smtp, common::cluster::printed(&sent));
    let cluster_ip = cluster.cluster_ip("mail", "mail-smtp", "smtp");
    let sent =
        swaks(&cluster_ip, &["--from", &bob, "--to", &alice, "--header", &format!("Subject: {through_cluster_ip}")]);
    assert!(sent.status.success(), "swaks to the ClusterIP {cluster_ip}: {}", common::cluster::printed(&sent));

    // The frontends start before the kubelet has mounted their certificate and offer STARTTLS
    // once it is there (the kubelet syncs a Secret's volume within about a minute).
    let deadline = Instant::now() + Duration::from_secs(180);
    let received = loop {
        let read = imap_subjects(&demo.imap, &alice, &demo.password);
        let received: Vec<String> = read
            .clone()
            .unwrap_or_default()
            .into_iter()
            .filter(|subject| subject.ends_with(&format!(" {nonce}")))
            .collect();
        if received.len() >= 2 {
            break received;
        }
        assert!(Instant::now() < deadline, "both messages not read within 180 s; last read: {read:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    eprintln!("both messages in alice's INBOX {:.1?} after the first was sent", first.elapsed());
    assert_eq!(received, [through_node_port, through_cluster_ip], "alice's INBOX over IMAP at {}", demo.imap);
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
