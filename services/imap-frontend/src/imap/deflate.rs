//! The DEFLATE layer of COMPRESS=DEFLATE (RFC 4978): raw DEFLATE (RFC 1951, no zlib header)
//! in both directions, inside TLS. Each batch of responses ends with a sync flush, so the
//! client can read all of it without waiting for more.
//!
//! What the client sends is inflated a bounded chunk at a time: a few kilobytes of compressed
//! input may stand for megabytes, and the session takes them only as fast as it reads commands.

use std::io;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The most octets inflated at a time.
pub const INFLATE_CHUNK: usize = 64 * 1024;

/// Both directions of a compressed connection.
pub struct Deflate {
    compress: Compress,
    decompress: Decompress,
    /// Compressed input read from the socket and not inflated yet.
    pending: Vec<u8>,
}

impl Deflate {
    pub fn new() -> Deflate {
        Deflate {
            compress: Compress::new(Compression::default(), false),
            decompress: Decompress::new(false),
            pending: Vec::new(),
        }
    }

    /// `plain` compressed and sync-flushed: the client can inflate all of it at once.
    pub fn compress(&mut self, plain: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(plain.len() / 2 + 64);
        let mut consumed = 0;
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let before = self.compress.total_in();
            self.compress
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|error| io::Error::other(error.to_string()))?;
            consumed += (self.compress.total_in() - before) as usize;
            // Done once all is taken and the flush did not fill the room it had.
            if consumed == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    /// Keeps `compressed` octets read from the client, to be inflated by [`Deflate::inflate`].
    pub fn receive(&mut self, compressed: &[u8]) {
        self.pending.extend_from_slice(compressed);
    }

    /// Up to [`INFLATE_CHUNK`] octets inflated from what was received; empty when more
    /// compressed input is needed first. Input that is not DEFLATE is an error.
    pub fn inflate(&mut self) -> io::Result<Vec<u8>> {
        let mut out = Vec::with_capacity(INFLATE_CHUNK);
        let before = self.decompress.total_in();
        let status = self
            .decompress
            .decompress_vec(&self.pending, &mut out, FlushDecompress::Sync)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidData, error.to_string()))?;
        let consumed = (self.decompress.total_in() - before) as usize;
        self.pending.drain(..consumed);
        if status == Status::StreamEnd {
            // The client ended its DEFLATE stream: nothing may follow in it.
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the client ended its compressed stream"));
        }
        Ok(out)
    }

    /// Whether received input is waiting to be inflated.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side: the opposite directions.
    fn client() -> (Compress, Decompress) {
        (Compress::new(Compression::default(), false), Decompress::new(false))
    }

    fn inflate_all(decompress: &mut Decompress, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(1024);
        let mut consumed = 0;
        while consumed < input.len() || out.len() == out.capacity() {
            out.reserve(out.capacity());
            let before = decompress.total_in();
            decompress.decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync).unwrap();
            consumed += (decompress.total_in() - before) as usize;
        }
        out
    }

    #[test]
    fn each_flush_can_be_read_whole_by_the_client() {
        let mut server = Deflate::new();
        let (_, mut client_inflate) = client();
        for response in [&b"* OK ready\r\n"[..], b"a OK done\r\n", &b"* 1 FETCH (FLAGS ())\r\n".repeat(5000)] {
            let wire = server.compress(response).unwrap();
            assert_eq!(inflate_all(&mut client_inflate, &wire), response);
        }
    }

    #[test]
    fn a_bomb_is_inflated_a_chunk_at_a_time() {
        let mut server = Deflate::new();
        let (mut client_deflate, _) = client();
        let plain = vec![b'a'; 10 * INFLATE_CHUNK];
        let mut wire = Vec::with_capacity(plain.len());
        client_deflate.compress_vec(&plain, &mut wire, FlushCompress::Sync).unwrap();
        assert!(wire.len() < INFLATE_CHUNK / 10, "{} octets compressed", wire.len());
        server.receive(&wire);
        let mut total = 0;
        for _ in 0..20 {
            let chunk = server.inflate().unwrap();
            assert!(chunk.len() <= INFLATE_CHUNK);
            total += chunk.len();
            if total == plain.len() {
                break;
            }
        }
        assert_eq!(total, plain.len());
    }

    #[test]
    fn input_that_is_not_deflate_is_an_error() {
        let mut server = Deflate::new();
        server.receive(&[0xff; 32]);
        assert!(server.inflate().is_err());
    }
}
