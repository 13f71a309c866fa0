//! What a `MailDomain` becomes: its certificate (a cert-manager `Certificate`, or a self-signed
//! TLS Secret), its DKIM key Secret, and the DNS records its status lists.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kubemail_runtime::deployment::file;
use kubemail_runtime::tls::{CERTIFICATE_FILE, KEY_FILE, PemPair};

use super::owned_meta;
use crate::crd::MailDomain;
use crate::crd::domain::{DmarcPolicy, DnsRecord, IssuerRef};

/// The host names a domain's clients use, all covered by its certificate: the domain itself
/// and `imap.` and `smtp.` below it (published as CNAMEs of the cluster's host name).
pub fn tls_names(domain: &str) -> Vec<String> {
    vec![domain.to_string(), format!("imap.{domain}"), format!("smtp.{domain}")]
}

/// The names of the Secrets a MailDomain owns.
pub fn certificate_secret_name(domain: &MailDomain) -> String {
    format!("{}-tls", domain.name_any())
}

pub fn dkim_secret_name(domain: &MailDomain) -> String {
    format!("{}-dkim", domain.name_any())
}

/// cert-manager's Certificate resource.
pub fn certificate_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("cert-manager.io", "v1", "Certificate"))
}

/// The cert-manager Certificate asking `issuer` for the domain's certificate, stored in
/// [`certificate_secret_name`].
pub fn build_certificate(domain: &MailDomain, issuer: &IssuerRef) -> DynamicObject {
    let resource = certificate_resource();
    let mut certificate = DynamicObject::new(&domain.name_any(), &resource);
    certificate.metadata = owned_meta(domain, domain.name_any(), labels(domain));
    certificate.data = serde_json::json!({
        "spec": {
            "secretName": certificate_secret_name(domain),
            "dnsNames": tls_names(&domain.spec.domain),
            "issuerRef": {
                "name": issuer.name,
                "kind": format!("{:?}", issuer.kind),
                "group": issuer.group.as_deref().unwrap_or("cert-manager.io"),
            },
            // A renewal gets a new key, so a key that leaked stops working.
            "privateKey": {"rotationPolicy": "Always"},
        }
    });
    certificate
}

/// The TLS Secret of a self-signed certificate `pair` (made once, then kept).
pub fn build_self_signed_secret(domain: &MailDomain, pair: &PemPair) -> Secret {
    Secret {
        metadata: owned_meta(domain, certificate_secret_name(domain), labels(domain)),
        type_: Some("kubernetes.io/tls".to_string()),
        data: Some(BTreeMap::from([
            (CERTIFICATE_FILE.to_string(), ByteString(pair.certificate.clone().into_bytes())),
            (KEY_FILE.to_string(), ByteString(pair.key.clone().into_bytes())),
        ])),
        ..Default::default()
    }
}

/// The Secret the delivery queue signs the domain's mail with: the key and its selector, in
/// the files it reads.
pub fn build_dkim_secret(domain: &MailDomain, key_pem: &str) -> Secret {
    Secret {
        metadata: owned_meta(domain, dkim_secret_name(domain), labels(domain)),
        type_: Some("Opaque".to_string()),
        data: Some(BTreeMap::from([
            (file::DKIM_KEY.to_string(), ByteString(key_pem.as_bytes().to_vec())),
            (file::DKIM_SELECTOR.to_string(), ByteString(domain.spec.dkim.selector.clone().into_bytes())),
        ])),
        ..Default::default()
    }
}

/// The cluster's labels, and the domain's.
fn labels(domain: &MailDomain) -> BTreeMap<String, String> {
    let mut labels = super::labels(&domain.spec.cluster_ref.name, None);
    labels.insert("kubemail.io/domain".to_string(), domain.spec.domain.clone());
    labels
}

/// The records the domain's zone needs, for a cluster reached at `hostname` that serves POP3
/// when `pop3`, and a DKIM key whose TXT value is `dkim_value` (none yet: no DKIM record).
pub fn build_dns_records(domain: &MailDomain, hostname: &str, pop3: bool, dkim_value: Option<&str>) -> Vec<DnsRecord> {
    let name = domain.spec.domain.as_str();
    let record = |owner: String, type_: &str, value: String, purpose: &str| DnsRecord {
        name: owner,
        type_: type_.to_string(),
        value,
        purpose: purpose.to_string(),
    };
    let mut records = vec![
        record(name.to_string(), "MX", format!("10 {hostname}."), "mail for the domain goes to the cluster"),
        // `mx` authorises the MX hosts; `~all` rather than `-all` because mail may leave
        // through egress addresses other than the MX's. DKIM keeps DMARC aligned either way.
        record(name.to_string(), "TXT", "v=spf1 mx ~all".to_string(), "SPF: who may send mail for the domain"),
    ];
    if let Some(value) = dkim_value {
        records.push(record(
            format!("{}._domainkey.{name}", domain.spec.dkim.selector),
            "TXT",
            value.to_string(),
            "DKIM: the key outgoing mail is signed with",
        ));
    }
    let policy = match domain.spec.dmarc.policy {
        DmarcPolicy::None => "none",
        DmarcPolicy::Quarantine => "quarantine",
        DmarcPolicy::Reject => "reject",
    };
    let mut dmarc = format!("v=DMARC1; p={policy}");
    if !domain.spec.dmarc.report_to.is_empty() {
        dmarc.push_str(&format!("; rua={}", domain.spec.dmarc.report_to.join(",")));
    }
    records.push(record(format!("_dmarc.{name}"), "TXT", dmarc, "DMARC: what receivers do with mail that fails"));
    for host in ["imap", "smtp"] {
        records.push(record(
            format!("{host}.{name}"),
            "CNAME",
            format!("{hostname}."),
            "the host name mail clients use",
        ));
    }
    // RFC 6186 service records, implicit TLS first (RFC 8314), so clients configure themselves.
    // POP3 has a higher priority number than IMAP: a client that speaks both picks IMAP
    // (RFC 6186 §3.4 compares priorities across the two).
    let mut services = vec![(0, "imaps", 993, "imap"), (0, "submissions", 465, "smtp"), (0, "submission", 587, "smtp")];
    if pop3 {
        services.push((10, "pop3s", 995, "imap"));
    }
    for (priority, service, port, host) in services {
        records.push(record(
            format!("_{service}._tcp.{name}"),
            "SRV",
            format!("{priority} 1 {port} {host}.{name}."),
            "lets mail clients find the servers (RFC 6186)",
        ));
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(extra: &str) -> MailDomain {
        serde_yaml::from_str(&format!(
            "
apiVersion: kubemail.io/v1alpha1
kind: MailDomain
metadata: {{name: example-com, namespace: mx, uid: 5a1e7f9e-0000-4000-8000-000000000002}}
spec:
  clusterRef: {{name: mail}}
  domain: example.com
{extra}"
        ))
        .unwrap()
    }

    #[test]
    fn an_issuer_gets_a_cert_manager_certificate_for_the_client_names() {
        let domain = domain("  tls: {issuerRef: {name: letsencrypt, kind: ClusterIssuer}}\n");
        let certificate = build_certificate(&domain, domain.spec.tls.issuer_ref.as_ref().unwrap());
        assert_eq!(certificate.types.as_ref().unwrap().api_version, "cert-manager.io/v1");
        assert_eq!(certificate.types.as_ref().unwrap().kind, "Certificate");
        let spec = &certificate.data["spec"];
        assert_eq!(spec["secretName"], "example-com-tls");
        assert_eq!(spec["dnsNames"], serde_json::json!(["example.com", "imap.example.com", "smtp.example.com"]));
        assert_eq!(
            spec["issuerRef"],
            serde_json::json!({"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"})
        );
        assert_eq!(certificate.metadata.owner_references.as_ref().unwrap()[0].kind, "MailDomain");
    }

    #[test]
    fn without_an_issuer_the_secret_holds_a_self_signed_certificate() {
        let domain = domain("");
        let pair = crate::keys::self_signed_certificate(&tls_names("example.com")).unwrap();
        let secret = build_self_signed_secret(&domain, &pair);
        assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
        assert_eq!(secret.metadata.name.as_deref(), Some("example-com-tls"));
        let data = secret.data.as_ref().unwrap();
        // The files the SMTP and IMAP listeners load, and a certificate they accept.
        let dir = tempfile::tempdir().unwrap();
        let pair = PemPair {
            certificate: String::from_utf8(data["tls.crt"].0.clone()).unwrap(),
            key: String::from_utf8(data["tls.key"].0.clone()).unwrap(),
        };
        kubemail_runtime::tls::write_pair(dir.path(), "example.com", &pair).unwrap();
        let store = kubemail_runtime::tls::CertificateStore::open(dir.path()).unwrap();
        assert_eq!(store.domains(), ["example.com"]);
    }

    #[test]
    fn the_dkim_secret_holds_the_key_and_selector_files() {
        let domain = domain("  dkim: {selector: s2026, algorithm: Ed25519}\n");
        let secret = build_dkim_secret(&domain, "PEM");
        let data = secret.data.unwrap();
        assert_eq!(data["dkim.key"].0, b"PEM");
        assert_eq!(data["selector"].0, b"s2026");
        assert_eq!(secret.metadata.name.as_deref(), Some("example-com-dkim"));
    }

    #[test]
    fn the_dns_records_say_what_to_publish() {
        let domain =
            domain("  dkim: {selector: s2026}\n  dmarc: {policy: reject, reportTo: ['mailto:dmarc@example.com']}\n");
        let records = build_dns_records(&domain, "mx.provider.net", false, Some("v=DKIM1; k=rsa; p=MIIB"));
        let find = |name: &str, type_: &str| {
            records.iter().find(|r| r.name == name && r.type_ == type_).map(|r| r.value.as_str())
        };
        assert_eq!(find("example.com", "MX"), Some("10 mx.provider.net."));
        assert_eq!(find("example.com", "TXT"), Some("v=spf1 mx ~all"));
        assert_eq!(find("s2026._domainkey.example.com", "TXT"), Some("v=DKIM1; k=rsa; p=MIIB"));
        assert_eq!(find("_dmarc.example.com", "TXT"), Some("v=DMARC1; p=reject; rua=mailto:dmarc@example.com"));
        assert_eq!(find("imap.example.com", "CNAME"), Some("mx.provider.net."));
        assert_eq!(find("_imaps._tcp.example.com", "SRV"), Some("0 1 993 imap.example.com."));
        assert_eq!(find("_submissions._tcp.example.com", "SRV"), Some("0 1 465 smtp.example.com."));
        assert_eq!(find("_pop3s._tcp.example.com", "SRV"), None, "the cluster serves no POP3");
        // No key yet, no DKIM record; a default policy of quarantine; POP3 served, after IMAP.
        let records = build_dns_records(&self::domain(""), "mx.provider.net", true, None);
        assert!(!records.iter().any(|r| r.name.contains("_domainkey")));
        assert!(records.iter().any(|r| r.value == "v=DMARC1; p=quarantine"));
        let pop3s = records.iter().find(|r| r.name == "_pop3s._tcp.example.com").map(|r| r.value.as_str());
        assert_eq!(pop3s, Some("10 1 995 imap.example.com."));
    }
}
