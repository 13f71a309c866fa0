//! Events published after each committed change: mailbox changes, so every IMAP frontend can
//! tell its sessions (on the subject `kubemail_proto::events::subject` names), and account
//! changes, so frontends forget the logins they remember for an account whose password or
//! suspension changed.

use std::sync::Arc;

use kubemail_proto::Message;
use kubemail_proto::events::{AccountChanged, MailboxEvent, account_changed_subject, mailbox_event::Change, subject};
use kubemail_runtime::{EventBus, Headers, propagation};

/// How long publishing one event may take before it is given up.
const PUBLISH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Publishes events; a failure is logged and otherwise ignored because the change is already
/// committed and events are only hints (a session re-reads the store on its next command; a
/// remembered login expires on its own).
#[derive(Clone)]
pub struct Publisher {
    bus: Arc<dyn EventBus>,
}

/// What a mailbox looked like right after a change.
#[derive(Clone, Copy, Debug)]
pub struct MailboxState {
    pub account_id: i64,
    pub mailbox_id: i64,
    pub uidvalidity: u32,
    pub highest_modseq: u64,
}

impl Publisher {
    pub fn new(bus: Arc<dyn EventBus>) -> Self {
        Publisher { bus }
    }

    pub async fn publish(&self, state: MailboxState, change: Change) {
        let event = MailboxEvent {
            account_id: state.account_id,
            mailbox_id: state.mailbox_id,
            uidvalidity: state.uidvalidity,
            highest_modseq: state.highest_modseq,
            change: Some(change),
        };
        self.send(subject(state.account_id, state.mailbox_id), event.encode_to_vec()).await;
    }

    /// The account's password, suspension or existence changed.
    pub async fn account_changed(&self, account_id: i64) {
        self.send(account_changed_subject(account_id), AccountChanged { account_id }.encode_to_vec()).await;
    }

    async fn send(&self, subject: String, payload: Vec<u8>) {
        let payload = payload.into();
        let mut headers = Headers::new();
        propagation::inject_headers(&mut headers);
        // The change is committed: a slow broker must not hold the client's answer for long.
        match tokio::time::timeout(PUBLISH_TIMEOUT, self.bus.publish(&subject, payload, headers)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, %subject, "mailbox event not published"),
            Err(_) => tracing::warn!(%subject, "mailbox event not published in time"),
        }
    }
}
