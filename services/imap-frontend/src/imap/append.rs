//! APPEND (RFC 9051 §6.3.12): a message from the client into a mailbox, streamed to the
//! mailstore in chunks and answered with its UID (APPENDUID, RFC 4315).

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::{AppendChunk, AppendHeader, append_chunk};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::store::stored_flags;
use crate::response::Status;

/// The octets of an APPENDed message per gRPC message.
const APPEND_CHUNK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn append(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
    ) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let flags = match stored_flags(flags) {
            Ok(flags) => flags,
            Err(reason) => {
                self.respond(Some(tag), Status::Bad, None, &reason);
                return;
            }
        };
        let body: &[u8] = match message {
            LiteralOrLiteral8::Literal(literal) => literal.data(),
            LiteralOrLiteral8::Literal8(literal) => &literal.data,
        };
        let header = AppendHeader {
            account_id: self.account_id(),
            mailbox: name,
            flags: Some(flags),
            internal_date: date.map_or(0, |date| date.as_ref().timestamp()),
            size: body.len() as u64,
        };
        let mut chunks = vec![AppendChunk { part: Some(append_chunk::Part::Header(header)) }];
        chunks.extend(
            body.chunks(APPEND_CHUNK).map(|data| AppendChunk { part: Some(append_chunk::Part::Data(data.to_vec())) }),
        );
        match self.services.mailstore.clone().append(tokio_stream::iter(chunks)).await {
            Ok(response) => {
                let appended = response.into_inner();
                let code = format!("APPENDUID {} {}", appended.uidvalidity, appended.uid);
                self.respond(Some(tag), Status::Ok, Some(&code), "APPEND completed");
            }
            Err(status) => self.destination_refused(tag, &status),
        }
    }
}
