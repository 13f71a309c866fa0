//! The connection under a session: command lines through the runtime's [`LineIo`] (bounded
//! lines with deadlines, replies written when the client waits for them, the STARTTLS upgrade),
//! and on top of it the DATA blocks and BDAT chunks of a message.

use std::time::Duration;

pub use kubemail_runtime::line_io::{End, Line};
use kubemail_runtime::line_io::{IDLE_BUFFER, LineIo};
pub use kubemail_runtime::tls::Connection;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;

use crate::reply::Reply;

/// Read size while a message body streams in.
const DATA_READ: usize = 16 * 1024;
const CRLF: &[u8] = b"\r\n";

/// A message body received with DATA or BDAT.
pub enum Body {
    Complete(Vec<u8>),
    /// Larger than allowed; read to its end and discarded.
    TooBig,
}

/// An SMTP session's connection.
pub struct Io<S> {
    lines: LineIo<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Io<S> {
    pub fn new(connection: Connection<S>) -> Self {
        Io { lines: LineIo::new(connection) }
    }

    pub fn is_tls(&self) -> bool {
        self.lines.is_tls()
    }

    /// The negotiated TLS version and cipher suite, for the Received header.
    pub fn tls_description(&self) -> Option<String> {
        self.lines.tls_description()
    }

    /// The server name the client asked for in its TLS handshake.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.lines.tls_server_name()
    }

    /// Queues a reply; it is written before the next read that would wait, or by [`Io::flush`].
    pub fn reply(&mut self, reply: &Reply) {
        reply.write_to(self.lines.output());
    }

    pub async fn flush(&mut self) -> Result<(), End> {
        self.lines.flush().await
    }

    /// Whether input is buffered beyond what was consumed (pipelined commands).
    pub fn has_buffered_input(&self) -> bool {
        self.lines.has_buffered_input()
    }

    /// Drops buffered input (see [`LineIo::discard_buffered_input`]).
    pub fn discard_buffered_input(&mut self) {
        self.lines.discard_buffered_input();
    }

    /// The next line, at most `limit` octets, all of it within `timeout`.
    pub async fn read_line(&mut self, limit: usize, timeout: Duration) -> Result<Line, End> {
        self.lines.read_line(limit, timeout).await
    }

    /// A DATA block up to its `<CRLF>.<CRLF>`, dot-unstuffed. Only that exact sequence ends it
    /// (smtp-proto's receiver), so a bare `<LF>.<LF>` cannot end a message early and smuggle a
    /// second one in.
    pub async fn read_data(&mut self, max_size: u64, timeout: Duration) -> Result<Body, End> {
        // The receiver sees a line start only after a CRLF it has read itself, but DATA begins
        // at one (a first line "." ends an empty message, ".." is unstuffed): it is primed with
        // a CRLF that is taken off the body again.
        let mut receiver = DataReceiver::new();
        let mut body = Vec::with_capacity(IDLE_BUFFER);
        receiver.ingest(&mut CRLF.iter(), &mut body);
        loop {
            let unread = self.lines.unread();
            let mut octets = unread.iter();
            let done = receiver.ingest(&mut octets, &mut body);
            let consumed = unread.len() - octets.as_slice().len();
            self.lines.consume(consumed);
            let too_big = (body.len() - CRLF.len()) as u64 > max_size;
            if done {
                self.lines.shrink();
                if too_big {
                    return Ok(Body::TooBig);
                }
                body.drain(..CRLF.len());
                return Ok(Body::Complete(body));
            }
            if too_big {
                let mut rest = DummyDataReceiver::new_data(&receiver);
                drop(body);
                loop {
                    let unread = self.lines.unread();
                    let mut octets = unread.iter();
                    let done = rest.ingest(&mut octets);
                    let consumed = unread.len() - octets.as_slice().len();
                    self.lines.consume(consumed);
                    if done {
                        self.lines.shrink();
                        return Ok(Body::TooBig);
                    }
                    self.lines.fill(DATA_READ, timeout).await?;
                }
            }
            self.lines.fill(DATA_READ, timeout).await?;
        }
    }

    /// Exactly `size` octets (a BDAT chunk), appended to `body` unless `discard`.
    pub async fn read_chunk(
        &mut self,
        mut size: u64,
        body: &mut Vec<u8>,
        discard: bool,
        timeout: Duration,
    ) -> Result<(), End> {
        loop {
            let unread = self.lines.unread();
            let take = usize::try_from(size).unwrap_or(usize::MAX).min(unread.len());
            if !discard {
                body.extend_from_slice(&unread[..take]);
            }
            self.lines.consume(take);
            size -= take as u64;
            if size == 0 {
                self.lines.shrink();
                return Ok(());
            }
            self.lines.fill(DATA_READ, timeout).await?;
        }
    }

    /// Replaces the plain stream with TLS after `220 Ready to start TLS` was queued.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> Result<(), End> {
        self.lines.start_tls(acceptor, timeout).await
    }

    /// Closes the write side after flushing (a best effort: the client may be gone).
    pub async fn close(&mut self) {
        self.lines.close().await;
    }
}

/// Makes every line end in CRLF: a bare LF or a bare CR becomes CRLF. Stored mail then has one
/// line ending, so no later hop (our own outbound SMTP included) can read a bare `<LF>.<LF>` in
/// it as the end of the message.
pub fn normalize_line_endings(body: Vec<u8>) -> Vec<u8> {
    let bare = body.iter().enumerate().any(|(i, &byte)| match byte {
        b'\n' => i == 0 || body[i - 1] != b'\r',
        b'\r' => body.get(i + 1) != Some(&b'\n'),
        _ => false,
    });
    if !bare {
        return body;
    }
    let mut normalized = Vec::with_capacity(body.len() + body.len() / 32);
    let mut bytes = body.iter().peekable();
    while let Some(&byte) = bytes.next() {
        match byte {
            b'\r' => {
                normalized.extend_from_slice(b"\r\n");
                if bytes.peek() == Some(&&b'\n') {
                    bytes.next();
                }
            }
            b'\n' => normalized.extend_from_slice(b"\r\n"),
            other => normalized.push(other),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_line_feeds_and_carriage_returns_become_crlf() {
        assert_eq!(normalize_line_endings(b"a\r\nb\r\n".to_vec()), b"a\r\nb\r\n");
        assert_eq!(normalize_line_endings(b"a\nb\rc\r\n\n".to_vec()), b"a\r\nb\r\nc\r\n\r\n");
        assert_eq!(normalize_line_endings(b"\n.\n".to_vec()), b"\r\n.\r\n");
    }
}
