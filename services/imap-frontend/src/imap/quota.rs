//! QUOTA (RFC 9208): GETQUOTA and GETQUOTAROOT with the STORAGE (in units of 1024 octets) and
//! MESSAGE resources. An account has one quota root, `""`, over all its mailboxes; limits are
//! set by the administrator, so SETQUOTA is refused.

use imap_codec::imap_types::core::{AString, Tag};
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::{GetQuotaRequest, ListMailboxesRequest};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use crate::response::Status;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn get_quota(&mut self, tag: &Tag<'_>, root: &AString<'_>) {
        if !root.as_ref().is_empty() {
            self.respond(Some(tag), Status::No, Some("NONEXISTENT"), "The only quota root is \"\"");
            return;
        }
        if let Some(line) = self.quota_line(tag).await {
            self.io.write(line.as_bytes());
            self.ok(tag, "GETQUOTA completed");
        }
    }

    pub(super) async fn get_quota_root(&mut self, tag: &Tag<'_>, mailbox: &Mailbox<'_>) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let request = ListMailboxesRequest { account_id: self.account_id() };
        let exists = match self.services.mailstore.clone().list_mailboxes(request).await {
            Ok(response) => response.into_inner().mailboxes.iter().any(|mailbox| mailbox.name == name),
            Err(status) => {
                self.mailstore_refused(tag, &status);
                return;
            }
        };
        if !exists {
            self.respond(Some(tag), Status::No, Some("NONEXISTENT"), "No such mailbox");
            return;
        }
        let Some(quota) = self.quota_line(tag).await else { return };
        let line = format!("* QUOTAROOT {} \"\"\r\n{quota}", self.quoted_name(&name));
        self.io.write(line.as_bytes());
        self.ok(tag, "GETQUOTAROOT completed");
    }

    /// `* QUOTA "" (…)` for the account, or `None` after answering why it could not be read.
    async fn quota_line(&mut self, tag: &Tag<'_>) -> Option<String> {
        let request = GetQuotaRequest { account_id: self.account_id() };
        let quota = match self.services.mailstore.clone().get_quota(request).await {
            Ok(quota) => quota.into_inner(),
            Err(status) => {
                self.mailstore_refused(tag, &status);
                return None;
            }
        };
        // Only limited resources are listed (RFC 9208 §5.1).
        let mut resources = Vec::new();
        if quota.storage_limit > 0 {
            let used = quota.storage_used.div_ceil(1024);
            resources.push(format!("STORAGE {used} {}", quota.storage_limit / 1024));
        }
        if quota.messages_limit > 0 {
            resources.push(format!("MESSAGE {} {}", quota.messages_used, quota.messages_limit));
        }
        Some(format!("* QUOTA \"\" ({})\r\n", resources.join(" ")))
    }
}
