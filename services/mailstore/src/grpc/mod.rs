//! The gRPC face of the store: request decoding and validation of the envelope of each call;
//! the work itself is in [`crate::store`].
//!
//! - [`mailstore`] — `kubemail.mailstore.v1.MailStore`.
//! - [`admin`] — `kubemail.admin.v1.Admin`.
//! - [`authorization`] — which component may call which method.

pub mod admin;
pub mod authorization;
pub mod mailstore;

use bytes::{Bytes, BytesMut};
use futures::{Stream, StreamExt};
use tonic::Status;

/// Size of the chunks bodies are streamed in: well under gRPC's default 4 MiB message limit.
pub const CHUNK_SIZE: usize = 64 * 1024;

/// Reads a client stream whose first message is a header and the rest body chunks, refusing
/// bodies over `max_size` as soon as they cross it (nothing over the limit is buffered).
pub(crate) async fn read_header_and_body<S, C, H>(
    mut stream: S,
    max_size: u64,
    split: impl Fn(C) -> Option<Part<H>>,
) -> Result<(H, Bytes), Status>
where
    S: Stream<Item = Result<C, Status>> + Unpin,
{
    let header = match stream.next().await.transpose()?.and_then(&split) {
        Some(Part::Header(header)) => header,
        _ => return Err(Status::invalid_argument("the first message of the stream must be the header")),
    };
    let mut body = BytesMut::new();
    while let Some(chunk) = stream.next().await.transpose()? {
        match split(chunk) {
            Some(Part::Data(data)) => {
                if (body.len() + data.len()) as u64 > max_size {
                    return Err(Status::invalid_argument(format!("message exceeds the limit of {max_size} octets")));
                }
                body.extend_from_slice(&data);
            }
            _ => return Err(Status::invalid_argument("only body chunks may follow the header")),
        }
    }
    Ok((header, body.freeze()))
}

/// Reads a client stream of messages, each a header followed by its body chunks, refusing a
/// stream whose bodies together pass `max_size` as soon as they do.
pub(crate) async fn read_headers_and_bodies<S, C, H>(
    mut stream: S,
    max_size: u64,
    split: impl Fn(C) -> Option<Part<H>>,
) -> Result<Vec<(H, Bytes)>, Status>
where
    S: Stream<Item = Result<C, Status>> + Unpin,
{
    let mut messages: Vec<(H, BytesMut)> = Vec::new();
    let mut total = 0u64;
    while let Some(chunk) = stream.next().await.transpose()? {
        match (split(chunk), messages.last_mut()) {
            (Some(Part::Header(header)), _) => messages.push((header, BytesMut::new())),
            (Some(Part::Data(data)), Some((_, body))) => {
                total += data.len() as u64;
                if total > max_size {
                    return Err(Status::invalid_argument(format!("messages exceed the limit of {max_size} octets")));
                }
                body.extend_from_slice(&data);
            }
            _ => return Err(Status::invalid_argument("each message must start with its header")),
        }
    }
    if messages.is_empty() {
        return Err(Status::invalid_argument("no message was sent"));
    }
    Ok(messages.into_iter().map(|(header, body)| (header, body.freeze())).collect())
}

/// One message of a header-then-body stream.
pub(crate) enum Part<H> {
    Header(H),
    Data(Bytes),
}

/// Bodies above this are hashed and parsed on a blocking thread, so a large message does not
/// stall the other requests of an async worker.
const DERIVE_INLINE_LIMIT: usize = 256 * 1024;

/// The checked body with what is derived from it (its content hash, its cached FETCH items).
pub(crate) async fn incoming(body: Bytes, max_size: u64) -> Result<crate::store::IncomingMessage, Status> {
    if body.len() <= DERIVE_INLINE_LIMIT {
        return Ok(crate::store::IncomingMessage::new(body, max_size)?);
    }
    tokio::task::spawn_blocking(move || crate::store::IncomingMessage::new(body, max_size))
        .await
        .map_err(|e| Status::internal(format!("deriving task: {e}")))?
        .map_err(Status::from)
}
