//! Black-box: the `mailstore` binary with service identities (`--service-ca-dir`), called over
//! real sockets by clients holding each role's certificate, by a client with none and by one
//! whose certificate comes from another CA. What a pod inside the cluster that is not one of
//! kubemail's parts can do: nothing.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kubemail_proto::admin::admin_client::AdminClient;
use kubemail_proto::admin::{
    DeleteAccountRequest, GetAccountRequest, ListDomainsRequest, UpsertAccountRequest, UpsertDomainRequest,
};
use kubemail_proto::mailstore::mail_store_client::MailStoreClient;
use kubemail_proto::mailstore::{AuthenticateRequest, FetchBodyRequest};
use kubemail_runtime::identity::{self, CertificateAuthority, Role, ServiceIdentity};
use kubemail_testkit::free_loopback_address;
use tonic::Code;
use tonic::transport::Channel;

/// A mailstore process that requires identities from the CA in its `--service-ca-dir`.
struct Mailstore {
    process: Child,
    grpc: String,
    admin_grpc: String,
    http: String,
    service_ca: tempfile::TempDir,
    _data: tempfile::TempDir,
}

impl Drop for Mailstore {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
    }
}

impl Mailstore {
    /// A ready mailstore. A free port can be taken by another test between being found free and
    /// bound: a process that exits before it is ready is started again on other ports, three
    /// times at most.
    async fn start() -> Mailstore {
        for _ in 0..3 {
            if let Some(mailstore) = Mailstore::try_start().await {
                return mailstore;
            }
        }
        panic!("the mailstore did not start on three sets of free ports");
    }

    /// A ready mailstore, or `None` when its process exited before it was ready.
    async fn try_start() -> Option<Mailstore> {
        let data = tempfile::tempdir().unwrap();
        let service_ca = tempfile::tempdir().unwrap();
        let (grpc, admin_grpc, http) = (free_loopback_address(), free_loopback_address(), free_loopback_address());
        let database = format!("sqlite://{}?mode=rwc", data.path().join("mail.db").display());
        let process = Command::new(env!("CARGO_BIN_EXE_mailstore"))
            .args(["--database-url", &database, "--nats-url", &kubemail_testkit::nats_url()])
            .args(["--grpc-listen", &grpc, "--admin-grpc-listen", &admin_grpc, "--http-listen", &http])
            .arg("--service-ca-dir")
            .arg(service_ca.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("mailstore starts");
        let mut mailstore = Mailstore { process, grpc, admin_grpc, http, service_ca, _data: data };
        let deadline = Instant::now() + Duration::from_secs(60);
        while mailstore.metrics().await.is_none() {
            if mailstore.process.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "mailstore not ready after 60 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Some(mailstore)
    }

    /// The identity of `role` from the mailstore's own CA.
    fn identity(&self, role: Role) -> Arc<ServiceIdentity> {
        identity_from(self.service_ca.path(), role)
    }

    /// The Admin API as `role`.
    fn admin(&self, role: Role) -> AdminClient<Channel> {
        AdminClient::new(channel(&self.admin_grpc, Some(&self.identity(role))))
    }

    /// The MailStore API as `role`.
    fn mailstore(&self, role: Role) -> MailStoreClient<Channel> {
        MailStoreClient::new(channel(&self.grpc, Some(&self.identity(role))))
    }

    /// `/metrics`, once the mailstore is ready.
    async fn metrics(&self) -> Option<String> {
        let ready = common::http_get(&self.http, "/readyz").await?;
        if !ready.starts_with("HTTP/1.1 200") {
            return None;
        }
        common::http_get(&self.http, "/metrics").await
    }
}

fn channel(address: &str, identity: Option<&Arc<ServiceIdentity>>) -> Channel {
    identity::channel(&format!("http://{address}"), identity, Role::Mailstore).unwrap()
}

fn identity_from(ca_dir: &Path, role: Role) -> Arc<ServiceIdentity> {
    let authority = CertificateAuthority::open_or_create(ca_dir).unwrap();
    ServiceIdentity::from_authority(role, authority, Duration::from_secs(3600)).unwrap()
}

/// The value of the metric line that starts with `series` (name and labels), if there is one.
fn metric(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_component_may_call_only_what_its_role_needs() {
    let mailstore = Mailstore::start().await;
    let mut admin = mailstore.admin(Role::Admin);
    admin.upsert_domain(UpsertDomainRequest { name: "example.org".into(), ..Default::default() }).await.unwrap();
    let account =
        UpsertAccountRequest { address: "alice@example.org".into(), password: "secret".into(), ..Default::default() };
    admin.upsert_account(account).await.expect("the admin CLI's identity manages accounts");

    // An IMAP frontend, taken over, tries to delete an account through the Admin port.
    let mut taken_over = mailstore.admin(Role::ImapFrontend);
    let refused = taken_over
        .delete_account(DeleteAccountRequest { address: "alice@example.org".into(), ..Default::default() })
        .await
        .expect_err("the frontend may not delete accounts");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    assert!(
        refused.message().contains("imap-frontend may not call kubemail.admin.v1.Admin/DeleteAccount"),
        "the refusal names the identity and the method: {}",
        refused.message()
    );
    let alice = admin.get_account(GetAccountRequest { address: "alice@example.org".into() }).await;
    assert!(alice.is_ok(), "the account is still there");

    // What the frontend's work needs, it may do.
    let mut frontend = mailstore.mailstore(Role::ImapFrontend);
    let login = AuthenticateRequest { username: "alice@example.org".into(), password: "secret".into() };
    let account_id = frontend.authenticate(login).await.expect("the frontend logs users in").into_inner().account_id;
    let delivered = common::deliver(&mut frontend, "q-1", "alice@example.org", b"Subject: x\r\n\r\nhi\r\n").await;
    assert_eq!(delivered.expect_err("only the queue delivers").code(), Code::PermissionDenied);

    let mut queue = mailstore.mailstore(Role::DeliveryQueue);
    common::deliver(&mut queue, "q-1", "alice@example.org", b"Subject: x\r\n\r\nhi\r\n")
        .await
        .expect("the delivery queue delivers");
    let mut ingress = mailstore.mailstore(Role::SmtpIngress);
    let read = ingress.fetch_body(FetchBodyRequest { account_id, ..Default::default() }).await;
    assert_eq!(read.expect_err("SMTP reads no mail").code(), Code::PermissionDenied);
    let mut operator = mailstore.mailstore(Role::Operator);
    let read = operator.fetch_body(FetchBodyRequest { account_id, ..Default::default() }).await;
    assert_eq!(read.expect_err("the operator reads no mail").code(), Code::PermissionDenied);

    let metrics = mailstore.metrics().await.unwrap();
    let series =
        r#"kubemail_grpc_refused_total{identity="imap-frontend",method="kubemail.admin.v1.Admin/DeleteAccount"}"#;
    assert_eq!(metric(&metrics, series), Some(1.0), "{metrics}");
    let series =
        r#"kubemail_grpc_refused_total{identity="smtp-ingress",method="kubemail.mailstore.v1.MailStore/FetchBody"}"#;
    assert_eq!(metric(&metrics, series), Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_certificate_of_the_clusters_ca_is_refused() {
    let mailstore = Mailstore::start().await;
    let list = ListDomainsRequest::default();
    // Whether the client sees the refusal as a TLS alert, a broken HTTP/2 frame or a closed
    // connection depends on timing; the mailstore counts each refusal, just after sending it.
    let mailstore = &mailstore;
    let refusals = |expected: f64| async move {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let metrics = mailstore.metrics().await.unwrap();
            let counted = metric(&metrics, r#"kubemail_grpc_connections_refused_total{reason="handshake"}"#);
            if counted == Some(expected) || Instant::now() > deadline {
                return counted;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };

    let mut plain = AdminClient::new(channel(&mailstore.admin_grpc, None));
    plain.list_domains(list).await.expect_err("plain text is refused");
    assert_eq!(refusals(1.0).await, Some(1.0), "the mailstore refused the plain-text connection");

    // A certificate for the admin role from another CA, by a client that trusts the mailstore
    // (so the refusal is the mailstore's).
    let cluster_ca = CertificateAuthority::open_or_create(mailstore.service_ca.path()).unwrap();
    let mut forged =
        CertificateAuthority::generate("another CA").unwrap().issue(Role::Admin, Duration::from_secs(3600)).unwrap();
    forged.ca = cluster_ca.certificate_pem().to_string();
    let forged_dir = tempfile::tempdir().unwrap();
    forged.write(forged_dir.path()).unwrap();
    let forged = ServiceIdentity::from_dir(Role::Admin, forged_dir.path()).unwrap();
    let mut forged = AdminClient::new(channel(&mailstore.admin_grpc, Some(&forged)));
    forged.list_domains(list).await.expect_err("another CA's admin is refused");
    assert_eq!(refusals(2.0).await, Some(2.0), "the mailstore refused the certificate of another CA");

    // A client of the right CA is served all along.
    let mut admin = mailstore.admin(Role::Admin);
    admin.list_domains(list).await.expect("the cluster's admin is served");
}
