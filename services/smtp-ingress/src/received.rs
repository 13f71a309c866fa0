//! The `Received` trace header every accepted message gets (RFC 5321 §4.4), with the protocol
//! names of RFC 3848, and the RFC 5322 date it carries.

use std::fmt;
use std::net::IpAddr;

use kubemail_runtime::clock::rfc5322_date;

/// The fields of one Received header.
pub struct Received<'a> {
    pub helo: &'a str,
    pub client_ip: IpAddr,
    pub hostname: &'a str,
    pub protocol: &'static str,
    /// TLS version and cipher, when the session is encrypted.
    pub tls: Option<String>,
    pub id: &'a str,
    /// Named only when the message has one recipient, so that copies for several recipients
    /// do not show each other who else received them.
    pub recipient: Option<&'a str>,
    /// Unix seconds.
    pub at: i64,
}

/// RFC 3848: ESMTP, plus S for TLS and A for an authenticated session.
pub fn protocol(esmtp: bool, tls: bool, authenticated: bool) -> &'static str {
    match (esmtp, tls, authenticated) {
        (false, _, _) => "SMTP",
        (true, false, false) => "ESMTP",
        (true, true, false) => "ESMTPS",
        (true, false, true) => "ESMTPA",
        (true, true, true) => "ESMTPSA",
    }
}

impl fmt::Display for Received<'_> {
    /// Folded before `by`, `with` and `for` so no line comes near the 998-octet limit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let literal = match self.client_ip {
            IpAddr::V4(ip) => format!("[{ip}]"),
            IpAddr::V6(ip) => format!("[IPv6:{ip}]"),
        };
        let helo: String = self.helo.chars().filter(|c| c.is_ascii_graphic()).take(255).collect();
        write!(f, "Received: from {helo} ({literal})\r\n\tby {} (kubemail)", self.hostname)?;
        if let Some(tls) = &self.tls {
            write!(f, "\r\n\t(using {tls})")?;
        }
        write!(f, "\r\n\twith {} id {}", self.protocol, self.id)?;
        if let Some(recipient) = self.recipient {
            write!(f, "\r\n\tfor <{recipient}>")?;
        }
        write!(f, ";\r\n\t{}\r\n", rfc5322_date(self.at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_names_client_server_protocol_and_id() {
        let header = Received {
            helo: "client.example\r\nX-Injected: yes",
            client_ip: "192.0.2.7".parse().unwrap(),
            hostname: "mx.example.org",
            protocol: protocol(true, true, false),
            tls: Some("TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384".into()),
            id: "0123abcd",
            recipient: Some("bob@example.org"),
            at: 0,
        }
        .to_string();
        assert_eq!(
            header,
            "Received: from client.exampleX-Injected:yes ([192.0.2.7])\r\n\tby mx.example.org (kubemail)\r\n\t\
             (using TLSv1.3 with cipher TLS13_AES_256_GCM_SHA384)\r\n\twith ESMTPS id 0123abcd\r\n\t\
             for <bob@example.org>;\r\n\tThu, 01 Jan 1970 00:00:00 +0000\r\n"
        );
    }
}
