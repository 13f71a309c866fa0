//! kubemail's wire contracts, generated from `proto/kubemail/**.proto`.
//!
//! - [`mailstore`] — `kubemail.mailstore.v1.MailStore`: SMTP recipient resolution and
//!   authentication, delivery, and everything IMAP needs.
//! - [`admin`] — `kubemail.admin.v1.Admin`: domains, accounts, aliases, quotas, usage.
//! - [`queue`] — `kubemail.queue.v1.Envelope`: what smtp-ingress hands to delivery-queue.
//! - [`events`] — `kubemail.events.v1.MailboxEvent`: mailbox changes for IMAP sessions.

pub mod mailstore {
    tonic::include_proto!("kubemail.mailstore.v1");

    /// The largest METADATA value the mailstore keeps, in octets: what IMAP tells as
    /// `[METADATA MAXSIZE n]` (RFC 5464 §4.3).
    pub const METADATA_MAX_VALUE: usize = 64 * 1024;

    /// The most METADATA entries one account may have, over all its mailboxes.
    pub const METADATA_MAX_ENTRIES: usize = 1000;
}

pub mod admin {
    tonic::include_proto!("kubemail.admin.v1");
}

pub mod queue {
    tonic::include_proto!("kubemail.queue.v1");
}

pub mod events {
    tonic::include_proto!("kubemail.events.v1");

    /// The subject carrying one mailbox's events, on the event bus.
    pub fn subject(account_id: i64, mailbox_id: i64) -> String {
        format!("events.{account_id}.{mailbox_id}")
    }

    /// The subscription pattern for every mailbox of one account.
    pub fn account_pattern(account_id: i64) -> String {
        format!("events.{account_id}.*")
    }

    /// The subject carrying [`AccountChanged`] for one account.
    pub fn account_changed_subject(account_id: i64) -> String {
        format!("accounts.{account_id}")
    }

    /// The subscription pattern for every [`AccountChanged`].
    pub const ACCOUNT_CHANGES: &str = "accounts.*";
}

pub use prost::Message;
