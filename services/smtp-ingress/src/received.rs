//! The `Received` trace header every accepted message gets (RFC 5321 §4.4), with the protocol
//! names of RFC 3848, and the RFC 5322 date it carries.

use std::fmt;
use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

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

pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// `Thu, 26 Nov 2026 10:32:27 +0000` (RFC 5322 §3.3), in UTC.
pub fn rfc5322_date(unix: i64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (days, seconds) = (unix.div_euclid(86_400), unix.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{}, {day:02} {} {year} {:02}:{:02}:{:02} +0000",
        DAYS[days.rem_euclid(7) as usize],
        MONTHS[(month - 1) as usize],
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

/// Year, month (1–12) and day of the month of a day count since 1970-01-01, in the proleptic
/// Gregorian calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 { shifted_month + 3 } else { shifted_month - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_rfc5322() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(1_795_689_147), "Thu, 26 Nov 2026 10:32:27 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
    }

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
