//! APPEND (RFC 9051 §6.3.12): a message from the client into a mailbox, streamed to the
//! mailstore in chunks and answered with its UID (APPENDUID, RFC 4315). MULTIAPPEND (RFC
//! 3502): several messages in one command, stored all together or not at all, answered with
//! their UIDs as a set.

use imap_codec::CommandCodec;
use imap_codec::decode::Decoder;
use imap_codec::imap_types::command::CommandBody;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::datetime::DateTime;
use imap_codec::imap_types::extensions::binary::LiteralOrLiteral8;
use imap_codec::imap_types::flag::Flag;
use imap_codec::imap_types::mailbox::Mailbox;
use kubemail_proto::mailstore::{AppendChunk, AppendHeader, append_chunk};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::store::stored_flags;
use crate::response::{self, Status};

/// The octets of an APPENDed message per gRPC message.
const APPEND_CHUNK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// APPEND of the message given, and of `more` after it (MULTIAPPEND: the further messages,
    /// each written as an APPEND of its own to the same mailbox).
    pub(super) async fn append(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
        more: &[Vec<u8>],
    ) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let mut chunks = Vec::new();
        if let Err(reason) = self.message_chunks(&name, flags, date, message, &mut chunks) {
            self.respond(Some(tag), Status::Bad, None, &reason);
            return;
        }
        for command in more {
            let further = match CommandCodec::default().decode(command) {
                Ok((_, command)) => command.body,
                Err(_) => {
                    self.respond(Some(tag), Status::Bad, None, "Malformed message in MULTIAPPEND");
                    return;
                }
            };
            let CommandBody::Append { flags, date, message, .. } = further else {
                self.respond(Some(tag), Status::Bad, None, "Malformed message in MULTIAPPEND");
                return;
            };
            if let Err(reason) = self.message_chunks(&name, &flags, date.as_ref(), &message, &mut chunks) {
                self.respond(Some(tag), Status::Bad, None, &reason);
                return;
            }
        }
        let mut mailstore = self.services.mailstore.clone();
        let appended = if more.is_empty() {
            mailstore.append(tokio_stream::iter(chunks)).await.map(|response| {
                let appended = response.into_inner();
                (appended.uidvalidity, appended.uid.to_string())
            })
        } else {
            mailstore.multi_append(tokio_stream::iter(chunks)).await.map(|response| {
                let appended = response.into_inner();
                (appended.uidvalidity, response::sequence_set(&appended.uids))
            })
        };
        match appended {
            Ok((uidvalidity, uids)) => {
                let code = format!("APPENDUID {uidvalidity} {uids}");
                self.respond(Some(tag), Status::Ok, Some(&code), "APPEND completed");
            }
            Err(status) => self.destination_refused(tag, &status),
        }
    }

    /// Adds one message to the chunks of an APPEND: its header, then its body in pieces.
    fn message_chunks(
        &self,
        mailbox: &str,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
        chunks: &mut Vec<AppendChunk>,
    ) -> Result<(), String> {
        let flags = stored_flags(flags)?;
        let body: &[u8] = match message {
            LiteralOrLiteral8::Literal(literal) => literal.data(),
            LiteralOrLiteral8::Literal8(literal) => &literal.data,
        };
        let header = AppendHeader {
            account_id: self.account_id(),
            mailbox: mailbox.to_string(),
            flags: Some(flags),
            internal_date: date.map_or(0, |date| date.as_ref().timestamp()),
            size: body.len() as u64,
        };
        chunks.push(AppendChunk { part: Some(append_chunk::Part::Header(header)) });
        chunks.extend(
            body.chunks(APPEND_CHUNK).map(|data| AppendChunk { part: Some(append_chunk::Part::Data(data.to_vec())) }),
        );
        Ok(())
    }
}
