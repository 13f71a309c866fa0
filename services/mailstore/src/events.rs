//! Mailbox change events, published after each committed change so every IMAP frontend can
//! tell its sessions (DESIGN.md §5: subject `events.<account_id>.<mailbox_id>`).

use std::sync::Arc;

use kubemail_proto::Message;
use kubemail_proto::events::{MailboxEvent, mailbox_event::Change};
use kubemail_runtime::{EventBus, Headers};

/// The subject carrying one mailbox's events.
pub fn subject(account_id: i64, mailbox_id: i64) -> String {
    format!("events.{account_id}.{mailbox_id}")
}

/// The pattern matching every mailbox of one account.
pub fn account_pattern(account_id: i64) -> String {
    format!("events.{account_id}.*")
}

/// Publishes events; a failure is logged and otherwise ignored because the change is already
/// committed and events are only hints (a session re-reads the store on its next command).
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
        let subject = subject(state.account_id, state.mailbox_id);
        let payload = event.encode_to_vec().into();
        if let Err(error) = self.bus.publish(&subject, payload, Headers::new()).await {
            tracing::warn!(%error, %subject, "mailbox event not published");
        }
    }
}
