//! ENABLE (RFC 9051 §6.3.1, RFC 5161): UTF8=ACCEPT (RFC 6855), IMAP4rev2, CONDSTORE and
//! QRESYNC (RFC 7162). What a client enables lasts for its session; `* ENABLED` names only
//! what the command turned on.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::utf8::Utf8Kind;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) fn enable(&mut self, tag: &Tag<'_>, capabilities: &[CapabilityEnable<'_>]) {
        let mut enabled = Vec::new();
        for capability in capabilities {
            match capability {
                CapabilityEnable::Utf8(Utf8Kind::Accept) if !self.utf8 => {
                    self.utf8 = true;
                    enabled.push("UTF8=ACCEPT");
                }
                CapabilityEnable::Other(_)
                    if capability.to_string().eq_ignore_ascii_case("IMAP4rev2") && !self.rev2 =>
                {
                    // IMAP4rev2 clients get UTF-8 mailbox names too (RFC 9051 §6.3.1).
                    self.rev2 = true;
                    self.utf8 = true;
                    enabled.push("IMAP4rev2");
                }
                CapabilityEnable::CondStore if !self.condstore => {
                    self.condstore = true;
                    enabled.push("CONDSTORE");
                }
                // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                CapabilityEnable::Other(_)
                    if capability.to_string().eq_ignore_ascii_case("QRESYNC") && !self.qresync =>
                {
                    self.qresync = true;
                    self.condstore = true;
                    enabled.push("QRESYNC");
                }
                _ => {}
            }
        }
        self.io
            .write(format!("* ENABLED{}\r\n", enabled.iter().map(|c| format!(" {c}")).collect::<String>()).as_bytes());
        self.ok(tag, "ENABLE completed");
    }
}
