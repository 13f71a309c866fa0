//! A certificate authority that issues service identities.
//!
//! In a cluster with cert-manager, cert-manager is the CA and this code only reads what it
//! issued. Without it, the operator keeps one of these per MailCluster in a Secret; on one
//! machine, `--service-ca-dir` keeps one in a directory that every process of the platform
//! shares, and each process issues itself its identity at start and again before it expires.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use time::OffsetDateTime;

use super::{CA_FILE, IdentityError, Role};
use crate::tls::{CERTIFICATE_FILE, KEY_FILE};

/// The file in a `--service-ca-dir` that holds the CA's certificate and key, both PEM.
pub const CA_BUNDLE_FILE: &str = "service-ca.pem";

/// How long a CA made here is valid. Identities are short-lived; the CA that signs them is
/// replaced only by hand (a new Secret, or a new directory).
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How far back a certificate's validity starts, for clocks that are a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

/// A CA's certificate and the key it signs with.
pub struct CertificateAuthority {
    certificate_pem: String,
    key_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// An identity as a Secret holds it: the certificate, its key, and the CA that clients and
/// servers check their peers against.
#[derive(Clone, Debug)]
pub struct IssuedIdentity {
    pub certificate: String,
    pub key: String,
    pub ca: String,
}

impl CertificateAuthority {
    /// A new CA named `common_name` (e.g. the MailCluster it serves).
    pub fn generate(common_name: &str) -> Result<CertificateAuthority, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, common_name);
        // It signs identities, not other CAs.
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::DigitalSignature];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + CA_VALIDITY;
        let certificate = params.self_signed(&key)?;
        let certificate_pem = certificate.pem();
        let key_pem = key.serialize_pem();
        Ok(CertificateAuthority { certificate_pem, key_pem, issuer: Issuer::new(params, key) })
    }

    /// The CA of a certificate and key, both PEM.
    pub fn from_pem(certificate_pem: &str, key_pem: &str) -> Result<CertificateAuthority, IdentityError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)?;
        Ok(CertificateAuthority { certificate_pem: certificate_pem.to_string(), key_pem: key_pem.to_string(), issuer })
    }

    /// The CA kept in `dir`, made there first if there is none. Processes started together
    /// race to make it; exactly one file wins and every process uses that one.
    pub fn open_or_create(dir: &Path) -> Result<CertificateAuthority, IdentityError> {
        let path = dir.join(CA_BUNDLE_FILE);
        let file_error =
            |path: &Path, e: std::io::Error| IdentityError::File { path: path.to_path_buf(), message: e.to_string() };
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e))?;
            let made = CertificateAuthority::generate("kubemail service CA")?;
            let staged = dir.join(format!(".{CA_BUNDLE_FILE}.{}", std::process::id()));
            write_private(&staged, &format!("{}{}", made.certificate_pem, made.key_pem))
                .map_err(|e| file_error(&staged, e))?;
            // A hard link is created only if the name is free: the first process to get there wins.
            let linked = std::fs::hard_link(&staged, &path);
            let _ = std::fs::remove_file(&staged);
            match linked {
                Ok(()) => {
                    tracing::info!(path = %path.display(), "made a service CA");
                    return Ok(made);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(file_error(&path, e)),
            }
        }
        let bundle = std::fs::read_to_string(&path).map_err(|e| file_error(&path, e))?;
        let (certificate, key) = split_bundle(&bundle).ok_or_else(|| {
            IdentityError::Invalid(format!("{}: needs a CERTIFICATE and a PRIVATE KEY block", path.display()))
        })?;
        CertificateAuthority::from_pem(&certificate, &key)
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// A new identity for `role`, valid for `validity` from now; usable as a server's
    /// certificate and as a client's.
    pub fn issue(&self, role: Role, validity: Duration) -> Result<IssuedIdentity, IdentityError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, role.name());
        let dns_name = role.dns_name().try_into().map_err(|e: rcgen::Error| IdentityError::Certificate(e))?;
        params.subject_alt_names = vec![SanType::DnsName(dns_name)];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - CLOCK_SKEW;
        params.not_after = now + validity;
        params.use_authority_key_identifier_extension = true;
        let certificate = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedIdentity {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
            ca: self.certificate_pem.clone(),
        })
    }
}

impl IssuedIdentity {
    /// Writes the identity as a mounted Secret lays it out: `tls.crt`, `tls.key`, `ca.crt`.
    /// Each file is replaced whole (written aside, then renamed), so a reader never sees half
    /// of one.
    pub fn write(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (file, contents) in [(CA_FILE, &self.ca), (CERTIFICATE_FILE, &self.certificate), (KEY_FILE, &self.key)] {
            let staged: PathBuf = dir.join(format!(".{file}.new"));
            write_private(&staged, contents)?;
            std::fs::rename(&staged, dir.join(file))?;
        }
        Ok(())
    }
}

/// The certificate and the key blocks of a PEM bundle.
fn split_bundle(bundle: &str) -> Option<(String, String)> {
    let start = |label: &str| bundle.find(&format!("-----BEGIN {label}-----"));
    let end = |label: &str| {
        let marker = format!("-----END {label}-----");
        bundle.find(&marker).map(|at| at + marker.len())
    };
    let certificate = bundle.get(start("CERTIFICATE")?..end("CERTIFICATE")?)?;
    let key = bundle.get(start("PRIVATE KEY")?..end("PRIVATE KEY")?)?;
    Some((format!("{certificate}\n"), format!("{key}\n")))
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processes_sharing_a_directory_share_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let first = CertificateAuthority::open_or_create(dir.path()).unwrap();
        let second = CertificateAuthority::open_or_create(dir.path()).unwrap();
        assert_eq!(first.certificate_pem(), second.certificate_pem());
        let issued = second.issue(Role::ImapFrontend, Duration::from_secs(3600)).unwrap();
        assert_eq!(issued.ca, first.certificate_pem());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CA_BUNDLE_FILE)).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the CA key is readable by its owner only");
        }
    }
}
