//! \Recent (RFC 3501 §2.3.2), which IMAP4rev1 clients still count on: a message is recent in
//! the first session that selects its mailbox read-write after it arrived, and in no other,
//! whichever frontend each session is on. The mailstore keeps, per mailbox, the highest UID a
//! session has taken; a session takes the messages above it when it selects the mailbox and as
//! new ones arrive (ClaimRecent), and sees them as \Recent until it leaves the mailbox.
//!
//! A session that selected with EXAMINE takes nothing: every message no session has taken is
//! recent to it, and stays recent for the next. IMAP4rev2 dropped \Recent, so its sessions
//! never see it.

use kubemail_proto::mailstore::ClaimRecentRequest;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::selection::Selection;
use crate::MailstoreClient;

/// What a selection holds of \Recent.
#[derive(Debug, Default)]
pub(super) struct Recent {
    /// The UIDs recent in this session, as inclusive ranges.
    ranges: Vec<(u32, u32)>,
    /// Whether the session takes new messages as they arrive (read-write, IMAP4rev1).
    claims: bool,
    /// Messages up to this UID were taken, by this session or another.
    claimed_to: u32,
}

impl Recent {
    /// A read-write IMAP4rev1 selection, of a mailbox whose messages up to `taken` other
    /// sessions took.
    pub fn claiming(taken: u32) -> Recent {
        Recent { ranges: Vec::new(), claims: true, claimed_to: taken }
    }

    /// A read-only IMAP4rev1 selection: every message above `taken` is recent, now and later.
    pub fn above(taken: u32) -> Recent {
        Recent { ranges: vec![(taken.saturating_add(1), u32::MAX)], claims: false, claimed_to: taken }
    }
}

impl Selection {
    pub fn is_recent(&self, uid: u32) -> bool {
        self.recent.ranges.iter().any(|(first, last)| (*first..=*last).contains(&uid))
    }

    /// The messages recent in this session (the `* n RECENT` response).
    pub fn recent_count(&self) -> usize {
        let within = |(first, last): &(u32, u32)| {
            self.uids.partition_point(|uid| uid <= last) - self.uids.partition_point(|uid| uid < first)
        };
        self.recent.ranges.iter().map(within).sum()
    }

    /// Takes the messages that arrived since the last claim; whether that made any recent
    /// here. A claim the mailstore did not answer is tried again on the next occasion.
    pub async fn claim_recent(&mut self, mut mailstore: MailstoreClient, account_id: i64) -> bool {
        let Some(&last) = self.uids.last() else { return false };
        if !self.recent.claims || last <= self.recent.claimed_to {
            return false;
        }
        let request = ClaimRecentRequest { account_id, mailbox_id: self.mailbox_id, up_to_uid: last };
        match mailstore.claim_recent(request).await {
            Ok(answer) => {
                let answer = answer.into_inner();
                self.recent.claimed_to = last;
                let taken = answer.first_uid <= answer.last_uid;
                if taken {
                    self.recent.ranges.push((answer.first_uid, answer.last_uid));
                }
                taken
            }
            Err(status) => {
                tracing::warn!(%status, "new messages were not taken as \\Recent");
                false
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Takes the messages that arrived by event as \Recent, and tells the new RECENT count.
    pub(super) async fn claim_new_recent(&mut self) {
        let (mailstore, account_id) = (self.services.mailstore.clone(), self.account_id());
        let Some(selection) = &mut self.selected else { return };
        if selection.claim_recent(mailstore, account_id).await {
            let line = format!("* {} RECENT\r\n", selection.recent_count());
            self.io.write(line.as_bytes());
        }
    }
}
