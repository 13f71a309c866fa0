//! The connection under a session: client messages split into lines and literals by
//! imap-codec's fragmentizer and decoded once complete, continuation requests for
//! synchronizing literals (none for LITERAL+, RFC 7888), and responses buffered and written
//! when the client waits for them.
//!
//! After COMPRESS DEFLATE both directions go through [`Deflate`], inside TLS.
//!
//! Memory stays bounded whatever the client sends: a message (a command with its literals) is
//! kept only up to `max_message` octets, the rest is read and dropped up to the end of the
//! message, and a synchronizing literal over the limit is refused before the client sends it.

use std::io;
use std::time::Duration;

use imap_codec::decode::Decoder;
use imap_codec::fragmentizer::{DecodeMessageError, FragmentInfo, Fragmentizer};
use imap_codec::imap_types::IntoStatic;
use imap_codec::imap_types::auth::AuthenticateData;
use imap_codec::imap_types::command::Command;
use imap_codec::imap_types::core::{LiteralMode, Tag};
use imap_codec::{AuthenticateDataCodec, CommandCodec, IdleDoneCodec};
use kubemail_runtime::tls::Connection;

use super::deflate::Deflate;
use crate::extended_syntax::{self, Extension, Rewritten};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

/// Octets read from the socket at a time: few while the client sends commands, so an idle
/// session (most are, waiting in IDLE) holds little; more while it sends a large literal.
const READ_SIZE_MIN: usize = 1024;
const READ_SIZE_MAX: usize = 64 * 1024;
/// Queued response octets written at once by [`Io::flush_when_full`].
const WRITE_BATCH: usize = 32 * 1024;
/// Room for the command lines around the largest literal.
const LINE_ALLOWANCE: u32 = 64 * 1024;

/// Why a session cannot go on reading.
#[derive(Debug)]
pub enum End {
    /// The client closed the connection.
    Closed,
    /// Nothing arrived within the timeout.
    Timeout,
    /// A non-synchronizing literal over the limit is on its way: the client sends it without
    /// waiting, so the only safe answer is to close the connection (RFC 7888 §4).
    LiteralTooBig(Option<Tag<'static>>),
    Io(io::Error),
}

/// What the client sent, read to its end.
#[derive(Debug)]
pub enum Input<T> {
    Message(T),
    /// Not readable as what was expected; `tag` when at least the tag could be read.
    Malformed {
        tag: Option<Tag<'static>>,
        reason: &'static str,
    },
    /// A synchronizing literal over the limit, refused before the client sent it.
    LiteralRefused {
        tag: Option<Tag<'static>>,
        length: u32,
    },
}

/// A command and the options imap-codec left to [`extended_syntax`].
#[derive(Debug)]
pub struct Request {
    pub command: Command<'static>,
    pub extension: Option<Extension>,
    /// The command's message set is `$`, the saved search result (RFC 5182).
    pub saved_result: bool,
}

impl Request {
    /// The command's name, for metrics.
    pub fn name(&self) -> &'static str {
        match self.extension {
            // Carried by a NOOP.
            Some(Extension::Unauthenticate) => "UNAUTHENTICATE",
            Some(Extension::Notify(_)) => "NOTIFY",
            Some(Extension::CancelUpdate(_)) => "CANCELUPDATE",
            _ => self.command.name(),
        }
    }
}

/// Buffered reading and writing over a [`Connection`].
pub struct Io<S> {
    connection: Connection<S>,
    fragmentizer: Fragmentizer,
    max_literal: u32,
    output: Vec<u8>,
    /// Grows while reads fill it, back to the minimum after one that does not.
    read_size: usize,
    /// COMPRESS=DEFLATE, once the client turned it on.
    deflate: Option<Box<Deflate>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Io<S> {
    /// `max_literal`: the largest literal accepted (the largest message APPEND takes).
    pub fn new(connection: Connection<S>, max_literal: u32) -> Self {
        Io {
            connection,
            fragmentizer: fragmentizer(max_literal),
            max_literal,
            output: Vec::new(),
            read_size: READ_SIZE_MIN,
            deflate: None,
        }
    }

    pub fn is_compressed(&self) -> bool {
        self.deflate.is_some()
    }

    /// Compresses both directions from here on (RFC 4978): what is queued (the tagged OK to
    /// COMPRESS) goes out as it is, and anything the client sent after COMPRESS is dropped, as
    /// it had to wait for that OK.
    pub async fn start_deflate(&mut self) -> Result<(), End> {
        self.flush().await?;
        self.fragmentizer = fragmentizer(self.max_literal);
        self.deflate = Some(Box::new(Deflate::new()));
        Ok(())
    }

    pub fn is_tls(&self) -> bool {
        self.connection.is_tls()
    }

    /// Queues response octets; they are written before the next read that would wait, or by
    /// [`Io::flush`].
    pub fn write(&mut self, octets: &[u8]) {
        self.output.extend_from_slice(octets);
    }

    /// Writes what is queued once it is [`WRITE_BATCH`] octets or more: a long answer goes out
    /// in batches, so memory stays bounded, without a write (and with COMPRESS, a flush of the
    /// compressor) per line.
    pub async fn flush_when_full(&mut self) -> Result<(), End> {
        if self.output.len() >= WRITE_BATCH { self.flush().await } else { Ok(()) }
    }

    pub async fn flush(&mut self) -> Result<(), End> {
        if !self.output.is_empty() {
            if let Some(deflate) = &mut self.deflate {
                self.output = deflate.compress(&self.output).map_err(End::Io)?;
            }
            self.connection.write_all(&self.output).await.map_err(End::Io)?;
            // Nothing kept between answers: an idle session holds no output buffer.
            self.output = Vec::new();
        }
        self.connection.flush().await.map_err(End::Io)
    }

    /// The next command, with its literals, and the options imap-codec does not parse
    /// ([`extended_syntax`]).
    pub async fn read_command(&mut self, timeout: Duration) -> Result<Input<Request>, End> {
        let input = self.read(&CommandCodec::default(), timeout).await?;
        Ok(match input {
            Input::Message(command) => Input::Message(Request { command, extension: None, saved_result: false }),
            Input::Malformed { tag, reason } if self.fragmentizer.is_max_message_size_exceeded() => {
                Input::Malformed { tag, reason }
            }
            Input::Malformed { tag, reason } => match extended_syntax::rewrite(self.fragmentizer.message_bytes()) {
                Ok(None) => Input::Malformed { tag, reason },
                Err(reason) => Input::Malformed { tag, reason },
                Ok(Some(Rewritten { command, extension, saved_result })) => {
                    match CommandCodec::default().decode(&command) {
                        Ok((b"", command)) => {
                            Input::Message(Request { command: command.into_static(), extension, saved_result })
                        }
                        _ => Input::Malformed { tag, reason },
                    }
                }
            },
            Input::LiteralRefused { tag, length } => Input::LiteralRefused { tag, length },
        })
    }

    /// The client's answer to an AUTHENTICATE challenge: data, or `*` to cancel.
    pub async fn read_authenticate_data(&mut self, timeout: Duration) -> Result<Input<AuthenticateData<'static>>, End> {
        self.read(&AuthenticateDataCodec::default(), timeout).await
    }

    /// The `DONE` that ends IDLE.
    pub async fn read_idle_done(&mut self, timeout: Duration) -> Result<Input<()>, End> {
        self.read(&IdleDoneCodec::default(), timeout).await.map(|input| match input {
            Input::Message(_) => Input::Message(()),
            Input::Malformed { tag, reason } => Input::Malformed { tag, reason },
            Input::LiteralRefused { tag, length } => Input::LiteralRefused { tag, length },
        })
    }

    async fn read<C>(&mut self, codec: &C, timeout: Duration) -> Result<Input<C::Message<'static>>, End>
    where
        C: Decoder,
        for<'a> C::Message<'a>: IntoStatic<Static = C::Message<'static>>,
    {
        loop {
            match self.fragmentizer.progress() {
                Some(FragmentInfo::Line { announcement: Some(literal), .. }) => {
                    if literal.length > self.max_literal {
                        let tag = self.fragmentizer.decode_tag().map(IntoStatic::into_static);
                        if literal.mode == LiteralMode::NonSync {
                            return Err(End::LiteralTooBig(tag));
                        }
                        // The client waits for our go-ahead, which it will not get: the message
                        // ends here for both sides.
                        self.fragmentizer.skip_message();
                        return Ok(Input::LiteralRefused { tag, length: literal.length });
                    }
                    if literal.mode == LiteralMode::Sync {
                        self.write(b"+ Ready for literal data\r\n");
                        self.flush().await?;
                    }
                }
                Some(_) if self.fragmentizer.is_message_complete() => return Ok(self.decode(codec)),
                Some(_) => {}
                None => self.fill(timeout).await?,
            }
        }
    }

    fn decode<C>(&self, codec: &C) -> Input<C::Message<'static>>
    where
        C: Decoder,
        for<'a> C::Message<'a>: IntoStatic<Static = C::Message<'static>>,
    {
        let reason = match self.fragmentizer.decode_message(codec) {
            Ok(message) => return Input::Message(message.into_static()),
            Err(DecodeMessageError::MessageTooLong { .. }) => "Command is too long",
            Err(DecodeMessageError::DecodingRemainder { .. }) => "Unexpected text after the command",
            Err(_) => "Malformed command",
        };
        Input::Malformed { tag: self.fragmentizer.decode_tag().map(IntoStatic::into_static), reason }
    }

    /// Writes what is queued, then waits for more input.
    async fn fill(&mut self, timeout: Duration) -> Result<(), End> {
        self.flush().await?;
        while let Some(deflate) = &mut self.deflate {
            if deflate.has_pending() {
                let plain = deflate.inflate().map_err(End::Io)?;
                if !plain.is_empty() {
                    self.fragmentizer.enqueue_bytes(&plain);
                    return Ok(());
                }
            }
            let compressed = self.read_socket(timeout).await?;
            if let Some(deflate) = &mut self.deflate {
                deflate.receive(&compressed);
            }
        }
        let read = self.read_socket(timeout).await?;
        self.fragmentizer.enqueue_bytes(&read);
        Ok(())
    }

    /// The next octets from the socket, however many arrived (at least one).
    async fn read_socket(&mut self, timeout: Duration) -> Result<Vec<u8>, End> {
        let mut buffer = vec![0u8; self.read_size];
        let read = match tokio::time::timeout(timeout, self.connection.read(&mut buffer)).await {
            Err(_) => return Err(End::Timeout),
            Ok(Err(error)) => return Err(End::Io(error)),
            Ok(Ok(0)) => return Err(End::Closed),
            Ok(Ok(read)) => read,
        };
        self.read_size = match read == buffer.len() {
            true => (self.read_size * 2).min(READ_SIZE_MAX),
            false => READ_SIZE_MIN,
        };
        buffer.truncate(read);
        Ok(buffer)
    }

    /// Replaces the plain stream with TLS after the tagged OK to STARTTLS went out. Whatever
    /// the client pipelined after STARTTLS is dropped unread (it was sent in the clear and must
    /// not be taken as coming from inside TLS).
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> Result<(), End> {
        self.flush().await?;
        self.fragmentizer = fragmentizer(self.max_literal);
        match tokio::time::timeout(timeout, self.connection.start_tls(acceptor)).await {
            Err(_) => Err(End::Timeout),
            Ok(Err(error)) => Err(End::Io(error)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Writes what is queued and closes the write side (a best effort: the client may be gone).
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.connection.shutdown().await;
    }
}

fn fragmentizer(max_literal: u32) -> Fragmentizer {
    Fragmentizer::new(max_literal.saturating_add(LINE_ALLOWANCE))
}
