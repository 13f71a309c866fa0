//! MAIL FROM (RFC 5321 §4.1.1.2) with SIZE (RFC 1870), BODY (RFC 6152), SMTPUTF8 (RFC 6531),
//! RET and ENVID (RFC 3461) and AUTH= (RFC 4954 §5, accepted and ignored).

use std::borrow::Cow;

use kubemail_proto::queue::DsnReturn;
use smtp_proto::MailFrom;
use tokio::io::{AsyncRead, AsyncWrite};
use tracing::Span;

use super::{Session, Transaction};
use crate::address::Address;
use crate::reply::{Reply, replies};

/// MAIL parameters that were not advertised (smtp-proto parses more extensions than we offer).
const UNADVERTISED: u64 = smtp_proto::MAIL_BODY_BINARYMIME
    | smtp_proto::MAIL_REQUIRETLS
    | smtp_proto::MAIL_CONPERM
    | smtp_proto::MAIL_BY_NOTIFY
    | smtp_proto::MAIL_BY_RETURN
    | smtp_proto::MAIL_BY_TRACE;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn mail(&mut self, from: MailFrom<Cow<'_, str>>) -> Reply {
        if self.helo.is_none() {
            return replies::bad_sequence("Send EHLO or HELO first");
        }
        if self.transaction.is_some() {
            return replies::bad_sequence("Sender already specified");
        }
        if self.listener.requires_auth() && self.identity.is_none() {
            return if self.auth_allowed() { replies::auth_required() } else { replies::tls_required() };
        }
        if from.flags & UNADVERTISED != 0
            || from.trans_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0
        {
            return Reply::new(555, "5.5.4", "Unsupported MAIL parameter");
        }
        let limit = self.settings().max_message_size;
        if from.size as u64 > limit {
            return replies::message_too_big(limit);
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        let sender = if from.address.is_empty() {
            None
        } else {
            match Address::parse(&from.address, smtputf8, "sender") {
                Ok(address) => Some(address),
                Err(reply) => return reply,
            }
        };
        if let Some(identity) = &self.identity {
            // An authenticated user sends only as itself or one of its aliases; never as the
            // null sender, which is for bounces.
            let owned = sender.as_ref().is_some_and(|sender| {
                let sender = sender.to_string().to_lowercase();
                identity.sender_addresses.contains(&sender)
            });
            if !owned {
                return Reply::new(
                    553,
                    "5.7.1",
                    format!("Sender address not owned by the authenticated user {}", identity.address),
                );
            }
        }
        let dsn_return = if from.flags & smtp_proto::MAIL_RET_FULL != 0 {
            DsnReturn::Full
        } else if from.flags & smtp_proto::MAIL_RET_HDRS != 0 {
            DsnReturn::Headers
        } else {
            DsnReturn::Unspecified
        };
        let span = tracing::info_span!(parent: None, "smtp.message", queue_id = tracing::field::Empty);
        span.follows_from(Span::current());
        self.transaction = Some(Transaction {
            span,
            sender,
            declared_size: from.size as u64,
            body_8bit: from.flags & smtp_proto::MAIL_BODY_8BITMIME != 0,
            smtputf8,
            dsn_return: dsn_return as i32,
            dsn_envid: from.env_id.map(Cow::into_owned).unwrap_or_default(),
            recipients: Vec::new(),
            excess_recipients: 0,
            chunks: None,
        });
        Reply::new(250, "2.1.0", "Sender OK")
    }
}
