//! The connection under a session: buffered input read in command lines, DATA blocks and BDAT
//! chunks; replies buffered and written when the client waits for them (RFC 2920: a server may
//! hold replies while more pipelined commands are buffered); the STARTTLS upgrade.

use std::io;
use std::time::Duration;

pub use kubemail_runtime::tls::Connection;
use smtp_proto::request::receiver::{DataReceiver, DummyDataReceiver};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::reply::Reply;

/// Input buffer kept between commands; it grows for DATA and shrinks back, so an idle
/// connection holds little memory.
const IDLE_BUFFER: usize = 1024;
/// Read size while a message body streams in.
const DATA_READ: usize = 16 * 1024;
const CRLF: &[u8] = b"\r\n";

/// Why a session cannot go on reading.
#[derive(Debug)]
pub enum End {
    /// The client closed the connection.
    Closed,
    /// Nothing arrived within the timeout.
    Timeout,
    Io(io::Error),
}

/// A command line, or the news that it was longer than allowed (the rest was discarded up to
/// its line feed).
pub enum Line {
    Complete(Vec<u8>),
    TooLong,
}

/// A message body received with DATA or BDAT.
pub enum Body {
    Complete(Vec<u8>),
    /// Larger than allowed; read to its end and discarded.
    TooBig,
}

/// Buffered reading and writing over a [`Connection`].
pub struct Io<S> {
    connection: Connection<S>,
    input: Vec<u8>,
    /// Start of the unread input in `input`.
    position: usize,
    output: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Io<S> {
    pub fn new(connection: Connection<S>) -> Self {
        Io { connection, input: Vec::with_capacity(IDLE_BUFFER), position: 0, output: Vec::with_capacity(256) }
    }

    pub fn is_tls(&self) -> bool {
        self.connection.is_tls()
    }

    /// The negotiated TLS version and cipher suite, for the Received header.
    pub fn tls_description(&self) -> Option<String> {
        self.connection.tls_description()
    }

    /// The server name the client asked for in its TLS handshake.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.connection.tls_server_name()
    }

    /// Queues a reply; it is written before the next read that would wait, or by [`Io::flush`].
    pub fn reply(&mut self, reply: &Reply) {
        reply.write_to(&mut self.output);
    }

    pub async fn flush(&mut self) -> Result<(), End> {
        if !self.output.is_empty() {
            self.connection.write_all(&self.output).await.map_err(End::Io)?;
            self.output.clear();
            self.connection.flush().await.map_err(End::Io)?;
        }
        Ok(())
    }

    /// Whether input is buffered beyond what was consumed (pipelined commands).
    pub fn has_buffered_input(&self) -> bool {
        self.position < self.input.len()
    }

    /// Drops buffered input: nothing sent before a TLS handshake may count after it (RFC 3207
    /// §4.2, the STARTTLS command injection attack).
    pub fn discard_buffered_input(&mut self) {
        self.input.clear();
        self.position = 0;
    }

    /// The next line, up to and including its line feed, at most `limit` octets. The whole
    /// line must arrive within `timeout`: a client dripping one octet at a time cannot hold a
    /// session open for longer.
    pub async fn read_line(&mut self, limit: usize, timeout: Duration) -> Result<Line, End> {
        match tokio::time::timeout(timeout, self.read_line_unbounded(limit, timeout)).await {
            Ok(line) => line,
            Err(_) => Err(End::Timeout),
        }
    }

    async fn read_line_unbounded(&mut self, limit: usize, timeout: Duration) -> Result<Line, End> {
        loop {
            let unread = &self.input[self.position..];
            if let Some(end) = memchr::memchr(b'\n', unread) {
                let line = unread[..=end].to_vec();
                self.position += end + 1;
                if line.len() > limit {
                    return Ok(Line::TooLong);
                }
                return Ok(Line::Complete(line));
            }
            if unread.len() > limit {
                // Without a line feed in sight, drop what is buffered and keep discarding
                // until one arrives; memory stays bounded whatever the client sends.
                self.discard_buffered_input();
                return self.skip_to_line_end(timeout).await.map(|()| Line::TooLong);
            }
            self.fill(IDLE_BUFFER, timeout).await?;
        }
    }

    async fn skip_to_line_end(&mut self, timeout: Duration) -> Result<(), End> {
        loop {
            self.fill(IDLE_BUFFER, timeout).await?;
            if let Some(end) = memchr::memchr(b'\n', &self.input[self.position..]) {
                self.position += end + 1;
                return Ok(());
            }
            self.discard_buffered_input();
        }
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
            let mut unread = self.input[self.position..].iter();
            let done = receiver.ingest(&mut unread, &mut body);
            self.position = self.input.len() - unread.as_slice().len();
            let too_big = (body.len() - CRLF.len()) as u64 > max_size;
            if done {
                self.shrink();
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
                    let mut unread = self.input[self.position..].iter();
                    let done = rest.ingest(&mut unread);
                    self.position = self.input.len() - unread.as_slice().len();
                    if done {
                        self.shrink();
                        return Ok(Body::TooBig);
                    }
                    self.fill(DATA_READ, timeout).await?;
                }
            }
            self.fill(DATA_READ, timeout).await?;
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
            let unread = &self.input[self.position..];
            let take = usize::try_from(size).unwrap_or(usize::MAX).min(unread.len());
            if !discard {
                body.extend_from_slice(&unread[..take]);
            }
            self.position += take;
            size -= take as u64;
            if size == 0 {
                self.shrink();
                return Ok(());
            }
            self.fill(DATA_READ, timeout).await?;
        }
    }

    /// Reads more input, after writing any queued replies: the client may be waiting for them
    /// before it sends anything else.
    async fn fill(&mut self, read_size: usize, timeout: Duration) -> Result<(), End> {
        self.flush().await?;
        if self.position == self.input.len() {
            self.input.clear();
            self.position = 0;
        } else if self.position > 0 && self.input.capacity() - self.input.len() < read_size {
            self.input.drain(..self.position);
            self.position = 0;
        }
        self.input.reserve(read_size);
        match tokio::time::timeout(timeout, self.connection.read_buf(&mut self.input)).await {
            Err(_) => Err(End::Timeout),
            Ok(Err(error)) => Err(End::Io(error)),
            Ok(Ok(0)) => Err(End::Closed),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Gives back the memory a message body needed.
    fn shrink(&mut self) {
        self.input.drain(..self.position);
        self.position = 0;
        self.input.shrink_to(IDLE_BUFFER);
    }

    /// Replaces the plain stream with TLS after `220 Ready to start TLS` went out.
    pub async fn start_tls(&mut self, acceptor: &TlsAcceptor, timeout: Duration) -> Result<(), End> {
        self.flush().await?;
        self.discard_buffered_input();
        match tokio::time::timeout(timeout, self.connection.start_tls(acceptor)).await {
            Err(_) => Err(End::Timeout),
            Ok(Err(error)) => Err(End::Io(error)),
            Ok(Ok(())) => Ok(()),
        }
    }

    /// Closes the write side after flushing (a best effort: the client may be gone).
    pub async fn close(&mut self) {
        let _ = self.flush().await;
        let _ = self.connection.shutdown().await;
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
