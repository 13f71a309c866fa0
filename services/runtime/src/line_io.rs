//! A text protocol's connection read in lines, as SMTP and POP3 speak: buffered input, a
//! longest line beyond which the rest is discarded in bounded memory, a deadline for each whole
//! line (a client dripping one octet at a time holds a session no longer), replies queued and
//! written when the client waits for them (RFC 2920 pipelining), and the STARTTLS upgrade that
//! forgets whatever was sent before it. SMTP reads its DATA and BDAT blocks through
//! [`LineIo::unread`], [`LineIo::consume`] and [`LineIo::fill`]; [`dot_stuff`] writes a block
//! the way both protocols end one with a lone `.`.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;

use crate::tls::Connection;

/// Input buffer kept between lines; it grows for large blocks and shrinks back
/// ([`LineIo::shrink`]), so an idle connection holds little memory.
pub const IDLE_BUFFER: usize = 1024;

/// Why a session cannot go on reading.
#[derive(Debug)]
pub enum End {
    /// The client closed the connection.
    Closed,
    /// Nothing arrived within the timeout.
    Timeout,
    Io(io::Error),
}

/// A line, or the news that it was longer than allowed (the rest was discarded up to its line
/// feed).
pub enum Line {
    /// Up to and including its line feed.
    Complete(Vec<u8>),
    TooLong,
}

/// Appends `body` to `out` as a block that ends with a line holding only `.`, as SMTP's DATA
/// (RFC 5321 §4.5.2) and POP3's multi-line responses (RFC 1939 §3) send one: a `.` at the start
/// of a line is doubled, and a body that does not end with CRLF gets one before the `.` line.
pub fn dot_stuff(out: &mut Vec<u8>, body: &[u8]) {
    out.reserve(body.len() + body.len() / 64 + 5);
    let mut at_line_start = true;
    for &octet in body {
        if at_line_start && octet == b'.' {
            out.push(b'.');
        }
        out.push(octet);
        at_line_start = octet == b'\n';
    }
    if !body.is_empty() && !body.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
}

/// Buffered reading and writing over a [`Connection`].
pub struct LineIo<S> {
    connection: Connection<S>,
    input: Vec<u8>,
    /// Start of the unread input in `input`.
    position: usize,
    output: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> LineIo<S> {
    pub fn new(connection: Connection<S>) -> Self {
        LineIo { connection, input: Vec::with_capacity(IDLE_BUFFER), position: 0, output: Vec::with_capacity(256) }
    }

    pub fn is_tls(&self) -> bool {
        self.connection.is_tls()
    }

    /// The negotiated TLS version and cipher suite.
    pub fn tls_description(&self) -> Option<String> {
        self.connection.tls_description()
    }

    /// The server name the client asked for in its TLS handshake.
    pub fn tls_server_name(&self) -> Option<&str> {
        self.connection.tls_server_name()
    }

    /// Where replies are queued; they are written before the next read that would wait, or by
    /// [`LineIo::flush`].
    pub fn output(&mut self) -> &mut Vec<u8> {
        &mut self.output
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
    /// §4.2, RFC 2595 §3.1: the STARTTLS command injection attack).
    pub fn discard_buffered_input(&mut self) {
        self.input.clear();
        self.position = 0;
    }

    /// The next line, up to and including its line feed, at most `limit` octets. The whole
    /// line must arrive within `timeout`.
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

    /// The input received and not consumed yet.
    pub fn unread(&self) -> &[u8] {
        &self.input[self.position..]
    }

    /// Marks the first `octets` of [`LineIo::unread`] as consumed.
    pub fn consume(&mut self, octets: usize) {
        self.position = (self.position + octets).min(self.input.len());
    }

    /// Reads more input, up to `read_size` octets, after writing any queued replies: the client
    /// may be waiting for them before it sends anything else.
    pub async fn fill(&mut self, read_size: usize, timeout: Duration) -> Result<(), End> {
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

    /// Gives back the memory a large block needed.
    pub fn shrink(&mut self) {
        self.input.drain(..self.position);
        self.position = 0;
        self.input.shrink_to(IDLE_BUFFER);
    }

    /// Replaces the plain stream with TLS after the go-ahead was queued: writes it, forgets
    /// the buffered input, and completes the handshake within `timeout`.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_is_dot_stuffed_and_terminated() {
        let dot_stuffed = |body: &[u8]| {
            let mut out = Vec::new();
            dot_stuff(&mut out, body);
            out
        };
        assert_eq!(dot_stuffed(b".hidden\r\nplain\r\n..two\r\n"), b"..hidden\r\nplain\r\n...two\r\n.\r\n");
        assert_eq!(dot_stuffed(b"no final line end"), b"no final line end\r\n.\r\n");
        assert_eq!(dot_stuffed(b""), b".\r\n");
    }
}
