//! Service identity inside a deployment: every gRPC connection between kubemail's parts is
//! mutual TLS, and each part proves which one it is with a certificate of its own.
//!
//! A component's identity is a DNS name in its certificate, `<role>.identity.kubemail.internal`
//! (`imap-frontend.identity.kubemail.internal`), signed by the deployment's own CA (one per
//! MailCluster), so a certificate from any other CA, or none, is refused at the handshake. The
//! mailstore then authorizes each call by the caller's [`Role`]. Clients check the server the
//! same way: whatever address they dial, the peer must hold the mailstore's identity.
//!
//! - [`authority`] — a CA that issues identities: the one `--service-ca-dir` keeps on one
//!   machine, and the one the operator keeps in a Secret when cert-manager is not installed.
//! - [`material`] — a component's certificate, key and CA, from files (a mounted Secret, reloaded
//!   when they change) or from a local CA; the rustls settings of both ends made from them.
//! - [`server`] — the accepting side: TLS handshakes off the accept loop, the caller's role as
//!   the connection's info for tonic.
//! - [`client`] — the dialing side: a tonic channel whose connections are mutual TLS.
//! - [`flags`] — the flags every service shares to say where its identity comes from.

pub mod authority;
pub mod client;
pub mod flags;
pub mod material;
pub mod server;

use std::fmt;

pub use authority::CertificateAuthority;
pub use authority::IssuedIdentity;
pub use client::{channel, channel_to, connect, endpoint};
pub use flags::IdentityFlags;
pub use material::ServiceIdentity;
pub use server::{Caller, incoming};

/// The domain under which each role's identity is named. `.internal` is reserved for private
/// use, so no public CA issues names under it.
pub const IDENTITY_DOMAIN: &str = "identity.kubemail.internal";

/// The CA certificate's file name in an identity directory: what cert-manager writes into the
/// Secret of a Certificate, next to `tls.crt` and `tls.key`.
pub use crate::deployment::file::IDENTITY_CA as CA_FILE;

/// Who is at the other end of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    SmtpIngress,
    DeliveryQueue,
    ImapFrontend,
    Mailstore,
    Operator,
    /// The `kubemail admin` command line.
    Admin,
}

impl Role {
    pub const ALL: [Role; 6] =
        [Role::SmtpIngress, Role::DeliveryQueue, Role::ImapFrontend, Role::Mailstore, Role::Operator, Role::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Role::SmtpIngress => "smtp-ingress",
            Role::DeliveryQueue => "delivery-queue",
            Role::ImapFrontend => "imap-frontend",
            Role::Mailstore => "mailstore",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// The DNS name a certificate carries to prove this role.
    pub fn dns_name(self) -> String {
        format!("{}.{IDENTITY_DOMAIN}", self.name())
    }

    /// The role a certificate's DNS name proves, if it is one.
    pub fn from_dns_name(name: &str) -> Option<Role> {
        let role = name.strip_suffix(IDENTITY_DOMAIN)?.strip_suffix('.')?;
        Role::ALL.into_iter().find(|candidate| candidate.name() == role)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The role a certificate proves: the one role its DNS names name. A certificate naming two
/// roles proves neither.
pub fn role_of_certificate(der: &[u8]) -> Option<Role> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let names = certificate.subject_alternative_name().ok()??;
    let mut roles = names.value.general_names.iter().filter_map(|name| match name {
        x509_parser::extensions::GeneralName::DNSName(dns_name) => Role::from_dns_name(dns_name),
        _ => None,
    });
    let role = roles.next()?;
    roles.next().is_none().then_some(role)
}

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {message}")]
    File { path: std::path::PathBuf, message: String },
    #[error("service identity: {0}")]
    Invalid(String),
    #[error("cannot connect to {0}")]
    Unreachable(String),
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    #[error("certificate: {0}")]
    Certificate(#[from] rcgen::Error),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_is_named_by_exactly_its_dns_name() {
        for role in Role::ALL {
            assert_eq!(Role::from_dns_name(&role.dns_name()), Some(role));
        }
        for other in [
            "imap-frontend",
            "identity.kubemail.internal",
            "imap-frontend.identity.kubemail.internal.evil.example",
            "x.imap-frontend.identity.kubemail.internal",
            "imap-frontendidentity.kubemail.internal",
            "mail.example.org",
        ] {
            assert_eq!(Role::from_dns_name(other), None, "{other}");
        }
    }
}
