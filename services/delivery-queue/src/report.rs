//! Sending delivery reports to the envelope sender: a new message from the null sender, queued
//! like any other, so it reaches a local sender's mailbox or a remote one's MTA by the normal
//! paths, with their retries.

use std::sync::Arc;

use kubemail_proto::Message as _;
use kubemail_proto::mailstore::ResolveRecipientRequest;
use kubemail_proto::mailstore::resolve_recipient_response::Outcome as Resolved;
use kubemail_proto::queue::{DsnNotify, Envelope, Recipient};
use kubemail_runtime::{Headers, Queue, QueueMessage, Spool, propagation};

use crate::dsn::{Action, Entry, Report};
use crate::local::MailstoreClient;

/// Queues reports.
#[derive(Clone)]
pub struct Reporter {
    pub mailstore: MailstoreClient,
    pub spool: Arc<dyn Spool>,
    pub queue: Arc<dyn Queue>,
    /// `Reporting-MTA` and the reports' sender domain.
    pub hostname: String,
}

/// Why a report could not be queued now (the envelope is tried again later).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("looking up the sender: {0}")]
    Lookup(tonic::Status),
    #[error("queueing the report: {0}")]
    Queue(kubemail_runtime::Error),
}

impl Reporter {
    /// Reports `entries` of `envelope` to its sender, each only if its recipient's NOTIFY asks
    /// for it; the null sender gets nothing (a report is never reported on). Idempotent: the
    /// report's id derives from the envelope's, so a retried envelope queues it once.
    pub async fn report(
        &self,
        envelope: &Envelope,
        entries: Vec<Entry>,
        original: &[u8],
        now: i64,
    ) -> Result<(), ReportError> {
        if envelope.mail_from.is_empty() {
            if !entries.is_empty() {
                tracing::info!(id = %envelope.id, "no report on a message from the null sender");
            }
            return Ok(());
        }
        let notify_of =
            |recipient: &str| envelope.recipients.iter().find(|r| r.address == recipient).map_or(0, |r| r.notify);
        let entries: Vec<Entry> =
            entries.into_iter().filter(|entry| wanted(notify_of(&entry.recipient), &entry.action)).collect();
        if entries.is_empty() {
            return Ok(());
        }
        let request = ResolveRecipientRequest { address: envelope.mail_from.clone(), size_hint: 0 };
        let resolved = self.mailstore.clone().resolve_recipient(request).await.map_err(ReportError::Lookup)?;
        let local = match resolved.into_inner().outcome() {
            Resolved::Local => true,
            Resolved::NotLocal | Resolved::Unspecified => false,
            Resolved::UnknownRecipient | Resolved::Disabled => {
                tracing::warn!(id = %envelope.id, sender = %envelope.mail_from, "report not sent: the local sender is gone");
                return Ok(());
            }
        };

        let id = format!("{}-report", envelope.id);
        let report = Report { reporting_mta: &self.hostname, envelope, entries, original, now, id: &id };
        let body = report.render();
        let report_envelope = Envelope {
            id: id.clone(),
            mail_from: String::new(),
            recipients: vec![Recipient { address: envelope.mail_from.clone(), local, ..Default::default() }],
            size: body.len() as u64,
            received_at: now,
            body_8bit: envelope.body_8bit,
            smtputf8: envelope.smtputf8,
            trace_context: envelope.trace_context.clone(),
            ..Default::default()
        };
        self.spool.put(&id, body.into()).await.map_err(ReportError::Queue)?;
        let mut headers = Headers::new();
        propagation::inject_headers(&mut headers);
        let message = QueueMessage { id, payload: report_envelope.encode_to_vec().into(), headers };
        self.queue.publish(message).await.map_err(ReportError::Queue)?;
        metrics::counter!("kubemail_delivery_reports_total").increment(1);
        Ok(())
    }
}

/// Whether RFC 3461 NOTIFY `bits` ask for a report of `action` (no NOTIFY: failures only).
fn wanted(bits: u32, action: &Action) -> bool {
    if bits & DsnNotify::Never as u32 != 0 {
        return false;
    }
    let bit = match action {
        Action::Failed(_) if bits == 0 => return true,
        Action::Failed(_) => DsnNotify::Failure,
        Action::Delayed(_) => DsnNotify::Delay,
        Action::Delivered => DsnNotify::Success,
    };
    bits & bit as u32 != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::Failure;

    #[test]
    fn notify_decides_what_is_reported() {
        let failed = Action::Failed(Failure::local("5.1.1", "x"));
        let delayed = Action::Delayed(Failure::local("4.4.1", "x"));
        assert!(wanted(0, &failed), "failures by default");
        assert!(!wanted(0, &Action::Delivered) && !wanted(0, &delayed));
        assert!(!wanted(DsnNotify::Never as u32, &failed));
        let success_delay = DsnNotify::Success as u32 | DsnNotify::Delay as u32;
        assert!(wanted(success_delay, &Action::Delivered) && wanted(success_delay, &delayed));
        assert!(!wanted(success_delay, &failed), "NOTIFY without FAILURE");
    }
}
