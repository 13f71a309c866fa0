//! COMPRESS=DEFLATE (RFC 4978): advertised after login only; both directions raw DEFLATE from
//! the octet after the tagged OK; a header fetch of many messages a fraction of its size on the
//! wire; a second COMPRESS refused with COMPRESSIONACTIVE; input that is not DEFLATE ends the
//! connection without harm.

mod common;

use common::Fixture;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The client's side of a compressed connection.
struct Compressed<S> {
    stream: S,
    deflate: Compress,
    inflate: Decompress,
    /// Octets received on the wire, compressed.
    wire: usize,
    plain: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Compressed<S> {
    fn new(stream: S) -> Self {
        let (deflate, inflate) = (Compress::new(Compression::default(), false), Decompress::new(false));
        Compressed { stream, deflate, inflate, wire: 0, plain: Vec::new() }
    }

    async fn send(&mut self, line: &str) {
        let mut out = Vec::with_capacity(line.len() + 64);
        self.deflate.compress_vec(line.as_bytes(), &mut out, FlushCompress::Sync).unwrap();
        self.stream.write_all(&out).await.unwrap();
    }

    /// Everything up to and with the line tagged `tag`, inflated; `None` if the server closed
    /// the connection first.
    async fn until_tagged(&mut self, tag: &str) -> Option<String> {
        let end = format!("\r\n{tag} ");
        loop {
            let text = String::from_utf8_lossy(&self.plain).into_owned();
            if let Some(at) = text.find(&end).or_else(|| text.starts_with(&end[2..]).then_some(0))
                && let Some(line_end) = text[at + 2..].find("\r\n")
            {
                self.plain.clear();
                return Some(text[..at + 2 + line_end + 2].to_string());
            }
            let mut buffer = vec![0u8; 64 * 1024];
            let read = self.stream.read(&mut buffer).await.unwrap_or(0);
            if read == 0 {
                return None;
            }
            self.wire += read;
            let mut consumed = 0;
            while consumed < read {
                self.plain.reserve(256 * 1024);
                let before = self.inflate.total_in();
                self.inflate.decompress_vec(&buffer[consumed..read], &mut self.plain, FlushDecompress::Sync).unwrap();
                consumed += (self.inflate.total_in() - before) as usize;
            }
        }
    }
}

#[tokio::test]
async fn compress_is_offered_after_login_only() {
    let f = Fixture::start().await;
    let (mut client, greeting) = f.connect().await;
    assert!(!greeting.contains("COMPRESS"), "{greeting}");
    let early = client.command("a COMPRESS DEFLATE").await;
    assert!(early.status().starts_with("BAD"), "{early:?}");
    let mut client = f.logged_in("alice@example.org").await;
    let capabilities = client.command("c CAPABILITY").await.expect_ok();
    assert!(capabilities[0].split(' ').any(|word| word == "COMPRESS=DEFLATE"), "{capabilities:?}");
    let unknown = client.command("z COMPRESS SNAPPY").await;
    assert!(unknown.status().starts_with("BAD"), "{unknown:?}");
}

#[tokio::test]
async fn both_directions_are_deflated_and_headers_shrink_on_the_wire() {
    let f = Fixture::start().await;
    for n in 0..200 {
        let message = format!(
            "From: Sender Number {n} <sender{n}@example.org>\r\nTo: Alice <alice@example.org>\r\nSubject: Weekly report {n}\r\nMessage-ID: <report-{n}@example.org>\r\nDate: Mon, 02 Mar 2026 10:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nBody {n}.\r\n"
        );
        f.mailstore.deliver("alice@example.org", message.as_bytes()).await;
    }
    let mut client = f.logged_in("alice@example.org").await;
    let answer = client.command("c COMPRESS DEFLATE").await;
    assert_eq!(answer.tagged, "c OK DEFLATE active");
    let mut compressed = Compressed::new(client.into_stream());

    compressed.send("s SELECT INBOX\r\n").await;
    let selected = compressed.until_tagged("s").await.expect("SELECT answered");
    assert!(selected.contains("* 200 EXISTS") && selected.contains("s OK"), "{selected}");
    compressed.wire = 0;
    compressed.send("f FETCH 1:* (BODY.PEEK[HEADER])\r\n").await;
    let fetched = compressed.until_tagged("f").await.expect("FETCH answered");
    assert_eq!(fetched.matches(" FETCH (").count(), 200);
    assert!(fetched.contains("Subject: Weekly report 199"), "the last header arrives whole");
    assert!(
        compressed.wire * 4 < fetched.len(),
        "{} octets on the wire for {} of responses",
        compressed.wire,
        fetched.len()
    );

    compressed.send("d COMPRESS DEFLATE\r\n").await;
    let again = compressed.until_tagged("d").await.expect("answered");
    assert!(again.contains("d NO [COMPRESSIONACTIVE]"), "{again}");
    compressed.send("l LOGOUT\r\n").await;
    let bye = compressed.until_tagged("l").await.expect("LOGOUT answered");
    assert!(bye.contains("* BYE") && bye.contains("l OK"), "{bye}");
}

#[tokio::test]
async fn input_that_is_not_deflate_ends_the_connection() {
    let f = Fixture::start().await;
    let mut client = f.logged_in("alice@example.org").await;
    client.command("c COMPRESS DEFLATE").await.expect_ok();
    let mut stream = client.into_stream();
    stream.write_all(&[0xff; 64]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the server closes the connection rather than waiting");
    // The session is gone, and the server still serves others.
    let mut other = f.logged_in("alice@example.org").await;
    other.command("n NOOP").await.expect_ok();
}
