//! DKIM for tests: keys made the way an operator would make them, in the directory layout the
//! delivery queue reads, and a verifier that checks a signature against a given record
//! without DNS.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
pub use mail_auth::DkimResult;
use mail_auth::common::parse::TxtRecordParser as _;
use mail_auth::common::verify::DomainKey;
use mail_auth::{AuthenticatedMessage, MessageAuthenticator, Parameters, ResolverCache, Txt};

/// An RSA-2048 key for `domain` made with openssl, written as `dir/<domain>/dkim.key` with its
/// `selector`; returns the public key record to publish.
pub fn rsa_key(dir: &Path, domain: &str, selector: &str) -> String {
    let domain_dir = dir.join(domain);
    std::fs::create_dir_all(&domain_dir).unwrap();
    let key = domain_dir.join("dkim.key");
    let made = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    std::fs::write(domain_dir.join("selector"), format!("{selector}\n")).unwrap();
    let public = Command::new("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(&key)
        .output()
        .expect("openssl runs");
    format!("v=DKIM1; k=rsa; p={}", BASE64.encode(public.stdout))
}

/// An Ed25519 key for `domain`, as [`rsa_key`]; returns the public key record.
pub fn ed25519_key(dir: &Path, domain: &str, selector: &str) -> String {
    let domain_dir = dir.join(domain);
    std::fs::create_dir_all(&domain_dir).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    std::fs::write(domain_dir.join("dkim.key"), key.serialize_pem()).unwrap();
    std::fs::write(domain_dir.join("selector"), selector).unwrap();
    format!("v=DKIM1; k=ed25519; p={}", BASE64.encode(key.public_key_raw()))
}

/// TXT records for the verifier, without DNS.
#[derive(Default)]
struct TxtCache(Mutex<HashMap<Box<str>, Txt>>);

impl ResolverCache<Box<str>, Txt> for TxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().get(name).cloned()
    }

    fn remove<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.0.lock().unwrap().remove(name)
    }

    fn insert(&self, name: Box<str>, value: Txt, _valid_until: Instant) {
        self.0.lock().unwrap().insert(name, value);
    }
}

/// The DKIM result of `message` given the record published at `name`
/// (`selector._domainkey.domain.`, with the final dot).
pub async fn verify(message: &[u8], name: &str, record: &str) -> DkimResult {
    let cache = TxtCache::default();
    let key = DomainKey::parse(record.as_bytes()).expect("a DKIM record");
    cache.insert(name.into(), Txt::from(key), Instant::now() + Duration::from_secs(86_400));
    let authenticator = MessageAuthenticator::new_system_conf()
        .or_else(|_| MessageAuthenticator::new_cloudflare())
        .expect("an authenticator");
    let parsed = AuthenticatedMessage::parse(message).expect("a message");
    let outputs = authenticator.verify_dkim(Parameters::new(&parsed).with_txt_cache(&cache)).await;
    outputs.last().map_or(DkimResult::None, |output| output.result().clone())
}
