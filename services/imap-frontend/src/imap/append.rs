//! APPEND (RFC 9051 §6.3.12): a message from the client into a mailbox, streamed to the
//! mailstore in chunks and answered with its UID (APPENDUID, RFC 4315). MULTIAPPEND (RFC
//! 3502): several messages in one command, stored all together or not at all, answered with
//! their UIDs as a set. CATENATE (RFC 4469): a message made of text from the command and of
//! messages or parts already stored, named by IMAP URL.

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
use crate::extended_syntax::{AppendMore, CatenatePart};
use crate::response::{self, Status};

/// The octets of an APPENDed message per gRPC message.
const APPEND_CHUNK: usize = 64 * 1024;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// APPEND of the message given, and with `more` of MULTIAPPEND's further messages and
    /// CATENATE's parts.
    pub(super) async fn append(
        &mut self,
        tag: &Tag<'_>,
        mailbox: &Mailbox<'_>,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        message: &LiteralOrLiteral8<'_>,
        more: Option<&AppendMore>,
    ) {
        let Some(name) = self.name(tag, mailbox) else { return };
        let further = more.map_or(&[][..], |more| more.more.as_slice());
        let catenated = |index: usize| more.and_then(|more| more.catenated.get(index)).and_then(Option::as_ref);
        let mut chunks = Vec::new();
        let Some(body) = self.message_body(tag, literal_data(message), catenated(0)).await else { return };
        if let Err(reason) = self.message_chunks(&name, flags, date, &body, &mut chunks) {
            self.respond(Some(tag), Status::Bad, None, &reason);
            return;
        }
        for (index, command) in further.iter().enumerate() {
            let Some(CommandBody::Append { flags, date, message, .. }) =
                CommandCodec::default().decode(command).ok().map(|(_, command)| command.body)
            else {
                self.respond(Some(tag), Status::Bad, None, "Malformed message in MULTIAPPEND");
                return;
            };
            let Some(body) = self.message_body(tag, literal_data(&message), catenated(index + 1)).await else {
                return;
            };
            if let Err(reason) = self.message_chunks(&name, &flags, date.as_ref(), &body, &mut chunks) {
                self.respond(Some(tag), Status::Bad, None, &reason);
                return;
            }
        }
        let mut mailstore = self.services.mailstore.clone();
        let appended = if further.is_empty() {
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

    /// A message's octets: its literal, or its CATENATE parts put together; `None` after
    /// answering that a URL names nothing (BADURL) or the whole is too large (TOOBIG).
    async fn message_body(
        &mut self,
        tag: &Tag<'_>,
        literal: &[u8],
        parts: Option<&Vec<CatenatePart>>,
    ) -> Option<Vec<u8>> {
        let Some(parts) = parts else { return Some(literal.to_vec()) };
        let mut body = Vec::new();
        for part in parts {
            match part {
                CatenatePart::Text(text) => body.extend_from_slice(text),
                CatenatePart::Url(url) => match self.url_octets(url).await {
                    Some(octets) => body.extend_from_slice(&octets),
                    None => {
                        let code = format!("BADURL {url}");
                        self.respond(Some(tag), Status::No, Some(&code), "The URL names no message or part here");
                        return None;
                    }
                },
            }
            if body.len() > self.services.settings.max_literal as usize {
                self.respond(Some(tag), Status::No, Some("TOOBIG"), "The message would be over the limit");
                return None;
            }
        }
        Some(body)
    }

    /// Adds one message to the chunks of an APPEND: its header, then its body in pieces.
    fn message_chunks(
        &self,
        mailbox: &str,
        flags: &[Flag<'_>],
        date: Option<&DateTime>,
        body: &[u8],
        chunks: &mut Vec<AppendChunk>,
    ) -> Result<(), String> {
        let flags = stored_flags(flags)?;
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

fn literal_data<'a>(message: &'a LiteralOrLiteral8<'_>) -> &'a [u8] {
    match message {
        LiteralOrLiteral8::Literal(literal) => literal.data(),
        LiteralOrLiteral8::Literal8(literal) => &literal.data,
    }
}
