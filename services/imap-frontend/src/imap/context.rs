//! Search contexts (CONTEXT=SEARCH, RFC 5267 §4.3): a SEARCH with RETURN (UPDATE) keeps its
//! criteria and result, and the session tells the client how the result changes — ADDTO when
//! a message comes to match (delivered, or its flags changed), REMOVEFROM when one stops
//! matching or is expunged (before the EXPUNGE, while its number still holds) — until the
//! mailbox is left or CANCELUPDATE. Positions are 0: the result stays in mailbox order.

use imap_codec::imap_types::core::Tag;
use imap_codec::imap_types::search::SearchKey;
use tokio::io::{AsyncRead, AsyncWrite};

use super::Session;
use super::selection::Selection;
use crate::extended_syntax::SearchExtra;
use crate::response::{self, Status};

/// Contexts a session may keep at once; past that, a SEARCH gets `NO [NOUPDATE]` (§4.3.1).
const MOST_CONTEXTS: usize = 16;

/// A SEARCH whose result the client keeps up to date.
pub(super) struct SearchContext {
    /// The SEARCH's tag, which its updates carry.
    tag: String,
    /// UID SEARCH: updates name UIDs, else message numbers.
    uid: bool,
    criteria: Vec<SearchKey<'static>>,
    keys: Vec<SearchExtra>,
    /// The UIDs in the result, ascending.
    result: Vec<u32>,
}

impl Selection {
    /// REMOVEFROM for the contexts that hold messages about to be told as expunged (`expunged`,
    /// ascending): sent before the EXPUNGE, with the numbers the messages have until then
    /// (§4.3.4).
    pub(super) fn context_removals(&mut self, expunged: &[u32]) -> String {
        let mut lines = String::new();
        if self.contexts.is_empty() {
            return lines;
        }
        for index in 0..self.contexts.len() {
            let context = &self.contexts[index];
            let gone: Vec<u32> =
                context.result.iter().copied().filter(|uid| expunged.binary_search(uid).is_ok()).collect();
            if gone.is_empty() {
                continue;
            }
            lines.push_str(&self.context_update(context, "REMOVEFROM", &gone));
            self.contexts[index].result.retain(|uid| expunged.binary_search(uid).is_err());
        }
        lines
    }

    /// `* ESEARCH (TAG "t") [UID] ADDTO|REMOVEFROM (0 set)` for `uids` of `context`.
    fn context_update(&self, context: &SearchContext, what: &str, uids: &[u32]) -> String {
        let ids: Vec<u32> = if context.uid {
            uids.to_vec()
        } else {
            uids.iter().filter_map(|uid| self.uids.binary_search(uid).ok().map(|index| index as u32 + 1)).collect()
        };
        if ids.is_empty() {
            return String::new();
        }
        let uid = if context.uid { " UID" } else { "" };
        format!("* ESEARCH (TAG \"{}\"){uid} {what} (0 {})\r\n", context.tag, response::sequence_set(&ids))
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Session<S> {
    /// Whether a SEARCH with RETURN (UPDATE) and `tag` may start: not when a context already
    /// has that tag (§4.3: BAD, answered here).
    pub(super) fn context_tag_free(&mut self, tag: &Tag<'_>) -> bool {
        let taken = self
            .selected
            .as_ref()
            .is_some_and(|selection| selection.contexts.iter().any(|context| context.tag == tag.inner()));
        if taken {
            self.respond(Some(tag), Status::Bad, None, "Tag reuse: an UPDATE search has this tag");
        }
        !taken
    }

    /// Keeps the search `tag` answered with `found` (sequence number, UID) as a context, or
    /// says NOUPDATE when the session has too many.
    pub(super) fn keep_context(
        &mut self,
        tag: &Tag<'_>,
        uid: bool,
        (criteria, keys): (&[SearchKey<'_>], &[SearchExtra]),
        found: &[(u32, u32)],
    ) {
        let Some(selection) = &mut self.selected else { return };
        if selection.contexts.len() >= MOST_CONTEXTS {
            let code = format!("NOUPDATE \"{}\"", tag.inner());
            self.respond(None, Status::No, Some(&code), "Too many search contexts");
            return;
        }
        let criteria =
            criteria.iter().map(|key| imap_codec::imap_types::IntoStatic::into_static(key.clone())).collect();
        let result = found.iter().map(|&(_, uid)| uid).collect();
        selection.contexts.push(SearchContext {
            tag: tag.inner().to_string(),
            uid,
            criteria,
            keys: keys.to_vec(),
            result,
        });
    }

    /// Runs each context's search again after messages arrived or their flags changed, and
    /// tells what came to match (ADDTO) and what stopped matching (REMOVEFROM).
    pub(super) async fn update_contexts(&mut self) {
        let Some(selection) = &mut self.selected else { return };
        if !std::mem::take(&mut selection.contexts_stale) || selection.contexts.is_empty() {
            return;
        }
        let searches: Vec<(usize, Vec<SearchKey<'static>>, Vec<SearchExtra>)> = selection
            .contexts
            .iter()
            .enumerate()
            .map(|(index, context)| (index, context.criteria.clone(), context.keys.clone()))
            .collect();
        for (index, criteria, keys) in searches {
            // A search that cannot run now (the mailstore away) is tried after the next change.
            let Some(matched) = self.matching(None, None, (&criteria, &keys)).await else {
                if let Some(selection) = &mut self.selected {
                    selection.contexts_stale = true;
                }
                continue;
            };
            let Some(selection) = &mut self.selected else { return };
            let Some(context) = selection.contexts.get(index) else { return };
            let now: Vec<u32> = matched.found.iter().map(|&(_, uid)| uid).collect();
            let removed: Vec<u32> =
                context.result.iter().copied().filter(|uid| now.binary_search(uid).is_err()).collect();
            let added: Vec<u32> =
                now.iter().copied().filter(|uid| context.result.binary_search(uid).is_err()).collect();
            let mut lines = String::new();
            if !removed.is_empty() {
                lines.push_str(&selection.context_update(context, "REMOVEFROM", &removed));
            }
            if !added.is_empty() {
                lines.push_str(&selection.context_update(context, "ADDTO", &added));
            }
            selection.contexts[index].result = now;
            self.io.write(lines.as_bytes());
        }
    }

    /// CANCELUPDATE (§4.3.5): the contexts of `tags` are told no more.
    pub(super) fn cancel_update(&mut self, tag: &Tag<'_>, tags: &[String]) {
        let Some(selection) = &mut self.selected else {
            self.respond(Some(tag), Status::Bad, None, "No mailbox is selected");
            return;
        };
        if let Some(unknown) =
            tags.iter().find(|wanted| !selection.contexts.iter().any(|context| context.tag == **wanted))
        {
            let text = format!("No UPDATE search has the tag {unknown}");
            self.respond(Some(tag), Status::Bad, None, &text);
            return;
        }
        selection.contexts.retain(|context| !tags.contains(&context.tag));
        self.ok(tag, "CANCELUPDATE completed");
    }
}
