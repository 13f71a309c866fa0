//! Messages read from the mailstore: metadata by UID, and whole messages streamed one at a
//! time (FETCH, SEARCH, STORE); and UID sets as the ranges the mailstore's requests take.

use std::collections::HashMap;

use futures::StreamExt;
use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use kubemail_proto::mailstore::{BodyChunk, FetchBodyRequest, FetchMessagesRequest, MessageMeta, UidRange};
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// The messages `uids` (only their headers with `headers_only`) from the mailstore, one
    /// at a time, each with its metadata (and its cached items, `with_cached`), or `None` after
    /// answering why they cannot be read.
    pub(super) async fn bodies(
        &mut self,
        tag: Option<&Tag<'_>>,
        (account_id, mailbox_id): (i64, i64),
        uids: &[u32],
        headers_only: bool,
        with_cached: bool,
    ) -> Option<Bodies> {
        let uids = uid_ranges(uids);
        let request =
            FetchBodyRequest { account_id, mailbox_id, uids, offset: 0, length: 0, headers_only, with_cached };
        match self.services.mailstore.clone().fetch_body(request).await {
            Ok(stream) => Some(Bodies { chunks: stream.into_inner() }),
            Err(status) => {
                self.refused(tag, &status);
                None
            }
        }
    }

    /// Metadata of `uids` by UID, `with_cached` items; only of those with a MODSEQ above
    /// `changed_since` unless it is 0.
    pub(super) async fn fetch_meta(
        &mut self,
        (account_id, mailbox_id): (i64, i64),
        uids: &[u32],
        changed_since: u64,
        with_cached: bool,
    ) -> Result<HashMap<u32, MessageMeta>, tonic::Status> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        let uids = uid_ranges(uids);
        let request = FetchMessagesRequest { account_id, mailbox_id, uids, changed_since, with_cached };
        let messages = self.services.mailstore.clone().fetch_messages(request).await?.into_inner().messages;
        Ok(messages.into_iter().map(|meta| (meta.uid, meta)).collect())
    }
}

/// Whole messages from a FetchBody stream, which sends each message's chunks one after the
/// other, the first announcing the length.
pub(super) struct Bodies {
    chunks: tonic::Streaming<BodyChunk>,
}

/// One message of a [`Bodies`] stream.
pub(super) struct Body {
    pub uid: u32,
    /// Its metadata as read with the body (a mailstore from before BodyChunk carried it
    /// sends none).
    pub meta: Option<MessageMeta>,
    pub octets: Vec<u8>,
}

impl Bodies {
    /// The next message.
    pub async fn next(&mut self) -> Option<Result<Body, tonic::Status>> {
        let first = match self.chunks.next().await? {
            Ok(chunk) => chunk,
            Err(status) => return Some(Err(status)),
        };
        let length = first.length as usize;
        let mut body = first.data;
        body.reserve(length.saturating_sub(body.len()));
        while body.len() < length {
            match self.chunks.next().await {
                Some(Ok(chunk)) => body.extend_from_slice(&chunk.data),
                Some(Err(status)) => return Some(Err(status)),
                None => return Some(Err(tonic::Status::data_loss("a message ended early"))),
            }
        }
        Some(Ok(Body { uid: first.uid, meta: first.meta, octets: body }))
    }
}

/// `uids` (ascending) as the fewest ranges.
pub(super) fn uid_ranges(uids: &[u32]) -> Vec<UidRange> {
    let mut ranges: Vec<UidRange> = Vec::new();
    for &uid in uids {
        match ranges.last_mut() {
            Some(range) if range.last + 1 == uid => range.last = uid,
            _ => ranges.push(UidRange { first: uid, last: uid }),
        }
    }
    ranges
}

/// A UID set as the client wrote it, UIDs of messages gone included, with `*` reaching the
/// highest UID there can be: the UIDs VANISHED (EARLIER) may name.
pub(super) fn written_uid_ranges(set: &SequenceSet) -> Vec<UidRange> {
    let bound = |bound: &SeqOrUid| match bound {
        SeqOrUid::Value(value) => value.get(),
        SeqOrUid::Asterisk => u32::MAX,
    };
    let range = |sequence: &Sequence| match sequence {
        Sequence::Single(single) => (bound(single), bound(single)),
        Sequence::Range(from, to) => (bound(from).min(bound(to)), bound(from).max(bound(to))),
    };
    set.0.as_ref().iter().map(range).map(|(first, last)| UidRange { first, last }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_become_the_fewest_ranges() {
        let ranges = uid_ranges(&[1, 2, 3, 7, 9, 10]);
        let pairs: Vec<(u32, u32)> = ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(pairs, [(1, 3), (7, 7), (9, 10)]);
    }
}
