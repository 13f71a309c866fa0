//! SORT and THREAD, with their UID forms (RFC 5256), and the DISPLAYFROM and DISPLAYTO sort
//! keys (RFC 5957): a search, then the messages found in the order or the threads asked for.
//! SORT RETURN (ESORT, RFC 5267) answers ESEARCH in sort order, with PARTIAL pages (RFC 9394),
//! and with UPDATE keeps the sorted result up to date (CONTEXT=SORT).
//!
//! What is compared comes from each message's [`Summary`], read from its header once and
//! kept in the frontend's [`crate::summary::SummaryCache`].

use std::cmp::Ordering;
use std::sync::Arc;

use imap_codec::imap_types::core::{Charset, Tag};
use imap_codec::imap_types::extensions::sort::{SortCriterion, SortKey};
use imap_codec::imap_types::extensions::thread::ThreadingAlgorithm;
use imap_codec::imap_types::search::SearchKey;
use kubemail_proto::mailstore::MessageMeta;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::search::{Matched, esearch};
use crate::extended_syntax::{SearchExtra, SearchReturn};
use crate::response::Status;
use crate::summary::Summary;
use crate::threading::{self, Entry};

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    pub(super) async fn sort(
        &mut self,
        tag: &Tag<'_>,
        criteria: &[SortCriterion],
        charset: &Charset<'_>,
        search: (&[SearchKey<'_>], &[SearchExtra]),
        uid: bool,
        returns: Option<&SearchReturn>,
    ) {
        let update = returns.is_some_and(|returns| returns.update);
        if update && !self.context_tag_free(tag) {
            return;
        }
        let Some(matched) = self.matching(Some(tag), Some(charset), search).await else {
            self.save_result(&[], returns);
            return;
        };
        let found = &matched.found;
        let Some(sorted) = self.sorted(Some(tag), criteria, found).await else {
            self.save_result(&[], returns);
            return;
        };
        self.save_result(&sorted, returns);
        if update {
            self.keep_context(tag, uid, search, Some(criteria), &sorted);
        }
        let line = match returns {
            // ESORT (RFC 5267 §3.1): the answer to SEARCH RETURN, in sort order.
            Some(returns) if returns.answers() => esearch(tag, uid, &sorted, returns, &matched),
            // SAVE alone answers nothing (RFC 5182 §2.1).
            Some(_) => String::new(),
            None => {
                let mut line = String::from("* SORT");
                for &(number, message_uid) in &sorted {
                    line.push_str(&format!(" {}", if uid { message_uid } else { number }));
                }
                if let Some(modseq) = matched.highest_modseq(found) {
                    // As SEARCH does (RFC 7162 §3.1.5).
                    line.push_str(&format!(" (MODSEQ {modseq})"));
                }
                line.push_str("\r\n");
                line
            }
        };
        self.io.write(line.as_bytes());
        self.ok(tag, if uid { "UID SORT completed" } else { "SORT completed" });
    }

    pub(super) async fn thread(
        &mut self,
        tag: &Tag<'_>,
        algorithm: &ThreadingAlgorithm<'_>,
        charset: &Charset<'_>,
        search: (&[SearchKey<'_>], &[SearchExtra]),
        uid: bool,
    ) {
        let thread: fn(&[Entry<'_>]) -> String = match algorithm {
            ThreadingAlgorithm::OrderedSubject => threading::ordered_subject,
            ThreadingAlgorithm::References => threading::references,
            ThreadingAlgorithm::Other(other) if other.as_ref().eq_ignore_ascii_case("REFS") => threading::refs,
            ThreadingAlgorithm::Other(other) => {
                let text = format!("Unknown threading algorithm {}", other.as_ref());
                self.respond(Some(tag), Status::Bad, None, &text);
                return;
            }
        };
        let Some(Matched { found, .. }) = self.matching(Some(tag), Some(charset), search).await else { return };
        let Some(summaries) = self.summaries(Some(tag), &found).await else { return };
        let entries: Vec<Entry<'_>> = found
            .iter()
            .zip(&summaries)
            .map(|(&(number, message_uid), summary)| Entry {
                id: if uid { message_uid } else { number },
                number,
                summary,
            })
            .collect();
        let line = format!("* THREAD {}\r\n", thread(&entries));
        let line = if entries.is_empty() { "* THREAD\r\n".to_string() } else { line };
        self.io.write(line.as_bytes());
        self.ok(tag, if uid { "UID THREAD completed" } else { "THREAD completed" });
    }

    /// `found` (sequence number, UID) in the order `criteria` give; `None` after answering
    /// (to `tag`, or untagged without one) why the messages could not be read.
    pub(super) async fn sorted(
        &mut self,
        tag: Option<&Tag<'_>>,
        criteria: &[SortCriterion],
        found: &[(u32, u32)],
    ) -> Option<Vec<(u32, u32)>> {
        let summaries = self.summaries(tag, found).await?;
        let mut order: Vec<usize> = (0..found.len()).collect();
        order.sort_by(|&a, &b| {
            let ordering = criteria.iter().fold(Ordering::Equal, |ordering, criterion| {
                ordering.then_with(|| compare(criterion, &summaries[a], &summaries[b]))
            });
            // Messages equal on every key stay in mailbox order (RFC 5256 §3).
            ordering.then(found[a].0.cmp(&found[b].0))
        });
        Some(order.into_iter().map(|index| found[index]).collect())
    }

    /// The summaries of `found` (sequence number, UID), in its order: those kept from the
    /// cache, the others read from the messages' headers. `None` after answering (to `tag`, or
    /// untagged without one) why they cannot be read.
    async fn summaries(&mut self, tag: Option<&Tag<'_>>, found: &[(u32, u32)]) -> Option<Vec<Arc<Summary>>> {
        let selection = self.selected.as_ref()?;
        let (mailbox_id, uidvalidity) = (selection.mailbox_id, selection.uidvalidity);
        let uids: Vec<u32> = found.iter().map(|&(_, uid)| uid).collect();
        let mut known = self.services.summaries.get(mailbox_id, uidvalidity, &uids);
        let missing: Vec<u32> = uids.iter().copied().filter(|uid| !known.contains_key(uid)).collect();
        if !missing.is_empty() {
            let account_id = self.account_id();
            let mut headers = self.bodies(tag, (account_id, mailbox_id), &missing, true, false).await?;
            let mut read = Vec::with_capacity(missing.len());
            let mut without_meta = Vec::new();
            while let Some(next) = headers.next().await {
                let header = match next {
                    Ok(header) => header,
                    Err(status) => {
                        self.refused(tag, &status);
                        return None;
                    }
                };
                match header.meta {
                    Some(meta) => read.push((header.uid, summary(&header.octets, &meta))),
                    None => without_meta.push((header.uid, header.octets)),
                }
            }
            if !without_meta.is_empty() {
                let uids: Vec<u32> = without_meta.iter().map(|(uid, _)| *uid).collect();
                let meta = match self.fetch_meta((account_id, mailbox_id), &uids, 0, false).await {
                    Ok(meta) => meta,
                    Err(status) => {
                        self.refused(tag, &status);
                        return None;
                    }
                };
                for (uid, octets) in without_meta {
                    let meta = meta.get(&uid).cloned().unwrap_or_default();
                    read.push((uid, summary(&octets, &meta)));
                }
            }
            self.services.summaries.put(mailbox_id, uidvalidity, &read);
            known.extend(read);
        }
        // A message expunged meanwhile has no header to read: it sorts as one with none.
        let empty = Arc::new(Summary::default());
        Some(uids.iter().map(|uid| known.get(uid).cloned().unwrap_or_else(|| empty.clone())).collect())
    }
}

/// The summary of a message whose header is `octets`.
fn summary(octets: &[u8], meta: &MessageMeta) -> Arc<Summary> {
    let summary = match kubemail_message::mime::parse(octets) {
        Some(parsed) => Summary::new(&parsed, meta.internal_date, meta.size),
        None => {
            Summary { arrival: meta.internal_date, sent: meta.internal_date, size: meta.size, ..Summary::default() }
        }
    };
    Arc::new(summary)
}

/// How two messages compare on one sort criterion (RFC 5256 §3, RFC 5957 §3).
fn compare(criterion: &SortCriterion, a: &Summary, b: &Summary) -> Ordering {
    let ordering = match criterion.key {
        SortKey::Arrival => a.arrival.cmp(&b.arrival),
        SortKey::Cc => a.cc.cmp(&b.cc),
        SortKey::Date => a.sent.cmp(&b.sent),
        SortKey::From => a.from.cmp(&b.from),
        SortKey::Size => a.size.cmp(&b.size),
        SortKey::Subject => a.subject.cmp(&b.subject),
        SortKey::To => a.to.cmp(&b.to),
        SortKey::DisplayFrom => a.display_from.cmp(&b.display_from),
        SortKey::DisplayTo => a.display_to.cmp(&b.display_to),
    };
    if criterion.reverse { ordering.reverse() } else { ordering }
}
