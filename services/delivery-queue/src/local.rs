//! Local recipients: the mailstore's `Deliver`, idempotent on (queue message id, recipient), so
//! an envelope delivered again after a lost lease never makes a second copy. Recipients that
//! are one mailbox under several addresses (an alias and its target) get one copy.

use bytes::Bytes;
use kubemail_proto::mailstore::deliver_chunk::Part;
use kubemail_proto::mailstore::{DeliverChunk, DeliverHeader, ResolveRecipientRequest};
use tonic::Code;

use crate::outcome::{Failure, Outcome};

/// Body octets per gRPC message of the Deliver stream.
const CHUNK: usize = 256 * 1024;

pub use kubemail_runtime::propagation::MailstoreClient;

/// Delivers `body` to each of `recipients` (local addresses); one outcome per recipient, in
/// order. Addresses that name the same mailbox share one delivery and its outcome.
pub async fn deliver_all(
    mailstore: &MailstoreClient,
    queue_message_id: &str,
    recipients: &[&str],
    body: &Bytes,
) -> Vec<Outcome> {
    let mailboxes = if recipients.len() > 1 {
        futures::future::join_all(recipients.iter().map(|address| mailbox_of(mailstore, address))).await
    } else {
        recipients.iter().map(|address| address.to_string()).collect()
    };
    let mut delivered: Vec<(&str, Outcome)> = Vec::new();
    let mut outcomes = Vec::with_capacity(recipients.len());
    for (address, mailbox) in recipients.iter().zip(&mailboxes) {
        let outcome = match delivered.iter().find(|(done, _)| *done == mailbox.as_str()) {
            Some((_, outcome)) => outcome.clone(),
            None => {
                let outcome = deliver(mailstore, queue_message_id, address, body).await;
                delivered.push((mailbox, outcome.clone()));
                outcome
            }
        };
        outcomes.push(outcome);
    }
    outcomes
}

/// The account address mail to `address` lands in, or `address` itself when it names none (or
/// the lookup fails: then each address is delivered on its own, still once).
async fn mailbox_of(mailstore: &MailstoreClient, address: &str) -> String {
    let request = ResolveRecipientRequest { address: address.into(), size_hint: 0 };
    match mailstore.clone().resolve_recipient(request).await {
        Ok(response) if !response.get_ref().canonical_address.is_empty() => response.into_inner().canonical_address,
        _ => address.to_string(),
    }
}

/// Stores `body` in `recipient`'s mailbox, once per `queue_message_id`.
pub async fn deliver(mailstore: &MailstoreClient, queue_message_id: &str, recipient: &str, body: &Bytes) -> Outcome {
    let header = DeliverHeader {
        queue_message_id: queue_message_id.into(),
        recipient: recipient.into(),
        size: body.len() as u64,
        ..Default::default()
    };
    let chunks = std::iter::once(Part::Header(header))
        .chain((0..body.len()).step_by(CHUNK).map(|at| Part::Data(body.slice(at..body.len().min(at + CHUNK)).to_vec())))
        .map(|part| DeliverChunk { part: Some(part) })
        .collect::<Vec<_>>();
    match mailstore.clone().deliver(futures::stream::iter(chunks)).await {
        Ok(_) => Outcome::Delivered,
        Err(status) => outcome_of(&status),
    }
}

/// What a refused Deliver means for the recipient.
fn outcome_of(status: &tonic::Status) -> Outcome {
    let message = status.message();
    match status.code() {
        Code::NotFound => Outcome::Failed(Failure::local("5.1.1", format!("no such mailbox: {message}"))),
        Code::FailedPrecondition => Outcome::Failed(Failure::local("5.2.1", format!("mailbox disabled: {message}"))),
        Code::PermissionDenied => Outcome::Failed(Failure::local("5.7.1", message)),
        Code::InvalidArgument => Outcome::Failed(Failure::local("5.6.0", format!("message refused: {message}"))),
        // The mailbox may have room again later (RFC 3463 4.2.2).
        Code::ResourceExhausted => Outcome::Deferred(Failure::local("4.2.2", format!("mailbox full: {message}"))),
        _ => Outcome::Deferred(Failure::local("4.3.0", format!("mailstore unavailable: {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_map_to_permanent_or_temporary_failures() {
        let permanent = |code| matches!(outcome_of(&tonic::Status::new(code, "x")), Outcome::Failed(_));
        let temporary = |code| matches!(outcome_of(&tonic::Status::new(code, "x")), Outcome::Deferred(_));
        assert!(permanent(Code::NotFound) && permanent(Code::FailedPrecondition) && permanent(Code::InvalidArgument));
        assert!(temporary(Code::ResourceExhausted) && temporary(Code::Unavailable) && temporary(Code::Internal));
        assert!(temporary(Code::Aborted) && temporary(Code::DeadlineExceeded));
    }
}
