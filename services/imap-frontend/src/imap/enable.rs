//! ENABLE (RFC 9051 §6.3.1, RFC 5161): UTF8=ACCEPT (RFC 6855), IMAP4rev2, CONDSTORE and
//! QRESYNC (RFC 7162). What a client enables lasts for its session; `* ENABLED` names only
//! what the command turned on. CONDSTORE is also turned on by the other commands that use it
//! (RFC 7162 §3.1), all through [`Session::enable_condstore`].

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::extensions::enable::CapabilityEnable;
use imap_codec::imap_types::extensions::utf8::Utf8Kind;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Turns CONDSTORE on for the session. The first command that does so while a mailbox is
    /// selected also tells its HIGHESTMODSEQ, which the client had no reason to note at SELECT
    /// (RFC 7162 §3.1): the lower one while expunges are held back.
    pub(super) fn enable_condstore(&mut self) {
        if std::mem::replace(&mut self.condstore, true) {
            return;
        }
        let Some(selection) = &self.selected else { return };
        let line = selection
            .held_back_highest_modseq()
            .unwrap_or_else(|| format!("* OK [HIGHESTMODSEQ {}] Highest\r\n", selection.highest_modseq));
        self.io.write(line.as_bytes());
    }

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
                    self.enable_condstore();
                    enabled.push("CONDSTORE");
                }
                // QRESYNC implies CONDSTORE (RFC 7162 §3.2.3).
                CapabilityEnable::Other(_)
                    if capability.to_string().eq_ignore_ascii_case("QRESYNC") && !self.qresync =>
                {
                    self.qresync = true;
                    self.enable_condstore();
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
