//! Inbound message authentication on MX: SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489)
//! with mail-auth, recorded in an Authentication-Results header (RFC 8601) for the mail client
//! and the filters behind it. A DMARC `p=reject` is honoured when the service is told to.
//!
//! Mail from authenticated users (submission) is not checked: it is ours, not inbound.

use std::net::IpAddr;

use mail_auth::common::headers::HeaderWriter;
use mail_auth::dmarc::Policy;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{ResolverConfig, ResolverOpts};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::{AuthenticatedMessage, AuthenticationResults, DmarcResult, MessageAuthenticator};

use crate::reply::Reply;

/// What to do with an inbound message after the checks.
#[derive(Debug)]
pub enum Verdict {
    /// Accept, with this `Authentication-Results: …\r\n` header on top.
    Accept(String),
    /// Refuse: the sender's domain asks for it (DMARC `p=reject`) and enforcement is on.
    Reject(Reply),
}

/// The checks of one service.
pub struct Verifier {
    authenticator: MessageAuthenticator,
    /// The authserv-id: this server's name in the header it writes.
    hostname: String,
    /// Whether a DMARC failure under `p=reject` refuses the message (else it is only recorded).
    enforce_dmarc_reject: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("hostname", &self.hostname)
            .field("enforce_dmarc_reject", &self.enforce_dmarc_reject)
            .finish()
    }
}

impl Verifier {
    /// Checks with the system's DNS resolvers (`/etc/resolv.conf`).
    pub fn system(hostname: &str, enforce_dmarc_reject: bool) -> std::io::Result<Verifier> {
        let authenticator = MessageAuthenticator::new_system_conf().map_err(std::io::Error::other)?;
        Ok(Verifier { authenticator, hostname: hostname.to_string(), enforce_dmarc_reject })
    }

    /// Checks with the given resolvers (tests point this at a DNS server of their own).
    pub fn with_resolver(
        config: ResolverConfig,
        options: ResolverOpts,
        hostname: &str,
        enforce_dmarc_reject: bool,
    ) -> std::io::Result<Verifier> {
        let authenticator = MessageAuthenticator::new(config, options).map_err(std::io::Error::other)?;
        Ok(Verifier { authenticator, hostname: hostname.to_string(), enforce_dmarc_reject })
    }

    /// Checks `message` (as received, before our own headers) sent by `client_ip`, which said
    /// `helo`, with the envelope sender `mail_from` (empty for `<>`).
    pub async fn verify(&self, message: &[u8], client_ip: IpAddr, helo: &str, mail_from: &str) -> Verdict {
        let spf_parameters = if mail_from.is_empty() {
            // RFC 7208 §2.4: for the null sender the HELO identity is checked.
            SpfParameters::verify_ehlo(client_ip, helo, &self.hostname)
        } else {
            SpfParameters::verify_mail_from(client_ip, helo, &self.hostname, mail_from)
        };
        let spf = self.authenticator.verify_spf(spf_parameters).await;
        let results = AuthenticationResults::new(&self.hostname);
        let results = if mail_from.is_empty() {
            results.with_spf_ehlo_result(&spf, client_ip, helo)
        } else {
            results.with_spf_mailfrom_result(&spf, client_ip, mail_from, helo)
        };
        let Some(parsed) = AuthenticatedMessage::parse(message) else {
            // Not a parseable message: nothing to say about DKIM or DMARC.
            return Verdict::Accept(results.to_header());
        };
        let dkim = self.authenticator.verify_dkim(&parsed).await;
        let header_from = parsed.from.first().map(String::as_str).unwrap_or_default();
        let mail_from_domain = mail_from.rsplit_once('@').map_or(helo, |(_, domain)| domain);
        let dmarc = self.authenticator.verify_dmarc(DmarcParameters::new(&parsed, &dkim, mail_from_domain, &spf)).await;
        let header = results.with_dkim_results(&dkim, header_from).with_dmarc_result(&dmarc).to_header();
        let failed = *dmarc.dkim_result() != DmarcResult::Pass && *dmarc.spf_result() != DmarcResult::Pass;
        if self.enforce_dmarc_reject && failed && dmarc.policy() == Policy::Reject {
            tracing::info!(client = %client_ip, from = header_from, "message refused by the sender domain's DMARC policy");
            return Verdict::Reject(Reply::new(
                550,
                "5.7.1",
                format!("Message rejected by the DMARC policy of {}", dmarc.domain()),
            ));
        }
        Verdict::Accept(header)
    }
}

/// Removes the Authentication-Results header fields of `message` that claim to come from
/// `authserv_id`: only this server may write those (RFC 8601 §5), a sender must not forge them.
pub fn strip_forged_results(message: Vec<u8>, authserv_id: &str) -> Vec<u8> {
    const NAME: &[u8] = b"authentication-results:";
    let header_end = message.windows(4).position(|w| w == b"\r\n\r\n").map_or(message.len(), |end| end + 2);
    let mut kept = Vec::with_capacity(message.len());
    let mut dropping = false;
    let mut start = 0;
    while start < header_end {
        let end = message[start..header_end].iter().position(|&b| b == b'\n').map_or(header_end, |i| start + i + 1);
        let line = &message[start..end];
        let continuation = line.first().is_some_and(|b| *b == b' ' || *b == b'\t');
        if !continuation {
            dropping = line.len() >= NAME.len()
                && line[..NAME.len()].eq_ignore_ascii_case(NAME)
                && names_authserv(&line[NAME.len()..], authserv_id);
        }
        if !dropping {
            kept.extend_from_slice(line);
        }
        start = end;
    }
    kept.extend_from_slice(&message[header_end..]);
    kept
}

/// Whether a header value starts with `authserv_id` (then `;` or white space).
fn names_authserv(value: &[u8], authserv_id: &str) -> bool {
    let value = String::from_utf8_lossy(value);
    let value = value.trim_start();
    let n = authserv_id.len();
    value.get(..n).is_some_and(|head| head.eq_ignore_ascii_case(authserv_id))
        && value[n..].starts_with(|c: char| c == ';' || c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forged_results_for_this_server_are_removed_and_others_kept() {
        let message = b"Authentication-Results: mx.example.org; dkim=pass\r\n\
                        \theader.d=bank.example\r\n\
                        Subject: hi\r\n\
                        authentication-results: other.example; spf=pass\r\n\
                        AUTHENTICATION-RESULTS:   MX.Example.ORG;spf=pass\r\n\
                        \r\n\
                        Authentication-Results: mx.example.org; in the body stays\r\n"
            .to_vec();
        let stripped = String::from_utf8(strip_forged_results(message, "mx.example.org")).unwrap();
        assert_eq!(
            stripped,
            "Subject: hi\r\nauthentication-results: other.example; spf=pass\r\n\r\n\
             Authentication-Results: mx.example.org; in the body stays\r\n"
        );
    }
}
