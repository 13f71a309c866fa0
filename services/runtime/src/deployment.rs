//! The deployment contract: what the operator writes into a pod and the services read back.
//!
//! A service is configured by flags, each with an environment variable, and by files in mounted
//! Secrets. The operator sets those variables and mounts those Secrets; both sides name them
//! through this module, so a renamed flag or file cannot leave the operator writing what no
//! service reads. `operator/tests/contract.rs` parses every service's configuration from the
//! environment and files the operator builds, which proves the two sides still agree.

/// The environment variables the operator sets, one per flag of the services (`--<flag>` reads
/// `KUBEMAIL_<FLAG>`). Each service reads the ones it has flags for.
pub mod env {
    /// `--hostname`: the name the mail services greet with.
    pub const HOSTNAME: &str = "KUBEMAIL_HOSTNAME";
    /// `--http-listen`: `/healthz`, `/readyz` and `/metrics`.
    pub const HTTP_LISTEN: &str = "KUBEMAIL_HTTP_LISTEN";
    /// `--mailstore`: the mailstore's gRPC URL.
    pub const MAILSTORE: &str = "KUBEMAIL_MAILSTORE";
    /// `--service-tls-dir`: the component's service identity ([`super::mount::IDENTITY_DIR`]).
    pub const SERVICE_TLS_DIR: &str = "KUBEMAIL_SERVICE_TLS_DIR";
    /// `--nats-url`.
    pub const NATS_URL: &str = "KUBEMAIL_NATS_URL";
    /// `--nats-replicas`: copies JetStream keeps of the queue and the spool.
    pub const NATS_REPLICAS: &str = "KUBEMAIL_NATS_REPLICAS";
    /// `--nats-credentials-dir`: the component's NATS user
    /// ([`super::mount::NATS_CREDENTIALS_DIR`]).
    pub const NATS_CREDENTIALS_DIR: &str = "KUBEMAIL_NATS_CREDENTIALS_DIR";
    /// `--nats-ca-file`: the CA of the NATS server's certificate.
    pub const NATS_CA_FILE: &str = "KUBEMAIL_NATS_CA_FILE";
    /// `--tls-dir`: the domains' certificates ([`super::mount::TLS_DIR`]).
    pub const TLS_DIR: &str = "KUBEMAIL_TLS_DIR";
    /// `--dkim-dir`: the domains' DKIM keys ([`super::mount::DKIM_DIR`]).
    pub const DKIM_DIR: &str = "KUBEMAIL_DKIM_DIR";
    /// `--mx-override`: `DOMAIN=HOST:PORT`, comma-separated.
    pub const MX_OVERRIDES: &str = "KUBEMAIL_MX_OVERRIDES";
    /// `--max-message-size`, in bytes.
    pub const MAX_MESSAGE_SIZE: &str = "KUBEMAIL_MAX_MESSAGE_SIZE";
    /// `--max-recipients`: recipients per message.
    pub const MAX_RECIPIENTS: &str = "KUBEMAIL_MAX_RECIPIENTS";
    /// `--proxy-trusted-cidrs`: load balancers allowed to send a PROXY header, comma-separated.
    pub const PROXY_TRUSTED_CIDRS: &str = "KUBEMAIL_PROXY_TRUSTED_CIDRS";
    /// `--database-url` (the mailstore's).
    pub const DATABASE_URL: &str = "KUBEMAIL_DATABASE_URL";
    /// `--database-max-connections` (the mailstore's).
    pub const DATABASE_MAX_CONNECTIONS: &str = "KUBEMAIL_DATABASE_MAX_CONNECTIONS";
    /// The listeners, each `ADDRESS:PORT`.
    pub const SMTP_LISTEN: &str = "KUBEMAIL_SMTP_LISTEN";
    pub const SUBMISSION_LISTEN: &str = "KUBEMAIL_SUBMISSION_LISTEN";
    pub const SUBMISSIONS_LISTEN: &str = "KUBEMAIL_SUBMISSIONS_LISTEN";
    pub const IMAP_LISTEN: &str = "KUBEMAIL_IMAP_LISTEN";
    pub const IMAPS_LISTEN: &str = "KUBEMAIL_IMAPS_LISTEN";
    pub const POP3_LISTEN: &str = "KUBEMAIL_POP3_LISTEN";
    pub const POP3S_LISTEN: &str = "KUBEMAIL_POP3S_LISTEN";
    pub const GRPC_LISTEN: &str = "KUBEMAIL_GRPC_LISTEN";
    pub const ADMIN_GRPC_LISTEN: &str = "KUBEMAIL_ADMIN_GRPC_LISTEN";
}

/// Where the operator mounts Secrets in a component's container.
pub mod mount {
    /// The domains' certificates: a subdirectory per domain with [`super::file::CERTIFICATE`]
    /// and [`super::file::KEY`].
    pub const TLS_DIR: &str = "/etc/kubemail/tls";
    /// The domains' DKIM keys: a subdirectory per domain with [`super::file::DKIM_KEY`] and
    /// [`super::file::DKIM_SELECTOR`].
    pub const DKIM_DIR: &str = "/etc/kubemail/dkim";
    /// The component's service identity: [`super::file::CERTIFICATE`], [`super::file::KEY`] and
    /// [`super::file::IDENTITY_CA`].
    pub const IDENTITY_DIR: &str = "/etc/kubemail/identity";
    /// The component's NATS user: [`super::file::NATS_USERNAME`] and
    /// [`super::file::NATS_PASSWORD`].
    pub const NATS_CREDENTIALS_DIR: &str = "/etc/kubemail/nats-credentials";
    /// The NATS server's CA, as [`super::file::NATS_CA`].
    pub const NATS_CA_DIR: &str = "/etc/kubemail/nats-ca";
}

/// The files in the mounted Secrets: each is also the key in its Secret's data.
pub mod file {
    /// A certificate chain (PEM), in a TLS Secret and in a service identity.
    pub const CERTIFICATE: &str = "tls.crt";
    /// Its private key (PEM).
    pub const KEY: &str = "tls.key";
    /// The CA that signs service identities, in each identity.
    pub const IDENTITY_CA: &str = "ca.crt";
    /// A domain's DKIM private key (PEM).
    pub const DKIM_KEY: &str = "dkim.key";
    /// A domain's DKIM selector (one line).
    pub const DKIM_SELECTOR: &str = "selector";
    /// A NATS user's name and password: the keys of a `kubernetes.io/basic-auth` Secret.
    pub const NATS_USERNAME: &str = "username";
    pub const NATS_PASSWORD: &str = "password";
    /// The NATS server's CA, in [`super::mount::NATS_CA_DIR`].
    pub const NATS_CA: &str = "ca.crt";
}
