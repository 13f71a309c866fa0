//! Key material the operator makes: DKIM signing keys and their DNS records, and self-signed
//! certificates for domains without a cert-manager issuer.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rsa::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, EncodePublicKey as _, LineEnding};

use crate::crd::domain::DkimAlgorithm;
use crate::{Error, Result};

/// A DKIM private key, PEM (PKCS#8), as the delivery queue reads it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DkimKey {
    pub pem: String,
}

impl DkimKey {
    /// A new key of `algorithm`.
    pub fn generate(algorithm: DkimAlgorithm) -> Result<DkimKey> {
        let der = match algorithm {
            DkimAlgorithm::Rsa2048 => {
                let key = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                    .map_err(|error| Error::Key(format!("RSA key generation: {error}")))?;
                let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|error| Error::Key(error.to_string()))?;
                return Ok(DkimKey { pem: pem.to_string() });
            }
            DkimAlgorithm::Ed25519 => Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
                .map_err(|_| Error::Key("Ed25519 key generation failed".to_string()))?,
        };
        Ok(DkimKey { pem: pem_encode("PRIVATE KEY", der.as_ref()) })
    }

    /// The algorithm of the key, or an error if it is not a PKCS#8 RSA or Ed25519 key.
    pub fn algorithm(&self) -> Result<DkimAlgorithm> {
        self.public_key().map(|(algorithm, _)| algorithm)
    }

    /// The DKIM TXT record's value (RFC 6376 §3.6.1; RFC 8463 for Ed25519): the public key
    /// as SubjectPublicKeyInfo for RSA, the raw 32 octets for Ed25519.
    pub fn dns_value(&self) -> Result<String> {
        let (algorithm, public) = self.public_key()?;
        let tag = match algorithm {
            DkimAlgorithm::Rsa2048 => "rsa",
            DkimAlgorithm::Ed25519 => "ed25519",
        };
        Ok(format!("v=DKIM1; k={tag}; p={}", BASE64.encode(public)))
    }

    fn public_key(&self) -> Result<(DkimAlgorithm, Vec<u8>)> {
        if let Ok(key) = rsa::RsaPrivateKey::from_pkcs8_pem(&self.pem) {
            let der = key.to_public_key().to_public_key_der().map_err(|error| Error::Key(error.to_string()))?;
            return Ok((DkimAlgorithm::Rsa2048, der.as_bytes().to_vec()));
        }
        let der = pem_decode(&self.pem).ok_or_else(|| Error::Key("the DKIM key is not PEM".to_string()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&der)
            .map_err(|_| Error::Key("the DKIM key is neither an RSA nor an Ed25519 PKCS#8 key".to_string()))?;
        Ok((DkimAlgorithm::Ed25519, pair.public_key().as_ref().to_vec()))
    }
}

/// A self-signed certificate and its key, PEM, for `names`.
pub fn self_signed_certificate(names: &[String]) -> Result<kubemail_runtime::tls::PemPair> {
    kubemail_runtime::tls::self_signed(names).map_err(|error| Error::Key(error.to_string()))
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    let body = BASE64.encode(der);
    let lines: Vec<&str> =
        body.as_bytes().chunks(64).map(|line| std::str::from_utf8(line).unwrap_or_default()).collect();
    format!("-----BEGIN {label}-----\n{}\n-----END {label}-----\n", lines.join("\n"))
}

fn pem_decode(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|line| !line.starts_with("-----")).map(str::trim).collect();
    BASE64.decode(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published key is the private key's own: a signature made with the private key
    /// verifies with the key taken from the DNS value alone.
    fn assert_dns_value_verifies(key: &DkimKey) {
        let value = key.dns_value().unwrap();
        let public = BASE64.decode(value.rsplit_once("p=").unwrap().1).unwrap();
        let message = b"DKIM-Signature: v=1";
        match key.algorithm().unwrap() {
            DkimAlgorithm::Ed25519 => {
                let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pem_decode(&key.pem).unwrap()).unwrap();
                let signature = pair.sign(message);
                ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, &public)
                    .verify(message, signature.as_ref())
                    .unwrap();
            }
            DkimAlgorithm::Rsa2048 => {
                use rsa::pkcs1::EncodeRsaPublicKey as _;
                use rsa::pkcs8::DecodePublicKey as _;
                let pair = ring::rsa::KeyPair::from_pkcs8(&pem_decode(&key.pem).unwrap()).unwrap();
                let mut signature = vec![0; pair.public().modulus_len()];
                let random = ring::rand::SystemRandom::new();
                pair.sign(&ring::signature::RSA_PKCS1_SHA256, &random, message, &mut signature).unwrap();
                let pkcs1 = rsa::RsaPublicKey::from_public_key_der(&public).unwrap().to_pkcs1_der().unwrap();
                ring::signature::UnparsedPublicKey::new(&ring::signature::RSA_PKCS1_2048_8192_SHA256, pkcs1.as_bytes())
                    .verify(message, &signature)
                    .unwrap();
            }
        }
    }

    #[test]
    fn ed25519_keys_publish_their_raw_public_key() {
        let key = DkimKey::generate(DkimAlgorithm::Ed25519).unwrap();
        assert!(key.pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{}", key.pem);
        assert_eq!(key.algorithm().unwrap(), DkimAlgorithm::Ed25519);
        let value = key.dns_value().unwrap();
        assert!(value.starts_with("v=DKIM1; k=ed25519; p="), "{value}");
        assert_eq!(BASE64.decode(value.rsplit_once("p=").unwrap().1).unwrap().len(), 32);
        assert_dns_value_verifies(&key);
    }

    #[test]
    fn rsa_keys_publish_their_subject_public_key_info() {
        let key = DkimKey::generate(DkimAlgorithm::Rsa2048).unwrap();
        assert_eq!(key.algorithm().unwrap(), DkimAlgorithm::Rsa2048);
        let value = key.dns_value().unwrap();
        assert!(value.starts_with("v=DKIM1; k=rsa; p=MIIBIjAN"), "a 2048-bit SPKI: {value}");
        assert_dns_value_verifies(&key);
    }

    #[test]
    fn what_is_not_a_dkim_key_is_named_so() {
        let error = DkimKey { pem: "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_string() }
            .dns_value()
            .unwrap_err();
        assert!(error.to_string().contains("neither an RSA nor an Ed25519"), "{error}");
    }
}
