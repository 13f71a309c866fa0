//! Recipient lookups through the mailstore, remembered for a few seconds.
//!
//! Every RCPT needs the mailstore's answer; a burst of mail to the same addresses would ask it
//! the same question hundreds of times a second. Answers that stay true for a while (a mailbox
//! that accepts mail of a size, an unknown or disabled address, a foreign domain) are kept for
//! `ttl`; a full mailbox is asked about every time, so mail flows again as soon as it has
//! room. A change made by an administrator therefore reaches the MX within `ttl`. Quota is
//! checked again at delivery, so a mailbox that fills up meanwhile never holds more than its
//! quota allows.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kubemail_proto::mailstore::ResolveRecipientRequest;
use kubemail_proto::mailstore::resolve_recipient_response::{Outcome, QuotaState};
use tonic::{Code, Status};

use crate::MailstoreClient;

/// Addresses remembered at most; past it, expired answers are dropped, then all of them (a
/// flood of distinct addresses gains nothing from the cache anyway).
const CAPACITY: usize = 50_000;

/// What the mailstore says about a recipient address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// A local mailbox with room for a message of the size asked about.
    Local,
    /// A local mailbox that has no room now.
    Full,
    /// A local mailbox whose quota is smaller than the message.
    NeverFits,
    /// A local domain without this address.
    Unknown,
    Disabled,
    /// Not a domain this platform serves.
    NotLocal,
}

/// The mailstore's recipient lookups with a short-lived cache; shared by every session.
pub struct Directory {
    client: MailstoreClient,
    ttl: Duration,
    answers: Mutex<HashMap<String, Remembered>>,
}

#[derive(Clone, Copy)]
struct Remembered {
    resolution: Resolution,
    /// For [`Resolution::Local`]: the largest message size the mailbox was found to have room for.
    room_for: u64,
    expires: Instant,
}

impl Directory {
    /// `ttl` zero asks the mailstore every time.
    pub fn new(client: MailstoreClient, ttl: Duration) -> Self {
        Directory { client, ttl, answers: Mutex::new(HashMap::new()) }
    }

    /// What `address` is, for a message of `size_hint` octets (0 when unknown).
    pub async fn resolve(&self, address: &str, size_hint: u64) -> Result<Resolution, Status> {
        let key = address.to_lowercase();
        if let Some(resolution) = self.remembered(&key, size_hint) {
            return Ok(resolution);
        }
        let request = ResolveRecipientRequest { address: address.to_string(), size_hint };
        let resolution = match self.client.clone().resolve_recipient(request).await {
            Ok(response) => {
                let response = response.into_inner();
                match (response.outcome(), response.quota()) {
                    (Outcome::Local, QuotaState::Full) => Resolution::Full,
                    (Outcome::Local, QuotaState::NeverFits) => Resolution::NeverFits,
                    (Outcome::Local, QuotaState::Fits | QuotaState::Unspecified) => Resolution::Local,
                    (Outcome::UnknownRecipient, _) => Resolution::Unknown,
                    (Outcome::Disabled, _) => Resolution::Disabled,
                    (Outcome::NotLocal | Outcome::Unspecified, _) => Resolution::NotLocal,
                }
            }
            // An address the mailstore cannot even parse names no mailbox.
            Err(status) if status.code() == Code::InvalidArgument => Resolution::Unknown,
            Err(status) => return Err(status),
        };
        self.remember(key, resolution, size_hint);
        Ok(resolution)
    }

    fn remembered(&self, key: &str, size_hint: u64) -> Option<Resolution> {
        if self.ttl.is_zero() {
            return None;
        }
        let answers = self.answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let remembered = answers.get(key).filter(|r| r.expires > Instant::now())?;
        // Room for a smaller message follows from room for a larger one, not the other way.
        let still_true = remembered.resolution != Resolution::Local || size_hint <= remembered.room_for;
        still_true.then_some(remembered.resolution)
    }

    fn remember(&self, key: String, resolution: Resolution, size_hint: u64) {
        if self.ttl.is_zero() || matches!(resolution, Resolution::Full | Resolution::NeverFits) {
            return;
        }
        let now = Instant::now();
        let mut answers = self.answers.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if answers.len() >= CAPACITY && !answers.contains_key(&key) {
            answers.retain(|_, r| r.expires > now);
            if answers.len() >= CAPACITY {
                answers.clear();
            }
        }
        answers.insert(key, Remembered { resolution, room_for: size_hint, expires: now + self.ttl });
    }
}
