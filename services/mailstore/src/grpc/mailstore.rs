//! `kubemail.mailstore.v1.MailStore` over [`Store`].

use std::pin::Pin;

use futures::Stream;
use kubemail_proto::mailstore::mail_store_server::MailStore;
use kubemail_proto::mailstore::*;
use tonic::{Request, Response, Status, Streaming};

use super::{CHUNK_SIZE, Part, read_header_and_body, read_headers_and_bodies};
use crate::store::{BodySlice, Store};

/// The MailStore gRPC service.
#[derive(Clone)]
pub struct MailStoreService {
    store: Store,
}

impl MailStoreService {
    pub fn new(store: Store) -> Self {
        MailStoreService { store }
    }
}

type BodyStream = Pin<Box<dyn Stream<Item = Result<BodyChunk, Status>> + Send>>;

/// Messages read per query, and octets: a batch holds up to both (at least one message).
const BODY_BATCH_MESSAGES: usize = 32;
const BODY_BATCH_OCTETS: u64 = 1024 * 1024;

/// The UIDs of `messages` (UID, size) in batches for [`Store::fetch_bodies`].
fn body_batches(messages: &[(u32, u64)]) -> Vec<Vec<u32>> {
    let mut batches: Vec<Vec<u32>> = Vec::new();
    let mut octets = 0;
    for &(uid, size) in messages {
        match batches.last_mut() {
            Some(batch) if batch.len() < BODY_BATCH_MESSAGES && octets + size <= BODY_BATCH_OCTETS => {
                batch.push(uid);
                octets += size;
            }
            _ => {
                batches.push(vec![uid]);
                octets = size;
            }
        }
    }
    batches
}

/// The one UID `ranges` names, when it names exactly one.
fn single_uid(ranges: &[UidRange]) -> Option<u32> {
    match ranges {
        [range] if range.first == range.last && range.first > 0 => Some(range.first),
        _ => None,
    }
}

/// One message's octets as stream chunks; the first carries the total length and `meta`.
fn body_chunks(meta: MessageMeta, body: bytes::Bytes) -> Vec<BodyChunk> {
    let (uid, length) = (meta.uid, body.len() as u64);
    let mut meta = Some(meta);
    if body.is_empty() {
        return vec![BodyChunk { uid, data: Vec::new(), length, meta }];
    }
    (0..body.len())
        .step_by(CHUNK_SIZE)
        .map(|start| BodyChunk {
            uid,
            data: body.slice(start..(start + CHUNK_SIZE).min(body.len())).to_vec(),
            length: if start == 0 { length } else { 0 },
            meta: meta.take(),
        })
        .collect()
}

#[tonic::async_trait]
impl MailStore for MailStoreService {
    async fn resolve_recipient(
        &self,
        request: Request<ResolveRecipientRequest>,
    ) -> Result<Response<ResolveRecipientResponse>, Status> {
        let request = request.into_inner();
        let resolution = self.store.resolve_recipient(&request.address, request.size_hint).await?;
        Ok(Response::new(ResolveRecipientResponse {
            outcome: resolution.outcome as i32,
            account_id: resolution.account_id,
            canonical_address: resolution.canonical_address,
            quota: resolution.quota as i32,
        }))
    }

    async fn authenticate(
        &self,
        request: Request<AuthenticateRequest>,
    ) -> Result<Response<AuthenticateResponse>, Status> {
        let request = request.into_inner();
        let (account_id, address, sender_addresses) =
            self.store.authenticate(&request.username, &request.password).await?;
        Ok(Response::new(AuthenticateResponse { account_id, address, sender_addresses }))
    }

    async fn deliver(&self, request: Request<Streaming<DeliverChunk>>) -> Result<Response<DeliverResponse>, Status> {
        let max = self.store.limits().max_message_size;
        let (header, body) = read_header_and_body(request.into_inner(), max, |chunk: DeliverChunk| {
            chunk.part.map(|part| match part {
                deliver_chunk::Part::Header(header) => Part::Header(header),
                deliver_chunk::Part::Data(data) => Part::Data(data.into()),
            })
        })
        .await?;
        let message = super::incoming(body, max).await?;
        let response = self
            .store
            .deliver(&header.queue_message_id, &header.recipient, &header.mailbox, header.internal_date, message)
            .await?;
        Ok(Response::new(response))
    }

    async fn list_mailboxes(
        &self,
        request: Request<ListMailboxesRequest>,
    ) -> Result<Response<ListMailboxesResponse>, Status> {
        let (mailboxes, subscribed_without_mailbox) =
            self.store.list_mailboxes(request.into_inner().account_id).await?;
        Ok(Response::new(ListMailboxesResponse { mailboxes, subscribed_without_mailbox }))
    }

    async fn claim_recent(
        &self,
        request: Request<ClaimRecentRequest>,
    ) -> Result<Response<ClaimRecentResponse>, Status> {
        let request = request.into_inner();
        let (first_uid, last_uid) =
            self.store.claim_recent(request.account_id, request.mailbox_id, request.up_to_uid).await?;
        Ok(Response::new(ClaimRecentResponse { first_uid, last_uid }))
    }

    async fn create_mailbox(&self, request: Request<CreateMailboxRequest>) -> Result<Response<MailboxInfo>, Status> {
        let request = request.into_inner();
        Ok(Response::new(self.store.create_mailbox(request.account_id, &request.name, &request.special_use).await?))
    }

    async fn delete_mailbox(
        &self,
        request: Request<DeleteMailboxRequest>,
    ) -> Result<Response<DeleteMailboxResponse>, Status> {
        let request = request.into_inner();
        self.store.delete_mailbox(request.account_id, &request.name).await?;
        Ok(Response::new(DeleteMailboxResponse {}))
    }

    async fn rename_mailbox(&self, request: Request<RenameMailboxRequest>) -> Result<Response<MailboxInfo>, Status> {
        let request = request.into_inner();
        Ok(Response::new(self.store.rename_mailbox(request.account_id, &request.from, &request.to).await?))
    }

    async fn set_subscribed(
        &self,
        request: Request<SetSubscribedRequest>,
    ) -> Result<Response<SetSubscribedResponse>, Status> {
        let request = request.into_inner();
        self.store.set_subscribed(request.account_id, &request.name, request.subscribed).await?;
        Ok(Response::new(SetSubscribedResponse {}))
    }

    async fn select_mailbox(
        &self,
        request: Request<SelectMailboxRequest>,
    ) -> Result<Response<SelectMailboxResponse>, Status> {
        let request = request.into_inner();
        let known = (request.known_modseq > 0).then_some((request.known_mailbox_id, request.known_modseq));
        let answer = self.store.select_mailbox(request.account_id, &request.name, known, request.with_sizes).await?;
        Ok(Response::new(answer))
    }

    async fn fetch_messages(
        &self,
        request: Request<FetchMessagesRequest>,
    ) -> Result<Response<FetchMessagesResponse>, Status> {
        let request = request.into_inner();
        let messages = self
            .store
            .fetch_messages(
                request.account_id,
                request.mailbox_id,
                &request.uids,
                request.changed_since,
                request.with_cached,
            )
            .await?;
        Ok(Response::new(FetchMessagesResponse { messages }))
    }

    type FetchBodyStream = BodyStream;

    async fn fetch_body(&self, request: Request<FetchBodyRequest>) -> Result<Response<BodyStream>, Status> {
        let request = request.into_inner();
        let slice = BodySlice {
            headers_only: request.headers_only,
            with_cached: request.with_cached,
            offset: request.offset,
            length: request.length,
        };
        let batches = match single_uid(&request.uids) {
            // One message, the most common body fetch: its size needs no looking up first, it
            // is one batch. The mailbox is looked at only when no body came back, to tell a
            // message expunged meanwhile (nothing to send) from a mailbox that is not there.
            Some(uid) => {
                let (account_id, mailbox_id) = (request.account_id, request.mailbox_id);
                let bodies = self.store.fetch_bodies(account_id, mailbox_id, &[uid], slice).await?;
                if bodies.is_empty() {
                    self.store.message_sizes(account_id, mailbox_id, &request.uids).await?;
                }
                let chunks: Vec<Result<BodyChunk, Status>> =
                    bodies.into_iter().flat_map(|(meta, body)| body_chunks(meta, body)).map(Ok).collect();
                return Ok(Response::new(Box::pin(tokio_stream::iter(chunks))));
            }
            None => {
                body_batches(&self.store.message_sizes(request.account_id, request.mailbox_id, &request.uids).await?)
            }
        };
        // A few messages per query, one batch at a time through a short channel: memory stays
        // at about one batch however many messages the client asked for.
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        let store = self.store.clone();
        tokio::spawn(async move {
            for batch in batches {
                let bodies = match store.fetch_bodies(request.account_id, request.mailbox_id, &batch, slice).await {
                    Ok(bodies) => bodies,
                    Err(error) => {
                        let _ = sender.send(Err(Status::from(error))).await;
                        return;
                    }
                };
                // A message expunged since the UIDs were listed is not there: skipped, like
                // any missing UID.
                for (meta, body) in bodies {
                    for chunk in body_chunks(meta, body) {
                        if sender.send(Ok(chunk)).await.is_err() {
                            return; // the client went away
                        }
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn store_flags(&self, request: Request<StoreFlagsRequest>) -> Result<Response<StoreFlagsResponse>, Status> {
        Ok(Response::new(self.store.store_flags(&request.into_inner()).await?))
    }

    async fn expunge(&self, request: Request<ExpungeRequest>) -> Result<Response<ExpungeResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(self.store.expunge(request.account_id, request.mailbox_id, &request.uids).await?))
    }

    async fn remove_messages(
        &self,
        request: Request<RemoveMessagesRequest>,
    ) -> Result<Response<ExpungeResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(self.store.remove_listed(request.account_id, request.mailbox_id, &request.uids).await?))
    }

    async fn expunged_since(
        &self,
        request: Request<ExpungedSinceRequest>,
    ) -> Result<Response<ExpungedSinceResponse>, Status> {
        let ExpungedSinceRequest { account_id, mailbox_id, modseq, uids } = request.into_inner();
        let uids = self.store.expunged_since(account_id, mailbox_id, modseq, &uids).await?;
        Ok(Response::new(ExpungedSinceResponse { uids }))
    }

    async fn copy_messages(
        &self,
        request: Request<CopyMessagesRequest>,
    ) -> Result<Response<CopyMessagesResponse>, Status> {
        let r = request.into_inner();
        let response =
            self.store.copy_messages(r.account_id, r.source_mailbox_id, &r.uids, &r.destination, r.r#move).await?;
        Ok(Response::new(response))
    }

    async fn append(&self, request: Request<Streaming<AppendChunk>>) -> Result<Response<AppendResponse>, Status> {
        let max = self.store.limits().max_message_size;
        let (header, body) = read_header_and_body(request.into_inner(), max, append_part).await?;
        let message = super::incoming(body, max).await?;
        let flags = header.flags.unwrap_or_default();
        let response =
            self.store.append(header.account_id, &header.mailbox, &flags, header.internal_date, message).await?;
        Ok(Response::new(response))
    }

    async fn multi_append(
        &self,
        request: Request<Streaming<AppendChunk>>,
    ) -> Result<Response<MultiAppendResponse>, Status> {
        let max = self.store.limits().max_message_size;
        let sent = read_headers_and_bodies(request.into_inner(), max, append_part).await?;
        let (account_id, mailbox) = (sent[0].0.account_id, sent[0].0.mailbox.clone());
        let mut messages = Vec::with_capacity(sent.len());
        for (header, body) in sent {
            if header.account_id != account_id || header.mailbox != mailbox {
                return Err(Status::invalid_argument("every message of a MULTIAPPEND goes to the same mailbox"));
            }
            let message = super::incoming(body, max).await?;
            messages.push((header.flags.unwrap_or_default(), header.internal_date, message));
        }
        Ok(Response::new(self.store.append_many(account_id, &mailbox, messages).await?))
    }

    async fn get_metadata(
        &self,
        request: Request<GetMetadataRequest>,
    ) -> Result<Response<GetMetadataResponse>, Status> {
        let request = request.into_inner();
        let depth = request.depth();
        Ok(Response::new(self.store.get_metadata(request.account_id, &request.mailbox, &request.entries, depth).await?))
    }

    async fn set_metadata(
        &self,
        request: Request<SetMetadataRequest>,
    ) -> Result<Response<SetMetadataResponse>, Status> {
        let request = request.into_inner();
        self.store.set_metadata(request.account_id, &request.mailbox, &request.entries).await?;
        Ok(Response::new(SetMetadataResponse {}))
    }

    async fn search(&self, request: Request<SearchRequest>) -> Result<Response<SearchResponse>, Status> {
        Ok(Response::new(self.store.search(&request.into_inner()).await?))
    }

    async fn get_quota(&self, request: Request<GetQuotaRequest>) -> Result<Response<Quota>, Status> {
        Ok(Response::new(self.store.quota(request.into_inner().account_id).await?))
    }
}

/// An APPEND or MULTIAPPEND chunk: a message's header or a piece of its body.
fn append_part(chunk: AppendChunk) -> Option<Part<AppendHeader>> {
    chunk.part.map(|part| match part {
        append_chunk::Part::Header(header) => Part::Header(header),
        append_chunk::Part::Data(data) => Part::Data(data.into()),
    })
}
